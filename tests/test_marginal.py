"""The marginal form (``MarginalRuns``): each run's Gaussian parts integrated out.

Checked without sampling: the per-row log densities sum to the multivariate normal and
Student-t densities (scipy); the marginal likelihood equals the latent form's with the
latents integrated out analytically (its covariance built from the latent graph's own
loadings, found by differentiating its mean, and the AR(1) written out); the latents
drawn after sampling have the conditional mean and covariance that Gaussian algebra gives.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats
import xarray as xr

import bayescale
from bayescale.build import build_model, structure_key
from bayescale.model import Model
from bayescale.parts import (
    AR1Residuals,
    Checkpoints,
    Downstream,
    Drift,
    MarginalRuns,
    ModelError,
    Noise,
    RunEffect,
)
from bayescale.parts.checkpoints import select_rows
from bayescale.parts.marginal import RunBlocks, draw_run_latents, run_logp
from bayescale.runs import Scale, read_runs


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Two families x two seeds, runs of unequal length (one checkpoint dropped)."""
    runs, _ = bayescale.simulate_ladder(seed=5, families=2, seeds=2, checkpoints=5,
                                        sizes=(2e7, 6e7), token_multipliers=(20,),
                                        seed_spread=0.01)
    table = read_runs(runs)
    table = table.drop(index=table.index[3]).reset_index(drop=True)
    selected, _ = select_rows(table, Checkpoints(min_fraction=0.05))
    return selected


def _model(likelihood: str, marginal: bool) -> Model:
    parts = [Checkpoints(min_fraction=0.05), RunEffect(slope=True), Drift(clock="fraction"),
             AR1Residuals(), Noise(likelihood=likelihood, by_size=True)]
    return Model("chinchilla", parts + ([MarginalRuns()] if marginal else []))


def _build(model: Model, rows: pd.DataFrame) -> pm.Model:
    families, runs = sorted(rows["family"].unique()), list(dict.fromkeys(rows["run"]))
    return build_model(model, rows, Scale.from_runs(rows), families, runs, record_mean=True)


def _function(pm_model: pm.Model, output):
    """``output`` as a function of a point ``{free variable name: value}``."""
    fn = pm.pytensorf.compile(list(pm_model.free_RVs), output, on_unused_input="ignore")
    return lambda point: fn(*[point[v.name] for v in pm_model.free_RVs])


def _loss_logp(pm_model: pm.Model):
    """The observed ln losses' summed log density as a function of a point."""
    observed = pm_model["ln_loss"]
    value = pm_model.rvs_to_values[observed]
    return _function(pm_model, pm.logp(observed, value).sum())


