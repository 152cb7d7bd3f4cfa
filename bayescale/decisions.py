"""Decisions from a posterior: which family wins at a target scale, and how sure; allocation.

Two questions a fitted ladder is asked before money is spent on the large run:

* :func:`compare_families`: of the fitted families (data mixes, architectures), which will
  have the lowest loss (or the highest accuracy) at a target scale?  For every posterior
  draw the families are ranked at the same draw, so what the families share (the
  population, a shared exponent, the correlations the fit found between them) stays in the
  comparison; ``p_best`` is the share of draws in which a family wins, and
  ``expected_regret`` what choosing it costs on average against the draw's winner.
* :func:`allocation_probability`: for a Chinchilla-law fit, the posterior probability that
  a proposed split (N, D) of a FLOP budget reaches within ``within`` (relative) of the
  compute-optimal loss at that budget, draw by draw.

Both work on the stored posterior draws in numpy (no sampling, milliseconds).

Example
-------
>>> import bayescale
>>> from bayescale.decisions import allocation_probability, compare_families
>>> runs, truth = bayescale.simulate_ladder(seed=0, families=3, family_spread=0.05)
>>> fit = bayescale.fit(runs, draws=500, tune=500, chains=2)       # doctest: +SKIP
>>> compare_families(fit, {"params": 3e9, "tokens": 6e10})          # doctest: +SKIP
>>> allocation_probability(fit, 1e21, [1e8, 1e9, 1e10], family="family0")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd

from .allocation import optimal_allocation_draws
from .laws import FLOP_PER_PARAM_TOKEN
from .predict import KINDS, bands, predictive_draws, read_targets

if TYPE_CHECKING:
    from .result import ScalingFit

#: Probability mass of the ``lower``/``upper`` bands of :func:`compare_families` (HDI, as
#: :meth:`ScalingFit.predict`) and of the excess-loss band of :func:`allocation_probability`
#: (equal-tailed).
BAND_PROB = 0.9
#: Columns a comparison target may not carry: :func:`compare_families` sets them itself.
RESERVED = ("family", "run", "metric")


# ============================================================================ families
def compare_families(
    fit: ScalingFit,
    target: pd.DataFrame | pd.Series | dict,
    families: Sequence[str] | None = None,
    *,
    metric: str = "loss",
    kind: str = "mean",
    seed: int = 0,
    hdi_prob: float = BAND_PROB,
) -> pd.DataFrame:
    """Which family wins at a target scale, and how sure: ``p_best`` and expected regret.

    One target row per family is predicted from the same posterior draws (one joint
    prediction), so in every draw the families are compared under one consistent set of
    population and shared parameters: the probabilities keep the correlations between the
    families' laws rather than treating their bands as independent.

    Parameters
    ----------
    fit
        A :class:`~bayescale.ScalingFit` whose model pools families (the ``family_pooling``
        part, e.g. ``bayescale.fit(runs)`` on a table with several families, or the
        ``checkpoints`` preset) and that has at least two families.
    target
        One row: ``params`` and ``tokens``, optionally ``total_tokens`` (default: ``tokens``,
        the end of a finished run) and any column a part of the model needs (schedule
        columns); a dict, a one-row DataFrame or a Series.  No ``family``, ``run`` or
        ``metric``: the families come from ``families``, the metric from ``metric``.
    families
        The families to compare (default: every fitted family; at least two).  ``p_best``
        is the probability of winning among these.
    metric
        ``"loss"`` (default; the fitted metric, lower is better), ``"acc:<task>"`` for a
        task in ``fit.tasks`` or ``"acc:avg"`` (higher is better), or ``"err:<task>"`` /
        ``"err:avg"`` (one minus the accuracy, lower is better); tasks need a fit with a
        downstream part.
    kind
        ``"mean"`` (default): the families' expected runs, the law of each family without a
        seed's offset or measurement noise.  This answers "which mix is better at this
        scale", the question behind choosing a data mix; ``p_best`` then tends to 0 or 1
        as the ladder pins the laws down.  ``"observation"``: one new run of each family,
        each with its own seed offset and measurement noise (independent across the
        families): "which single run will measure lowest", closer to even odds when the
        families differ by less than the seed-to-seed scatter.
    seed
        Seed of the random draws ``kind="observation"`` adds (same seed, same table).
    hdi_prob
        Mass of the ``lower``/``upper`` band (highest density, as
        :meth:`~bayescale.ScalingFit.predict`).

    Returns
    -------
    pandas.DataFrame
        One row per family, sorted by ``p_best`` (descending), with columns

        ``family``
        ``p_best``
            Posterior probability that this family has the lowest loss (or error; the
            highest accuracy) of the compared families at the target.  The column sums to
            1 (a tie within one draw, which continuous draws make vanishingly rare, shares
            the win).
        ``p_best_mcse``
            Monte Carlo standard error of ``p_best`` from the chains' effective sample size
            (NaN with fewer than 4 draws; 0 when every draw agrees).
        ``expected_regret``
            E[value of this family - value of the draw's winner], in the metric's units
            (nats for loss, accuracy points as fractions for ``acc:``), signed so that it
            is >= 0: what choosing this family costs on average.  The family with the
            least regret is the Bayes choice under a loss linear in the metric.  Under
            ``kind="observation"`` with a Student-t likelihood (the presets' noise) a new
            run's loss is ``exp`` of a heavy-tailed draw, whose mean need not exist: the
            regret (and ``mean``) of a family can then rest on a few rare spikes, and a
            ``UserWarning`` says so when a family's ``mean`` falls outside its band.
        ``mean``, ``median``, ``lower``, ``upper``
            The family's predicted value at the target (``lower``/``upper``: the
            ``hdi_prob`` band).

        ``attrs``: ``target`` (the target row as a dict), ``kind``, ``metric``,
        ``higher_is_better``, ``n_draws``, ``extrapolation`` (target compute over the
        ladder's largest) and ``diagnostics`` (the fit's convergence verdict,
        ``fit.diagnostics().message()``).

    Raises
    ------
    ValueError
        If the fit does not pool families or has one family, a family is not one of the
        fitted ones, the target is not one row (or names a family, run or metric), the
        metric is not one the fit predicts, or ``kind`` is unknown.

    Examples
    --------
    >>> import bayescale
    >>> from bayescale.decisions import compare_families
    >>> runs, _ = bayescale.simulate_ladder(seed=0, families=3, family_spread=0.05)
    >>> fit = bayescale.fit(runs, draws=500, tune=500, chains=2)   # doctest: +SKIP
    >>> table = compare_families(fit, {"params": 3e9, "tokens": 6e10})  # doctest: +SKIP
    >>> table[["family", "p_best", "expected_regret"]].round(4)  # doctest: +SKIP
        family  p_best  expected_regret
    0  family2   0.998           0.0000
    1  family0   0.002           0.0632
    2  family1   0.000           0.1042
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    chosen = _compared_families(fit, families)
    row = _one_target(target)
    column, higher_is_better = _metric_column(fit, metric)
    table = pd.concat([row] * len(chosen), ignore_index=True)
    table["family"] = chosen
    if column is not None:
        table["metric"] = column
    fit.warn_unconverged("compare_families")
    draws = predictive_draws(fit.idata, fit.structure, table, kind, seed)
    values = draws.transpose("chain", "draw", "target").to_numpy()  # (chain, draw, family)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the predictions at {row.iloc[0].to_dict()} are not all finite; the "
                         "target may lie far outside what the law can describe")
    # "cost": lower is better in every draw, in the metric's units
    cost = -values if higher_is_better else values
    best = cost.min(axis=-1, keepdims=True)
    wins = (cost == best).astype(float)
    wins /= wins.sum(axis=-1, keepdims=True)  # ties share the win
    p_best = wins.mean(axis=(0, 1))
    regret = (cost - best).mean(axis=(0, 1))
    band = bands(draws, hdi_prob)
    _warn_if_heavy_tailed(band, chosen, hdi_prob)
    out = pd.DataFrame({
        "family": chosen,
        "p_best": p_best,
        "p_best_mcse": [_mcse(wins[..., i]) for i in range(len(chosen))],
        "expected_regret": regret,
        "mean": band["mean"].to_numpy(),
        "median": band["median"].to_numpy(),
        "lower": band["lower"].to_numpy(),
        "upper": band["upper"].to_numpy(),
    })
    out = (out.sort_values(["p_best", "expected_regret"], ascending=[False, True], kind="stable")
           .reset_index(drop=True))
    ladder_c = float((fit.runs["params"] * fit.runs["tokens"]).max())
    out.attrs.update({
        "target": {k: _plain(v) for k, v in row.iloc[0].to_dict().items()},
        "kind": kind,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "n_draws": int(values.shape[0] * values.shape[1]),
        "extrapolation": float(row["params"].iloc[0] * row["tokens"].iloc[0] / ladder_c),
        "diagnostics": fit.diagnostics().message(),
    })
    return out


