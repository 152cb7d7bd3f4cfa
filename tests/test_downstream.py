"""Downstream accuracy fitted jointly with the loss law, with benchmark noise."""


import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.downstream import improvement_report, link, task_table
from bayescale.simulate import Task

TASKS = [
    Task("big", n_items=5000, chance=0.25, slope=3.0, midpoint=3.0),
    Task("small", n_items=100, chance=0.25, slope=3.0, midpoint=3.0),
    Task("flat", n_items=1000, chance=0.25, slope=0.0, midpoint=3.0),
]


def test_links_stay_between_chance_and_ceiling():
    loss = np.linspace(0.5, 8, 50)
    for kind in ("sigmoid", "exp"):
        acc = link(kind, loss, 0.25, 0.9, 2.5, 3.0)
        assert np.all((acc >= 0.25) & (acc <= 0.9))
        assert np.all(np.diff(acc) <= 0) and acc[0] - acc[-1] > 0.5  # lower loss, higher accuracy
    flat = link("sigmoid", loss, 0.25, 0.9, 0.0, 3.0)
    assert np.allclose(flat, flat[0])
    with pytest.raises(ValueError, match="downstream"):
        link("probit", loss, 0.25, 0.9, 1.0, 3.0)


def test_task_table_and_report():
    runs, _ = bayescale.simulate_ladder(seed=0, tasks=TASKS)
    table = task_table(bayescale.read_runs(runs).query("metric != 'loss'"))
    assert list(table["task"]) == ["acc:big", "acc:flat", "acc:small"]
    assert list(table["n_items"]) == [5000, 1000, 100]
    report = improvement_report(np.array([[1.0, -0.1], [2.0, 0.1], [1.5, -0.2]]), ["a", "b"])
    assert list(report["verdict"]) == ["improves", "flat or inverse"]


@pytest.fixture(scope="module")
def joint_fit(downstream_fit):
    fit, truth, _ = downstream_fit
    return fit, truth


def test_joint_fit_recovers_links_and_flags_flat_task(joint_fit):
    fit, _ = joint_fit
    assert fit.tasks == ["acc:big", "acc:flat", "acc:small"]
    assert fit.idata.posterior["slope"].dims == ("chain", "draw", "task")
    assert {"ln_loss", "acc"} <= set(fit.idata.log_likelihood.data_vars)
    verdicts = fit.task_report().set_index("task")["verdict"]
    assert verdicts["acc:big"] == "improves" and verdicts["acc:flat"] != "improves"


def test_accuracy_predictions_cover_truth_and_noise_scales_with_items(joint_fit):
    fit, truth = joint_fit
    metrics = ["loss", "acc:big", "acc:small", "acc:avg", "err:big"]
    targets = pd.DataFrame({"params": [3e9] * 5, "tokens": [6e10] * 5, "metric": metrics})
    pred = fit.predict(targets).set_index("metric")
    loss = truth.loss(3e9, 6e10)
    acc = {t.name: t.accuracy(loss) for t in TASKS}
    for task in ("big", "small"):
        assert pred.loc[f"acc:{task}", "lower"] <= acc[task] <= pred.loc[f"acc:{task}", "upper"]
    assert pred.loc["err:big", "median"] == pytest.approx(1 - pred.loc["acc:big", "median"], abs=0.01)
    width = pred["upper"] - pred["lower"]
    # Same link, 50x fewer items: the Binomial makes the small benchmark's band wider.
    assert width["acc:small"] > 1.5 * width["acc:big"]
    with pytest.raises(ValueError, match="acc:nope"):
        fit.predict(targets.assign(metric="acc:nope"))


def test_downstream_needs_accuracy_rows():
    runs, _ = bayescale.simulate_ladder(seed=0)
    with pytest.raises(ValueError, match="acc:<task>"):
        bayescale.fit(runs, downstream="sigmoid")


def test_save_load_keeps_tasks(joint_fit, tmp_path):
    fit, _ = joint_fit
    fit.save(tmp_path / "d.nc")
    loaded = bayescale.load_fit(tmp_path / "d.nc")
    targets = pd.DataFrame({"params": [3e9, 3e9], "tokens": [6e10, 6e10], "metric": ["acc:avg", "loss"]})
    pd.testing.assert_frame_equal(loaded.predict(targets), fit.predict(targets))
