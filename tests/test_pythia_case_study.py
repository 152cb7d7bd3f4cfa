"""The Pythia checkpoint case study: a smoke run by default, the acceptance targets when slow.

The data folder (``$BAYESCALE_DATA`` or ``../shared/data``) is not part of the
repository; without its ``pythia/`` folder these tests are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import pythia_checkpoints  # case_studies/ is on sys.path via conftest
from conftest import needs_data

needs_pythia = needs_data("pythia", "Pythia data")

COLUMNS = ["scenario", "target", "truth", "median", "lower", "upper", "rel_error", "band_rel_width",
           "covered"]
SMALL_RUNS = {"pythia-70m", "pythia-160m", "pythia-410m", "pythia-70m-deduped",
              "pythia-160m-deduped",
              "pythia-410m-deduped"}


def _outputs(out: Path):
    table = pd.read_csv(out / "pythia_predictions.csv")
    summary = json.loads((out / "pythia_summary.json").read_text())
    return table, summary


@needs_pythia
def test_pythia_small(tmp_path, capsys, monkeypatch):
    """Smoke run (70M-410M, 2 x (100 + 100) draws): scenarios 1-3 run and write their rows.
    Its fits do not converge, so this checks what is written (tables, truths from the data,
    bands ordered), never the posterior's values; the slow tier checks the forecasts.
    The ablations (scenario 4: the model of scenario 1 with parts left out, each one more
    compilation) and scenario 6 (``--downstream``) run in the slow tier."""
    monkeypatch.setattr(pythia_checkpoints, "ABLATIONS", ())
    # --no-report keeps the smoke run short; the report module has its own tests.
    assert pythia_checkpoints.main(["--small", "--out", str(tmp_path), "--no-report"]) == 0
    table, summary = _outputs(tmp_path)
    for col in COLUMNS:
        assert col in table.columns
    # the prior-sensitivity refits run only with --sensitivity (never with --small)
    expected = ["full", "transfer", "truncated"]
    assert list(dict.fromkeys(table["scenario"])) == expected
    counts = table["scenario"].value_counts()
    assert (counts["full"] == 2 and counts["transfer"] == 1
            and counts["truncated"] == len(SMALL_RUNS))
    assert set(table.loc[table["scenario"] == "truncated", "target"]) == SMALL_RUNS
    full = table[table["scenario"] == "full"].set_index("target")
    assert set(full.index) == {"pythia-2.8b", "pythia-2.8b-deduped"}
    assert full.loc["pythia-2.8b", "truth"] == pytest.approx(1.617, abs=0.005)
    assert ((table["lower"] <= table["median"]) & (table["median"] <= table["upper"])).all()
    assert (table["rel_error"].to_numpy()
            == pytest.approx((table["median"] / table["truth"] - 1).to_numpy()))
    assert (summary["small"] is True
            and summary["sampler"]["draws"] == pythia_checkpoints.SMALL_SAMPLER["draws"])
    assert len(summary["diagnostics"]) == len(expected) and summary["scenarios"] == expected
    assert (tmp_path / "pythia_fit.nc").is_file()
    assert (tmp_path / "pythia_diagnostics.csv").is_file()
    residuals = pd.read_csv(tmp_path / "pythia_residuals.csv")
    assert set(residuals["run"]) == SMALL_RUNS
    printed = capsys.readouterr().out
    for heading in ("Data quirks", "Acceptance targets", "Ablations of target 1",
                    "Prior sensitivity skipped"):
        assert heading in printed


def _check_downstream_rows(table):
    """Scenario 6's rows: the five tasks and their average at 2.8B, accuracies in (0, 1)."""
    acc = table[table["scenario"] == "downstream"].set_index("target")
    assert len(acc) == 2 * (1 + len(pythia_checkpoints.DOWNSTREAM_TASKS))
    assert acc.loc["pythia-2.8b acc:sciq", "truth"] == pytest.approx(0.882, abs=1e-3)
    tasks = [acc.loc[f"pythia-2.8b acc:{t}", "truth"] for t in pythia_checkpoints.DOWNSTREAM_TASKS]
    assert acc.loc["pythia-2.8b acc:avg", "truth"] == pytest.approx(sum(tasks) / len(tasks))
    assert ((acc["lower"] > 0) & (acc["upper"] < 1)).all()


