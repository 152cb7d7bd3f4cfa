"""Tests of bayescale.datasets: tiny synthetic files in the original formats, then the real data."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from bayescale.datasets import (
    RUNS_COLUMNS,
    _fetch,
    _paths,
    find_data_dir,
    gadre_tasks,
    load_chinchilla,
    load_gadre,
    load_pythia,
    require_data_dir,
)

STEP_TOKENS = 2_097_152


# ----------------------------------------------------------------------------- synthetic files
def write_chinchilla(root):
    folder = root / "chinchilla_epoch"
    folder.mkdir(parents=True)
    n = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9])
    c = n * 6 * np.array([2e9, 4e9, 8e9, 1.6e10, 3.2e10, 1e9, 5e8])
    loss = np.array([3.0, 2.9, 2.8, 2.7, 2.6, 3.5, 4.0])
    pd.DataFrame(
        {"x": 1.0, "y": 2.0, "color": "#fff", "Model Size": n, "Training FLOP": c,
         "hex_color": "#fff", "loss": loss}
    ).to_csv(folder / "svg_extracted_data.csv", index=False)
    return folder / "svg_extracted_data.csv"


def _gadre_model(name, dataset, arch, params, no_embed, tokens, mult, c4_loss):
    return {
        "name": name,
        "dataset_name": dataset,
        "hyperparameters": {
            "model": arch, "tokens": tokens, "lr": 0.003, "params": params,
            "params_no_embed": no_embed, "chinchilla_multiplier": mult,
        },
        "results": [
            {"loss": 9.0,
             "val_data": ["training/eval_data/val_tok_mult/openlm/shard_00000000.tar"]},
            {"loss": c4_loss,
             "val_data": ["training/eval_data/c4_val/shard-{0000000..0000010}.tar"]},
            {"loss": 8.0, "val_data": ["training/eval_data/val_tok_mult/paloma_ptb/00000001.tar"]},
        ],
    }


GADRE_MODELS = [
    ("c4_original-d=96_l=8_h=4-1.0", "c4_original", "scaling/open_lm_configs/d=96_l=8_h=4.json",
     10569312, 5727840, 211386240, 1.0, 5.2),
    ("rw_original-open_lm_1b-16.0", "rw_original", "open_lm_1b", 1439795200, 1.3e9, 4.6e11, 16.0,
     2.9),
]


def write_gadre(root, extra_task=True):
    folder = root / "gadre_overtrain"
    (folder / "models").mkdir(parents=True)
    (folder / "evals").mkdir()
    for spec in GADRE_MODELS:
        model = _gadre_model(*spec)
        (folder / "models" / f"{spec[0]}.json").write_text(json.dumps(model))
        icl = {"piqa": 0.6, "arc_challenge": 235 / 1172, "jeopardy": 0.0}
        if extra_task:
            icl["mystery_task"] = 0.5
        evals = {"name": "x", "model": "y", "eval_metrics": {"icl": icl}}
        (folder / "evals" / f"evaluation_{spec[0]}_heavy.json").write_text(json.dumps(evals))
    pd.DataFrame(
        {
            "Eval Task": ["piqa", "arc_challenge", "jeopardy", "gsm8k"],
            "Task Category": ["commonsense reasoning", "world knowledge", "world knowledge",
                              "symbolic"],
            "Task Type": ["multiple choice", "multiple choice", "language modeling",
                          "question answering"],
            "#shots": [10, 10, 10, 3],
            "#datapoints": [1838, 2376, 2117, 1319],
            "Random baseline": [50, 25, 0, 0],
            "Centered Metric?": "",
            "Description": "text",
        }
    ).to_csv(folder / "eval_metadata.csv", index=False)
    return folder


def _pythia_eval(step, ppl, acc=0.3, fewshot=0):
    se = lambda p, n: math.sqrt(p * (1 - p) / (n - 1))  # noqa: E731
    return {
        "results": {
            "lambada_openai": {"ppl": ppl, "ppl_stderr": 1.0, "acc": acc,
                               "acc_stderr": se(acc, 5153)},
            "piqa": {"acc": 0.6, "acc_stderr": se(0.6, 1838), "acc_norm": 0.61,
                     "acc_norm_stderr": 0.01},
            "wsc": {"acc": 0.4, "acc_stderr": se(0.4, 104)},
            **{t: {"acc": 0.3, "acc_stderr": 0.01}
               for t in ("arc_easy", "arc_challenge", "sciq", "winogrande", "logiqa")},
            "hendrycksTest-anatomy": {"acc": 0.3, "acc_stderr": se(0.3, 135)},
            "crows_pairs_english": {"likelihood_difference": 3.0, "pct_stereotype": 0.6},
        },
        "versions": {},
        "config": {"model": "hf-causal", "model_args": f"pretrained=x,revision=step{step}",
                   "num_fewshot": fewshot},
    }


def write_pythia(root, models_csv=True):
    folder = root / "pythia"
    runs = {"pythia-70m": "70m", "pythia-70m-deduped": "70m-deduped"}
    for run, stem in runs.items():
        shots = folder / "pythia-v1" / run / "zero-shot"
        shots.mkdir(parents=True)
        for step, ppl in [(0, 3.5e6), (1, 3.4e6), (1000, 1000.0), (143000, 100.0)]:
            (shots / f"{stem}_step{step}.json").write_text(json.dumps(_pythia_eval(step, ppl)))
    if models_csv:
        pd.DataFrame(
            {"size": ["70m"], "total_params": [7.0e7], "non_embedding_params": [1.9e7],
             "n_layers": [6],
             "d_model": [512], "n_heads": [8], "max_lr": [1.0e-3]}
        ).to_csv(folder / "models.csv", index=False)
    return folder


def assert_runs_table(df):
    assert list(df.columns[: len(RUNS_COLUMNS)]) == RUNS_COLUMNS
    assert (df["params"] > 0).all() and (df["tokens"] > 0).all()
    assert {"param_count", "source", "dataset"} <= set(df.attrs)
    loss = df["metric"] == "loss"
    assert df.loc[loss, ["n_items", "chance"]].isna().all().all()
    assert (df.loc[loss, "value"] > 0).all()
    acc = df.loc[~loss, "value"]
    assert ((acc >= 0) & (acc <= 1)).all()


# ----------------------------------------------------------------------------- paths
def test_find_data_dir_env_var(tmp_path, monkeypatch):
    (tmp_path / "pythia").mkdir()
    monkeypatch.setenv("BAYESCALE_DATA", str(tmp_path))
    assert find_data_dir() == tmp_path
    assert find_data_dir("pythia") == tmp_path
    assert find_data_dir("no_such_subfolder_xyz") is None


def test_require_data_dir_message(monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESCALE_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError) as err:
        require_data_dir("no_such_subfolder_xyz")
    msg = str(err.value)
    assert "BAYESCALE_DATA" in msg and "shared/data" in msg and "no_such_subfolder_xyz" in msg


def test_loader_without_data_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(_paths, "_candidates", lambda: [tmp_path / "nothing"])
    with pytest.raises(FileNotFoundError, match="BAYESCALE_DATA"):
        load_chinchilla()


# ----------------------------------------------------------------------------- chinchilla
def test_chinchilla_synthetic(tmp_path):
    csv = write_chinchilla(tmp_path)
    for path in (csv, csv.parent, tmp_path):
        df = load_chinchilla(path)
        assert_runs_table(df)
        assert len(df) == 7
    raw = pd.read_csv(csv)
    np.testing.assert_allclose(df["tokens"], raw["Training FLOP"] / (6 * raw["Model Size"]))
    np.testing.assert_allclose(df["total_tokens"], df["tokens"])
    np.testing.assert_allclose(df["flops"], raw["Training FLOP"])
    assert df["run"].tolist()[:2] == ["chinchilla-000", "chinchilla-001"]
    assert set(df["metric"]) == {"loss"} and set(df["family"]) == {"chinchilla"}
    assert df.attrs["param_count"] == "total" and df.attrs["dataset"] == "chinchilla_epoch"
    kept = load_chinchilla(csv, exclude_outliers=True)
    assert kept["run"].tolist() == ["chinchilla-003", "chinchilla-004"]  # the 2 lowest losses


def test_chinchilla_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_chinchilla(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Model Size,loss\n1e8,3.0\n")
    with pytest.raises(ValueError, match=r"bad.csv.*Training FLOP"):
        load_chinchilla(bad)


# ----------------------------------------------------------------------------- gadre
def test_gadre_synthetic(tmp_path):
    write_gadre(tmp_path)
    with pytest.warns(UserWarning, match="mystery_task"):
        df = load_gadre(tmp_path)
    assert_runs_table(df)
    assert set(df["family"]) == {"c4", "refinedweb"}
    loss = df[df["metric"] == "loss"].set_index("run")
    assert loss.loc["c4_original-d=96_l=8_h=4-1.0", "value"] == 5.2
    assert loss.loc["rw_original-open_lm_1b-16.0", "arch"] == "open_lm_1b"
    assert loss.loc["c4_original-d=96_l=8_h=4-1.0", "arch"] == "d=96_l=8_h=4"
    assert loss.loc["rw_original-open_lm_1b-16.0", "multiplier"] == 16.0
    assert loss.loc["c4_original-d=96_l=8_h=4-1.0", "params"] == 10569312
    assert (df["tokens"] == df["total_tokens"]).all()
    acc = df[df["run"] == "c4_original-d=96_l=8_h=4-1.0"].set_index("metric")
    assert acc.loc["acc:piqa", ["n_items", "chance"]].tolist() == [1838, 0.5]
    assert acc.loc["acc:jeopardy", "chance"] == 0.0
    assert acc.loc["acc:arc_challenge", "n_items"] == 1172  # the csv says 2376
    assert acc.loc["acc:mystery_task", ["n_items", "chance"]].isna().all()
    assert len(df) == 2 * 5


def test_gadre_options(tmp_path):
    write_gadre(tmp_path, extra_task=False)
    ne = load_gadre(tmp_path, param_count="non_embedding", tasks=None)
    assert ne.attrs["param_count"] == "non_embedding"
    assert set(ne["metric"]) == {"loss"} and len(ne) == 2
    assert sorted(ne["params"]) == [5727840, 1.3e9]
    ptb = load_gadre(tmp_path, loss="paloma_ptb", tasks=["piqa"])
    assert set(ptb["metric"]) == {"loss", "acc:piqa"}
    assert (ptb.loc[ptb["metric"] == "loss", "value"] == 8.0).all()
    with pytest.raises(ValueError, match="unknown Gadre task"):
        load_gadre(tmp_path, tasks=["not_a_task"])
    with pytest.raises(ValueError, match="param_count"):
        load_gadre(tmp_path, param_count="embedding")


def test_gadre_tasks_synthetic(tmp_path):
    write_gadre(tmp_path)
    tasks = gadre_tasks(tmp_path).set_index("task")
    assert {"category", "n_items", "chance", "shots", "n_items_csv"} <= set(tasks.columns)
    assert tasks.loc["arc_challenge", ["n_items", "n_items_csv"]].tolist() == [1172, 2376]
    assert tasks.loc["piqa", "chance"] == 0.5 and tasks.loc["gsm8k", "shots"] == 3


def test_gadre_errors(tmp_path):
    folder = write_gadre(tmp_path, extra_task=False)
    with pytest.raises(ValueError, match=r"d=96_l=8_h=4-1.0.json.*no_such_val"):
        load_gadre(tmp_path, loss="no_such_val")
    (folder / "evals" / "evaluation_rw_original-open_lm_1b-16.0_heavy.json").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"evaluation_rw_original-open_lm_1b-16.0_heavy.json"):
        load_gadre(tmp_path)
    assert len(load_gadre(tmp_path, tasks=None)) == 2  # loss rows need no evals
    model = folder / "models" / "c4_original-d=96_l=8_h=4-1.0.json"
    model.write_text(json.dumps({**json.loads(model.read_text()), "dataset_name": "pile"}))
    with pytest.raises(ValueError, match=r"c4_original-d=96_l=8_h=4-1.0.json.*pile"):
        load_gadre(tmp_path, tasks=None)
    (folder / "eval_metadata.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval_metadata.csv"):
        gadre_tasks(folder)


# ----------------------------------------------------------------------------- pythia
def test_pythia_synthetic(tmp_path):
    write_pythia(tmp_path)
    df = load_pythia(tmp_path)
    assert_runs_table(df)
    assert set(df["family"]) == {"pile", "deduped"}
    assert set(df["run"]) == {"pythia-70m", "pythia-70m-deduped"}
    assert sorted(df["step"].unique()) == [1, 1000, 143000]  # step 0 dropped
    np.testing.assert_array_equal(df["tokens"], df["step"] * STEP_TOKENS)
    assert (df["total_tokens"] == 143_000 * STEP_TOKENS).all()
    loss = df[(df["metric"] == "loss") & (df["run"] == "pythia-70m")].set_index("step")["value"]
    np.testing.assert_allclose(loss[1000], math.log(1000.0))
    assert df["metric"].nunique() == 9 and len(df) == 2 * 3 * 9
    acc = df[df["metric"] != "loss"].groupby("metric")[["n_items", "chance"]].first()
    assert acc.loc["acc:wsc"].tolist() == [104, 0.5]
    assert acc.loc["acc:lambada_openai"].tolist() == [5153, 0.0]
    row = df.iloc[0]
    assert row["lr_max"] == 1e-3 and row["schedule"] == "cosine" and row["size"] == "70m"
    assert (row["warmup_fraction"], row["final_lr_fraction"]) == (0.01, 0.1)
    assert (df["params"] == 7.0e7).all() and df.attrs["param_count"] == "total"


def test_pythia_options(tmp_path):
    write_pythia(tmp_path)
    ne = load_pythia(tmp_path, param_count="non_embedding", tasks=None, min_step=0)
    assert (ne["params"] == 1.9e7).all() and ne.attrs["param_count"] == "non_embedding"
    assert set(ne["metric"]) == {"loss"} and 0 in set(ne["step"])
    assert len(ne) == 2 * 4
    every = load_pythia(tmp_path, tasks="all")
    mmlu = every[every["metric"] == "acc:hendrycksTest-anatomy"]
    assert len(mmlu) == 6 and (mmlu["n_items"] == 135).all() and (mmlu["chance"] == 0.25).all()
    assert not every["metric"].str.contains("crows").any()
    assert set(load_pythia(tmp_path, tasks=["piqa"])["metric"]) == {"loss", "acc:piqa"}
    with pytest.raises(ValueError, match="unknown Pythia task"):
        load_pythia(tmp_path, tasks=["mmlu"])


def test_pythia_quirky_files(tmp_path):
    folder = write_pythia(tmp_path, models_csv=False)  # built-in model table is used
    shots = folder / "pythia-v1" / "pythia-70m" / "zero-shot"
    # pythia-1b-bf16 holds zero-shot results in files named *-5shot_*: keep those
    (shots / "70m-5shot_step512.json").write_text(json.dumps(_pythia_eval(512, 5e4)))
    (shots / "70m-5shot_step256.json").write_text(json.dumps(_pythia_eval(256, 6e4, fewshot=5)))
    with pytest.warns(UserWarning, match="5shot_step256"):
        df = load_pythia(tmp_path, tasks=None)
    steps = df.loc[df["run"] == "pythia-70m", "step"].tolist()
    assert 512 in steps and 256 not in steps
    assert (df["params"] == 70426624).all()
    (shots / "70m-copy_step1000.json").write_text(json.dumps(_pythia_eval(1000, 1.0)))
    with pytest.raises(ValueError, match="step 1000 appears twice"), pytest.warns(UserWarning):
        load_pythia(tmp_path, tasks=None)


def test_pythia_errors(tmp_path):
    folder = write_pythia(tmp_path)
    bad = folder / "pythia-v1" / "pythia-70m" / "zero-shot" / "70m_step1000.json"
    bad.write_text(json.dumps({"results": {"piqa": {"acc": 0.5}}}))
    with pytest.raises(ValueError, match=r"70m_step1000.json.*lambada_openai"):
        load_pythia(tmp_path)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"70m_step1000.json"):
        load_pythia(tmp_path)
    bad.unlink()
    assert len(load_pythia(tmp_path, tasks=None)) == 5
    (folder / "pythia-v1" / "pythia-9z").mkdir()
    with pytest.raises(ValueError, match="pythia-9z"):
        load_pythia(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pythia(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- fetch
@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local file:// mirror of synthetic data, with its own registry."""
    src = tmp_path / "mirror"
    write_chinchilla(src)
    write_gadre(src, extra_task=False)
    write_pythia(src, models_csv=False)
    registry = tmp_path / "registry.txt"
    assert _fetch.make_registry(src, registry) == 1 + 1 + 2 + 2 + 8
    monkeypatch.setattr(_fetch, "REGISTRY_FILE", registry)
    monkeypatch.setattr(_fetch, "BASE_URLS",
                        {k: (src / k).as_uri() + "/" for k in _fetch.BASE_URLS})
    return src


