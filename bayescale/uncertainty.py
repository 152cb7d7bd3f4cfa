"""Where a predictive band comes from: the variance at a target split by source.

The decomposition is the law of total variance over nested draws.  The random sources of a
prediction (:data:`bayescale.parts.SOURCES`) are conditioned on one after another, after
the posterior of the model's parameters (``law``)::

    Var(Y) = Var(E[Y | theta])                                  law_var
           + E[Var(E[Y | theta, discrepancy] | theta)]          discrepancy_var
           + E[Var(E[Y | theta, ..., family] | theta, ...)]     family_var
           + E[Var(E[Y | theta, family, run] | theta, family)]  run_var
           + ...                                                drift_var, downstream_var,
                                                                benchmark_var, noise_var

Each term is the growth of ``Var(E[Y | theta, first k sources])`` as the k-th source is
added, so the terms add up to ``Var(Y)`` exactly; each conditional mean is estimated by
``copies`` inner draws of the sources not yet conditioned on (with the inner Monte Carlo
error subtracted), from at most ``max_draws`` posterior draws.  The result is on the
metric's scale: nats for loss, accuracy for tasks.

``law_var`` is the epistemic part (it shrinks as the ladder grows), with
``discrepancy_var`` (the law's own error beyond the ladder,
:class:`~bayescale.parts.Discrepancy`); ``family_var`` is the spread of a family the
model has not seen (zero for a fitted family); ``run_var`` is what a new seed of the same
configuration adds; ``drift_var`` the within-run walk still ahead;
``downstream_var`` a new run's task-level offset; ``benchmark_var`` the sampling of a
benchmark's items; ``noise_var`` the loss measurement's noise.

A Student-t likelihood on ln loss gives a new measurement no finite variance in nats (the
exponential of a heavy tail has none): its tails are the model's allowance for outlying
rows.  The decomposition draws the noise from the likelihood's Gaussian core (the same
``sigma``), so every part is finite; :meth:`~bayescale.ScalingFit.predict`'s bands keep the
tails.

Example
-------
>>> fit = bayescale.fit(runs)  # doctest: +SKIP
>>> fit.uncertainty({"params": 7e10, "tokens": 1.4e12})  # doctest: +SKIP
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import xarray as xr

from .parts import SOURCES
from .predict import Structure, predictive_values

#: Inner draws per posterior draw for each conditional mean.
DEFAULT_COPIES = 32
#: Posterior draws used (thinned evenly) for the decomposition.
DEFAULT_MAX_DRAWS = 1000
#: Posterior draws per chunk of the nested computation (bounds the memory).
_CHUNK = 250


def model_sources(structure: Structure, posterior: xr.Dataset) -> list[str]:
    """The sources the fit's parts draw, in nesting order (see :data:`SOURCES`)."""
    drawn = {s for part in structure.model.parts for s in part.random_sources(posterior)}
    return [s for s in SOURCES if s in drawn]


def thin(posterior: xr.Dataset, max_draws: int) -> xr.Dataset:
    """At most ``max_draws`` draws of ``posterior``, evenly spaced, as one chain."""
    stacked = posterior.stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    index = np.unique(np.linspace(0, total - 1, min(max_draws, total)).round().astype(int))
    picked = stacked.isel(sample=index).drop_vars(["sample", "chain", "draw"])
    return picked.rename(sample="draw").expand_dims(chain=1).transpose("chain", "draw", ...)


