"""Build the PyMC model of a scaling law from a runs table and a spec.

Named dims: ``obs`` (one row of the runs table used in the fit).  Inputs are wrapped in
``pm.Data`` (``n = N/N0``, ``d = D/D0``, ``ln_value``, dims ``obs``), so one compiled model
serves every data set of the same structure (see :func:`structure_key`); every law
parameter keeps the
name of its symbol; the published coefficients (``A``, ``B``) are ``Deterministic``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm

from .likelihoods import LIKELIHOODS
from .runs import Scale
from .spec import ModelSpec

OBSERVED = "ln_loss"


def build_model(runs: pd.DataFrame, spec: ModelSpec, scale: Scale) -> pm.Model:
    """A ``pm.Model`` of ``spec`` fitted to the rows of ``runs`` (already one metric).

    Parameters
    ----------
    runs
        Validated runs table (see :func:`bayescale.read_runs`), loss rows only, length n_obs.
    spec
        The model spec: law, priors, likelihood.
    scale
        Centring constants N0, D0.

    Returns
    -------
    pymc.Model
        With coords ``{"obs": run|tokens labels}`` and an observed ``ln_loss`` (dims ``obs``).
    """
    law = spec.law
    likelihood = LIKELIHOODS[spec.likelihood]
    coords = {"obs": np.arange(len(runs))}
    with pm.Model(coords=coords) as model:
        n = pm.Data("n", runs["params"].to_numpy() / scale.N0, dims="obs")
        d = pm.Data("d", runs["tokens"].to_numpy() / scale.D0, dims="obs")
        ln_value = pm.Data("ln_value", np.log(runs["value"].to_numpy()), dims="obs")
        theta = {name: spec.priors[name].create_variable(name) for name in law.sampled}
        for name, value in law.to_published(theta, scale.N0, scale.D0).items():
            if name not in theta:
                pm.Deterministic(name, value)
        noise = {name: spec.priors[name].create_variable(name) for name in likelihood.noise_params}
        mean = law.mean(theta, n, d)
        likelihood.observe(OBSERVED, mean, noise, ln_value, dims="obs")
    return model


def structure_key(spec: ModelSpec, model: pm.Model) -> str:
    """What determines the compiled graph: the spec and every dim length except ``obs``.

    Two models with the same key differ only in their ``pm.Data`` values, so a compiled
    sampler can be reused with new data.
    """
    dims = sorted((k, len(v)) for k, v in model.coords.items() if k != "obs")
    return f"{spec.hash()}|{dims}"