def test_fetch_from_mirror(mirror, tmp_path):
    cache = tmp_path / "cache"
    chin = load_chinchilla(tmp_path / "absent", fetch=True, cache_dir=cache)
    assert len(chin) == 7 and (cache / "chinchilla_epoch" / "svg_extracted_data.csv").is_file()
    assert len(load_gadre(tmp_path / "absent", fetch=True, cache_dir=cache)) == 2 * 4
    assert load_pythia(tmp_path / "absent", fetch=True, cache_dir=cache,
                       tasks=None)["run"].nunique() == 2
    shutil.rmtree(mirror)  # now served from the cache
    assert len(load_chinchilla(tmp_path / "absent", fetch=True, cache_dir=cache)) == 7


def test_fetch_rejects_bad_hash(mirror, tmp_path):
    with open(mirror / "chinchilla_epoch" / "svg_extracted_data.csv", "a") as f:
        f.write("1,2,#fff,1e8,1e18,#fff,3.0\n")
    with pytest.raises(ValueError, match=r"(?i)hash"):
        load_chinchilla(tmp_path / "absent", fetch=True, cache_dir=tmp_path / "cache")


def test_registry_and_urls():
    p = _fetch.make_pooch("unused-cache")
    assert len(p.registry) == 528 and all(len(h) == 64 for h in p.registry.values())
    assert p.get_url("chinchilla_epoch/svg_extracted_data.csv") == (
        "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/main/data/svg_extracted_data.csv"
    )
    assert (p.get_url("gadre_overtrain/eval_metadata.csv")
            .endswith("mlfoundations/scaling/main/exp_data/eval_metadata.csv"))
    assert p.get_url("pythia/pythia-v1/pythia-70m/zero-shot/70m_step0.json") == (
        "https://raw.githubusercontent.com/EleutherAI/pythia/main/evals/pythia-v1/pythia-70m/zero-shot/70m_step0.json"
    )


