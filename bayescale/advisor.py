"""Which run to train next: the expected shrinkage of a target's band per FLOP (preposterior).

:func:`suggest_runs` ranks candidate training runs by how much, in expectation, observing
them would shrink the posterior predictive variance of the loss at one target scale, per
FLOP spent.  This is a preposterior analysis: the candidate's result is not known yet, so
the variance after observing it is averaged over the results the fit itself predicts.

Method
------
1. **Per-draw normal on ln(loss).**  For S posterior draws (``max_draws``, thinned evenly)
   and every row a candidate would add (one row per checkpoint of one seed) and the
   target, ``copies`` nested draws of a new observation over every random source (a new
   seed's run offset, drift, noise) are made under each posterior draw, as the nested
   draws of :mod:`bayescale.uncertainty` make them, and ln(loss) given ``theta_s`` is
   taken as ``Normal(mu_s, s_s^2)``, ``mu_s`` the median of the copies' ln(loss) and
   ``s_s`` their interquartile range over 1.349 (scaled to be unbiased for a normal).
   Robust summaries rather than the copies' mean and variance: under the presets'
   Student-t noise on ln(loss), ``E[Y | theta]`` and ``Var(Y | theta)`` of the loss are
   infinite (the exponential of a t variable has no moments; estimates from copies are
   finite only by chance).  So the Student-t is replaced by the normal that matches its
   bulk.
   The target's conditional moments in nats are those of the matching log-normal,
   ``E = exp(mu + s^2/2)``, ``Var = (exp(s^2) - 1) E^2``.
2. **The candidate's likelihood.**  A candidate's result is its seeds' ln(loss) at each
   of its checkpoints.  The seeds are independent given theta (each a new run with its
   own offset, drift and noise).  The checkpoints of one run are not: they share the
   run's offset and its drift so far.  Each row's variance ``s_s^2`` is split into the
   measurement noise ``n_s`` (the copies' spread with every other source held fixed, as
   :func:`bayescale.uncertainty.variance_parts` holds them, summarised as above) and the
   rest, ``r_s = s_s^2 - n_s`` (run offset, drift), taken as a walk along the run: two
   checkpoints share the smaller of their ``r_s`` (exact for a run offset plus a Brownian
   drift, whose variance grows along the run).  So one run's K checkpoints are
   ``Normal(mu_s, Sigma_s)`` with ``Sigma_s[k, k] = s_s,k^2`` and
   ``Sigma_s[k, l] = min(r_s,k, r_s,l)``; with one checkpoint, ``Normal(mu_s, s_s^2)``.
   Approximations: the noise of different checkpoints is taken as independent (the AR(1)
   correlation of residuals, which the package's predictions do not draw for a new run
   either, is left out, so several checkpoints look somewhat more informative than they
   are); the candidate and the target are independent given theta (true unless they share
   a run or a family the fit has not seen; a candidate must name a fitted family when the
   fit pools families, since what a run would teach about an unseen family is not
   represented by the fit's draws).
3. **Hypothetical outcomes.**  ``outcomes`` times: draw a posterior draw ``j`` at random
   (the same ``j`` for every candidate: common random numbers), and a result
   ``y ~ Normal(mu_j, Sigma_j)`` of every seed and checkpoint from the same Gaussian
   approximation (so the simulation and the reweighting agree).
4. **Importance reweighting.**  ``w_s ∝ p(y | theta_s)`` over the posterior draws, draw
   ``j`` left out (the others are then a posterior sample independent of ``y``).  The
   target's predictive variance given ``y`` is, by the law of total variance,
   ``Var_w(E[Y_t | theta_s]) + E_w(Var(Y_t | theta_s))`` (nats^2), the first term less the
   Monte Carlo variance of the estimated conditional means (``sum_s w_s (1 - w_s) c_s``,
   ``c_s = E_s^2 (pi/2) s_s^2 / copies``, the variance of a median of ``copies`` normal
   draws carried to the loss scale).  ``variance_now`` is the same with equal weights on
   all draws.
5. **Band width.**  The central ``hdi_prob`` interval of the reweighted predictive, taken
   as the mixture ``sum_s w_s LogNormal(mu_t,s, s_t,s^2)`` of the target's per-draw
   normals, its quantiles found by bisection; ``band_width_now`` with equal weights.  (A
   central interval of this approximation: close to, not equal to, the HDI of
   :meth:`bayescale.ScalingFit.predict`.)
6. **Averages and cost.**  ``variance_after``, ``band_width_after`` and ``weights_ess``
   (Kish's ``1 / sum w^2``) are means over the outcomes.  A candidate's FLOPs are
   ``6 params tokens seeds``; its checkpoints are free (the same run).  When the mean ESS is
   below :data:`MIN_ESS` the draws cannot represent the posterior after that result (it
   would move the posterior beyond the fit's draws): the reweighted spread then comes out
   too small, the reduction is overstated, and a warning names the candidates.

Example
-------
>>> fit = bayescale.fit(runs, "chinchilla")  # doctest: +SKIP
>>> suggest_runs(fit, [{"params": 1e9, "tokens": 2e10},
...                    {"params": 3e8, "tokens": 6e9, "seeds": 4}],
...              {"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .laws import FLOP_PER_PARAM_TOKEN
from .predict import predictive_values, read_targets, resolve_families
from .runs import _numbers, _rows
from .uncertainty import _CHUNK, model_sources, thin

#: Below this mean effective sample size of the importance weights a candidate's numbers
#: are flagged as unreliable (a warning names it).
MIN_ESS = 50.0
#: First checkpoint of a candidate observed at several checkpoints, as a fraction of its
#: tokens (the others geometrically spaced up to 1).
FIRST_CHECKPOINT = 0.1
#: Interquartile range of a standard normal.
_IQR_NORMAL = 1.3489795003921634
#: Smallest variance of a row's measurement noise, as a fraction of its variance (keeps
#: one run's covariance positive definite when the nested estimate is near zero).
_MIN_NOISE_SHARE = 1e-3
#: Bisection steps of the band's quantiles (the bracket shrinks 2^-60).
_BISECTIONS = 60
#: Reserved run ids of the candidates' and the target's planned runs.
_RUN_PREFIX = "(advisor)"

METHOD = (
    "preposterior analysis by importance reweighting of the posterior draws: for each "
    "candidate, hypothetical results are drawn from the fit's predictive (a posterior draw, "
    "then ln(loss) of every seed and checkpoint from a normal matched robustly (median, "
    "IQR) to that draw's nested predictive draws; checkpoints of one run share its offset "
    "and drift so far, their noise independent), the other draws are weighted by the "
    "Gaussian likelihood of the result, and the target's variance after is "
    "Var_w(E[Y|theta]) + E_w(Var(Y|theta)) (nats^2, per-draw log-normal), averaged over "
    "results; band widths are central intervals of the reweighted mixture of per-draw "
    "log-normals; FLOPs = 6 params tokens seeds."
)

COLUMNS = ["flops", "band_width_now", "band_width_after", "variance_now", "variance_after",
           "variance_reduction", "variance_reduction_per_flop", "weights_ess", "rank"]


def suggest_runs(fit, candidates, target, *, outcomes: int = 200, copies: int = 32,
                 max_draws: int = 1000, hdi_prob: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Rank candidate runs by the expected shrinkage of the target's variance per FLOP.

    The method and its approximations are described in :mod:`bayescale.advisor`.

    Parameters
    ----------
    fit : bayescale.ScalingFit
        A fit of a loss metric (final losses, or checkpoints with a ``checkpoints`` part).
    candidates : pandas.DataFrame, dict or list of dicts
        One row per candidate.  ``params`` (parameters) and ``tokens`` (the run's final
        tokens), > 0; optional ``family`` (a fitted family; required when the fit pools
        several), ``seeds`` (int >= 1, default 1: that many independent seeds of the
        configuration, all observed) and ``checkpoints`` (int >= 1, default 1: the run's
        loss observed at that many checkpoints, geometrically spaced from 10% to 100% of
        its tokens; more than 1 needs a model with a ``checkpoints`` part).  Other columns
        are passed to the model as a target's would be (e.g. schedule columns).
    target : dict or pandas.DataFrame
        One target row, as :meth:`bayescale.ScalingFit.predict` reads it (``params``,
        ``tokens``, optionally ``family``, ``total_tokens``...); its ``metric``, if given,
        must be ``"loss"``.
    outcomes : int
        Hypothetical results simulated per candidate.
    copies : int
        Inner draws per posterior draw, summarised by their median and quartiles (>= 4).
    max_draws : int
        Posterior draws used, thinned evenly (S <= max_draws).
    hdi_prob : float
        Probability mass of the band (a central interval, see the module docstring).
    seed : int
        Seed of every random number drawn here: the same seed gives the same table.

    Returns
    -------
    pandas.DataFrame
        One row per candidate (index: the candidates' labels), best first by
        ``variance_reduction_per_flop``: the candidate columns (with ``seeds`` and
        ``checkpoints`` filled in), ``flops`` (6 N D seeds), ``band_width_now`` and
        ``band_width_after`` (the target's band now and, expected, after the candidate is
        observed; nats), ``variance_now``, ``variance_after`` and ``variance_reduction``
        (their difference, which Monte Carlo error can make slightly negative for a
        candidate that teaches nothing; nats^2), ``variance_reduction_per_flop`` (nats^2 per FLOP),
        ``weights_ess`` (mean effective sample size of the importance weights, of S draws)
        and ``rank`` (1 = best).  ``attrs``: ``target`` (the target row as a dict),
        ``hdi_prob``, ``method``, ``outcomes``, ``copies``, ``posterior_draws`` (S) and
        ``min_ess``.

    Raises
    ------
    ValueError
        For a bad candidate (missing or non-positive ``params``/``tokens``, ``seeds`` or
        ``checkpoints`` not an integer >= 1, several checkpoints with a final-loss model,
        an unknown family; the message names the column and rows), a target that is not
        one row, or a target metric other than loss.

    Warns
    -----
    UserWarning
        When a candidate's mean ESS is below :data:`MIN_ESS`.

    Examples
    --------
    >>> table = suggest_runs(fit, pd.DataFrame({"params": [1e9, 2.5e8],
    ...                                         "tokens": [2e10, 2e10],
    ...                                         "seeds": [1, 4]}),
    ...                      {"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    >>> table[["params", "seeds", "variance_reduction_per_flop", "rank"]]  # doctest: +SKIP
    """
    _check_settings(outcomes, copies, max_draws, hdi_prob, seed)
    table = read_candidates(fit, candidates)
    goal = read_target(fit, target)
    fit.warn_unconverged("suggest_runs")
    structure = fit.structure

    rows, owner = candidate_rows(fit, table)
    # the target and the candidates separately: their optional columns may differ
    mu_t, s2_t = per_draw_normal(fit, goal, seed=seed, copies=copies, max_draws=max_draws)
    mu_t, s2_t = mu_t[:, 0], s2_t[:, 0]
    mu_c, s2_c = per_draw_normal(fit, rows, seed=seed + 1, copies=copies, max_draws=max_draws)
    several = np.isin(owner, np.flatnonzero(table["checkpoints"].to_numpy() > 1))
    noise_c = np.full_like(s2_c, np.nan)
    if several.any():
        others = frozenset(model_sources(structure, fit.idata.posterior)) - {"noise"}
        noise_c[:, several] = per_draw_normal(fit, rows.loc[several], seed=seed + 2,
                                              copies=copies, max_draws=max_draws,
                                              frozen=others)[1]
    n_draws = len(mu_t)
    # the target's conditional moments in nats (log-normal), and the Monte Carlo variance
    # of each conditional mean (a median of `copies` draws: pi/2 times a mean's)
    mean_t = np.exp(mu_t + s2_t / 2)
    var_t = np.expm1(s2_t) * mean_t**2
    mc_t = mean_t**2 * (np.pi / 2) * s2_t / copies
    sd_t = np.sqrt(s2_t)
    tail = (1 - hdi_prob) / 2

    equal = np.full((1, n_draws), 1.0 / n_draws)
    variance_now = float(_variance(equal, mean_t, var_t, mc_t)[0])
    width_now = float(_band_width(equal, mu_t, sd_t, tail)[0])

    picks = np.random.default_rng([seed, 20_260_301]).integers(n_draws, size=outcomes)
    results = []
    for i, (_, candidate) in enumerate(table.iterrows()):
        columns = np.flatnonzero(owner == i)
        seeds = int(candidate["seeds"])
        cov = run_covariance(s2_c[:, columns], noise_c[:, columns])
        rng = np.random.default_rng([seed, 20_260_302])  # the same numbers for every candidate
        y = simulate_results(mu_c[:, columns], cov, seeds, picks, rng)
        log_lik = log_likelihoods(y, mu_c[:, columns], cov)
        log_lik[np.arange(outcomes), picks] = -np.inf  # the draw that made the result
        weights = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        variance_after = float(_variance(weights, mean_t, var_t, mc_t).mean())
        flops = FLOP_PER_PARAM_TOKEN * float(candidate["params"]) * float(
            candidate["tokens"]) * seeds
        results.append({
            "flops": flops,
            "band_width_now": width_now,
            "band_width_after": float(_band_width(weights, mu_t, sd_t, tail).mean()),
            "variance_now": variance_now,
            "variance_after": variance_after,
            "variance_reduction": variance_now - variance_after,
            "variance_reduction_per_flop": (variance_now - variance_after) / flops,
            "weights_ess": float((1.0 / (weights**2).sum(axis=1)).mean()),
        })
    scores = pd.DataFrame(results, index=table.index)
    out = pd.concat([table, scores], axis=1)
    out = out.sort_values("variance_reduction_per_flop", ascending=False, kind="stable")
    out["rank"] = np.arange(1, len(out) + 1)
    out = out[[*table.columns, *COLUMNS]]
    low = out.index[out["weights_ess"] < MIN_ESS]
    if len(low):
        warnings.warn(
            f"suggest_runs: the importance weights of candidate(s) {list(low)} have a mean "
            f"effective sample size below {MIN_ESS:g} (of {n_draws} draws): their result "
            "would move the posterior beyond the fit's draws, so their variance reduction "
            "is unreliable, likely overstated (fit with more draws, or compare smaller "
            "candidates)",
            UserWarning, stacklevel=2)
    out.attrs.update({
        "target": {k: _plain(v) for k, v in goal.iloc[0].items()
                   if not str(v).startswith(_RUN_PREFIX)},
        "hdi_prob": hdi_prob,
        "method": METHOD,
        "outcomes": outcomes,
        "copies": copies,
        "posterior_draws": n_draws,
        "min_ess": MIN_ESS,
    })
    return out


