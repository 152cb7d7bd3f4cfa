"""The ``bayescale`` command line, run in-process through ``bayescale.cli.main``.

One small fit (100 draws, 2 chains) is shared by the module; the demo fits its own preset
(``checkpoints_downstream``) with the same tiny settings.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import runpy
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import cli
from bayescale.cli import main
from bayescale.diagnostics import Diagnostics

COMMANDS = ("models", "fit", "predict", "summary", "allocate", "report", "demo", "uncertainty",
            "uncertainty-scaling", "suggest", "compare-families")
TINY = ["--draws", "100", "--tune", "100", "--chains", "2", "--method", "nuts", "--no-progress"]


def run(*argv) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("bayescale: error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """A simulated 20-run ladder as CSV, plus a targets CSV."""
    folder = tmp_path_factory.mktemp("cli")
    runs, _ = bayescale.simulate_ladder(seed=0)
    runs.to_csv(folder / "runs.csv", index=False)
    pd.DataFrame({"params": [7e9, 7e10], "tokens": [1.4e11, 1.4e12],
                  "family": ["default", "default"]}).to_csv(
        folder / "targets.csv", index=False
    )
    return folder, runs


@pytest.fixture(scope="module")
def fitted(ladder):
    """``bayescale fit`` on the ladder with tiny draws: (fit path, rc, stdout, stderr)."""
    folder, _ = ladder
    path = folder / "fit.nc"
    rc, out, err = run("fit", folder / "runs.csv", "--model", "chinchilla", "--out", path, "--seed",
                       "1", "--no-retry", *TINY)
    return path, rc, out, err


# --------------------------------------------------------------------------- help
def test_top_level_help_lists_every_command():
    rc, out, _ = run("--help")
    assert rc == 0
    assert out.startswith("usage: bayescale")
    for command in COMMANDS:
        assert f"\n    {command} " in out or f"\n    {command}\n" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(command):
    rc, out, err = run(command, "--help")
    assert rc == 0, err
    assert out.startswith(f"usage: bayescale {command}")
    assert "--debug" in out and "example" in out


def test_version_and_missing_command():
    rc, out, _ = run("--version")
    assert rc == 0 and out.strip() == f"bayescale {bayescale.__version__}"
    rc, _, err = run()
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("bayescale: error: choose a command")


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bayescale", "summary", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("bayescale", run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: bayescale summary")


def test_installed_console_script_help():
    exe = shutil.which("bayescale")
    if exe is None:
        pytest.skip("the 'bayescale' console script is not on PATH (package not installed)")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "usage: bayescale" in proc.stdout and "demo" in proc.stdout


# ------------------------------------------------------------------------ fit -> summary -> predict
def test_fit_saves_and_prints_summary_and_verdict(fitted):
    path, rc, out, err = fitted
    assert rc == 0, err
    assert path.is_file()
    assert "Traceback" not in err
    assert "fitting model 'chinchilla'" in out
    assert ("model 'chinchilla'" in out
            and "part   noise(likelihood='student_t', by_size=False)" in out)
    assert bayescale.load_fit(path).model.to_dict() == bayescale.load_model("chinchilla").to_dict()
    # the summary's outlier check computed the log-likelihood before the fit was saved
    assert "log_likelihood" in bayescale.load_fit(path).idata.groups()
    table = out.split("Posterior (90% HDI):", 1)[1]
    for name in ("E", "A", "B", "alpha", "beta", "sigma", "r_hat", "ess_bulk"):
        assert name in table
    diag = bayescale.load_fit(path).diagnostics()
    if diag.passed:
        assert "Diagnostics: converged" in out
    else:  # 100 draws x 2 chains: expected
        assert out.count("WARNING: NOT CONVERGED: ") == 1  # said once, in the summary
        assert "NOT CONVERGED" not in err


def test_summary_of_saved_fit(fitted):
    path = fitted[0]
    rc, out, err = run("summary", path, "--hdi", "0.8")
    assert rc == 0, err
    assert "Posterior (80% HDI):" in out and "hdi_10%" in out
    fit = bayescale.load_fit(path)
    alpha = float(fit.idata.posterior["alpha"].mean())
    row = next(line for line in out.splitlines() if line.startswith("alpha "))
    # az.summary rounds to 3 decimals
    assert float(row.split()[1]) == pytest.approx(alpha, abs=1e-3)
    assert "sampler  nutpie NUTS, 2 chains x 100 draws (100 tune), seed 1" in out


def test_predict_params_tokens_matches_library(fitted, tmp_path):
    path = fitted[0]
    csv = tmp_path / "preds.csv"
    rc, out, err = run("predict", path, "--params", "7e9", "--tokens", "1.4e11", "--hdi", "0.9",
                       "--out", csv)
    assert rc == 0, err
    assert "7e+09" in out and "1.4e+11" in out
    preds = pd.read_csv(csv)
    assert len(preds) == 1
    with warnings.catch_warnings():  # 100 draws: the library warns (the CLI printed it)
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        expected = bayescale.load_fit(path).predict({"params": 7e9, "tokens": 1.4e11}, hdi_prob=0.9)
    for col in ("mean", "lower", "upper"):
        assert preds[col].iloc[0] == pytest.approx(expected[col].iloc[0], rel=1e-9)
    assert preds["lower"].iloc[0] < preds["mean"].iloc[0] < preds["upper"].iloc[0]


def test_predict_broadcasts_and_reads_suffixes(fitted, tmp_path):
    csv = tmp_path / "p.csv"
    rc, _, err = run("predict", fitted[0], "--params", "7B", "70B", "--tokens", "1.4T", "--kind",
                     "mean", "--out", csv)
    assert rc == 0, err
    preds = pd.read_csv(csv)
    np.testing.assert_allclose(preds["params"], [7e9, 7e10])
    np.testing.assert_allclose(preds["tokens"], [1.4e12, 1.4e12])
    assert "beyond the ladder" in err  # 70B x 1.4T is >1000x the ladder: warned on one line
    assert "Traceback" not in err


def test_predict_with_targets_csv(fitted, ladder, tmp_path):
    folder, _ = ladder
    csv = tmp_path / "preds.csv"
    rc, _, err = run("predict", fitted[0], "--targets", folder / "targets.csv", "--out", csv)
    assert rc == 0, err
    preds = pd.read_csv(csv)
    assert list(preds["params"]) == [7e9, 7e10]
    assert {"family", "mean", "median", "lower", "upper", "extrapolation"} <= set(preds.columns)
    assert (preds["lower"] < preds["upper"]).all()
    assert preds["extrapolation"].iloc[1] == pytest.approx(100 * preds["extrapolation"].iloc[0])


@pytest.mark.parametrize(
    "extra, needle",
    [
        ([], "give the targets"),
        (["--params", "7e9", "1e10", "3e10", "--tokens", "1e11", "2e11"], "--params has 3 values"),
        (["--params", "7e9", "--tokens", "1e11", "--targets", "t.csv"], "not both"),
        (["--params", "-7e9", "--tokens", "1e11"], "--params"),
        (["--params", "seven", "--tokens", "1e11"], "'seven' is not a number"),
        (["--params", "7e9", "--tokens", "1e11", "--hdi", "1.5"], "between 0 and 1"),
    ],
)
def test_predict_usage_errors(fitted, extra, needle):
    rc, _, err = run("predict", fitted[0], *extra)
    assert rc == 2
    assert_one_line_error(err, needle)


def test_allocate(fitted, tmp_path):
    csv = tmp_path / "alloc.csv"
    rc, _, err = run("allocate", fitted[0], "--compute", "1e21", "5.76e23", "--out", csv)
    assert rc == 0, err
    table = pd.read_csv(csv)
    assert len(table) == 6 and set(table["quantity"]) == {"params", "tokens", "loss"}
    n_opt = table[table["quantity"] == "params"]["median"].to_numpy()
    assert n_opt[1] > n_opt[0] > 0  # a bigger budget buys a bigger model


def test_uncertainty_parts_at_targets_and_along_a_path(fitted, tmp_path):
    path = fitted[0]
    rc, out, err = run("uncertainty", path, "--params", "7e9", "7e10", "--tokens", "1.4e11",
                       "--out", tmp_path / "parts.csv", "--plot", tmp_path / "parts.png")
    assert rc == 0, err
    assert "law_var" in out and "noise_var" in out and "total_var" in out
    table = pd.read_csv(tmp_path / "parts.csv")
    fit = bayescale.load_fit(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        library = fit.uncertainty({"params": [7e9, 7e10], "tokens": [1.4e11, 1.4e11]})
    assert np.allclose(table["total_var"], library["total_var"])
    assert (tmp_path / "parts.png").stat().st_size > 0
    rc, out, err = run("uncertainty", path, "--path", "--tokens-per-param", "20",
                       "--plot", tmp_path / "path.png")
    assert rc == 0, err
    assert "extrapolation" in out and "largest compute" in out
    rc, _, err = run("uncertainty", path, "--path", "--params", "7e9", "--tokens", "1e11")
    assert rc == 2
    assert_one_line_error(err, "--path")


def test_uncertainty_scaling_command(ladder, tmp_path):
    folder, _ = ladder
    rc, out, err = run("uncertainty-scaling", folder / "runs.csv", "--params", "7e9",
                       "--tokens", "1.4e11", "--model", "chinchilla", "--draws", "100",
                       "--tune", "100", "--chains", "2", "--out", tmp_path / "scaling.csv",
                       "--plot", tmp_path / "scaling.png")
    assert rc == 0, err
    assert "kappa" in out
    table = pd.read_csv(tmp_path / "scaling.csv")
    assert table["runs"].is_monotonic_increasing and len(table) >= 2
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_suggest_ranks_candidates(fitted, tmp_path):
    path = fitted[0]
    pd.DataFrame({"params": [1e9, 1e7], "tokens": [2e10, 2e8]}).to_csv(
        tmp_path / "candidates.csv", index=False)
    rc, out, err = run("suggest", path, "--candidates", tmp_path / "candidates.csv",
                       "--params", "7e9", "--tokens", "1.4e11", "--out", tmp_path / "rank.csv")
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "rank.csv")
    assert list(table["rank"]) == [1, 2] and "variance_reduction_per_flop" in out
    rc, _, err = run("suggest", path, "--candidates", tmp_path / "missing.csv", "--params", "7e9",
                     "--tokens", "1.4e11")
    assert rc == 2
    assert_one_line_error(err, "missing.csv")


def test_compare_families(fitted, tmp_path):
    families = tmp_path / "families.csv"
    runs, _ = bayescale.simulate_ladder(seed=3, families=["web", "code"], family_spread=0.05)
    runs.to_csv(families, index=False)
    # families pooled on final losses (the model auto's backtest would compare, named here)
    pooled = tmp_path / "pooled.toml"
    pooled.write_text('format = 2\nextends = "chinchilla"\nname = "pooled"\n'
                      '[parts.family_pooling]\n')
    rc, _, err = run("fit", families, "--model", pooled, "--out", tmp_path / "fit.nc",
                     "--no-retry", *TINY)
    assert rc == 0, err
    rc, _, err = run("compare-families", tmp_path / "fit.nc", "--params", "7e9", "--tokens",
                       "1.4e11", "--out", tmp_path / "p.csv")
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "p.csv")
    assert set(table["family"]) == {"web", "code"} and table["p_best"].sum() == pytest.approx(1)
    rc, _, err = run("compare-families", fitted[0], "--params", "7e9", "--tokens", "1.4e11")
    assert rc == 2
    assert_one_line_error(err, "famil")


def test_fit_says_when_it_leaves_rows_out(tmp_path):
    runs, _ = bayescale.simulate_ladder(seed=0, checkpoints=3)
    path = tmp_path / "checkpoints.csv"
    runs.to_csv(path, index=False)
    rc, out, err = run("fit", path, "--model", "chinchilla", "--out", tmp_path / "m.nc", *TINY)
    assert rc == 0, err
    assert "bayescale: note: fitted 20 of 60 'loss' rows; 40 left out" in err
    assert "a model with a checkpoints part fits every checkpoint (e.g. --model checkpoints)" in out
    assert "fitting model 'chinchilla'" in out


def test_fit_with_a_preset_or_a_model_file(tmp_path):
    """``--model checkpoints`` fits every checkpoint (no note about rows left out); a model TOML
    file is read, its parts used and stored with the fit (MAP previews: the wiring is under
    test)."""
    runs, _ = bayescale.simulate_ladder(seed=0, checkpoints=3)
    path = tmp_path / "checkpoints.csv"
    runs.to_csv(path, index=False)
    preview = ["--method", "map", "--no-progress"]
    rc, out, err = run("fit", path, "--model", "checkpoints", "--out", tmp_path / "c.nc", *preview)
    assert rc == 0, err
    assert "fitting model 'checkpoints'" in out and "left out" not in err
    fit = bayescale.load_fit(tmp_path / "c.nc")
    assert len(fit.runs) == 60 and fit.model.part("checkpoints") is not None
    # resolved: the table has no schedule column
    assert fit.model.part("schedule").source == "learned"
    model = tmp_path / "mine.toml"
    model.write_text('format = 2\nextends = "kaplan"\nname = "mine"\n[parts.noise]\n'
                     'likelihood = "normal"\n')
    rc, out, err = run("fit", path, "--model", model, "--out", tmp_path / "m.nc", *preview)
    assert rc == 0, err
    assert ("fitting model 'mine'" in out
            and "part   noise(likelihood='normal', by_size=False)" in out)
    fit = bayescale.load_fit(tmp_path / "m.nc")
    assert (fit.model.name == "mine" and fit.law.lookup_name == "kaplan"
            and "nu" not in fit.idata.posterior)


# --------------------------------------------------------------------------- models
def test_models_lists_every_preset():
    rc, out, err = run("models")
    assert rc == 0, err
    lines = out.splitlines()
    for name, description in bayescale.available_models().items():
        assert any(line.split()[:1] == [name] and description[:40] in line for line in lines), name


def test_models_shows_one_in_full(tmp_path):
    rc, out, err = run("models", "pythia_lambada")
    assert rc == 0, err
    model = bayescale.load_model("pythia_lambada")
    assert str(model).splitlines()[0] in out
    for part in model.parts:
        assert f"part   {part.lookup_name}(" in out
    for name in model.priors:
        assert f"  {name} ~ " in out, name
    assert "Irreducible LAMBADA last-word loss" in out  # the preset's own provenance of E
    assert "Sampler defaults:" in out and "mass_matrix=low_rank" in out
    file = tmp_path / "mine.toml"
    file.write_text('format = 2\nextends = "checkpoints"\nname = "mine"\n[parts.drift]\n')
    rc, out, err = run("models", file)
    assert rc == 0, err
    assert ("model 'mine'" in out and "part   drift(clock='ln_tokens')" in out
            and "  sigma_drift ~ HalfNormal" in out)


# --------------------------------------------------------------------------- errors
def test_missing_value_column_is_one_line_exit_2(ladder, tmp_path):
    _, runs = ladder
    bad = tmp_path / "no_value.csv"
    runs.drop(columns="value").to_csv(bad, index=False)
    rc, _, err = run("fit", bad, "--out", tmp_path / "x.nc", *TINY)
    assert rc == 2
    assert_one_line_error(err, "column 'value'", "required", str(bad))
    assert not (tmp_path / "x.nc").exists()


def test_negative_params_is_one_line_exit_2(ladder, tmp_path):
    _, runs = ladder
    bad = tmp_path / "negative.csv"
    broken = runs.copy()
    broken.loc[3, "params"] = -1e8
    broken.to_csv(bad, index=False)
    rc, _, err = run("fit", bad, "--out", tmp_path / "x.nc", *TINY)
    assert rc == 2
    assert_one_line_error(err, "column 'params'", "> 0", "row 3")


#: Model files with one problem each (see test_input_errors_are_one_line_exit_2).
BROKEN_MODELS = {
    "cauchy": 'format = 2\n[parts.family_pooling]\nprior = "cauchy"\n',
    "clash": 'format = 2\n[parts.drift]\n',
    "typo": 'format = 2\n[parts.checkpoints]\n[parts.run_effect]\nslopes = true\n',
}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "{tmp}/nope.csv", "--out", "{tmp}/x.nc"], "runs table not found"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "no_such_law"],
         "unknown model 'no_such_law'"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "{tmp}/nope.toml"],
         "no model file at"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "{tmp}/cauchy.toml"],
         "family_pooling: prior='cauchy'"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "{tmp}/clash.toml"],
         "drift: needs the checkpoints part"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "{tmp}/typo.toml"],
         "run_effect: unknown option(s) ['slopes']"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--model", "downstream"],
         "downstream: needs 'acc:<task>' rows"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--pooling", "family"],
         "unrecognized arguments: --pooling"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--checkpoints", "all"],
         "unrecognized arguments: --checkpoints"),
        (["models", "no_such_law"], "unknown model 'no_such_law'"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--metric", "acc:nothing"],
         "no rows with metric"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--sampler", "stan"], "invalid choice"),
        (["fit", "{runs}"], "required: --out"),
        (["fit", "{runs}", "--out", "{tmp}/x.nc", "--mass-matrix", "diag", "--low-rank-cutoff",
          "3"],
         "needs mass_matrix='low_rank'"),
        (["summary", "{tmp}/nope.nc"], "fit file not found"),
        (["summary", "{runs}"], "cannot read fit file"),
        (["predict", "{tmp}/nope.nc", "--params", "1e9", "--tokens", "1e10"], "fit file not found"),
    ],
)
def test_input_errors_are_one_line_exit_2(ladder, tmp_path, argv, needle):
    folder, _ = ladder
    for name, text in BROKEN_MODELS.items():
        (tmp_path / f"{name}.toml").write_text(text)
    args = [a.format(tmp=tmp_path, runs=folder / "runs.csv") for a in argv]
    rc, _, err = run(*args)
    assert rc == 2
    assert_one_line_error(err, needle)


def test_missing_optional_sampler_is_one_line_exit_2(ladder, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("numpyro", "jax") else real(name, *a))
    folder, _ = ladder
    rc, _, err = run("fit", folder / "runs.csv", "--out", tmp_path / "x.nc", "--sampler", "numpyro")
    assert rc == 2
    assert_one_line_error(err, "numpyro", "pip install")


def test_float32_needs_a_jax_sampler_and_is_passed_to_fit(ladder, tmp_path, monkeypatch):
    """``--precision float32`` with nutpie is a one-line error before any work; with numpyro
    it reaches ``bayescale.fit`` (a stand-in records it; nothing is sampled)."""
    folder, _ = ladder
    rc, _, err = run("fit", folder / "runs.csv", "--out", tmp_path / "x.nc", "--precision",
                     "float32")
    assert rc == 2
    assert_one_line_error(err, "float32", "numpyro")
    seen = {}

    def record(runs, model, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("bayescale.fitting.fit", record)
    rc, _, _ = run("fit", folder / "runs.csv", "--out", tmp_path / "x.nc", "--sampler", "numpyro",
                   "--precision", "float32", "--model", "chinchilla")
    assert seen["precision"] == "float32" and seen["sampler"] == "numpyro"


def test_internal_error_exit_1_and_debug_reraises(fitted, monkeypatch):
    def broken(path):
        raise TypeError("boom")

    monkeypatch.setattr(bayescale.io, "load_fit", broken)
    rc, _, err = run("summary", fitted[0])
    assert rc == 1
    assert_one_line_error(err, "internal error TypeError: boom", "--debug")
    with pytest.raises(TypeError, match="boom"):
        run("summary", fitted[0], "--debug")


def test_failed_convergence_is_loud_but_exit_0(fitted, monkeypatch):
    failing = Diagnostics("nuts", 1.2, 12.0, 9.0, 3, 200, 200, False, ("max R-hat 1.200 > 1.01",))
    monkeypatch.setattr(bayescale.ScalingFit, "diagnostics", lambda self: failing)
    rc, out, err = run("summary", fitted[0])
    assert rc == 0
    assert out.count("WARNING: NOT CONVERGED: max R-hat 1.200 > 1.01") == 1
    assert "NOT CONVERGED" not in err  # once, not twice


def test_strict_fit_retries_once_then_exits_3_without_writing(ladder, tmp_path):
    path = tmp_path / "strict.nc"
    rc, _, err = run("fit", ladder[0] / "runs.csv", "--model", "chinchilla", "--out", path,
                       "--seed", "1", "--strict", *TINY)
    assert rc == 3 and not path.exists()
    assert_one_line_error(err, "NOT CONVERGED", "after one retry with tune=200, target_accept=0.95")


# --------------------------------------------------------------------------- demo and report
def test_demo_quick_writes_everything(tmp_path):
    out_dir = tmp_path / "demo"
    rc, out, err = run("demo", "--out", out_dir, "--quick", "--no-progress")
    assert rc == 0, err
    assert "Traceback" not in err
    for name in ("runs.csv", "fit.nc", "predictions.csv"):
        assert (out_dir / name).is_file(), name
    preds = pd.read_csv(out_dir / "predictions.csv")
    runs, truth = cli._demo_ladder(0)
    pd.testing.assert_frame_equal(pd.read_csv(out_dir / "runs.csv"), runs.reset_index(drop=True),
                                  check_dtype=False)
    expected = cli._demo_targets(truth)
    assert len(preds) == len(expected) == 2 * len(cli.DEMO_FAMILIES) * len(cli.DEMO_TARGET_SCALES)
    assert (list(preds["metric"]) == list(expected["metric"])
            and list(preds["family"]) == list(expected["family"]))
    np.testing.assert_allclose(preds["truth"], expected["truth"])
    loss = preds["metric"] == "loss"
    np.testing.assert_allclose(preds.loc[loss, "truth"],
                               [truth.loss(p, t, f) for p, t, f
                                in preds.loc[loss, ["params", "tokens", "family"]].to_numpy()])
    in_band = (preds["lower"] <= preds["truth"]) & (preds["truth"] <= preds["upper"])
    assert (preds["truth_in_band"] == in_band).all()
    rel = (preds["mean"] - preds["truth"]).abs() / preds["truth"]
    assert (rel[loss] < 0.05).all()  # the law is recovered
    assert ((preds.loc[~loss, "lower"] > 0) & (preds.loc[~loss, "upper"] < 1)).all()
    assert "Predictions beyond the ladder" in out and "truth" in out
    fit = bayescale.load_fit(out_dir / "fit.nc")
    assert fit.sampler_config.draws == cli.QUICK["draws"] and fit.model.name == cli.DEMO_MODEL
    assert fit.tasks == [f"acc:{cli.DEMO_TASK['name']}"]
    if importlib.util.find_spec("bayescale.plotting.save") is not None:
        assert sorted((out_dir / "figures").glob("*.png")), "no figures written"
    if importlib.util.find_spec("bayescale.report") is None:
        pytest.skip("bayescale.report is not written yet: report.html not checked")
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "</html>" in html


def test_report_command_passes_fit_targets_title_and_hdi(fitted, ladder, tmp_path, monkeypatch):
    """The wiring of `bayescale report` (the rendering itself is checked by the demo test
    and tests/test_report.py); write_report is stubbed to keep this fast."""
    report = pytest.importorskip("bayescale.report", reason="bayescale.report is not written yet")
    calls = []

    def fake_write_report(fit, path, targets=None, title=None, hdi_prob=None):
        calls.append((fit, path, targets, title, hdi_prob))
        path.write_text("<html>stub</html>")
        return path

    monkeypatch.setattr(report, "write_report", fake_write_report)
    folder, _ = ladder
    out = tmp_path / "sub" / "report.html"
    rc, stdout, err = run(
        "report", fitted[0], "--out", out, "--targets", folder / "targets.csv", "--title",
        "CLI test", "--hdi", "0.8"
    )
    assert rc == 0, err
    assert out.read_text() == "<html>stub</html>"
    assert f"Wrote the report to {out}" in stdout
    (fit, path, targets, title, hdi), = calls
    assert isinstance(fit, bayescale.ScalingFit) and path == out
    assert list(targets["params"]) == [7e9, 7e10] and title == "CLI test" and hdi == 0.8
