"""Case studies on real data: a quick smoke run by default, the full runs in the slow tier.

The data folder (``$BAYESCALE_DATA`` or ``../shared/data``) is not part of the
repository; without it these tests are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import chinchilla_replication  # case_studies/ is on sys.path via conftest
import pandas as pd
import pytest
from conftest import needs_data

PARAMETERS = ["E", "A", "B", "alpha", "beta"]

needs_chinchilla = needs_data("chinchilla_epoch", "Chinchilla data")


def _outputs(out: Path, stem: str = "chinchilla"):
    table = pd.read_csv(out / f"{stem}_posterior.csv").set_index("parameter")
    summary = json.loads((out / f"{stem}_summary.json").read_text())
    return table, summary


@needs_chinchilla
def test_chinchilla_small(tmp_path, capsys):
    """Smoke run (2 x (200 + 200) draws): everything is written and ordered.  Its fit does not
    converge (R-hat about 1.05, bulk ESS about 80), so the posterior's values are checked
    only by the slow tier's full run (Epoch's alpha, beta, E inside the 90% intervals)."""
    assert chinchilla_replication.main(["--small", "--out", str(tmp_path)]) == 0
    table, summary = _outputs(tmp_path)
    assert list(table.index) == PARAMETERS
    for col in ("mean", "median", "hdi90_lower", "hdi90_upper", "epoch_2024", "epoch_2024_in_hdi90",
                "outliers"):
        assert col in table.columns
    assert (table["hdi90_lower"] <= table["median"]).all()
    assert (table["median"] <= table["hdi90_upper"]).all()
    assert (table["epoch_2024"] == pd.Series(chinchilla_replication.EPOCH_2024)[PARAMETERS]).all()
    assert summary["n_runs"] == 245 and summary["sampler"]["draws"] == 200
    assert (tmp_path / "chinchilla_fit.nc").is_file()
    assert (tmp_path / "chinchilla_allocation.csv").is_file()
    printed = capsys.readouterr().out
    assert "Diagnostics:" in printed and "Compute-optimal allocation" in printed


@needs_chinchilla
@pytest.mark.slow
def test_chinchilla_auto_holdout_small(tmp_path, capsys):
    """``--auto``: the top 20% of compute predicted by the preset and by model="auto"."""
    assert chinchilla_replication.main(["--small", "--auto", "--out", str(tmp_path),
                                        "--no-report"]) == 0
    holdout = pd.read_csv(tmp_path / "chinchilla_auto.csv")
    assert holdout["model"].tolist() == ["chinchilla (preset)", "auto"]
    assert (holdout["targets"] == 49).all()  # 20% of the 245 runs
    assert holdout["median_abs_error"].between(0, 0.1).all()
    assert holdout["covered_90"].between(0, 1).all()
    assert "chosen automatically" in capsys.readouterr().out


def test_chinchilla_missing_data_exits_clearly(tmp_path):
    with pytest.raises(SystemExit, match="chinchilla_epoch"):
        chinchilla_replication.main(["--small", "--out", str(tmp_path), "--data", str(tmp_path)])


@needs_chinchilla
@pytest.mark.slow
def test_chinchilla_full_replicates_epoch(tmp_path):
    """Acceptance criterion: converged, and Epoch's alpha, beta, E inside the 90% intervals."""
    assert chinchilla_replication.main(["--out", str(tmp_path), "--no-report"]) == 0
    table, summary = _outputs(tmp_path)
    diag = summary["diagnostics"]
    assert diag["max_rhat"] <= 1.01
    assert diag["min_ess_bulk"] >= 400
    assert diag["divergences"] == 0
    for name in ("alpha", "beta", "E"):
        assert (table.loc[name, "hdi90_lower"] <= chinchilla_replication.EPOCH_2024[name]
                <= table.loc[name, "hdi90_upper"])
        assert bool(table.loc[name, "epoch_2024_in_hdi90"])


needs_pythia = needs_data("pythia", "Pythia data")


@needs_pythia
@pytest.mark.slow
def test_pythia_uncertainty_scaling_writes_table_and_figure(tmp_path):
    """#18: nested refits of Pythia (70M+160M up to 1.4B) with the pythia_lambada preset; the
    law's band at the 2.8B target narrows as larger runs join, and kappa has an interval."""
    import pythia_uncertainty_scaling

    assert pythia_uncertainty_scaling.main(["--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "uncertainty_scaling.csv")
    summary = json.loads((tmp_path / "uncertainty_scaling.json").read_text())
    assert len(table) == 4 and table["ladder_compute"].is_monotonic_increasing
    assert table["width"].iloc[-1] < table["width"].iloc[0]
    kappa = summary["kappa"]
    assert kappa["lower"] < kappa["median"] < kappa["upper"]
    assert (tmp_path / "uncertainty_scaling.png").stat().st_size > 0