# ============================================================================ inputs
def _check_settings(outcomes: int, copies: int, max_draws: int, hdi_prob: float,
                    seed: int) -> None:
    if int(outcomes) != outcomes or outcomes < 1:
        raise ValueError(f"outcomes must be an integer >= 1, got {outcomes}")
    if int(copies) != copies or copies < 4:
        raise ValueError(f"copies must be an integer >= 4 (inner draws per posterior draw, "
                         f"summarised by their quartiles), got {copies}")
    if int(max_draws) != max_draws or max_draws < 2:
        raise ValueError(f"max_draws must be an integer >= 2, got {max_draws}")
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed}")


def _as_frame(candidates: Any) -> pd.DataFrame:
    """``candidates`` (DataFrame, dict of columns or scalars, list of dicts) as a DataFrame."""
    if isinstance(candidates, pd.DataFrame):
        return candidates.copy()
    if isinstance(candidates, Mapping):
        listed = any(isinstance(v, (Sequence, np.ndarray, pd.Series))
                     and not isinstance(v, str) for v in candidates.values())
        return pd.DataFrame(dict(candidates)) if listed else pd.DataFrame([dict(candidates)])
    if isinstance(candidates, Sequence) and not isinstance(candidates, str):
        if not all(isinstance(c, Mapping) for c in candidates):
            raise TypeError("candidates as a list must be a list of dicts (one per candidate)")
        return pd.DataFrame([dict(c) for c in candidates])
    raise TypeError("candidates must be a DataFrame, a dict of columns or a list of dicts, got "
                    f"{type(candidates).__name__}")


