"""GPU tier (``pytest --run-gpu``): the JAX backend on an accelerator."""

import warnings

import pytest

import bayescale


@pytest.mark.gpu
def test_numpyro_runs_on_the_gpu():
    jax = pytest.importorskip("jax")
    platforms = {d.platform for d in jax.devices()}
    assert "gpu" in platforms, f"no GPU visible to JAX (devices: {jax.devices()})"
    runs, truth = bayescale.simulate_ladder(seed=0, families=3, checkpoints=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, "checkpoints", sampler="numpyro", draws=500, tune=500, chains=4,
                            progressbar=False)
    pred = fit.predict({"params": [7e9], "tokens": [1.4e11], "family": ["family0"]})
    assert pred["lower"][0] < truth.loss(7e9, 1.4e11, "family0") < pred["upper"][0]
