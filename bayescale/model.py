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
        if options.schedule != "none":
            u = pm.Data("u", x["u"], dims="obs")
            mean = mean + spec.priors["c"].create_variable("c") * u
        mu = pt.log(mean)
        if options.run_effect:
            run = pm.Data("run_index", x["run"], dims="obs")
            sigma_run = spec.priors["sigma_run"].create_variable("sigma_run")
            z_run = pm.Normal("z_run", 0.0, 1.0, dims="run")
            mu = mu + sigma_run * z_run[run]
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


def structure_key(spec: ModelSpec, model: pm.Model, options: ModelOptions | None = None) -> str:
    """What determines the compiled graph: spec, options and every dim length except ``obs``.

    Two models with the same key differ only in their ``pm.Data`` values, so a compiled
    sampler can be reused with new data.
    """
    dims = sorted((k, len(v)) for k, v in model.coords.items() if k != "obs")
    return f"{spec.hash()}|{options}|{dims}"
