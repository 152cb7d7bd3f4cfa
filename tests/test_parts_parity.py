"""Graph and numpy predictor agree: for every preset and every part option, at draws of the
model's parameters, the PyMC graph's mean of ln loss (and accuracy) equals the numpy path's.

The draws are prior draws (a posterior is a distribution over the same variables; the
parity is pointwise, so any draws serve and no sampling is needed).  The log-density of the
observed loss rows is checked against the numpy mean with the noise and AR(1) written out.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats

import bayescale
from bayescale.build import build_model
from bayescale.parts import (
    AR1Residuals,
    Checkpoints,
    Downstream,
    Drift,
    FamilyPooling,
    MarginalRuns,
    Noise,
    RunEffect,
    ScheduleTerm,
)
from bayescale.parts.checkpoints import select_rows
from bayescale.parts.marginal import draw_run_latents
from bayescale.parts.schedule import default_schedule
from bayescale.predict import Structure, predictive_draws
from bayescale.runs import Scale, read_runs
from bayescale.schedules import Schedule
from bayescale.simulate import Task

RTOL = 1e-6


@pytest.fixture(scope="module")
def ladder() -> pd.DataFrame:
    """Two families, two seeds, six checkpoints per run, a cosine schedule and two tasks."""
    tasks = [Task("t1", chance=0.25, slope=3.0, midpoint=3.2, n_items=500),
             Task("t2", chance=0.5, slope=2.0, midpoint=3.0, n_items=1000)]
    runs, _ = bayescale.simulate_ladder(seed=3, families=2, seeds=2, checkpoints=6,
                                        sizes=(2e7, 6e7, 2e8),
                                        token_multipliers=(10, 20), schedule=Schedule("cosine"),
                                        seed_spread=0.01, tasks=tasks)
    return read_runs(runs)


def _prepare(model, table):
    model = model.resolve(table[table["metric"] == "loss"])
    rows, _ = select_rows(table[table["metric"] == "loss"].reset_index(drop=True),
                          model.part("checkpoints"))
    part = model.part("downstream")
    acc = part.select(table, rows, model.part("checkpoints")) if part is not None else None
    families, runs = sorted(rows["family"].unique()), list(dict.fromkeys(rows["run"]))
    term = model.part("schedule")
    schedule = (default_schedule(rows) if term is not None
                and getattr(term, "source", None) == "table" else None)
    scale = Scale.from_runs(rows)
    pm_model = build_model(model, rows, scale, families, runs, schedule, acc, record_mean=True)
    with pm_model:
        prior = pm.sample_prior_predictive(draws=6, random_seed=11)
    idata = az.InferenceData(posterior=prior.prior)
    structure = Structure(model, scale, families, runs, schedule, rows, acc)
    return pm_model, idata, structure, rows, acc


def _numpy_mean(structure, idata, rows) -> np.ndarray:
    """The numpy predictor's structural mean of ln loss at the fitted rows, (S, n_obs)."""
    from bayescale.parts import PredictContext

    ctx = PredictContext(fit=structure, idata=idata, targets=rows, x=structure.design(rows),
                         family_labels=rows["family"].astype(str),
                         run_labels=rows["run"].astype(str),
                         known=np.ones(len(rows), bool), new_draws=False,
                         rng=np.random.default_rng(0))
    return structure.structural_mean(ctx, rows)


def _graph_run_terms(pm_model, idata) -> np.ndarray:
    """A marginal graph's run terms at the drawn latents: its loadings times ``z``, (S, n_obs)."""
    graph = pm_model.bayescale_marginal
    names = list(graph["loadings"])
    fn = pm.pytensorf.compile(list(pm_model.free_RVs),
                              [graph["loadings"][n][0] for n in names], on_unused_input="ignore")
    blocks = graph["blocks"]
    post = idata.posterior.stack(s=("chain", "draw")).transpose("s", ...)
    out = np.zeros((post.sizes["s"], len(blocks.block)))
    real = blocks.mask > 0
    for s in range(post.sizes["s"]):
        loadings = fn(*[post[v.name].to_numpy()[s] for v in pm_model.free_RVs])
        total = np.zeros(blocks.mask.shape)
        for name, z in zip(names, loadings, strict=True):
            latent = post[name].to_numpy()[s]
            if graph["loadings"][name][1] == "run":
                total += z[:, :, 0] * latent[graph["block_run"]][:, None]
            else:
                total += np.einsum("rij,rj->ri", z, latent[blocks.index] * blocks.mask)
        out[s, blocks.index[real]] = total[real]
    return out


