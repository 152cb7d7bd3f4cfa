"""The Gadre et al. over-training case study: a smoke run by default, the acceptance targets
in the slow tier.

The data folder (``$BAYESCALE_DATA`` or ``../shared/data``) is not part of the
repository; without its ``gadre_overtrain/`` folder these tests are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import gadre_overtrain  # case_studies/ is on sys.path via conftest
import pandas as pd
import pytest
from conftest import needs_data

needs_gadre = needs_data("gadre_overtrain", "Gadre et al. data")

#: Every 1.4B (open_lm_1b) model in the data: (family, token multiplier).
TARGETS = {("c4", 1.0), ("c4", 4.0), ("redpajama", 1.0), ("redpajama", 32.0), ("refinedweb", 1.0),
           ("refinedweb", 16.0)}
COLUMNS = ["family", "multiplier", "metric", "truth", "bayes_median", "bayes_lower", "bayes_upper",
           "covered",
           "abs_err_bayes", "abs_err_two_stage"]


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "gadre_predictions.csv")


@needs_gadre
def test_gadre_small(tmp_path, monkeypatch):
    """Smoke run (3 tasks, 2 x (100 + 100) draws) of one family's three fits: the other two
    families run the same code on other rows (the slow tier runs all three)."""
    monkeypatch.setattr(gadre_overtrain, "FAMILIES", ("redpajama",))
    assert gadre_overtrain.main(["--small", "--out", str(tmp_path)]) == 0
    table = _table(tmp_path)
    for col in COLUMNS:
        assert col in table.columns
    for metric in ("loss", "err:avg"):
        rows = table[table["metric"] == metric]
        assert set(zip(rows["family"], rows["multiplier"], strict=True)) == {
            t for t in TARGETS if t[0] == "redpajama"}
    assert table[["truth", "bayes_median", "bayes_lower", "bayes_upper"]].notna().all().all()
    assert ((table["bayes_lower"] <= table["bayes_median"])
            & (table["bayes_median"] <= table["bayes_upper"])).all()
    # the truth is the held-out 1.4B data, e.g. RedPajama at multiplier 32
    rpj = table[(table["family"] == "redpajama")
                & (table["multiplier"] == 32.0)].set_index("metric")
    assert rpj.loc["loss", "truth"] == pytest.approx(2.502, abs=1e-3)
    # the mean of the per-task links is reported beside the average's own link
    err = table[table["metric"] == "err:avg"]
    assert ((err["per_task_lower"] <= err["per_task_median"])
            & (err["per_task_median"] <= err["per_task_upper"])).all()
    diag = pd.read_csv(tmp_path / "gadre_diagnostics.csv")
    assert len(diag) == 3 and diag["fit"].str.contains("average").sum() == 1
    report = pd.read_csv(tmp_path / "gadre_task_report.csv")
    assert set(report["family"]) == {"redpajama"}
    assert len(report) == len(gadre_overtrain.SMALL_TASKS)


def test_gadre_missing_data_exits_clearly(tmp_path):
    with pytest.raises(SystemExit, match="gadre_overtrain"):
        gadre_overtrain.main(["--small", "--out", str(tmp_path), "--data", str(tmp_path)])


@needs_gadre
@pytest.mark.slow
def test_gadre_full_acceptance(tmp_path):
    """Acceptance: every 1.4B err:avg band covers the truth; the Bayes median is no worse than
    the two-stage plug-in on average; the whole run takes at most 15 minutes.  Also: the
    loss + average fits the bands come from pass their convergence checks."""
    assert gadre_overtrain.main(["--out", str(tmp_path), "--no-report"]) == 0
    table = _table(tmp_path)
    summary = json.loads((tmp_path / "gadre_summary.json").read_text())
    err = table[table["metric"] == "err:avg"]
    assert set(zip(err["family"], err["multiplier"], strict=True)) == TARGETS
    assert (err["tasks"] == 46).all()
    failures = []
    for _, r in err.iterrows():
        if not r["covered"]:
            failures.append(f"{r['family']} x{r['multiplier']:g}: err:avg truth {r['truth']:.4f} "
                            f"outside [{r['bayes_lower']:.4f}, {r['bayes_upper']:.4f}]")
    bayes, plug = err["abs_err_bayes"].mean(), err["abs_err_two_stage"].mean()
    if bayes > plug:
        failures.append(f"mean |error| of err:avg: Bayes {bayes:.4f} > two-stage {plug:.4f}")
    diag = pd.read_csv(tmp_path / "gadre_diagnostics.csv")
    for _, d in diag[diag["fit"].str.contains("average")].iterrows():
        # the fits the bands come from
        if not d["converged"]:
            failures.append(f"{d['family']} loss + average fit not converged: R-hat "
                            f"{d['max_rhat']:.3f}, bulk ESS {d['min_ess_bulk']:.0f}, "
                            f"{d['divergences']} divergences")
    wall = summary["acceptance"]["wall_seconds"]
    if wall > gadre_overtrain.ACCEPT["max_wall_seconds"]:
        failures.append(f"wall time {wall:.0f} s > 900 s")
    assert not failures, "acceptance targets missed:\n  " + "\n  ".join(failures)


@needs_gadre
@pytest.mark.slow
def test_gadre_auto_comparison_small(tmp_path):
    """``--auto`` (slow tier: a backtest and a downstream fit, about 70 s more than the smoke
    run): the automatic fit's 1.4B forecasts beside the hand-picked ones, for every target,
    with its choice recorded in the summary."""
    assert gadre_overtrain.main(["--small", "--auto", "--out", str(tmp_path), "--no-report"]) == 0
    auto = pd.read_csv(tmp_path / "gadre_auto.csv")
    assert set(zip(auto["family"], auto["multiplier"], strict=True)) == TARGETS
    assert sorted(auto["metric"].unique()) == ["err:avg", "loss"] and len(auto) == 12
    assert ((auto["auto_lower"] <= auto["auto_median"])
            & (auto["auto_median"] <= auto["auto_upper"])).all()
    assert (auto["truth"] == _table(tmp_path).set_index(["family", "multiplier", "metric"])
            .loc[list(zip(auto["family"], auto["multiplier"], auto["metric"], strict=True)),
                 "truth"].to_numpy()).all()
    summary = json.loads((tmp_path / "gadre_summary.json").read_text())["auto"]
    assert "downstream" in summary["chosen"] and summary["why"]