# ----------------------------------------------------------------------------- real data
def real(sub):
    root = find_data_dir(sub)
    if root is None:
        pytest.skip(f"real data folder '{sub}' not found (set BAYESCALE_DATA or place it at "
                    "../shared/data)")
    return root


def test_real_registry_matches_files(tmp_path):
    root = real("pythia")
    out = tmp_path / "registry.txt"
    _fetch.make_registry(root, out)
    assert out.read_text() == _fetch.REGISTRY_FILE.read_text()


def test_real_chinchilla():
    df = load_chinchilla(real("chinchilla_epoch"))
    assert_runs_table(df)
    assert len(df) == 245 and df["run"].is_unique
    assert df["params"].min() > 5e7 and df["params"].max() < 2e10
    assert df.loc[df["value"].nlargest(5).index, "flops"].between(8e18, 1.1e19).all()
    assert len(load_chinchilla(exclude_outliers=True)) == 240


def test_real_gadre():
    df = load_gadre(real("gadre_overtrain"))
    assert_runs_table(df)
    assert set(df["family"]) == {"c4", "redpajama", "refinedweb"}
    assert df["run"].nunique() == 101
    acc = df[df["metric"].str.startswith("acc:")]
    assert acc["metric"].nunique() == 46
    assert acc[["n_items", "chance"]].notna().all().all()
    assert len(df) == 101 * 47
    big = df[df["params"] > 1e9]
    assert big["run"].nunique() == 6 and set(big["arch"]) == {"open_lm_1b"}
    rw_big = big.loc[big["family"] == "refinedweb", "multiplier"]
    assert set(rw_big) == {1.0, 16.0}
    assert len(gadre_tasks()) == 51


