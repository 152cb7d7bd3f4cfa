"""Shared fixtures and the test tiers.

Default tier: fast unit tests and small real fits.  ``--run-slow`` adds the ``slow`` tier
(full case studies, calibration suites); ``--run-gpu`` the ``gpu`` tier.

``--seed-offset K`` (or ``$BAYESCALE_TEST_SEED_OFFSET``) shifts every sampler seed and
numpy's global seed by ``K``: the flakiness check (``benchmarks/flakiness.py``) runs the
default tier under several offsets and reports any test whose verdict changes.  Without it
(offset 0) the default tier's seeds are the ones written in the tests.

Every default-tier test that asserts on a posterior first passes it through
:func:`require_sampled`, which fails with the fit's own diagnostics before any other
assertion reads a poorly mixed posterior.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

# Case-study scripts and the calibration experiments (benchmarks/simulated_calibration.py)
# are imported by their tests as plain modules.
CASE_STUDIES = Path(__file__).resolve().parents[1] / "case_studies"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
for _folder in (CASE_STUDIES, BENCHMARKS):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def needs_data(folder: str, what: str):
    """Skip marker for tests that need ``<data>/<folder>`` ($BAYESCALE_DATA or ../shared/data)."""
    from bayescale.datasets import find_data_dir

    return pytest.mark.skipif(
        find_data_dir(folder) is None,
        reason=f"{what} ({folder}/) not found in $BAYESCALE_DATA or ../shared/data",
    )


#: Convergence gate of the default tier (see :func:`require_sampled`).
TEST_MAX_RHAT = 1.05
TEST_MIN_ESS_BULK = 100
TEST_MAX_DIVERGENT_FRACTION = 0.01


def shape_default(runs, metric: str = "loss"):
    """The model ``fit(runs)`` tries first (:func:`bayescale.model.auto_model`), without
    the backtest ``model="auto"`` runs: for tests of other features on the default structure."""
    import bayescale
    from bayescale.model import auto_model

    table = bayescale.read_runs(runs)
    return auto_model(table[table["metric"] == metric])


def require_sampled(fit, *, max_rhat: float = TEST_MAX_RHAT,
                    min_ess_bulk: float = TEST_MIN_ESS_BULK,
                    max_divergent_fraction: float = TEST_MAX_DIVERGENT_FRACTION):
    """Fail the calling test, with the fit's diagnostics, unless its chains mixed.

    The bar is the test tier's, looser than the package's (R-hat <= 1.01, bulk and tail ESS
    >= 100 per chain, <= 0.1% divergent draws), and on purpose: default-tier fits are short
    (2 chains of 1,000-4,000 draws), and the R-hat of such a fit scatters by about 0.01
    from one seed or machine to another, so the package's bar would flip by chance.  Chains
    that disagree (stuck in different modes, or in a funnel) give R-hat well above 1.05 and
    ESS of a few dozen, which this gate still catches.  The assertions after it are on
    coarse features (a 90% interval covers the truth, one band is wider than another) whose
    margins allow the Monte Carlo error of 100 effective draws (the 5% quantile of a normal
    posterior estimated from 100 effective draws has a standard error of about 0.2 posterior
    sd).  Returns ``fit``.
    """
    d = fit.diagnostics()
    problems = []
    if not d.max_rhat <= max_rhat:
        problems.append(f"max R-hat {d.max_rhat:.3f} > {max_rhat}")
    if not d.min_ess_bulk >= min_ess_bulk:
        problems.append(f"min bulk ESS {d.min_ess_bulk:.0f} < {min_ess_bulk}")
    if d.divergences > max_divergent_fraction * d.n_draws:
        problems.append(f"{d.divergences} divergent transitions of {d.n_draws} draws")
    if problems:
        pytest.fail("fit did not mix well enough for the test tier: " + "; ".join(problems)
                    + f" (package verdict: {d.message()})", pytrace=False)
    return fit


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="run tests marked gpu")
    parser.addoption("--seed-offset", type=int,
                     default=int(os.environ.get("BAYESCALE_TEST_SEED_OFFSET", "0")),
                     help="shift every sampler seed and numpy's global seed by this much "
                          "(flakiness check)")


def _seed_offset(config) -> int:
    return int(config.getoption("--seed-offset"))


def pytest_configure(config):
    """With a seed offset, every fit's sampler seed is shifted (one place: the call from
    ``bayescale.fit`` to the sampler); the fit keeps the seed it was asked for."""
    offset = _seed_offset(config)
    if not offset:
        return
    import bayescale.fitting

    original = bayescale.fitting.run_inference

    def shifted(model, sampler_config, *args, **kwargs):
        seed = (sampler_config.random_seed + 104_729 * offset) % (2**31 - 1)
        return original(model, dataclasses.replace(sampler_config, random_seed=seed), *args,
                        **kwargs)

    bayescale.fitting.run_inference = shifted


def pytest_report_header(config):
    offset = _seed_offset(config)
    return f"bayescale: sampler seed offset {offset}" + (" (flakiness check)" if offset else "")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("gpu", "--run-gpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker} tier: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_close_figures(request):
    np.random.seed(_seed_offset(request.config))
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
        fit = bayescale.fit(runs, shape_default(runs), draws=500, tune=500, chains=2, random_seed=1,
                            progressbar=False,
                            retry=False)
    return fit, truth


def fitted_once(tmp_path_factory, name: str, make_fit):
    """``make_fit()`` once per test session, shared by the xdist workers.

    The first worker to get here fits and saves the fit (``fit.save``) next to the workers'
    temporary folders; the others wait for it and load it (:func:`bayescale.load_fit`).
    Without xdist the fit is simply made.
    """
    import fcntl

    import bayescale

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make_fit()
    shared = tmp_path_factory.getbasetemp().parent
    path = shared / f"{name}.nc"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.is_file():
                return bayescale.load_fit(path)
            fit = make_fit()
            fit.save(path)
            return fit
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def downstream_fit(tmp_path_factory):
    """A joint loss + downstream fit of a simulated ladder with three tasks: a large
    benchmark, a small one (100 items) and one that does not improve with loss (fitted
    once per session: see :func:`fitted_once`)."""
    import bayescale
    from bayescale.simulate import Task

    tasks = [
        Task("big", n_items=5000, chance=0.25, slope=3.0, midpoint=3.0),
        Task("small", n_items=100, chance=0.25, slope=3.0, midpoint=3.0),
        Task("flat", n_items=1000, chance=0.25, slope=0.0, midpoint=3.0),
    ]
    runs, truth = bayescale.simulate_ladder(seed=0, tasks=tasks)

    def make_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the low-rank mass matrix at target_accept 0.99: with the diagonal one the E-A-alpha
            # ridge left a bulk ESS of 44-47 at 2 x (600 + 300) and R-hat up to 1.018 at
            # 2 x (1000 + 3000); low-rank at 0.95 left 1.2% divergent draws under one seed in four.
            # 4 chains: the ceiling's spread mixes slowly, and 4 chains' R-hat is steadier.
            # A seed whose chains all leave the wide part of the three task ceilings' funnel: a
            # chain left there samples at full tree depth, several times slower; the retry (on
            # here, as by default) is the package's remedy for it and has tests of its own.
            return bayescale.fit(runs, "downstream", draws=1000, tune=1000, chains=4,
                                 target_accept=0.99, mass_matrix="low_rank", random_seed=5,
                                 progressbar=False)

    return fitted_once(tmp_path_factory, "downstream_fit", make_fit), truth, tasks
