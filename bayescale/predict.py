"""Posterior predictions at target scales, computed from posterior draws in numpy.

The law is evaluated on every posterior draw (parameter uncertainty); for
``kind="observation"`` the likelihood's noise is added on the log scale (the band of a new
run's measured loss).  Draws are plain xarray; bands are reductions of them.

Numpy rather than ``pm.sample_posterior_predictive``: the law is closed-form, so this is
exact, needs no compilation (predicting from a loaded ``.nc`` file takes milliseconds),
and with the stored seed it gives the same numbers after save and load.
"""

from __future__ import annotations

import os

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .likelihoods import LIKELIHOODS
from .runs import RunsTableError, Scale, _rows
from .spec import ModelSpec

KINDS = ("observation", "mean")


def read_targets(targets: pd.DataFrame | dict | str | os.PathLike) -> pd.DataFrame:
    """Validate prediction targets: columns ``params`` and ``tokens`` (> 0, finite).

    Accepts a DataFrame, a dict of columns or scalars, or a CSV path.
    """
    if isinstance(targets, (str, os.PathLike)):
        targets = pd.read_csv(targets)
    if isinstance(targets, dict):
        targets = pd.DataFrame({k: np.atleast_1d(v) for k, v in targets.items()})
    df = targets.copy().reset_index(drop=True)
    problems = [f"column '{c}' is required in prediction targets" for c in ("params", "tokens") if c not in df]
    if problems:
        raise RunsTableError(problems)
    for col in ("params", "tokens"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = ~(np.isfinite(num) & (num > 0))
        if bad.any():
            problems.append(f"column '{col}' of the targets must be a finite number > 0 at {_rows(df.index[bad])}")
        df[col] = num.astype(float)
    if problems:
        raise RunsTableError(problems)
    return df


def _stacked(idata: az.InferenceData, name: str) -> np.ndarray:
    return idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def mean_draws(idata: az.InferenceData, spec: ModelSpec, scale: Scale, targets: pd.DataFrame) -> np.ndarray:
    """The law at each target for each posterior draw, shape (chain*draw, n_targets)."""
    theta = {name: _stacked(idata, name)[:, None] for name in spec.law.sampled}
    n = targets["params"].to_numpy()[None, :] / scale.N0
    d = targets["tokens"].to_numpy()[None, :] / scale.D0
    return np.asarray(spec.law.mean(theta, n, d), dtype=float)


def predictive_draws(
    idata: az.InferenceData,
    spec: ModelSpec,
    scale: Scale,
    targets: pd.DataFrame,
    kind: str = "observation",
    seed: int = 0,
) -> xr.DataArray:
    """Draws of the metric at the targets.

    Returns
    -------
    xarray.DataArray
        dims ``("chain", "draw", "target")``, in the metric's units (nats for loss).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    mu = mean_draws(idata, spec, scale, targets)
    if kind == "observation":
        likelihood = LIKELIHOODS[spec.likelihood]
        noise = {name: _stacked(idata, name)[:, None] for name in likelihood.noise_params}
        rng = np.random.default_rng([seed, 20_240_601])
        mu = np.exp(np.log(mu) + likelihood.noise(rng, noise, mu.shape))
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    return xr.DataArray(
        mu.reshape(chains, draws, -1),
        dims=("chain", "draw", "target"),
        coords={
            "chain": idata.posterior["chain"].to_numpy(),
            "draw": idata.posterior["draw"].to_numpy(),
            "target": np.arange(len(targets)),
        },
        name=f"{kind}",
    )


def bands(draws: xr.DataArray, hdi_prob: float) -> pd.DataFrame:
    """Mean, median and highest-density interval of each target's draws."""
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    flat = draws.stack(sample=("chain", "draw")).transpose("target", "sample").to_numpy()
    if flat.shape[1] > 1:
        interval = az.hdi(flat.T[None, ...], hdi_prob=hdi_prob)  # (target, 2)
    else:
        interval = np.repeat(flat, 2, axis=1)
    return pd.DataFrame(
        {
            "mean": flat.mean(axis=1),
            "median": np.median(flat, axis=1),
            "lower": interval[:, 0],
            "upper": interval[:, 1],
        }
    )
