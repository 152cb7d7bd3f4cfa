"""The JAX backend (numpyro) samples the same posterior as nutpie, in float64 or float32.

One simulated 42-run ladder (7 sizes x 6 token multipliers, final losses), fitted with the
``chinchilla`` preset by nutpie and by numpyro, 2 chains x 500 draws after 500 tuning steps
each.  The ladder is wider than the default one on purpose: on the default 20 runs the
posteriors of A and B are heavy-tailed (sd about equal to the mean).  Even here their means
move by more than a posterior sd between two runs of the same sampler on another machine
(numerics differ, the chains follow other paths along the ridge of the law), so the
comparison is made on what is identified: the law's predictions and E.
"""

import json
import warnings

import arviz as az
import numpy as np
import pytest
from conftest import require_sampled

import bayescale
from bayescale.sampling import jax_chain_method

OPTIONAL = "the JAX backend is an optional extra: pip install '.[jax]'"
pytest.importorskip("numpyro", reason=OPTIONAL)
jax = pytest.importorskip("jax", reason=OPTIONAL)

SETTINGS = dict(draws=500, tune=500, chains=2, random_seed=0)
SIZES = (1e7, 2e7, 5e7, 1.2e8, 3e8, 7e8, 1.5e9)
MULTIPLIERS = (3.0, 6.0, 12.0, 25.0, 50.0, 100.0)


def quiet_fit(runs, **kwargs):
    """A fit without progress bar, warnings or the automatic retry."""
    kwargs.setdefault("progressbar", False)
    kwargs.setdefault("retry", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(runs, "chinchilla", **kwargs)


@pytest.fixture(scope="module")
def ladder():
    runs, _ = bayescale.simulate_ladder(seed=0, sizes=SIZES, token_multipliers=MULTIPLIERS)
    return runs


@pytest.fixture(scope="module")
def nutpie_fit(ladder):
    return require_sampled(quiet_fit(ladder, sampler="nutpie", **SETTINGS))


@pytest.fixture(scope="module")
def numpyro_fit(ladder):
    return require_sampled(quiet_fit(ladder, sampler="numpyro", **SETTINGS))


def moments(fit) -> dict[str, tuple[float, float, float]]:
    """(posterior mean, sd, Monte Carlo standard error of the mean) of each parameter."""
    names = fit.parameter_names
    stats = az.summary(fit.idata, var_names=names, kind="stats", round_to="none")
    mcse = az.mcse(fit.idata, var_names=names, method="mean")
    return {name: (float(stats.loc[name, "mean"]), float(stats.loc[name, "sd"]),
                   float(mcse[name])) for name in names}


#: Law predictions compared between the samplers: inside the ladder, 10x and 100x beyond.
TARGETS = {"params": [1.5e9, 1.5e10, 5e10], "tokens": [3e10, 3e11, 3e12]}


def prediction_moments(fit) -> list[tuple[float, float, float]]:
    """(mean, sd, Monte Carlo standard error of the mean) of ln L at each of TARGETS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = np.log(fit.predict_draws(TARGETS, kind="mean"))
    out = []
    for t in range(draws.sizes["target"]):
        x = draws.isel(target=t).to_numpy()  # (chain, draw)
        mcse = az.mcse(az.convert_to_dataset({"x": x}), method="mean")["x"]
        out.append((float(x.mean()), float(x.std()), float(mcse)))
    return out


def test_numpyro_and_nutpie_posteriors_agree_within_monte_carlo_error(nutpie_fit, numpyro_fit):
    """What the posterior is used for, the law's prediction (ln loss) at targets in and beyond
    the ladder, and the well-identified E agree to within 4 Monte Carlo standard errors, with
    posterior sds within 0.7-1.4 of each other.  (A, B, alpha and beta lie on the ridge of
    Chinchilla's law: their means converge too slowly for 2 x 500 draws to compare them.)"""
    assert nutpie_fit.parameter_names == numpyro_fit.parameter_names
    a = [moments(nutpie_fit)["E"], *prediction_moments(nutpie_fit)]
    b = [moments(numpyro_fit)["E"], *prediction_moments(numpyro_fit)]
    for what, (mean_a, sd_a, mcse_a), (mean_b, sd_b, mcse_b) in zip(
            ["E", "ln L inside", "ln L at 10x", "ln L at 100x"], a, b, strict=True):
        assert abs(mean_a - mean_b) <= 4 * np.hypot(mcse_a, mcse_b), (what, a, b)
        assert 0.7 <= sd_a / sd_b <= 1.4, (what, sd_a, sd_b)


def test_chain_method_is_recorded_and_chosen_from_the_devices(numpyro_fit):
    recorded = numpyro_fit.idata.posterior.attrs["chain_method"]
    assert recorded == jax_chain_method(2)
    if jax.default_backend() == "cpu":
        assert recorded in ("sequential", "parallel")
    assert numpyro_fit.idata.posterior.attrs["precision"] == "float64"
    assert numpyro_fit.sampler_config.precision == "float64"


@pytest.mark.parametrize(("backend", "devices", "expected"), [
    ("gpu", 1, "vectorized"), ("tpu", 8, "vectorized"), ("cpu", 4, "parallel"),
    ("cpu", 1, "sequential"),
])
def test_chain_method_rule(monkeypatch, backend, devices, expected):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "local_device_count", lambda: devices)
    assert jax_chain_method(4) == expected


def test_float32_gives_finite_draws_close_to_float64(ladder, numpyro_fit, tmp_path):
    fit = require_sampled(quiet_fit(ladder, sampler="numpyro", precision="float32", **SETTINGS))
    post = fit.idata.posterior
    assert post.attrs["precision"] == "float32" and fit.sampler_config.precision == "float32"
    narrow, wide = moments(fit), moments(numpyro_fit)
    for name in fit.parameter_names:
        draws = post[name].to_numpy()
        assert draws.dtype == np.float64 and np.isfinite(draws).all(), name
        # half a posterior sd: ~5 standard errors of the difference at ~250 effective draws
        assert abs(narrow[name][0] - wide[name][0]) <= 0.5 * wide[name][1], (name, narrow, wide)
    fit.save(tmp_path / "fit32.nc")
    loaded = bayescale.load_fit(tmp_path / "fit32.nc")
    assert loaded.sampler_config.precision == "float32"
    assert loaded.idata.posterior.attrs["chain_method"] == post.attrs["chain_method"]


def test_a_fit_saved_before_precision_existed_loads_as_float64(numpyro_fit, tmp_path):
    path = tmp_path / "fit.nc"
    numpyro_fit.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_netcdf(str(path))
    meta = json.loads(idata.posterior.attrs["bayescale"])
    del meta["sampler"]["precision"]
    idata.posterior.attrs["bayescale"] = json.dumps(meta)
    old = tmp_path / "old.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata.to_netcdf(str(old))
    assert bayescale.load_fit(old).sampler_config.precision == "float64"


def test_float32_outside_jax_is_refused_in_one_line(ladder):
    with pytest.raises(ValueError, match=r"precision='float32'.*sampler='nutpie'") as err:
        bayescale.fit(ladder, "chinchilla", precision="float32")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="sampler='pymc'"):
        bayescale.fit(ladder, "chinchilla", sampler="pymc", precision="float32")
    with pytest.raises(ValueError, match="is not one of"):
        bayescale.fit(ladder, "chinchilla", sampler="numpyro", precision="float16")
    with pytest.raises(ValueError, match="method='map' does not use precision"):
        bayescale.fit(ladder, "chinchilla", method="map", precision="float32")
