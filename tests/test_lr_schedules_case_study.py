"""The lr_schedules case study (multi-power law on Luo et al.'s curves): the full run in the
slow tier checks issue 16's acceptance; without the data it is skipped."""

from __future__ import annotations

import json

import lr_schedules  # case_studies/ is on sys.path via conftest
import pytest
from conftest import needs_data

needs_curves = needs_data("lr_schedules", "Luo et al.'s learning-rate schedule curves")


def test_lr_schedules_missing_data_exits_clearly(tmp_path):
    with pytest.raises(SystemExit, match="lr_schedules"):
        lr_schedules.main(["--small", "--out", str(tmp_path), "--data", str(tmp_path)])


@needs_curves
@pytest.mark.slow
def test_lr_schedules_full_meets_the_acceptance(tmp_path):
    """Every predicted curve's mean relative error at most the published figure of its size,
    80-95% of the rows inside their 90% bands, and a converged fit."""
    assert lr_schedules.main(["--out", str(tmp_path), "--no-report"]) == 0
    summary = json.loads((tmp_path / "lr_schedules_summary.json").read_text())
    assert len(summary["curves"]) == 12
    failed = [name for name, check in summary["acceptance"].items() if not check["passed"]]
    assert not failed, failed
