"""Rolling-origin backtests inside a ladder: which candidate law predicts held-out runs best.

:func:`backtest` refits every candidate model on part of a ladder and scores its
predictions of the rows held out, fold by fold:

``holdout="largest"`` (final-loss ladders)
    Fold ``k`` (``k = 0 .. folds-1``) holds out the runs of the ``(k+1)``-th largest model
    size (``params``) and fits on the runs of the sizes strictly smaller (a rolling origin:
    fold 0 fits everything below the largest size, fold 1 everything below the second
    largest, ...).  Of each held-out run only its final row (largest ``tokens``) is scored:
    a ladder's target is a run's final loss.  Sizes within :data:`SIZE_RTOL` of each other
    count as one (published ladders give a size with rounding noise), and a fold takes in
    the next sizes down until it holds at least :data:`MIN_HELD_OUT` of the ladder's runs:
    on a ladder of many sizes with a run or two each, one held-out run would say little
    about how wrong a law gets beyond the ladder.
``holdout="late"`` (checkpoint ladders)
    Fold ``k`` observes every run up to the fraction ``0.5 ** (k+1)`` of its total tokens
    (50%, 25%, 12.5%, ...) and predicts each run's final row as the continuation of that
    same run (the targets name the ``run`` and its ``total_tokens``).

Scores of each held-out row (observed value ``y``, nats for loss):

``log_score``
    The log predictive density of ``y`` (the primary score; higher is better), in
    ln(nats^-1).  Per posterior draw ``s`` the distribution of ln(y) of a new observation is
    taken as ``Normal(mu_s, s_s^2)``, from ``copies`` nested draws of a new observation
    under that draw (a new seed's offset, drift, family, noise: whatever the model draws),
    summarised robustly as :func:`bayescale.advisor.per_draw_normal` does (median, and
    interquartile range over 1.349); then
    ``log_score = log mean_s Normal(ln y; mu_s, s_s) - ln y`` (the ``- ln y``: the
    Jacobian from ln(y) to y).  Approximations: a Student-t likelihood's heavy tails are
    replaced by the normal that matches their bulk (so an outlying ``y`` is penalised more
    than under the model's own tails, for every candidate alike), and the ``copies``
    Monte Carlo draws add a little spread to ``mu_s`` (about ``1.25 s_s / sqrt(copies)``).
``rel_error``
    ``(median - y) / y`` of :meth:`~bayescale.ScalingFit.predict`'s observation draws.
``covered_<p>``, ``width_<p>``
    Whether ``y`` lies in the ``hdi_prob`` band ``p`` (in percent, e.g. ``covered_90``),
    and the band's width over ``y``.
``extrapolation``
    The row's compute ``params x tokens`` over the largest of the training rows.
``converged``
    Whether the fit passed its convergence checks (:meth:`~bayescale.ScalingFit.diagnostics`).

Example
-------
>>> import bayescale
>>> from bayescale import backtest
>>> runs, _ = bayescale.simulate_ladder(seed=0)
>>> result = backtest(runs, ["chinchilla", "compute"], folds=2, draws=200, tune=200,
...                   chains=2)  # doctest: +SKIP
>>> result.scores  # doctest: +SKIP
>>> result.best  # doctest: +SKIP
'chinchilla'
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from .advisor import per_draw_normal
from .fitting import fit as fit_model
from .model import Model, load_model
from .runs import read_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .result import ScalingFit

HOLDOUTS = ("largest", "late")
#: Model sizes closer than this relative difference are one size in ``holdout="largest"``.
SIZE_RTOL = 0.01
#: Least fraction of a ladder's runs that one ``holdout="largest"`` fold holds out.
MIN_HELD_OUT = 0.1
#: Identity columns of :attr:`Backtest.rows`, before the scores.
ID_COLUMNS = ("model", "fold", "run", "family", "params", "tokens", "total_tokens", "value")


#: Settings of :func:`bayescale.fit` that a backtest passes on to every fit.
SAMPLER_SETTINGS = ("sampler", "target_accept", "cores", "mass_matrix", "low_rank_cutoff",
                    "precision")


def late_cut(fold: int) -> float:
    """Fraction of its total tokens up to which every run is observed in fold ``fold``.

    ``0.5 ** (fold + 1)``: 50%, 25%, 12.5%, ...
    """
    return 0.5 ** (fold + 1)


def _percent(p: float) -> str:
    """``0.9`` -> ``"90"`` (column suffix of an hdi_prob)."""
    return f"{100 * p:g}".replace(".", "_")


# ============================================================================ folds
@dataclass(frozen=True)
class Fold:
    """One split of a ladder: the rows fitted and the rows scored.

    ``train`` is a runs table (every metric of the training runs, up to the cut);
    ``held_out`` the scored rows of the scored metric, one per held-out run; ``label``
    says what was held out (e.g. ``"params=4.8e+08"`` or ``"runs cut at 50%"``).
    """

    index: int
    label: str
    train: pd.DataFrame
    held_out: pd.DataFrame


def make_folds(runs: pd.DataFrame | str, holdout: str = "largest", folds: int = 1, *,
               metric: str = "loss") -> list[Fold]:
    """The rolling-origin folds of ``runs`` (see the module docstring).

    Parameters
    ----------
    runs
        Runs table (DataFrame or CSV path), see :func:`bayescale.read_runs`.
    holdout
        ``"largest"`` or ``"late"``.
    folds
        Number of folds (>= 1).
    metric
        The metric whose rows are scored.

    Returns
    -------
    list of Fold

    Raises
    ------
    ValueError
        For an unknown ``holdout``, ``folds < 1``, or a fold that would leave fewer than two
        model sizes to fit.
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout={holdout!r} is not one of {HOLDOUTS}")
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 1:
        raise ValueError(f"folds must be an integer >= 1, got {folds!r}")
    table = read_runs(runs)
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics present: "
                         f"{sorted(table['metric'].unique())}")
    finals = _finals(rows)
    out = []
    if holdout == "largest":
        level, groups, left = _largest_plan(table, rows, finals)
        usable = sum(n >= 2 for n in left)
        if folds > usable:
            raise ValueError(
                f"holdout='largest' with folds={folds} leaves "
                f"{left[folds - 1] if folds <= len(left) else 0} model size(s) to fit in the "
                f"last fold (the ladder has {len(np.unique(level[rows.index]))} sizes); a fit "
                f"needs at least 2: use at most {usable} fold(s)")
        for k, group in enumerate(groups[:folds]):
            smallest = min(group)
            train = table[level < smallest].reset_index(drop=True)
            held = finals[level[finals.index].isin(group)]
            label = (f"params={smallest:.3g}" if len(group) == 1 else
                     f"params>={smallest:.3g} ({len(group)} sizes)")
            out.append(Fold(k, label, train, _sorted(held)))
        return out
    for k in range(folds):
        cut = late_cut(k)
        train = table[table["tokens"] <= cut * table["total_tokens"] * (1 + 1e-9)]
        fitted = train[train["metric"] == metric]
        n_sizes = fitted["params"].nunique()
        if n_sizes < 2:
            raise ValueError(
                f"holdout='late' fold {k} observes each run up to {cut:.3g} of its tokens, which "
                f"leaves {n_sizes} model size(s) with rows to fit; a fit needs at least 2: use "
                "fewer folds")
        # a run's final row is scored when the fold observes part of the run, before its end
        seen = fitted.groupby("run")["tokens"].max()
        held = finals[finals["run"].isin(seen.index)]
        held = held[held["tokens"].to_numpy() > seen[held["run"]].to_numpy()]
        out.append(Fold(k, f"runs cut at {cut:.3g}", train.reset_index(drop=True), _sorted(held)))
    return out