def _compared_families(fit: ScalingFit, families: Sequence[str] | None) -> list[str]:
    """The families to compare: checked against the fit (pooled, several, known, distinct)."""
    if fit.model.part("family_pooling") is None:
        raise ValueError(
            f"compare_families needs a fit whose model pools families (the family_pooling part); "
            f"model {fit.model.name!r} fits one law for every row. Fit a table with several "
            "families with the default model (bayescale.fit(runs)) or a preset with "
            "family_pooling (e.g. 'checkpoints')")
    if len(fit.families) < 2:
        raise ValueError(f"compare_families needs a fit with at least two families; this fit has "
                         f"{fit.families}")
    if families is None:
        return list(fit.families)
    if isinstance(families, str):
        families = [families]
    chosen = [str(f) for f in families]
    unknown = [f for f in chosen if f not in fit.families]
    if unknown:
        raise ValueError(f"families {unknown} are not fitted families; the fitted ones are "
                         f"{fit.families}")
    repeated = sorted({f for f in chosen if chosen.count(f) > 1})
    if repeated:
        raise ValueError(f"families {repeated} are named more than once")
    if len(chosen) < 2:
        raise ValueError(f"compare_families needs at least two families to compare, got {chosen}")
    return chosen


def _one_target(target: pd.DataFrame | pd.Series | dict) -> pd.DataFrame:
    """The target as a validated one-row table without family, run or metric columns."""
    if isinstance(target, pd.Series):
        target = target.to_frame().T
    table = read_targets(target)
    if len(table) != 1:
        raise ValueError(f"compare_families takes one target row, got {len(table)}; call it once "
                         "per target")
    named = [c for c in RESERVED if c in table]
    if named:
        raise ValueError(f"the target names {named}: compare_families builds one row per family "
                         "itself (pass families=...) and takes the metric as metric=...")
    return table