def test_real_pythia():
    df = load_pythia(real("pythia"))
    assert_runs_table(df)
    assert df["run"].nunique() == 12 and set(df["family"]) == {"pile", "deduped"}
    per_run = df[df["metric"] == "loss"].groupby("run")["step"]
    assert (per_run.nunique() == 26).all() and (per_run.min() == 1).all()
    assert (per_run.max() == 143_000).all()
    assert len(df) == 12 * 26 * 9
    assert df.loc[df["run"] == "pythia-1b-bf16", "step"].isin([128, 256, 512, 1000]).any()
    # acc_stderr in the files agrees with the n_items table: n = p (1 - p) / se^2 + 1
    ok = df["stderr"] > 0
    n_implied = df.loc[ok, "value"] * (1 - df.loc[ok, "value"]) / df.loc[ok, "stderr"] ** 2 + 1
    np.testing.assert_allclose(n_implied, df.loc[ok, "n_items"], rtol=1e-6)
    # models.csv matches the built-in table used after fetch=True
    from bayescale.datasets.pythia import MODELS

    csv = pd.read_csv(real("pythia") / "pythia" / "models.csv", dtype={"size": str})
    pd.testing.assert_frame_equal(csv[MODELS.columns].astype(MODELS.dtypes.to_dict()), MODELS)


def test_real_tables_pass_read_runs():
    runs = pytest.importorskip("bayescale.runs")
    real("pythia")
    for loader in (load_chinchilla, load_gadre, load_pythia):
        df = loader()
        assert len(runs.read_runs(df)) == len(df)