def _finals(rows: pd.DataFrame) -> pd.DataFrame:
    """Each run's last row (largest ``tokens``) of one metric's ``rows``."""
    return rows.loc[rows.groupby("run")["tokens"].idxmax()]


def largest_fold_count(runs: pd.DataFrame, metric: str = "loss") -> int:
    """How many ``holdout="largest"`` folds ``runs`` (a validated runs table) allows.

    Each fold must leave at least two model sizes to fit; 0 when even the first cannot.
    """
    rows = runs[runs["metric"] == metric]
    if rows.empty:
        return 0
    finals = _finals(rows)
    return sum(n >= 2 for n in _largest_plan(runs, rows, finals)[2])


def _largest_plan(table: pd.DataFrame, rows: pd.DataFrame, finals: pd.DataFrame
                  ) -> tuple[pd.Series, list[list[float]], list[int]]:
    """The plan of ``holdout="largest"``: (level, groups, left).

    ``level``: each row's :func:`size_levels`; ``groups``: the held-out levels of each fold
    (:func:`size_groups`); ``left``: how many fitted levels each fold leaves below them.
    """
    level = pd.Series(size_levels(table["params"]), index=table.index)
    groups = size_groups(level[finals.index].to_numpy(), len(finals))
    fitted_levels = np.unique(level[rows.index])
    return level, groups, [int((fitted_levels < min(group)).sum()) for group in groups]


