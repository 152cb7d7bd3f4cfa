"""bayescale's compile of a model for nutpie: nutpie's draws, its callbacks' contract, cached."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import nutpie
import pytest

from bayescale.numba_cache import cacheable_numba_mode
from bayescale.nutpie_compile import callback_source, compile_pymc_model

# data arrays of rank 0, 1 and 2, float and int: every branch of the callbacks' extraction
MODEL_SOURCE = """
import numpy as np
import pymc as pm

def small_model():
    rng = np.random.default_rng(0)
    with pm.Model(coords={"obs": range(20)}) as model:
        shift = pm.Data("shift", rng.normal(size=20), dims="obs")
        group = pm.Data("group", np.arange(20) % 3, dims="obs")
        scale = pm.Data("scale", np.array(2.0))
        weight = pm.Data("weight", np.ones((3, 2)))
        a = pm.Normal("a", shape=3)
        sigma = pm.HalfNormal("sigma")
        pm.Normal("y", a[group] * weight[group, 0] + shift, sigma * scale,
                  observed=rng.normal(size=20), dims="obs")
        pm.Deterministic("twice_a", 2 * a)
    return model
"""
namespace: dict = {}
exec(MODEL_SOURCE, namespace)
small_model = namespace["small_model"]


@pytest.fixture(scope="module")
def compiled():
    """The small model compiled by bayescale and by nutpie."""
    model = small_model()
    with cacheable_numba_mode():
        return model, compile_pymc_model(model), nutpie.compile_pymc_model(model)


def _draws(compiled_model, seed: int) -> dict[str, np.ndarray]:
    idata = nutpie.sample(compiled_model, draws=150, tune=150, chains=2, seed=seed,
                          progress_bar=False)
    return {name: idata.posterior[name].to_numpy() for name in ("a", "sigma", "twice_a")}


def test_gives_nutpies_draws_bit_for_bit(compiled):
    _, ours, theirs = compiled
    for name, values in _draws(ours, seed=3).items():
        np.testing.assert_array_equal(values, _draws(theirs, seed=3)[name], err_msg=name)


def test_with_data_swaps_the_data_like_nutpie(compiled):
    _, ours, theirs = compiled
    shift = np.random.default_rng(1).normal(size=20) + 5.0
    new_ours, new_theirs = ours.with_data(shift=shift), theirs.with_data(shift=shift)
    swapped = _draws(new_ours, seed=4)
    np.testing.assert_array_equal(swapped["a"], _draws(new_theirs, seed=4)["a"])
    # the data moved the posterior: a absorbs the shift of +5 (its prior sd is 1)
    assert swapped["a"].mean() < _draws(ours, seed=4)["a"].mean() - 1.0


def _call_logp(compiled_model, x: np.ndarray, dim: int | None = None):
    grad, logp = np.zeros(compiled_model.n_dim), np.zeros(1)
    as_double = ctypes.POINTER(ctypes.c_double)
    code = compiled_model.compiled_logp_func.ctypes(
        len(x) if dim is None else dim, x.ctypes.data_as(as_double),
        grad.ctypes.data_as(as_double), logp.ctypes.data_as(as_double),
        compiled_model.user_data.ctypes.data_as(ctypes.c_void_p))
    return code, logp[0], grad


def test_logp_callback_returns_the_models_density_gradient_and_codes(compiled):
    model, ours, _ = compiled
    x = np.array([0.3, -0.2, 0.5, np.log(1.5)])  # a (3) and sigma's log
    code, logp, grad = _call_logp(ours, x)
    point = {"a": x[:3], "sigma_log__": x[3]}
    assert code == 0
    np.testing.assert_allclose(logp, model.compile_logp()(point), rtol=1e-12)
    np.testing.assert_allclose(grad, model.compile_dlogp()(point), rtol=1e-10)
    assert _call_logp(ours, x, dim=3)[0] == -1  # a wrong dimension is refused
    assert _call_logp(ours, np.array([0.3, -0.2, 0.5, 800.0]))[0] in (3, 4)  # sigma = inf


def test_callback_source_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="'logp' or 'expand'"):
        callback_source("grad", {}, n_dim=1)


@pytest.mark.filterwarnings("ignore")
def test_a_new_process_loads_the_callbacks_from_the_cache(tmp_path):
    """The second process to compile a model loads both callbacks instead of compiling them."""
    code = MODEL_SOURCE + textwrap.dedent("""
        from bayescale.numba_cache import cacheable_numba_mode
        from bayescale.nutpie_compile import compile_pymc_model
        with cacheable_numba_mode():
            compiled = compile_pymc_model(small_model())
        print(compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits)
    """)
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"}
    hits = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True, timeout=600).stdout.split()
            for _ in range(2)]
    assert hits == [["0", "0"], ["1", "1"]]
