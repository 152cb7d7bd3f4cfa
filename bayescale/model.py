"""Build the PyMC model of a scaling law from a runs table, a spec and model options.

Named dims: ``obs`` (one fitted row), ``family`` and ``run``.  Inputs are ``pm.Data``
(``n = N/N0``, ``d = D_eff/D0``, ``u``, index arrays, ``ln_value``; dims ``obs``), so one
compiled model serves every data set of the same structure (see :func:`structure_key`).
Law parameters keep the names of their symbols (``E``, ``a``, ``b``, ``alpha``, ``beta``;
published ``A``, ``B`` as ``Deterministic``); with ``pooling="family"`` they have dims
``family`` and the population is ``<symbol>_pop`` with spread ``<symbol>_sd`` (log scale).

Mean of ln(loss) for row i of run r in family f::

    mu_i = ln( law(theta_f, n_i, d_i) + c u_i ) + sigma_run z_r

and with ``residuals="ar1"`` the residual of row i given the previous row of its run is
``rho_i (y_prev - mu_prev)`` with ``rho_i = exp(-gap_i / ell)`` and innovation scale
``sigma sqrt(1 - rho_i^2)`` (an Ornstein-Uhlenbeck process in ln tokens).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from .design import ModelOptions, design
from .downstream import link, successes, task_table
from .likelihoods import LIKELIHOODS
from .runs import Scale
from .spec import ModelSpec

OBSERVED = "ln_loss"


def _pooled_parameter(spec: ModelSpec, name: str) -> pt.TensorVariable:
    """Family-level parameter, non-centred on the log scale around a population value."""
    prior = spec.priors[name]
    if prior.distribution != "LogNormal":
        raise ValueError(f"pooling='family' needs a LogNormal prior for {name!r}, got {prior.distribution}")
    mu, sigma = prior.parameters["mu"], prior.parameters["sigma"]
    log_pop = pm.Normal(f"ln_{name}_pop", mu=mu, sigma=sigma)
    pm.Deterministic(f"{name}_pop", pt.exp(log_pop))
    spread = spec.priors["family_sd"].create_variable(f"{name}_sd")
    z = pm.Normal(f"z_{name}", 0.0, 1.0, dims="family")
    return pm.Deterministic(name, pt.exp(log_pop + spread * z), dims="family")


def build_model(
    rows: pd.DataFrame,
    spec: ModelSpec,
    scale: Scale,
    options: ModelOptions | None = None,
    families: list[str] | None = None,
    runs: list[str] | None = None,
    schedule=None,
    acc_rows: pd.DataFrame | None = None,
) -> pm.Model:
    """A ``pm.Model`` of ``spec`` fitted to ``rows`` (one metric, selected rows).

    Parameters
    ----------
    rows
        Validated runs table rows to fit (see :func:`bayescale.design.select_rows`), n_obs long.
    spec, scale, options
        Model spec (law, priors, likelihood), centring constants, structure.
    families, runs
        Coordinate labels of the ``family`` and ``run`` dims (default: sorted unique).
    acc_rows
        With ``options.downstream``: the ``acc:<task>`` rows (dims ``acc_obs``, tasks on
        dim ``task``), linked to the latent loss of their checkpoint.

    Returns
    -------
    pymc.Model
        With an observed ``ln_loss`` (dims ``obs``).
    """
    options = options or ModelOptions()
    families = families or sorted(rows["family"].unique())
    runs = runs or list(dict.fromkeys(rows["run"]))
    x = design(rows, options, scale, families, runs, schedule)
    law = spec.law
    likelihood = LIKELIHOODS[spec.likelihood]
    coords = {"obs": np.arange(len(rows))}
    if options.pooling == "family":
        coords["family"] = families
    if options.run_effect:
        coords["run"] = runs
    downstream = options.downstream != "none" and acc_rows is not None and len(acc_rows) > 0
    if downstream:
        tasks = task_table(acc_rows)
        coords["task"] = tasks["task"].tolist()
        coords["acc_obs"] = np.arange(len(acc_rows))
    with pm.Model(coords=coords) as model:
        n = pm.Data("n", x["n"], dims="obs")
        d = pm.Data("d", x["d"], dims="obs")
        ln_value = pm.Data("ln_value", np.log(rows["value"].to_numpy(dtype=float)), dims="obs")
        if options.pooling == "family":
            fam = pm.Data("family_index", x["family"], dims="obs")
            theta_f = {p: _pooled_parameter(spec, p) for p in law.sampled}
            theta = {p: v[fam] for p, v in theta_f.items()}
            for p, value in law.to_published(theta_f, scale.N0, scale.D0).items():
                if p not in theta_f:
                    pm.Deterministic(p, value, dims="family")
        else:
            theta = {p: spec.priors[p].create_variable(p) for p in law.sampled}
            for p, value in law.to_published(theta, scale.N0, scale.D0).items():
                if p not in theta:
                    pm.Deterministic(p, value)
        noise = {p: spec.priors[p].create_variable(p) for p in likelihood.noise_params}
        mean = law.mean(theta, n, d)
        c = spec.priors["c"].create_variable("c") if options.schedule != "none" else None
        if c is not None:
            u = pm.Data("u", x["u"], dims="obs")
            mean = mean + c * u
        mu = pt.log(mean)
        if options.run_effect:
            run = pm.Data("run_index", x["run"], dims="obs")
            sigma_run = spec.priors["sigma_run"].create_variable("sigma_run")
            z_run = pm.Normal("z_run", 0.0, 1.0, dims="run")
            mu = mu + sigma_run * z_run[run]
        if downstream:
            xa = design(acc_rows, options, scale, families, runs, schedule)
            theta_a = theta
            if options.pooling == "family":
                fam_a = pm.Data("acc_family_index", xa["family"], dims="acc_obs")
                theta_a = {p: v[fam_a] for p, v in theta_f.items()}
            mean_a = law.mean(theta_a, pm.Data("acc_n", xa["n"], dims="acc_obs"), pm.Data("acc_d", xa["d"], dims="acc_obs"))
            if c is not None:
                mean_a = mean_a + c * pm.Data("acc_u", xa["u"], dims="acc_obs")
            ln_latent = pt.log(mean_a)
            if options.run_effect:
                ln_latent = ln_latent + sigma_run * z_run[pm.Data("acc_run_index", xa["run"], dims="acc_obs")]
            _downstream_likelihood(spec, options.downstream, tasks, acc_rows, pt.exp(ln_latent))
        sigma = noise["sigma"]
        if options.residuals == "ar1":
            prev = pm.Data("prev_index", np.maximum(x["prev"], 0), dims="obs")
            has_prev = pm.Data("has_prev", (x["prev"] >= 0).astype(float), dims="obs")
            gap = pm.Data("gap", x["gap"], dims="obs")
            ell = spec.priors["ell"].create_variable("ell")
            rho = has_prev * pt.exp(-gap / ell)
            mu = mu + rho * (ln_value[prev] - mu[prev])
            sigma = sigma * pt.sqrt(1.0 - rho**2 + 1e-12)
        likelihood.observe(OBSERVED, mu, sigma, noise, ln_value, dims="obs")
    return model


def _pooled_over_tasks(spec: ModelSpec, name: str) -> pt.TensorVariable:
    pop = spec.priors[f"{name}_pop"].create_variable(f"{name}_pop")
    sd = spec.priors[f"{name}_sd"].create_variable(f"{name}_sd")
    return pop + sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims="task")


def _downstream_likelihood(spec, kind, tasks, acc_rows, latent_loss) -> None:
    """Task links from latent loss to accuracy, with a Binomial (known ``n_items``) or Beta
    likelihood; observed variable ``acc`` on dim ``acc_obs``."""
    task_index = {t: i for i, t in enumerate(tasks["task"])}
    t_idx = pm.Data("task_index", acc_rows["metric"].map(task_index).to_numpy(), dims="acc_obs")
    chance = pm.Data("task_chance", tasks["chance"].to_numpy(dtype=float), dims="task")
    slope = pm.Deterministic("slope", _pooled_over_tasks(spec, "slope"), dims="task")
    midpoint = pm.Deterministic("midpoint", _pooled_over_tasks(spec, "midpoint"), dims="task")
    ceiling = pm.Deterministic(
        "ceiling", chance + (1 - chance) * pm.math.sigmoid(_pooled_over_tasks(spec, "ceiling")), dims="task"
    )
    p = link(kind, latent_loss, chance[t_idx], ceiling[t_idx], slope[t_idx], midpoint[t_idx], xp=pt)
    p = pt.clip(p, 1e-6, 1 - 1e-6)
    if acc_rows["n_items"].notna().all():
        n_items = acc_rows["n_items"].to_numpy(dtype=float)
        pm.Binomial("acc", n=n_items.astype("int64"), p=p, observed=successes(acc_rows).astype("int64"), dims="acc_obs")
    else:
        precision = spec.priors["precision"].create_variable("precision")
        value = np.clip(acc_rows["value"].to_numpy(dtype=float), 1e-4, 1 - 1e-4)
        pm.Beta("acc", alpha=p * precision, beta=(1 - p) * precision, observed=value, dims="acc_obs")


def structure_key(spec: ModelSpec, model: pm.Model, options: ModelOptions | None = None) -> str:
    """What determines the compiled graph: spec, options and every dim length except ``obs``.

    Two models with the same key differ only in their ``pm.Data`` values, so a compiled
    sampler can be reused with new data.
    """
    dims = sorted((k, len(v)) for k, v in model.coords.items() if k != "obs")
    return f"{spec.hash()}|{options}|{dims}"