def size_levels(params) -> np.ndarray:
    """Each model size mapped to its level: near-equal sizes share one.

    Sorted sizes closer than ``SIZE_RTOL`` (relative) to their neighbour form a chain, whose
    level is its largest size: ``[1e9, 1.000001e9, 2e9]`` -> ``[1.000001e9, 1.000001e9, 2e9]``.
    """
    params = np.asarray(params, dtype=float)
    unique = np.unique(params)
    level = unique.copy()
    for i in range(len(unique) - 2, -1, -1):
        if unique[i + 1] - unique[i] <= SIZE_RTOL * unique[i + 1]:
            level[i] = level[i + 1]
    return level[np.searchsorted(unique, params)]


def size_groups(levels: np.ndarray, n_runs: int) -> list[list[float]]:
    """The held-out size levels of each rolling-origin fold, largest first.

    ``levels`` has one entry per run (its :func:`size_levels`).  Each group is the next
    levels down until it holds at least ``MIN_HELD_OUT x n_runs`` runs; the sizes below the
    last full group are left over (they are never held out).
    """
    need = max(1, int(np.ceil(MIN_HELD_OUT * n_runs)))
    groups: list[list[float]] = []
    current: list[float] = []
    count = 0
    for level in np.unique(levels)[::-1]:
        current.append(float(level))
        count += int((levels == level).sum())
        if count >= need:
            groups.append(current)
            current, count = [], 0
    return groups


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["family", "run"], kind="stable").reset_index(drop=True)


# ============================================================================ candidates
def _candidates(models) -> list[tuple[str, Model]]:
    """``(label, Model)`` of each candidate: the preset's name, ``str`` of a path, the name."""
    if isinstance(models, (str, os.PathLike, Model)):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("backtest needs at least one candidate model")
    out = []
    for m in models:
        label = m.name if isinstance(m, Model) else str(m)
        out.append((label, load_model(m)))
    labels = [label for label, _ in out]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"candidate models need unique labels; {repeated} appear more than "
                         "once (give Model objects distinct names)")
    return out


# ============================================================================ scores
def log_scores(fit: ScalingFit, targets: pd.DataFrame, values: np.ndarray, *, seed: int = 0,
               copies: int = 32, max_draws: int = 1000) -> np.ndarray:
    """Log predictive density of observed ``values`` at ``targets`` (see the module docstring).

    Parameters
    ----------
    fit
        A fitted model.
    targets
        Prediction targets (``params``, ``tokens``, options), T rows.
    values
        Observed values, shape (T,), nats (> 0).
    seed, copies, max_draws
        Seed of the nested draws, nested draws per posterior draw, posterior draws used.

    Returns
    -------
    numpy.ndarray
        Shape (T,): ``log mean_s Normal(ln y; mu_s, s_s) - ln y``, in ln(nats^-1).
    """
    y = np.asarray(values, dtype=float)
    mu, s2 = per_draw_normal(fit, targets.reset_index(drop=True), seed=seed, copies=copies,
                             max_draws=max_draws)  # (S, T)
    ln_y = np.log(y)[None, :]
    log_pdf = -0.5 * ((ln_y - mu) ** 2 / s2 + np.log(2 * np.pi * s2))
    return logsumexp(log_pdf, axis=0) - np.log(mu.shape[0]) - np.log(y)


def _targets(held: pd.DataFrame, holdout: str, metric: str | None = None) -> pd.DataFrame:
    """Prediction targets of the held-out rows (with a ``metric`` column when one is given)."""
    columns = ["params", "tokens", "total_tokens", "family"]
    if holdout == "late":
        columns.append("run")
    targets = held[columns].reset_index(drop=True)
    if metric is not None:
        targets["metric"] = metric
    return targets


def _labelled(scored: pd.DataFrame, label: str, fold: Fold) -> pd.DataFrame:
    scored.insert(0, "fold", fold.index)
    scored.insert(0, "model", label)
    return scored