def variance_parts(idata, structure: Structure, targets: pd.DataFrame, *, seed: int = 0,
                   copies: int = DEFAULT_COPIES, max_draws: int = DEFAULT_MAX_DRAWS,
                   hdi_prob: float | None = None) -> pd.DataFrame:
    """Predictive variance at ``targets`` split by source, one row per target.

    Parameters
    ----------
    idata
        The fit's InferenceData (only its ``posterior`` is used).
    structure
        :attr:`bayescale.ScalingFit.structure`.
    targets
        Read targets (see :func:`bayescale.predict.read_targets`).
    copies, max_draws
        Inner draws per posterior draw, and posterior draws used.
    hdi_prob
        If given, add ``<source>_var_lower`` and ``<source>_var_upper``: the central
        interval, over posterior draws, of the variance the source adds with every other
        source held fixed (e.g. the spread of a new seed's loss under each posterior draw).

    Returns
    -------
    pandas.DataFrame
        Columns ``law_var``, then ``<source>_var`` for each source the model draws, then
        ``total_var`` (their sum; the metric's units squared).  ``attrs["mc_se"]`` holds the
        Monte Carlo standard error of each part (same shape).
    """
    if hdi_prob is not None and not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    if copies < 2:
        raise ValueError(f"copies must be >= 2 (inner draws per posterior draw), got {copies}")
    posterior = thin(idata.posterior, max_draws)
    sources = model_sources(structure, idata.posterior)
    n = posterior.sizes["draw"]
    if n < 2:
        raise ValueError("the variance decomposition needs posterior draws (a MAP fit has one): "
                         "fit with method='nuts'")
    starts = range(0, n, _CHUNK)
    # conditional means E[Y | theta, sources[:k]] per posterior draw, k = 0..K
    means: list[list[np.ndarray]] = [[] for _ in range(len(sources) + 1)]
    inner: list[list[np.ndarray]] = [[] for _ in range(len(sources) + 1)]
    alone: dict[str, list[np.ndarray]] = {source: [] for source in sources}
    for c, start in enumerate(starts):
        chunk = SimpleNamespace(posterior=posterior.isel(draw=slice(start, start + _CHUNK)))
        m = chunk.posterior.sizes["draw"]
        for k in range(len(sources) + 1):
            # the same random numbers at every level (common random numbers): a source that
            # draws nothing for these targets adds exactly zero
            rng = np.random.default_rng([seed, 20_261_202, c])
            if k == len(sources):  # every source conditioned on: Y itself
                values = predictive_values(chunk, structure, targets, "observation", rng,
                                           gaussian_noise=True, streams=True)
                means[k].append(values)
                inner[k].append(np.zeros_like(values))
                continue
            values = predictive_values(chunk, structure, targets, "observation", rng,
                                       copies=copies, frozen=frozenset(sources[:k]),
                                       gaussian_noise=True, streams=True)
            values = values.reshape(copies, m, -1)
            means[k].append(values.mean(axis=0))
            inner[k].append(values.var(axis=0, ddof=1) / copies)
        if hdi_prob is None:
            continue
        for j, source in enumerate(sources):  # the source alone, every other one held fixed
            rng = np.random.default_rng([seed, 20_261_203, j, c])
            values = predictive_values(chunk, structure, targets, "observation", rng,
                                       copies=copies, frozen=frozenset(sources) - {source},
                                       gaussian_noise=True, streams=True)
            alone[source].append(values.reshape(copies, m, -1).var(axis=0, ddof=1))
    level = []
    level_se = []
    for k in range(len(sources) + 1):
        mean = np.concatenate(means[k])  # (S, T)
        noise = np.concatenate(inner[k])  # variance of each estimated conditional mean
        centred = (mean - mean.mean(axis=0)) ** 2 * n / (n - 1) - noise
        level.append(np.maximum(centred.mean(axis=0), 0.0))
        level_se.append(centred.std(axis=0, ddof=1) / np.sqrt(n))
    names = ["law", *sources]
    parts = {f"{name}_var": np.maximum(level[0] if k == 0 else level[k] - level[k - 1], 0.0)
             for k, name in enumerate(names)}
    out = pd.DataFrame(parts)
    out["total_var"] = out.sum(axis=1)
    if hdi_prob is not None:
        tail = (1 - hdi_prob) / 2
        for source, per_draw in alone.items():
            lower, upper = np.quantile(np.concatenate(per_draw), [tail, 1 - tail], axis=0)
            out[f"{source}_var_lower"], out[f"{source}_var_upper"] = lower, upper
    out.attrs["mc_se"] = pd.DataFrame({
        f"{name}_var": level_se[0] if k == 0 else np.hypot(level_se[k], level_se[k - 1])
        for k, name in enumerate(names)})
    out.attrs["posterior_draws"] = n
    out.attrs["copies"] = copies
    return out


def extrapolation_path(compute, tokens_per_param: float = 20.0) -> pd.DataFrame:
    """Targets along a compute path with a fixed ratio of tokens to parameters.

    ``C = 6 N D`` with ``D = r N``: ``N = sqrt(C / (6 r))``.  Returns ``params``, ``tokens``
    and ``compute`` (FLOPs), one row per budget.

    Example
    -------
    >>> extrapolation_path([6 * 20 * 1e9**2])["params"].round().tolist()
    [1000000000.0]
    """
    budgets = np.atleast_1d(np.asarray(compute, dtype=float))
    if not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise ValueError(f"compute budgets must be finite and > 0, got {budgets}")
    if not tokens_per_param > 0:
        raise ValueError(f"tokens_per_param must be > 0, got {tokens_per_param}")
    params = np.sqrt(budgets / (6.0 * tokens_per_param))
    return pd.DataFrame({"params": params, "tokens": tokens_per_param * params,
                         "compute": budgets})
