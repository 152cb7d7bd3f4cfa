"""Shared fixtures and the test tiers.

Default tier: fast unit tests and small real fits.  ``--run-slow`` adds the ``slow`` tier
(full case studies, calibration suites); ``--run-gpu`` the ``gpu`` tier.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

# Case-study scripts are imported by their tests as plain modules.
CASE_STUDIES = Path(__file__).resolve().parents[1] / "case_studies"
if str(CASE_STUDIES) not in sys.path:
    sys.path.insert(0, str(CASE_STUDIES))


def needs_data(folder: str, what: str):
    """Skip marker for tests that need ``<data>/<folder>`` ($BAYESCALE_DATA or ../shared/data)."""
    from bayescale.datasets import find_data_dir

    return pytest.mark.skipif(
        find_data_dir(folder) is None,
        reason=f"{what} ({folder}/) not found in $BAYESCALE_DATA or ../shared/data",
    )


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="run tests marked gpu")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("gpu", "--run-gpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker} tier: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    np.random.seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def small_fit():
    """A quick nutpie fit of the default simulated ladder (shared across tests)."""
    import bayescale

    runs, truth = bayescale.simulate_ladder(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
    return fit, truth


@pytest.fixture(scope="session")
def downstream_fit():
    """A joint loss + downstream fit of a simulated ladder with three tasks: a large
    benchmark, a small one (100 items) and one that does not improve with loss."""
    import bayescale
    from bayescale.simulate import Task

    tasks = [
        Task("big", n_items=5000, chance=0.25, slope=3.0, midpoint=3.0),
        Task("small", n_items=100, chance=0.25, slope=3.0, midpoint=3.0),
        Task("flat", n_items=1000, chance=0.25, slope=0.0, midpoint=3.0),
    ]
    runs, truth = bayescale.simulate_ladder(seed=0, tasks=tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, downstream="sigmoid", draws=300, tune=600, chains=2, target_accept=0.95,
                            progressbar=False)
    return fit, truth, tasks