def _point(pm_model: pm.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """A prior draw of the free variables (values, not transformed)."""
    with pm_model:
        prior = pm.sample_prior_predictive(draws=1, random_seed=seed,
                                           var_names=[v.name for v in pm_model.free_RVs])
    return {v.name: prior.prior[v.name].to_numpy()[0, 0] for v in pm_model.free_RVs}


# ------------------------------------------------------------------ per-row log density
@pytest.mark.parametrize("nu", [None, 4.5])
def test_rows_sum_to_the_joint_density(nu):
    rng = np.random.default_rng(1)
    prev = np.array([-1, 0, 1, 2, -1, 4, -1, 6, 7])  # runs of 4, 2 and 3 rows
    blocks = RunBlocks.from_previous(prev)
    with pm.Model():
        blocks.register()
    covs = []
    for r in range(3):
        a = rng.normal(size=(blocks.length, blocks.length))
        cov = a @ a.T + np.eye(blocks.length)
        n = int(blocks.mask[r].sum())
        cov[n:, :] = 0.0
        cov[:, n:] = 0.0
        cov[n:, n:] = np.eye(blocks.length - n)
        covs.append(cov)
    cov = np.stack(covs)
    value, mu = rng.normal(size=9), rng.normal(size=9) * 0.1
    per_row = run_logp(pt.as_tensor(value), pt.as_tensor(mu), pt.as_tensor(cov), blocks,
                       None if nu is None else pt.as_tensor(nu)).eval()
    for r in range(3):
        rows = blocks.index[r][blocks.mask[r] > 0]
        n = len(rows)
        dist = (scipy.stats.multivariate_normal(mu[rows], cov[r, :n, :n]) if nu is None
                else scipy.stats.multivariate_t(mu[rows], cov[r, :n, :n], df=nu))
        np.testing.assert_allclose(per_row[rows].sum(), dist.logpdf(value[rows]), rtol=1e-10)
    # the first row of a run has its own marginal density
    first = blocks.index[0, 0]
    sd = np.sqrt(cov[0, 0, 0])
    expected = (scipy.stats.norm(mu[first], sd) if nu is None
                else scipy.stats.t(nu, mu[first], sd)).logpdf(value[first])
    np.testing.assert_allclose(per_row[first], expected, rtol=1e-10)


# ------------------------------------------------------------------ the latent form, integrated
def _latent_covariance(latent: pm.Model, point: dict, rows: pd.DataFrame) -> np.ndarray:
    """Covariance of ln loss given the law: the latent graph's loadings (d mu_obs / d z) plus
    the AR(1)'s stationary covariance, written out from its definition."""
    latents = ["z_run", "z_slope", "z_walk"]
    fn = _function(latent, latent["mu_obs"])
    base = fn(point)
    columns = []
    for name in latents:  # mu is linear in the latents: unit steps give the loadings exactly
        for k in range(point[name].size):
            step = {**point, name: point[name].copy()}
            step[name][k] += 1.0
            columns.append(fn(step) - base)
    loadings = np.stack(columns, axis=1)
    scale = point["sigma"] * (rows["params"].to_numpy() / Scale.from_runs(rows).N0) ** (
        -point["kappa"])
    ln_tokens = np.log(rows["tokens"].to_numpy(dtype=float))
    same_run = rows["run"].to_numpy()[:, None] == rows["run"].to_numpy()[None, :]
    ou = np.exp(-np.abs(ln_tokens[:, None] - ln_tokens[None, :]) / point["ell"]) * same_run
    return loadings @ loadings.T + scale[:, None] * scale[None, :] * ou


def test_marginal_likelihood_is_the_latent_form_integrated(rows):
    latent = _build(_model("normal", marginal=False), rows)
    marginal = _build(_model("normal", marginal=True), rows)
    assert {"z_run", "z_slope", "z_walk"} <= {v.name for v in latent.free_RVs}
    assert not {"z_run", "z_slope", "z_walk"} & {v.name for v in marginal.free_RVs}
    for seed in (0, 1):
        point = _point(latent, seed)
        cov = _latent_covariance(latent, point, rows)
        mean = _function(latent, latent["mu_obs"])(
            {**point, "z_run": 0 * point["z_run"], "z_slope": 0 * point["z_slope"],
             "z_walk": 0 * point["z_walk"]})
        y = np.log(rows["value"].to_numpy(dtype=float))
        expected = sum(scipy.stats.multivariate_normal(mean[idx], cov[np.ix_(idx, idx)])
                       .logpdf(y[idx]) for idx in rows.groupby("run").indices.values())
        np.testing.assert_allclose(_loss_logp(marginal)(point), expected, rtol=1e-8)


def test_student_t_noise_is_one_scale_mixture_per_run(rows):
    model = _build(_model("student_t", marginal=True), rows)
    normal = _build(_model("normal", marginal=True), rows)
    point = _point(model, 2)
    logp_t, logp_n = _loss_logp(model), _loss_logp(normal)
    # many degrees of freedom: the multivariate Student-t tends to the normal
    assert abs(logp_t({**point, "nu": 1e9}) - logp_n(point)) < 1e-3
    assert logp_t({**point, "nu": 3.0}) != pytest.approx(logp_n(point), abs=1e-3)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_a_compiled_marginal_model_serves_runs_of_another_length(rows, mode):
    """The padded run length is data, not a constant of the graph: a function compiled for
    one ladder, given another ladder's data (runs one checkpoint shorter), returns that
    ladder's own log density, and both share one structure key (one compiled sampler)."""
    shorter = rows[rows.groupby("run").cumcount(ascending=False) > 0].reset_index(drop=True)
    model = _model("student_t", marginal=True)
    long_model, short_model = _build(model, rows), _build(model, shorter)
    assert (short_model["run_block_index"].get_value().shape[1]
            < long_model["run_block_index"].get_value().shape[1])
    assert structure_key(model, long_model) == structure_key(model, short_model)
    value_vars = long_model.value_vars
    fn = pytensor.function(value_vars, long_model.logp(), mode=mode)
    point = long_model.initial_point(0)
    args = [point[v.name] for v in value_vars]
    before = fn(*args)
    for var in long_model.data_vars:  # what nutpie's with_data does
        var.set_value(short_model[var.name].get_value())
    expected = short_model.compile_logp()(point)
    np.testing.assert_allclose(fn(*args), expected, rtol=1e-10)
    assert not np.isclose(before, expected)


# ------------------------------------------------------------------ latents after sampling
def test_drawn_latents_have_the_gaussian_conditional(rows):
    pm_model = _build(_model("normal", marginal=True), rows)
    point = _point(pm_model, 3)
    point["sigma"] = np.asarray(0.02)
    n_draws = 4000
    posterior = xr.Dataset({
        name: (("chain", "draw", *(f"{name}_dim_{i}" for i in range(np.ndim(v)))),
               np.broadcast_to(v, (1, n_draws, *np.shape(v))).copy())
        for name, v in point.items()})
    idata = draw_run_latents(pm_model, az.InferenceData(posterior=posterior), random_seed=0)
    graph = pm_model.bayescale_marginal
    fn = pm.pytensorf.compile(list(pm_model.free_RVs),
                              [graph["mu"], graph["noise"]]
                              + [z for z, _ in graph["loadings"].values()],
                              on_unused_input="ignore")
    mu, noise, *zs = fn(*[point[v.name] for v in pm_model.free_RVs])
    blocks: RunBlocks = graph["blocks"]
    y = np.log(rows["value"].to_numpy(dtype=float))
    r = 0  # the first run: its walk's latents and its offset
    keep = blocks.mask[r] > 0
    columns = np.concatenate([[True, True], keep])  # z_run, z_slope, the walk's real rows
    loadings = np.concatenate([z[r] for z in zs], axis=1)[np.ix_(keep, columns)]
    cov = noise[r][np.ix_(keep, keep)] + loadings @ loadings.T
    resid = (y - mu)[blocks.index[r][keep]]
    gain = loadings.T @ np.linalg.inv(cov)
    mean, var = gain @ resid, np.eye(loadings.shape[1]) - gain @ loadings
    run = rows["run"].iloc[blocks.index[r, 0]]
    z_run = idata.posterior["z_run"].sel(run=run).to_numpy().ravel()
    se = np.sqrt(var[0, 0] / n_draws)
    assert abs(z_run.mean() - mean[0]) < 4 * se
    assert z_run.var() == pytest.approx(var[0, 0], rel=0.1)
    walk = idata.posterior["z_walk"].to_numpy()[0][:, blocks.index[r][keep]]
    slope = idata.posterior["z_slope"].sel(run=run).to_numpy().ravel()
    drawn = np.column_stack([z_run, slope, walk])  # the loadings' column order
    tolerance = 4 * np.sqrt(np.diag(var) / n_draws) + 1e-9
    assert (np.abs(drawn.mean(axis=0) - mean) <= tolerance).all()
    np.testing.assert_allclose(np.cov(drawn.T)[1:, 1:], var[1:, 1:], atol=0.05)


# ------------------------------------------------------------------ what cannot be written
def test_marginal_needs_a_gaussian_part_and_refuses_downstream():
    with pytest.raises(ModelError, match="marginal_runs: nothing to integrate out"):
        Model("chinchilla", [MarginalRuns()])
    with pytest.raises(ModelError, match="marginal_runs: not with the downstream part"):
        Model("chinchilla", [Checkpoints(), RunEffect(), Downstream(), MarginalRuns()])
    assert Model("chinchilla", [RunEffect(), MarginalRuns()]).part("marginal_runs") is not None


def test_blocks_pad_after_each_run():
    blocks = RunBlocks.from_previous(np.array([-1, 0, -1, 2, 3]))
    assert blocks.index.tolist() == [[0, 1, 1], [2, 3, 4]]
    assert blocks.block.tolist() == [0, 0, 1, 1, 1]
    assert blocks.position.tolist() == [0, 1, 0, 1, 2]
    np.testing.assert_array_equal(blocks.positions(np.array([1.0, 3, 2, 4, 7])),
                                  [[0, 2, 0], [0, 2, 5]])


# ------------------------------------------------------------------ sampled: the two forms agree
@pytest.mark.slow
def test_marginal_and_latent_fits_agree_on_a_simulated_ladder():
    """Normal noise, so both forms are one model: posteriors and predictions agree within
    Monte Carlo error, and the marginal fit's predictions for fitted runs cover the truth."""
    runs, _ = bayescale.simulate_ladder(seed=8, families=2, seeds=2, checkpoints=8,
                                            sizes=(2e7, 6e7, 2e8), token_multipliers=(20,),
                                            seed_spread=0.01, ar1=0.5)
    base = _model("normal", marginal=False).with_parts(drop=("drift",))
    fits = {form: bayescale.fit(runs, model, draws=500, tune=500, chains=2, random_seed=2,
                                progressbar=False)
            for form, model in {"latent": base,
                                "marginal": base.with_parts(MarginalRuns())}.items()}
    for name in ["E", "sigma", "sigma_run"]:
        a, b = (fits[f].idata.posterior[name] for f in ("latent", "marginal"))
        se = np.hypot(float(a.std()) / np.sqrt(float(az.ess(a).to_array().min())),
                      float(b.std()) / np.sqrt(float(az.ess(b).to_array().min())))
        assert abs(float(a.mean()) - float(b.mean())) < 4 * se + 0.05 * float(a.std()), name
    targets = read_runs(runs).groupby("run").tail(1)
    medians = {f: fits[f].predict(targets, hdi_prob=0.9)["median"].to_numpy() for f in fits}
    np.testing.assert_allclose(medians["marginal"], medians["latent"], rtol=0.01)
    assert len(fits["marginal"].log_likelihood()["ln_loss"].obs) == len(fits["marginal"].runs)