def _metric_column(fit: ScalingFit, metric: str) -> tuple[str | None, bool]:
    """The targets' ``metric`` value (None: the fitted loss) and whether higher is better."""
    if metric in ("loss", fit.metric):
        return None, False
    accuracies = list(fit.tasks)
    if accuracies and "acc:avg" not in accuracies:
        accuracies.append("acc:avg")
    allowed = accuracies + ["err:" + m[4:] for m in accuracies]
    if metric not in allowed:
        known = ["loss", *(() if fit.metric == "loss" else (fit.metric,)), *allowed]
        extra = ("" if fit.tasks else " (this fit has no downstream tasks: fit a model with a "
                 "downstream part for acc:/err: metrics)")
        raise ValueError(f"metric={metric!r} is not one this fit predicts: {known}{extra}")
    return metric, metric.startswith("acc:")


def _warn_if_heavy_tailed(band: pd.DataFrame, families: list[str], hdi_prob: float) -> None:
    """Warn when a family's mean lies outside its own band: rare huge draws carry the mean."""
    outside = (band["mean"] > band["upper"]) | (band["mean"] < band["lower"])
    heavy = [f for f, o in zip(families, outside, strict=True) if o]
    if heavy:
        warnings.warn(
            f"compare_families: the mean of {heavy} lies outside its {hdi_prob:.0%} band: a few "
            "extreme draws carry it (heavy tails, e.g. a Student-t likelihood's new-run spikes "
            "under kind='observation', whose expectation need not exist), so mean and "
            "expected_regret are Monte Carlo noise there; p_best, median and the band are not",
            UserWarning, stacklevel=3)