def _counts(table: pd.DataFrame, column: str) -> pd.Series:
    """The integer column ``column`` (default 1 where absent or empty); >= 1 at every row."""
    if column not in table:
        return pd.Series(1, index=table.index, dtype=int)
    raw = table[column]
    num = _numbers(raw).where(raw.notna(), 1.0)
    bad = ~(np.isfinite(num) & (num >= 1) & (num == np.round(num)))
    if bad.any():
        raise ValueError(f"candidates: column '{column}' must be an integer >= 1 at "
                         f"{_rows(table.index[bad.to_numpy()])}")
    return num.astype(int)


def read_candidates(fit, candidates: Any) -> pd.DataFrame:
    """Validate the candidates: ``params``, ``tokens``, ``seeds``, ``checkpoints`` [, family].

    Returns the table with ``params`` and ``tokens`` as floats and ``seeds`` and
    ``checkpoints`` as integers (default 1), in the caller's row order and labels.

    Raises
    ------
    ValueError
        Naming the column and the rows (the caller's labels) of each problem.
    """
    table = _as_frame(candidates)
    if table.empty:
        raise ValueError("candidates: no candidate rows")
    if table.columns.duplicated().any():
        raise ValueError("candidates: column(s) "
                         f"{sorted(set(table.columns[table.columns.duplicated()]))} repeated")
    missing = [c for c in ("params", "tokens") if c not in table]
    if missing:
        raise ValueError(f"candidates: column(s) {missing} required (parameters and final "
                         "tokens of each candidate run)")
    for column in ("run", "total_tokens"):
        if column in table:
            raise ValueError(f"candidates: column '{column}' is not accepted: a candidate is "
                             "a new run, finished at its 'tokens'")
    if "metric" in table:
        other = table["metric"].notna() & (table["metric"].astype(str) != "loss")
        if other.any():
            raise ValueError("candidates: column 'metric' must be 'loss' at "
                             f"{_rows(table.index[other.to_numpy()])}")
        table = table.drop(columns="metric")
    for column in ("params", "tokens"):
        num = _numbers(table[column])
        bad = ~(np.isfinite(num) & (num > 0))
        if bad.any():
            raise ValueError(f"candidates: column '{column}' must be a finite number > 0 at "
                             f"{_rows(table.index[bad.to_numpy()])}")
        table[column] = num
    table["seeds"] = _counts(table, "seeds")
    table["checkpoints"] = _counts(table, "checkpoints")
    several = table["checkpoints"] > 1
    if several.any() and fit.model.part("checkpoints") is None:
        raise ValueError(
            "candidates: column 'checkpoints' > 1 at "
            f"{_rows(table.index[several.to_numpy()])}, but this fit's model "
            f"({fit.model.name!r}) fits final losses only (no 'checkpoints' part): use "
            "checkpoints=1, or a checkpoints model")
    if fit.model.part("family_pooling") is not None:
        families = resolve_families(table, fit.structure)
        unknown = ~families.isin(fit.families).to_numpy()
        if unknown.any():
            named = (table["family"].notna().to_numpy() if "family" in table
                     else np.zeros(len(table), dtype=bool))
            what = ("is not a fitted family" if np.all(named[unknown])
                    else "is missing or not a fitted family")
            raise ValueError(
                f"candidates: column 'family' {what} at {_rows(table.index[unknown])}: "
                f"the fit pools families {fit.families}, and what a run would teach about a "
                "family the fit has not seen is not represented by the fit's draws")
        table["family"] = families.to_numpy()
    elif "family" in table:  # an empty cell: the family a target without one gets
        default = resolve_families(table.drop(columns="family"), fit.structure)
        table["family"] = table["family"].where(table["family"].notna(), default)
    return table