def _fan_out(splits: list[Fold], candidates: list[tuple[str, Model]], settings: dict,
             scoring: dict, client, progressbar: bool) -> list[pd.DataFrame]:
    """Every (fold, candidate) fit as one :func:`bayescale.fit_many` job on ``client``.

    Each job fits and scores on its worker (only the scored rows travel back); a failed job
    raises, naming it, since a backtest with a missing candidate or fold compares nothing.
    """
    from .fanout import FitJob, fit_many

    jobs, keys = [], {}
    for fold in splits:
        for label, model in candidates:
            key = f"fold{fold.index}:{label}"
            keys[key] = (label, fold)
            jobs.append(FitJob(fold.train, model, dict(settings), label=key,
                               then=partial(_score_fold, fold=fold, **scoring)))
    out = fit_many(jobs, client, returns="result", progressbar=progressbar)
    out.raise_on_failure("backtest")
    return [_labelled(out.results[key], *keys[key]) for key in keys]


def _score_fold(fit: ScalingFit, fold: Fold, holdout: str, hdi_probs: tuple[float, ...], *,
                seed: int, copies: int, max_draws: int, metric: str | None = None) -> pd.DataFrame:
    held = fold.held_out
    targets = _targets(held, holdout, metric)
    y = held["value"].to_numpy(dtype=float)
    out = held[[c for c in ID_COLUMNS if c in held and c != "model"]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bands = {p: fit.predict(targets, hdi_prob=p, kind="observation") for p in hdi_probs}
        scores = log_scores(fit, targets, y, seed=seed, copies=copies, max_draws=max_draws)
    first = bands[hdi_probs[0]]
    out["median"] = first["median"].to_numpy()
    for p, band in bands.items():
        out[f"lower_{_percent(p)}"] = band["lower"].to_numpy()
        out[f"upper_{_percent(p)}"] = band["upper"].to_numpy()
    out["log_score"] = scores
    out["rel_error"] = (out["median"] - y) / y
    for p in hdi_probs:
        lo, hi = out[f"lower_{_percent(p)}"], out[f"upper_{_percent(p)}"]
        out[f"covered_{_percent(p)}"] = (lo <= y) & (y <= hi)
        out[f"width_{_percent(p)}"] = (hi - lo) / y
    train = fit.runs
    ladder = float((train["params"] * train["tokens"]).max())
    out["extrapolation"] = held["params"].to_numpy() * held["tokens"].to_numpy() / ladder
    out["converged"] = bool(fit.diagnostics().passed)
    return out


# ============================================================================ result
@dataclass
class Backtest:
    """What :func:`backtest` found: one row per model x fold x held-out row, and a summary.

    Attributes
    ----------
    rows
        Tidy table: ``model``, ``fold``, ``run``, ``family``, ``params``, ``tokens``,
        ``total_tokens``, ``value`` (observed, nats), ``median``, ``lower_<p>`` /
        ``upper_<p>`` per hdi_prob (nats), ``log_score`` (ln nats^-1), ``rel_error``,
        ``covered_<p>``, ``width_<p>`` (relative to the value), ``extrapolation``
        (compute over the fold's largest training compute) and ``converged``.
    scores
        One row per model, best mean log score first: ``model``, ``mean_log_score``,
        ``median_abs_rel_error``, ``coverage_<p>``, ``median_width_<p>``,
        ``median_width_ratio`` (the widest band's width over the absolute error, per row;
        about 3.3 for a calibrated normal 90% band), ``n`` (rows scored), ``folds`` and
        ``all_converged``.
    holdout, hdi_probs, folds
        How the backtest was run; ``folds`` lists what each fold held out
        (:class:`Fold`, with its training table).
    """

    rows: pd.DataFrame
    scores: pd.DataFrame
    holdout: str
    hdi_probs: tuple[float, ...]
    folds: list[Fold]

    @property
    def best(self) -> str:
        """Label of the model with the highest mean log score."""
        return str(self.scores["model"].iloc[0])

    def plot(self) -> Figure:
        """Predicted median and widest band against the observed value, per model; log scores.

        One panel per model: the relative error ``(prediction - y) / y`` of each held-out row
        against its extrapolation factor (median as a point, the widest band as an error
        bar, folds in colours; zero is the truth), and a last panel with each model's mean
        log score.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        models = list(self.scores["model"])
        p = max(self.hdi_probs)
        lo_col, hi_col = f"lower_{_percent(p)}", f"upper_{_percent(p)}"
        fig, axes = plt.subplots(1, len(models) + 1, figsize=(3.6 * (len(models) + 1), 3.4),
                                 squeeze=False)
        colours = plt.get_cmap("tab10")
        for ax, model in zip(axes[0], models, strict=False):
            sub = self.rows[self.rows["model"] == model]
            for j, (fold, part) in enumerate(sub.groupby("fold")):
                y = part["value"].to_numpy()
                centre = (part["median"].to_numpy() - y) / y
                lower = (part[lo_col].to_numpy() - y) / y
                upper = (part[hi_col].to_numpy() - y) / y
                x = part["extrapolation"].to_numpy() * (1 + 0.04 * j)  # folds side by side
                ax.errorbar(x, centre, yerr=[centre - lower, upper - centre], fmt="o", ms=3,
                            capsize=2, color=colours(j % 10), label=f"fold {fold}")
            ax.axhline(0.0, color="black", lw=0.8)
            _log_axis(ax, sub["extrapolation"].to_numpy())
            ax.set_title(model, fontsize=9)
            ax.set_xlabel("compute / largest fitted")
            ax.set_ylabel(f"(prediction - truth) / truth, {p:.0%} band")
            ax.legend(fontsize=7)
        ax = axes[0][-1]
        ax.barh(models[::-1], self.scores["mean_log_score"].to_numpy()[::-1], color="grey")
        ax.set_xlabel("mean log score (higher is better)")
        ax.set_title("log predictive density", fontsize=9)
        fig.tight_layout()
        return fig


def _log_axis(ax, x: np.ndarray) -> None:
    """A log x axis labelled in plain numbers (minor ticks too, within one decade)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    span = float(np.max(x) / np.min(x)) if len(x) else 1.0
    ax.xaxis.set_minor_formatter(plain if span < 10 else NullFormatter())


def summarise(rows: pd.DataFrame, hdi_probs: tuple[float, ...]) -> pd.DataFrame:
    """Per-model summary of :attr:`Backtest.rows` (see :class:`Backtest`), best first."""
    widest = _percent(max(hdi_probs))
    out = []
    for model, sub in rows.groupby("model", sort=False):
        err = sub["rel_error"].abs()
        ratio = sub[f"width_{widest}"] / err.where(err > 0)
        entry: dict[str, Any] = {
            "model": model,
            "mean_log_score": float(sub["log_score"].mean()),
            "median_abs_rel_error": float(err.median()),
        }
        for p in hdi_probs:
            entry[f"coverage_{_percent(p)}"] = float(sub[f"covered_{_percent(p)}"].mean())
        for p in hdi_probs:
            entry[f"median_width_{_percent(p)}"] = float(sub[f"width_{_percent(p)}"].median())
        entry["median_width_ratio"] = float(ratio.median())
        entry["n"] = len(sub)
        entry["folds"] = int(sub["fold"].nunique())
        entry["all_converged"] = bool(sub["converged"].all())
        out.append(entry)
    return (pd.DataFrame(out).sort_values("mean_log_score", ascending=False, kind="stable")
            .reset_index(drop=True))


# ============================================================================ backtest
def backtest(
    runs: pd.DataFrame | str,
    models,
    *,
    holdout: str = "largest",
    folds: int = 1,
    hdi_probs: tuple[float, ...] = (0.5, 0.9),
    metric: str = "loss",
    scored: str | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    random_seed: int = 0,
    progressbar: bool = True,
    copies: int = 32,
    max_draws: int = 1000,
    client=None,
    **sampler_settings: Any,
) -> Backtest:
    """Rolling-origin backtest of candidate models inside a ladder.

    For every fold (see :func:`make_folds` and the module docstring) and candidate, fit the
    candidate to the fold's training rows (:func:`bayescale.fit` with ``retry=False``,
    warnings silenced), predict the held-out rows and score them.

    Parameters
    ----------
    runs
        Runs table (DataFrame or CSV path), see :func:`bayescale.read_runs`.
    models
        Candidates: preset names (``"chinchilla"``, ``"kaplan"``, ``"compute"`` ...), paths
        to model TOML files, or :class:`~bayescale.model.Model` objects.  Labelled by the
        preset name, ``str(path)``, or ``Model.name``; labels must be unique.
    holdout
        ``"largest"`` (default): fold k holds out the (k+1)-th largest model size and fits
        the smaller ones.  ``"late"``: fold k observes each run up to ``0.5 ** (k+1)`` of its
        tokens and predicts its final row (for models with a checkpoints part).
    folds
        Number of folds (>= 1).
    hdi_probs
        Probability masses of the bands scored (default 0.5 and 0.9: ``covered_50``,
        ``covered_90``, ``width_50``, ``width_90``).
    metric
        The metric the law describes (default ``"loss"``), passed to :func:`bayescale.fit`.
    scored
        The metric whose held-out rows are scored (default: ``metric``).  An accuracy
        (``"acc:<task>"`` or ``"acc:avg"``) scores a downstream model's forecasts of it; the
        folds then hold out the largest sizes (or late rows) of that metric's runs, and the
        log score reads the accuracy's predictive draws as normal in ln(accuracy).
    draws, tune, chains
        Sampler settings of every fit (default: the model's).
    random_seed
        Seed of every fit's sampler and of the nested draws of the log score.
    progressbar
        Print one line per fit (the sampler's own bar stays off).
    copies, max_draws
        Nested draws per posterior draw, and posterior draws used, for the log score.
    sampler_settings
        Other settings of every fit, as :func:`bayescale.fit` takes them: ``sampler``,
        ``target_accept``, ``cores``, ``mass_matrix``, ``low_rank_cutoff``, ``precision``
        (default: the sampler's and each model's own).
    client
        A ``dask.distributed.Client``: every (fold, candidate) fit runs as one job of
        :func:`bayescale.fit_many` on its cluster, scored on the worker.  ``None``
        (default): the fits run one after another in this process.

    Returns
    -------
    Backtest
        ``.rows`` (model x fold x held-out row), ``.scores`` (per model, best first),
        ``.best`` and ``.plot()``.

    Raises
    ------
    ValueError
        No candidates, duplicate labels, an unknown ``holdout``, bad ``hdi_probs`` or
        ``copies``, or folds that leave fewer than two model sizes to fit.

    Examples
    --------
    >>> import bayescale
    >>> from bayescale import backtest
    >>> runs, _ = bayescale.simulate_ladder(seed=0)
    >>> result = backtest(runs, ["chinchilla", "compute"], folds=2, draws=200, tune=200,
    ...                   chains=2, progressbar=False)  # doctest: +SKIP
    >>> result.scores[["model", "mean_log_score", "coverage_90"]]  # doctest: +SKIP
    """
    candidates = _candidates(models)
    hdi_probs = tuple(float(p) for p in np.atleast_1d(hdi_probs))
    if not hdi_probs or not all(0 < p < 1 for p in hdi_probs):
        raise ValueError(f"hdi_probs must be probabilities in (0, 1), got {hdi_probs}")
    if len(set(hdi_probs)) != len(hdi_probs):
        raise ValueError(f"hdi_probs repeat a value: {hdi_probs}")
    if copies < 4:
        raise ValueError(f"copies must be >= 4 (nested draws per posterior draw), got {copies}")
    unknown = sorted(set(sampler_settings) - set(SAMPLER_SETTINGS))
    if unknown:
        raise TypeError(f"backtest() got unexpected keyword argument(s) {unknown}; the fits' "
                        f"sampler settings are {list(SAMPLER_SETTINGS)}")
    scored = scored or metric
    splits = make_folds(runs, holdout, folds, metric=scored)
    settings: dict[str, Any] = dict(metric=metric, random_seed=random_seed, retry=False,
                                    draws=draws, tune=tune, chains=chains, **sampler_settings)
    scoring: dict[str, Any] = dict(holdout=holdout, hdi_probs=hdi_probs, seed=random_seed,
                                   copies=copies, max_draws=max_draws,
                                   metric=None if scored == metric else scored)
    if client is not None:
        tables = _fan_out(splits, candidates, settings, scoring, client, progressbar)
    else:
        tables = []
        for fold in splits:
            for label, model in candidates:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fitted = fit_model(fold.train, model, progressbar=False, **settings)
                table = _labelled(_score_fold(fitted, fold, **scoring), label, fold)
                tables.append(table)
                if progressbar:
                    print(f"backtest fold {fold.index} ({fold.label}; {len(fitted.runs)} rows "
                          f"fitted, {len(fold.held_out)} held out) {label}: mean log score "
                          f"{table['log_score'].mean():.3f}, "
                          f"{'converged' if table['converged'].all() else 'NOT converged'}, "
                          f"{time.perf_counter() - start:.1f} s", flush=True)
    rows = pd.concat(tables, ignore_index=True)
    return Backtest(rows=rows, scores=summarise(rows, hdi_probs), holdout=holdout,
                    hdi_probs=hdi_probs, folds=splits)
