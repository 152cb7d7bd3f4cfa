"""Tests of bayescale.datasets.load_lr_schedules: small synthetic files, then the real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.datasets import (
    LUO_PUBLISHED_MRE,
    LUO_TRAIN_SCHEDULES,
    RUNS_COLUMNS,
    find_data_dir,
    load_lr_schedules,
)
from bayescale.datasets import lr_schedules as lrs

EXTRAS = ["size", "lr_schedule", "step", "lr", "lr_max", "warmup_steps", "warmup_tokens"]


# ----------------------------------------------------------------------------- synthetic files
def write_curves(root, sizes=(25, 100), schedules=("cosine_24000", "wsdcon_9"), n=5):
    folder = root / "lr_schedules"
    for size in sizes:
        (folder / f"csv_{size}").mkdir(parents=True)
        for schedule in schedules:
            step = 2176 + 128 * np.arange(n)
            lr = np.linspace(3e-4, 1e-4, n)
            loss = 4.0 - 0.1 * np.arange(n) - 0.001 * size
            pd.DataFrame({"step": step, "lr": lr, "loss": loss}).to_csv(
                folder / f"csv_{size}" / f"{schedule}.csv", index=False
            )
    return folder


def test_synthetic_table(tmp_path):
    folder = write_curves(tmp_path)
    runs = load_lr_schedules(tmp_path, sizes=[25, "100m"], schedules=["cosine_24000", "wsdcon_9"])
    assert list(runs.columns) == RUNS_COLUMNS + EXTRAS
    assert len(runs) == 2 * 2 * 5 and runs["run"].nunique() == 4
    assert runs["run"].iloc[0] == "25m-cosine_24000" and runs["size"].iloc[0] == "25m"
    assert (set(runs["params"]) == {25e6, 100e6}
            and set(runs["family"]) == {"luo2025-25m", "luo2025-100m"})
    assert (runs["metric"] == "loss").all() and runs[["n_items", "chance"]].isna().all().all()
    np.testing.assert_allclose(runs["tokens"], runs["step"] * 2**19)
    total = runs.groupby("lr_schedule")["total_tokens"].first()
    assert total["cosine_24000"] == 24000 * 2**19 and total["wsdcon_9"] == 16000 * 2**19
    assert runs.attrs["dataset"] == "lr_schedules" and runs.attrs["tokens_per_step"] == 2**19
    # tokens_per_step only rescales the token columns
    half = load_lr_schedules(folder, sizes="100m", schedules="wsdcon_9", tokens_per_step=2**18)
    assert len(half) == 5 and half["run"].unique().tolist() == ["100m-wsdcon_9"]
    np.testing.assert_allclose(half["tokens"], half["step"] * 2**18)
    # read_runs keeps the extra columns the schedule term needs
    checked = bayescale.read_runs(runs)
    assert set(EXTRAS) <= set(checked.columns)
    np.testing.assert_allclose(checked.sort_values(["run", "step"])["lr"],
                               runs.sort_values(["run", "step"])["lr"])


def test_synthetic_options_errors(tmp_path):
    write_curves(tmp_path)
    with pytest.raises(ValueError, match="unknown size"):
        load_lr_schedules(tmp_path, sizes=[50])
    with pytest.raises(ValueError, match="unknown schedule"):
        load_lr_schedules(tmp_path, schedules=["linear"])
    with pytest.raises(ValueError, match="tokens_per_step"):
        load_lr_schedules(tmp_path, schedules="wsdcon_9", tokens_per_step=0)
    with pytest.raises(FileNotFoundError, match="csv_400"):
        load_lr_schedules(tmp_path, sizes=[400], schedules="wsdcon_9")
    with pytest.raises(FileNotFoundError, match=r"constant_24000.csv"):
        load_lr_schedules(tmp_path)  # default: every schedule
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_lr_schedules(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.drop(columns="lr"), r"missing column\(s\) \['lr'\]"),
        (lambda d: d.assign(loss=d["loss"].where(d.index != 2, np.nan)),
         r"line 4 \(data row 2, step 2432\).*'loss'"),
        (lambda d: d.assign(loss=d["loss"].where(d.index != 3, np.inf)),
         r"line 5 \(data row 3, step 2560\).*'loss'"),
        (lambda d: d.assign(loss=d["loss"].where(d.index != 1, -1.0)),
         r"line 3 .*'loss' must be > 0"),
        (lambda d: d.assign(lr=d["lr"].where(d.index != 4, -1e-4)),
         r"line 6 \(data row 4, step 2688\).*'lr' must be >= 0"),
        (lambda d: d.assign(lr=d["lr"].astype(object).where(d.index != 0, "abc")),
         r"line 2 .*'lr' is missing or not"),
        (lambda d: d.assign(step=d["step"].where(d.index != 3, 2304)),
         r"line 5 \(data row 3, step 2304\).*does not increase"),
        (lambda d: d.assign(step=d["step"].where(d.index != 0, 2304)),
         r"line 3 \(data row 1, step 2304\).*does not increase"),
        (lambda d: d.iloc[:0], "no rows"),
    ],
)
def test_malformed_file_names_file_and_row(tmp_path, edit, message):
    folder = write_curves(tmp_path, sizes=(25,), schedules=("wsdcon_9",))
    csv = folder / "csv_25" / "wsdcon_9.csv"
    edit(pd.read_csv(csv)).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=message) as err:
        load_lr_schedules(tmp_path, sizes=25, schedules="wsdcon_9")
    assert "csv_25/wsdcon_9.csv" in str(err.value).replace("\\", "/")


def test_constants():
    assert set(LUO_TRAIN_SCHEDULES) <= set(lrs.SCHEDULES) and len(lrs.SCHEDULES) == 7
    assert sorted(LUO_PUBLISHED_MRE) == [25e6, 100e6, 400e6]
    assert (LUO_PUBLISHED_MRE[25e6] == pytest.approx(0.0011)
            and LUO_PUBLISHED_MRE[400e6] == pytest.approx(0.00168))


# ----------------------------------------------------------------------------- the real data
@pytest.fixture(scope="module")
def real():
    if find_data_dir("lr_schedules") is None:
        pytest.skip("real data folder 'lr_schedules' not found (set BAYESCALE_DATA or place it at "
                    "../shared/data)")
    return load_lr_schedules()


def test_real_shape(real):
    assert real["run"].nunique() == 21 and len(real) == 2989
    counts = real.groupby("run").size()
    assert counts["400m-cosine_24000"] == 171 and counts["100m-wsdcon_9"] == 109
    # quirks, kept as is
    assert counts["25m-wsdcon_9"] == 95 and counts["25m-wsd_20000_24000"] == 170
    assert set(real["params"]) == {25e6, 100e6, 400e6}
    assert (real.groupby("params")["lr_schedule"].nunique() == 7).all()
    assert real["value"].between(2.5, 4.5).all()


def test_real_tokens_and_lr(real):
    for _, run in real.groupby("run"):
        assert (np.diff(run["tokens"].to_numpy()) > 0).all()
        assert (run["tokens"] <= run["total_tokens"]).all()
    last = real.groupby("run").last()
    for size in ("25m", "100m", "400m"):
        assert last.loc[f"{size}-cosine_24000", "lr"] == pytest.approx(3e-5, rel=1e-3)
        assert last.loc[f"{size}-constant_24000", "lr"] == pytest.approx(3e-4)
        assert last.loc[f"{size}-wsdcon_9", "lr"] == pytest.approx(9e-5)
        assert last.loc[f"{size}-wsdcon_18", "lr"] == pytest.approx(1.8e-4)
        assert last.loc[f"{size}-constant_24000", "step"] == 23936
    assert real["lr"].max() == pytest.approx(3e-4) and (real["lr"] > 0).all()
    first = real.groupby("run")["step"].first()
    assert first["25m-cosine_24000"] == 2160 and first["25m-constant_24000"] == 2176
    # loss falls over training in every run
    assert (last["value"] < real.groupby("run")["value"].first()).all()


def test_real_train_selection_and_read_runs(real):
    train = load_lr_schedules(schedules=LUO_TRAIN_SCHEDULES, sizes=[400])
    assert sorted(train["lr_schedule"].unique()) == sorted(LUO_TRAIN_SCHEDULES)
    pd.testing.assert_frame_equal(
        train.reset_index(drop=True),
        real[(real["size"] == "400m")
             & real["lr_schedule"].isin(LUO_TRAIN_SCHEDULES)].reset_index(drop=True),
    )
    checked = bayescale.read_runs(real)
    assert len(checked) == len(real) and "lr" in checked and "step" in checked