def read_target(fit, target: Any) -> pd.DataFrame:
    """The target as one validated row (``metric`` dropped; a planned run if none named)."""
    goal = read_targets(target)
    if len(goal) != 1:
        raise ValueError(f"target must be one row (one target scale), got {len(goal)} rows")
    if "metric" in goal:
        metric = goal.pop("metric").iloc[0]
        metric = fit.metric if pd.isna(metric) else str(metric)
        if metric != "loss":
            raise ValueError(f"target: column 'metric' must be 'loss' at row 0, got "
                             f"{metric!r}: suggest_runs ranks runs by the loss band")
    if fit.metric != "loss":
        raise ValueError(f"suggest_runs needs a fit of the loss metric, got {fit.metric!r}")
    if "run" not in goal or goal["run"].isna().all():
        goal["run"] = f"{_RUN_PREFIX} target"
    return goal


def candidate_rows(fit, table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of one seed of every candidate: one per checkpoint, as one planned run.

    Returns the rows (prediction targets, see :func:`per_draw_normal`) and,
    per row, the position of its candidate in ``table`` (shape (rows,)).
    """
    pieces, owner = [], []
    extra = [c for c in table.columns if c not in ("params", "tokens", "seeds", "checkpoints")]
    for i, (_, candidate) in enumerate(table.iterrows()):
        k = int(candidate["checkpoints"])
        fractions = np.geomspace(FIRST_CHECKPOINT, 1.0, k) if k > 1 else np.ones(1)
        total = float(candidate["tokens"])
        piece = pd.DataFrame({"params": float(candidate["params"]), "tokens": fractions * total,
                              "total_tokens": total, "run": f"{_RUN_PREFIX} candidate {i}"})
        for column in extra:
            piece[column] = candidate[column]
        pieces.append(piece)
        owner += [i] * k
    return pd.concat(pieces, ignore_index=True), np.asarray(owner)


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one (for ``attrs``)."""
    return value.item() if isinstance(value, np.generic) else value


# ============================================================================ the maths
@functools.lru_cache(maxsize=8)
def _iqr_bias(copies: int) -> float:
    """E[(IQR / 1.349)^2] of ``copies`` standard normal draws (a fixed-seed simulation)."""
    x = np.random.default_rng(20_260_304).standard_normal((copies, 20_000))
    q = np.quantile(x, [0.25, 0.75], axis=0)
    return float((((q[1] - q[0]) / _IQR_NORMAL) ** 2).mean())


def per_draw_normal(fit, rows: pd.DataFrame, *, seed: int, copies: int, max_draws: int,
                    frozen: frozenset[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Location and variance of ln(loss) of a new observation at ``rows``, per draw.

    ``copies`` nested draws per posterior draw (thinned to at most ``max_draws`` as in
    :mod:`bayescale.uncertainty`), the sources in ``frozen`` held
    fixed within a draw; summarised robustly: the median, and the squared interquartile
    range over 1.349, scaled to be unbiased for normal draws.

    Returns
    -------
    (mu, s2)
        Arrays of shape (S, R), ln(nats) and its square.
    """
    posterior = thin(fit.idata.posterior, max_draws)
    n = posterior.sizes["draw"]
    mus, s2s = [], []
    for c, start in enumerate(range(0, n, _CHUNK)):
        chunk = SimpleNamespace(posterior=posterior.isel(draw=slice(start, start + _CHUNK)))
        m = chunk.posterior.sizes["draw"]
        rng = np.random.default_rng([seed, 20_260_303, c])
        values = predictive_values(chunk, fit.structure, rows, "observation", rng,
                                   copies=copies, frozen=frozen)
        ln = np.log(values).reshape(copies, m, -1)
        q25, q50, q75 = np.quantile(ln, [0.25, 0.5, 0.75], axis=0)
        mus.append(q50)
        s2s.append(((q75 - q25) / _IQR_NORMAL) ** 2 / _iqr_bias(copies))
    return np.concatenate(mus), np.maximum(np.concatenate(s2s), 1e-12)


def run_covariance(total: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Covariance of ln(loss) over one run's checkpoints per draw, shape (S, K, K).

    ``total`` (S, K): each checkpoint's variance; ``noise`` (S, K): its measurement noise
    (independent between checkpoints; ignored with one checkpoint).  The rest is shared:
    ``Sigma[k, l] = min(total_k - noise_k, total_l - noise_l)`` off the diagonal.
    """
    if total.shape[1] == 1:
        return total[:, :, None]
    noise = np.clip(noise, _MIN_NOISE_SHARE * total, total)
    shared = total - noise
    cov = np.minimum(shared[:, :, None], shared[:, None, :])
    k = np.arange(total.shape[1])
    cov[:, k, k] = total
    return cov


def simulate_results(mu: np.ndarray, cov: np.ndarray, seeds: int, picks: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Hypothetical ln(loss) of ``seeds`` runs, result o drawn at posterior draw ``picks[o]``.

    ``mu`` (S, K) and ``cov`` (S, K, K): one run's K checkpoints per draw (ln scale).
    Returns shape (O, seeds, K).
    """
    chol = np.linalg.cholesky(cov[picks])
    z = rng.standard_normal((len(picks), seeds, mu.shape[1]))
    return mu[picks][:, None, :] + np.einsum("okl,onl->onk", chol, z)


def log_likelihoods(y: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Gaussian log-likelihood of results ``y`` (O, n, K) under every draw, shape (O, S).

    The n runs independent, each ``Normal(mu[s], cov[s])`` over its K checkpoints (ln
    scale), up to a constant; through the sufficient statistics, the runs' mean and
    scatter matrix.
    """
    seeds = y.shape[1]
    chol = np.linalg.cholesky(cov)
    precision = np.linalg.inv(cov)
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)  # (S,)
    y_bar = y.mean(axis=1)  # (O, K)
    dev = y - y_bar[:, None, :]
    scatter = np.einsum("onk,onl->okl", dev, dev)  # (O, K, K)
    centred = y_bar[:, None, :] - mu[None]  # (O, S, K)
    between = np.einsum("osk,skl,osl->os", centred, precision, centred)
    within = np.einsum("okl,skl->os", scatter, precision)
    return -0.5 * (seeds * between + within + seeds * log_det[None])


def _variance(weights: np.ndarray, mean: np.ndarray, var: np.ndarray,
              mc: np.ndarray) -> np.ndarray:
    """The target's predictive variance under each row of ``weights`` (O, S), shape (O,).

    ``Var_w(mean) + E_w(var)`` (``mean``, ``var``, ``mc``: per draw, shape (S,)), the first
    term less the Monte Carlo variance ``mc`` of the estimated conditional means.
    """
    centre = weights @ mean
    spread = weights @ mean**2 - centre**2
    mc = (weights * (1 - weights)) @ mc
    return np.maximum(spread - mc, 0.0) + weights @ var


def _band_width(weights: np.ndarray, mu: np.ndarray, sd: np.ndarray,
                tail: float) -> np.ndarray:
    """Width of the central interval of the mixture ``sum_s w_s LogNormal(mu_s, sd_s^2)``.

    ``weights`` (O, S); ``tail`` the mass left out on each side; shape (O,), nats.
    """
    probs = np.array([tail, 1 - tail])
    lo = np.full((len(weights), 2), float((mu - 12 * sd).min()))
    hi = np.full((len(weights), 2), float((mu + 12 * sd).max()))
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        cdf = np.einsum("os,osq->oq", weights, ndtr((mid[:, None, :] - mu[None, :, None])
                                                    / sd[None, :, None]))
        below = cdf < probs
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    quantiles = np.exp((lo + hi) / 2)
    return quantiles[:, 1] - quantiles[:, 0]