def test_pythia_missing_data_exits_clearly(tmp_path):
    with pytest.raises(SystemExit, match="pythia"):
        pythia_checkpoints.main(["--small", "--out", str(tmp_path), "--data", str(tmp_path)])


@needs_pythia
@pytest.mark.slow
def test_pythia_full_acceptance(tmp_path):
    """The project's acceptance targets for the Pythia case study (full run)."""
    assert pythia_checkpoints.main(["--downstream", "--out", str(tmp_path), "--no-report"]) == 0
    table, summary = _outputs(tmp_path)
    expected = [s for s in pythia_checkpoints.SCENARIOS if s not in pythia_checkpoints.SENSITIVITY]
    assert list(dict.fromkeys(table["scenario"])) == expected
    _check_downstream_rows(table)
    accept = pythia_checkpoints.ACCEPT
    full = table[table["scenario"] == "full"].set_index("family")
    trunc = table[table["scenario"] == "truncated"]
    transfer = table[table["scenario"] == "transfer"].iloc[0]
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    # scenarios 1-5; scenario 6 has its own budget
    core = summary["acceptance"]["wall time <= 10 min"]["value"]
    check(core <= accept["max_wall_seconds"], f"wall time {core:.0f} s > 600 s")
    check(summary["wall_seconds"] <= 900,
          f"wall time with --downstream {summary['wall_seconds']:.0f} s > 15 min")
    avg = table[(table["scenario"] == "downstream") & table["target"].str.endswith("acc:avg")]
    for r in avg.itertuples():
        check(bool(r.covered),
              f"{r.target}: truth {r.truth:.3f} outside [{r.lower:.3f}, {r.upper:.3f}]")
    for fam in ("pile", "deduped"):
        r = full.loc[fam]
        check(bool(r["covered"]),
              f"{fam} 2.8B: truth {r['truth']:.3f} outside [{r['lower']:.3f}, {r['upper']:.3f}]")
        check(r["band_rel_width"] < accept["max_band_rel_width_2p8b"],
              f"{fam} 2.8B: band {r['band_rel_width']:.1%} of the loss (>= 20%)")
        check(abs(r["rel_error"]) <= accept["max_rel_error_2p8b"],
              f"{fam} 2.8B: median error {r['rel_error']:+.1%} (> 3%)")
    med = trunc["rel_error"].abs().median()
    check(med <= accept["max_rel_error_truncated"], f"truncated: median |error| {med:.1%} > 5%")
    cov = trunc["covered"].mean()
    check(cov >= accept["min_coverage_truncated"], f"truncated: coverage {cov:.0%} < 80%")
    t_err, f_err = abs(transfer["rel_error"]), abs(full.loc["deduped", "rel_error"])
    check(t_err <= accept["max_transfer_error_ratio"] * f_err,
          f"transfer |error| {t_err:.1%} > 1.5 x the full-family |error| {f_err:.1%}")
    for d in (d for d in summary["diagnostics"] if d["scenario"] in pythia_checkpoints.GATED):
        check(d["max_rhat"] <= accept["max_rhat"],
              f"{d['scenario']}: max R-hat {d['max_rhat']:.3f}")
        check(d["min_ess_bulk"] >= accept["min_ess_bulk"],
              f"{d['scenario']}: min bulk ESS {d['min_ess_bulk']:.0f}")
        check(d["divergent_fraction"] <= accept["max_divergent_fraction"],
              f"{d['scenario']}: {d['divergences']} divergences")
    assert not failures, "acceptance targets missed:\n  " + "\n  ".join(failures)