def _check(model, table):
    pm_model, idata, structure, rows, acc = _prepare(model, table)
    graph = idata.posterior["mu_obs"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy()
    if model.part("marginal_runs") is not None:
        # the graph integrates the latents out: draw them given the data, as a fit does, and
        # compare the graph's mean with its loadings applied to them
        draw_run_latents(pm_model, idata, random_seed=0)
        graph = graph + _graph_run_terms(pm_model, idata)
    numpy_mean = _numpy_mean(structure, idata, rows)
    ok = np.isfinite(graph)
    assert ok.mean() > 0.5, "most prior draws should give a finite mean"
    np.testing.assert_allclose(numpy_mean[ok], graph[ok], rtol=RTOL)
    if model.part("ar1_residuals") is None and model.part("drift") is None:
        # the public path: kind="mean" predictions at the fitted rows of fitted runs
        public = predictive_draws(idata, structure, rows.drop(columns=["metric"]), kind="mean")
        flat = np.log(public.stack(s=("chain", "draw")).transpose("s", ...).to_numpy())
        np.testing.assert_allclose(flat[ok], graph[ok], rtol=RTOL)
    _check_log_density(model, pm_model, idata, structure, rows, graph)
    if acc is not None:
        p_graph = idata.posterior["p_acc"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy()
        targets = acc[["params", "tokens", "total_tokens", "family", "run", "metric"]]
        p_numpy = predictive_draws(idata, structure, targets,
                                   kind="mean").stack(s=("chain", "draw")) \
            .transpose("s", ...).to_numpy()
        fine = np.isfinite(p_graph) & (p_graph > 1e-6) & (p_graph < 1 - 1e-6)
        assert fine.mean() > 0.3
        np.testing.assert_allclose(p_numpy[fine], p_graph[fine], rtol=RTOL)


def _check_log_density(model, pm_model, idata, structure, rows, mu):
    """Pointwise log-density of ln loss: the graph's against the numpy mean with the noise
    part's likelihood and the AR(1) conditioning written out."""
    ll = pm.compute_log_likelihood(idata.copy(), var_names=["ln_loss"], model=pm_model,
                                   progressbar=False)
    graph = ll.log_likelihood["ln_loss"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy()
    post = idata.posterior.stack(s=("chain", "draw")).transpose("s", ...)
    y = np.log(rows["value"].to_numpy(float))[None, :]
    n = rows["params"].to_numpy(float)[None, :] / structure.scale.N0
    sigma = post["sigma"].to_numpy()[:, None] * np.ones_like(mu)
    if model.noise.by_size:
        sigma = sigma * n ** -post["kappa"].to_numpy()[:, None]
    if model.part("marginal_runs") is not None:
        _check_marginal_density(model, idata, structure, rows, graph, sigma)
        return
    mean = mu
    if model.part("ar1_residuals") is not None:
        x = structure.design(rows)
        has = x["prev"] >= 0
        prev = np.maximum(x["prev"], 0)
        rho = has[None, :] * np.exp(-x["gap"][None, :] / post["ell"].to_numpy()[:, None])
        mean = mu + rho * (y[:, prev] - mu[:, prev])
        sigma = sigma * np.sqrt(1 - rho**2 + 1e-12)
    if model.noise.likelihood == "student_t":
        expected = scipy.stats.t.logpdf(y, df=post["nu"].to_numpy()[:, None], loc=mean, scale=sigma)
    else:
        expected = scipy.stats.norm.logpdf(y, loc=mean, scale=sigma)
    ok = np.isfinite(graph) & np.isfinite(expected)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(graph[ok], expected[ok], rtol=1e-6, atol=1e-8)


def _check_marginal_density(model, idata, structure, rows, graph, sigma):
    """Each run's summed row log-densities against the joint density of its ln losses: the
    numpy predictor's latents integrated out (its loadings found by unit steps of each latent;
    it is linear in them) with the noise (and AR(1)) covariance written out."""
    names = [n for n in ("z_run", "z_slope", "z_walk") if n in idata.posterior]
    base = _numpy_mean(structure, idata, rows)
    columns = []
    for name in names:
        for k in range(idata.posterior.sizes[idata.posterior[name].dims[-1]]):
            shifted = idata.copy()
            shifted.posterior[name].values[..., k] += 1.0
            columns.append(_numpy_mean(structure, shifted, rows) - base)
    loadings = np.stack(columns, axis=2)  # (S, n_obs, K)
    latents = np.concatenate([idata.posterior[n].stack(s=("chain", "draw"))
                              .transpose("s", ...).to_numpy() for n in names], axis=1)
    law = base - np.einsum("sok,sk->so", loadings, latents)
    post = idata.posterior.stack(s=("chain", "draw")).transpose("s", ...)
    y = np.log(rows["value"].to_numpy(float))
    ln_tokens = np.log(rows["tokens"].to_numpy(float))
    checked = 0
    for idx in rows.groupby("run", sort=False).indices.values():
        distance = np.abs(ln_tokens[idx][:, None] - ln_tokens[idx][None, :])
        for s in range(len(law)):
            if model.part("ar1_residuals") is not None:
                corr = np.exp(-distance / float(post["ell"][s]))
            else:
                corr = np.eye(len(idx))
            a = loadings[s][idx]
            cov = a @ a.T + sigma[s, idx][:, None] * sigma[s, idx][None, :] * corr
            if model.noise.likelihood == "student_t":
                dist = scipy.stats.multivariate_t(law[s, idx], cov, df=float(post["nu"][s]))
            else:
                dist = scipy.stats.multivariate_normal(law[s, idx], cov)
            expected = dist.logpdf(y[idx])
            if np.isfinite(expected) and np.isfinite(graph[s, idx]).all():
                np.testing.assert_allclose(graph[s, idx].sum(), expected, rtol=1e-6)
                checked += 1
    assert checked > 0.5 * len(law) * rows["run"].nunique()


@pytest.mark.parametrize("name", [n for n in bayescale.available_models()])
def test_every_preset_graph_matches_numpy(name, ladder):
    model = bayescale.load_model(name)
    table = ladder
    if model.part("multi_power") is not None:  # a ladder with a learning rate on every row
        from test_multi_power import simulate_wsd

        table = read_runs(simulate_wsd(seed=1, sizes=(3e7, 1e8), rows_per_run=12).assign(
            family=lambda df: np.where(df["params"] > 5e7, "big", "small")))
    if model.part("downstream") is not None and model.part("downstream").tasks == ("acc:avg",):
        acc = ladder[ladder["metric"].str.startswith("acc:")]
        avg = acc.groupby(["family", "run", "params", "tokens", "total_tokens"],
                          as_index=False).agg(
            value=("value", "mean"), chance=("chance", "mean"))
        table = read_runs(pd.concat([ladder[ladder["metric"] == "loss"],
                                     avg.assign(metric="acc:avg")],
                                    ignore_index=True))
    _check(model, table)


PART_VARIANTS = [
    [FamilyPooling(prior="student_t"), Checkpoints(), RunEffect(slope=True)],
    [Checkpoints(min_fraction=0.3), Drift(clock="ln_tokens"),
     Noise(likelihood="normal", by_size=True)],
    [Checkpoints(), ScheduleTerm(source="learned", anneal="tokens"), AR1Residuals()],
    [Checkpoints(), ScheduleTerm(source="table", anneal="loss"), RunEffect(),
     Drift(clock="fraction"), Downstream(link="exp", scale="log_reducible")],
    [FamilyPooling(), Downstream(link="gompertz", run_effect=False, overdispersion=False)],
    [Checkpoints(min_fraction=0.3), RunEffect(slope=True), Drift(clock="fraction"),
     AR1Residuals(), Noise(likelihood="student_t", by_size=True), MarginalRuns()],
    [FamilyPooling(), RunEffect(), Noise(likelihood="normal"), MarginalRuns()],
]


@pytest.mark.parametrize("parts", PART_VARIANTS, ids=lambda ps: "+".join(p.lookup_name for p in ps))
def test_every_part_option_graph_matches_numpy(parts, ladder):
    _check(bayescale.Model("chinchilla", parts=parts), ladder)


def test_pooling_only_some_parameters_graph_matches_numpy(ladder):
    """Families differing only in their data term: b and beta per family, the rest shared."""
    model = bayescale.Model("chinchilla",
                            parts=[FamilyPooling(parameters=("b", "beta")), Checkpoints(),
                                   RunEffect()])
    _check(model, ladder)
    pm_model, *_ = _prepare(model, ladder)
    assert pm_model.named_vars_to_dims.get("b") == ("family",) and "E" in pm_model.named_vars
    assert not pm_model.named_vars_to_dims.get("E")