def _mcse(indicator: np.ndarray) -> float:
    """Monte Carlo standard error of the mean of a (chain, draw) array (see compare_families)."""
    if indicator.size < 4:
        return float("nan")
    if np.all(indicator == indicator.flat[0]):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns about short chains
        return float(np.ravel(az.mcse(np.asarray(indicator, dtype=float)))[0])


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one (attrs stay JSON-friendly)."""
    return value.item() if isinstance(value, np.generic) else value


# ============================================================================ allocation
def allocation_excess_draws(
    E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    compute: np.ndarray, params: np.ndarray, tokens: np.ndarray,
) -> np.ndarray:
    """Relative excess loss L(N, D) / L(N*, D*) - 1 per draw (shape (S,)) and split (shape (K,)).

    ``compute``, ``params`` and ``tokens`` are arrays of one length K: the budget whose
    optimum is the reference, and the proposed split.  Returns shape (S, K).

    Example
    -------
    >>> import numpy as np
    >>> law = [np.array([v]) for v in (1.69, 406.4, 410.7, 0.34, 0.28)]
    >>> c = np.array([5.76e23])
    >>> n_opt = optimal_allocation_draws(*law, compute=c)["params"][0]
    >>> n = np.array([n_opt[0], 10 * n_opt[0]])
    >>> excess = allocation_excess_draws(*law, c.repeat(2), n, c.repeat(2) / (6 * n))
    >>> bool(abs(excess[0, 0]) < 1e-12 and excess[0, 1] > 0.01)
    True
    """
    E, A, B, alpha, beta = (np.asarray(x, dtype=float)[:, None] for x in (E, A, B, alpha, beta))
    optimum = optimal_allocation_draws(E[:, 0], A[:, 0], B[:, 0], alpha[:, 0], beta[:, 0],
                                       compute=np.asarray(compute, dtype=float))["loss"]
    n = np.asarray(params, dtype=float)[None, :]
    d = np.asarray(tokens, dtype=float)[None, :]
    loss = E + A * n ** (-alpha) + B * d ** (-beta)
    return loss / optimum - 1.0


def allocation_probability(
    fit: ScalingFit,
    compute,
    params,
    tokens=None,
    *,
    within: float = 0.01,
    family: str | None = None,
) -> pd.DataFrame:
    """Posterior probability that a split (N, D) of a budget is within ``within`` of optimal.

    For every posterior draw of a Chinchilla-law fit, the loss of the proposed split,
    ``L(N, D) = E + A N^-alpha + B D^-beta``, is compared with that draw's compute-optimal
    loss at the budget, ``L(N*, D*)`` (see :mod:`bayescale.allocation`, as
    :meth:`~bayescale.ScalingFit.optimal_allocation`): the split counts as good in the draw
    when ``L(N, D) <= (1 + within) L(N*, D*)``.  Because the optimum is flat, a split a
    factor of 2 or 3 away from the median N* is often still within 1% of the optimal loss;
    this says how often, given what the ladder leaves unknown about the exponents.

    Parameters
    ----------
    fit
        A fit of the ``chinchilla`` law (the law in N and D separately).
    compute
        FLOP budget(s) C (6 N D); a scalar or an array broadcast against ``params``.
    params
        Proposed model size(s) N (parameters), scalar or array.
    tokens
        Proposed training tokens D; default ``compute / (6 N)``, the split that spends the
        budget exactly.  Given, it is compared with the optimum at ``compute`` as it is
        (a split that spends more than the budget can beat the budget's optimum).
    within
        Relative tolerance on the loss (0.01: within 1% of the optimal loss, in nats of the
        whole loss, irreducible part included).
    family
        With family pooling, the family whose law is used (default: the first fitted
        family, as :meth:`~bayescale.ScalingFit.optimal_allocation`).

    Returns
    -------
    pandas.DataFrame
        One row per split: ``compute``, ``params``, ``tokens``, ``p_within`` (posterior
        probability the split is within ``within`` of the optimal loss), ``excess_median``
        (median relative excess loss ``L(N, D) / L(N*, D*) - 1``), ``excess_lower`` and
        ``excess_upper`` (its equal-tailed 90% band) and ``params_opt_median`` (the
        posterior median of N* at the budget, for reference).  ``attrs``: ``within``,
        ``family`` and ``diagnostics``.

    Raises
    ------
    ValueError
        For a law that is not ``chinchilla``, a non-positive budget, size or token count,
        a negative ``within``, or a family the fit does not have.

    Examples
    --------
    >>> import bayescale
    >>> from bayescale.decisions import allocation_probability
    >>> runs, _ = bayescale.simulate_ladder(seed=0)
    >>> fit = bayescale.fit(runs, "chinchilla", draws=500, tune=500, chains=2)  # doctest: +SKIP
    >>> table = allocation_probability(fit, 1e22, [3e8, 3e9, 3e10])  # doctest: +SKIP
    >>> table[["params", "p_within", "excess_median"]].round(4)     # doctest: +SKIP
             params  p_within  excess_median
    0  3.000000e+08     0.000         0.1447
    1  3.000000e+09     0.131         0.0262
    2  3.000000e+10     0.853         0.0026
    """
    if fit.law.lookup_name != "chinchilla":
        raise ValueError(f"allocation_probability needs a law in N and D separately (e.g. "
                         f"'chinchilla'); {fit.law.lookup_name!r} depends on compute only")
    if not (np.isfinite(within) and within >= 0):
        raise ValueError(f"within must be a finite number >= 0, got {within}")
    given = (compute, params) if tokens is None else (compute, params, tokens)
    try:
        arrays = [np.ravel(a) for a in np.broadcast_arrays(*(np.asarray(x, dtype=float)
                                                              for x in given))]
    except ValueError:
        raise ValueError(f"compute, params and tokens do not broadcast together: shapes "
                         f"{[np.shape(x) for x in given]}") from None
    for name, values in zip(("compute", "params", "tokens"), arrays, strict=False):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"{name} must be finite and > 0, got {values}")
    budget, n = arrays[0], arrays[1]
    d = budget / (FLOP_PER_PARAM_TOKEN * n) if tokens is None else arrays[2]
    fit.warn_unconverged("allocation_probability")
    chosen, law = _law_draws(fit, family)
    excess = allocation_excess_draws(*law, compute=budget, params=n, tokens=d)
    n_opt = optimal_allocation_draws(*law, compute=budget)["params"]
    lower, median, upper = np.quantile(excess, [(1 - BAND_PROB) / 2, 0.5, (1 + BAND_PROB) / 2],
                                       axis=0)
    # a split exactly at a draw's optimum is within any tolerance despite rounding
    out = pd.DataFrame({
        "compute": budget,
        "params": n,
        "tokens": d,
        "p_within": (excess <= within + 1e-12).mean(axis=0),
        "excess_median": median,
        "excess_lower": lower,
        "excess_upper": upper,
        "params_opt_median": np.median(n_opt, axis=0),
    })
    out.attrs.update({"within": float(within), "family": chosen,
                      "diagnostics": fit.diagnostics().message()})
    return out


Law = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _law_draws(fit: ScalingFit, family: str | None) -> tuple[str | None, Law]:
    """The family used and its draws of E, A, B, alpha, beta (each of shape (S,))."""
    if family is not None and family not in fit.families:
        raise ValueError(f"family {family!r} is not one of the fitted families {fit.families}")
    column = None
    if fit.model.part("family_pooling") is not None:
        family = family or fit.families[0]
        column = fit.families.index(family)
    law = [fit.posterior_draws(k) for k in ("E", "A", "B", "alpha", "beta")]
    if column is not None:  # parameters shared by the families have no family dim
        law = [p[:, column] if p.ndim == 2 else p for p in law]
    E, A, B, alpha, beta = law
    return family, (E, A, B, alpha, beta)
