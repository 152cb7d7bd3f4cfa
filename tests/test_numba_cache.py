"""Compiled models stay in PyTensor's on-disk numba cache: a cacheable digamma, one graph."""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
import scipy.special
from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

import bayescale
from bayescale.fitting import prepare
from bayescale.numba_cache import cacheable_numba_mode, digamma


def test_digamma_matches_scipy():
    x = np.concatenate([np.geomspace(1e-8, 1e8, 400), np.linspace(0.01, 30, 500),
                        -np.geomspace(1e-3, 40, 200) - 0.37])
    ours = np.array([digamma(v) for v in x])
    np.testing.assert_allclose(ours, scipy.special.psi(x), rtol=1e-12, atol=1e-12)
    assert digamma(0.0) == -np.inf and np.isnan(digamma(-3.0)) and np.isnan(digamma(np.nan))


def _logp_and_gradient_key(runs, model: str) -> str | None:
    """PyTensor's numba cache key of a freshly built model's log-density and gradient."""
    pm_model = prepare(runs, model).build()
    logp = pm_model.logp()
    outputs = [logp, *pytensor.grad(logp, pm_model.value_vars)]
    with cacheable_numba_mode():
        fn = pytensor.function(pm_model.value_vars, outputs, mode="NUMBA")
    return numba_funcify_and_cache_key(fn.maker.fgraph)[1]


@pytest.mark.filterwarnings("ignore")
def test_a_rebuilt_model_has_the_same_cache_key():
    """The same model built twice (so every variable has a new id) gets one cache key, so a
    second process loads it. The Student-t likelihood's ``nu`` puts digamma in the gradient,
    which made the graph uncacheable; with PyTensor's full NUMBA mode the two builds' graphs
    differ in the order of some nodes' inputs, so their keys differ (not asserted: it depends
    on object ids)."""
    runs, _ = bayescale.simulate_ladder(seed=3, checkpoints=12, seeds=2)
    runs["schedule"] = "cosine"
    first, second = (_logp_and_gradient_key(runs, "pythia_lambada")
                     for _ in range(2))
    assert first is not None and first == second
