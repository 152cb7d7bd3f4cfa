"""Model options and the numeric design of a fit: which rows, and the arrays the model sees.

Everything here is numpy, computed once before the PyMC model is built (the arrays enter
as ``pm.Data``) and again, identically, at prediction time.

Structure of one fit
--------------------
- ``pooling``: ``"none"`` (one law for every family) or ``"family"`` (each family's E, a,
  b, alpha, beta partially pooled toward a population, non-centred, on the log scale).
- ``family_prior``: with ``pooling="family"``, the prior of the families' deviations from
  the population: normal with a half-normal spread (``"half_normal"``, the spec's
  ``family_sd``) or ``"student_t"``
  (``s^2 ~ InverseGamma``, the spec's ``family_var``, integrated out: the families'
  deviations are multivariate Student-t, with no spread to sample and no funnel; see
  :func:`bayescale.model.pooled_parameter`).
- ``checkpoints``: ``"final"`` (each run's last checkpoint) or ``"all"`` (every checkpoint
  past ``min_fraction`` of its run).
- ``schedule``: ``"none"``; ``"table"`` (the runs table's ``schedule`` columns: the law sees
  effective tokens and an annealing term, see :mod:`bayescale.schedules`); or
  ``"learned"`` (no schedule known: a learned discrepancy ``c (1 - f)`` in the fraction f of
  the run completed).
- ``anneal``: how the un-annealed part ``u`` of a checkpoint's schedule enters the law:
  ``"loss"`` adds ``c u`` nats (Tissue et al. 2024); ``"tokens"`` treats it as a shortfall
  of effective tokens, ``D_eff e^{-c_tokens u}``, so the deficit is as large as the law's
  sensitivity to data at that size (small models whose data term has saturated owe little
  to the decay still ahead).
- ``residuals``: ``"iid"`` or ``"ar1"`` (Ornstein-Uhlenbeck in ln tokens within a run, so
  30 checkpoints of one run are not 30 independent facts).
- ``run_effect``: a per-run offset on ln(loss) with a learned scale ``sigma_run`` (the
  spread between seeds).
- ``noise``: ``"constant"`` (one residual scale ``sigma``) or ``"size"`` (scale
  ``sigma n^-kappa``: small models' evaluations fluctuate more between checkpoints and
  seeds than large ones', so they should not pull the law as hard).
- ``run_slope``: besides its offset, each run gets its own slope in ln tokens,
  ``sigma_slope z ln(D / D_total)`` (zero at the run's end; scaled by ``n^-kappa`` with
  ``noise="size"``). Curves that drift away from the law (a small model whose evaluation
  loss rises late) are absorbed by their run instead of bending the law, and a truncated
  run's prediction at its end widens with the stretch of ln tokens still ahead.
- ``drift``: ``"none"`` or ``"walk"``: each run's deviation from the law also wanders as
  a Brownian motion in ln tokens, ``w(D') = w(D) + sigma_drift sqrt(ln D'/D) z`` (scaled
  by ``n^-kappa`` with ``noise="size"``), starting from zero at the run's first fitted
  checkpoint (its level there is the run offset).  ``drift_clock="fraction"`` runs the walk
  on the fraction of the run instead, ``w(f') = w(f) + sigma_drift sqrt(f' - f) z``: its
  variance accrues per token trained, so most of it lies late in a run, where evaluation
  losses are seen to wander (small models' late rises), rather than in the first few
  percent, which span as many units of ln tokens as the whole second half (prior
  ``sigma_drift_fraction``).  Unlike the stationary AR(1) term it does
  not revert: a run that has drifted away from the law (a small model whose evaluation
  loss flattens or rises) stays there, its prediction further along starts from where it
  is, and the band grows with the ln tokens still ahead.  A new run's band includes the
  drift it would accumulate from ``min_fraction`` of its length (where the earliest fitted
  checkpoints are) to the target.  With ``downstream`` the tasks of a checkpoint see its
  run's walk too (that of the run's latest loss checkpoint at or before it).
- ``downstream``: ``"none"``, or a link (``"sigmoid"``, ``"exp"``, ``"gompertz"``) from each checkpoint's
  latent loss to every ``acc:<task>`` metric, fitted jointly (see
  :mod:`bayescale.downstream`).
- ``link_scale``: the scale the task links are linear in: ``"loss"`` (nats) or
  ``"log_reducible"`` (``ln(L - E)``, see :func:`bayescale.downstream.to_link_scale`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .downstream import LINK_SCALES
from .runs import Scale
from .schedules import Schedule, schedules_of

POOLING = ("none", "family")
CHECKPOINTS = ("final", "all")
RESIDUALS = ("iid", "ar1")
SCHEDULE = ("none", "table", "learned")
DOWNSTREAM = ("none", "sigmoid", "exp", "gompertz")
NOISE = ("constant", "size")
ANNEAL = ("loss", "tokens")
DRIFT = ("none", "walk")
DRIFT_CLOCKS = ("ln_tokens", "fraction")
FAMILY_PRIORS = ("half_normal", "student_t")


@dataclass(frozen=True)
class ModelOptions:
    """The structure of a fit (see the module docstring)."""

    pooling: str = "none"
    checkpoints: str = "final"
    residuals: str = "iid"
    run_effect: bool = False
    schedule: str = "none"
    min_fraction: float = 0.05
    downstream: str = "none"
    noise: str = "constant"
    anneal: str = "loss"
    run_slope: bool = False
    drift: str = "none"
    link_scale: str = "loss"
    drift_clock: str = "ln_tokens"
    family_prior: str = "half_normal"

    def __post_init__(self):
        for name, allowed in (("pooling", POOLING), ("checkpoints", CHECKPOINTS),
                              ("residuals", RESIDUALS), ("schedule", SCHEDULE),
                              ("downstream", DOWNSTREAM), ("noise", NOISE),
                              ("anneal", ANNEAL), ("drift", DRIFT), ("link_scale", LINK_SCALES),
                              ("drift_clock", DRIFT_CLOCKS), ("family_prior", FAMILY_PRIORS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.run_slope and not (self.run_effect and self.checkpoints == "all"):
            raise ValueError("run_slope=True needs run_effect=True and checkpoints='all' (a slope within each run)")
        if not 0 <= self.min_fraction < 1:
            raise ValueError(f"min_fraction must lie in [0, 1), got {self.min_fraction}")
        if self.link_scale != "loss" and self.downstream == "none":
            raise ValueError(f"link_scale={self.link_scale!r} needs a downstream link ('sigmoid', 'exp' or 'gompertz')")
        if self.drift_clock != "ln_tokens" and self.drift == "none":
            raise ValueError(f"drift_clock={self.drift_clock!r} needs drift='walk' (it is the clock of the walk)")
        if self.family_prior != "half_normal" and self.pooling != "family":
            raise ValueError(f"family_prior={self.family_prior!r} needs pooling='family' (it is the prior of the "
                             "families' deviations)")
        if self.drift != "none":
            if self.checkpoints != "all":
                raise ValueError("drift='walk' needs checkpoints='all' (a walk along each run's checkpoints)")
            if self.min_fraction <= 0:
                raise ValueError("drift='walk' needs min_fraction > 0: a new run's drift is counted from that fraction "
                                 "of its length")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_options(
    runs: pd.DataFrame,
    *,
    pooling: str | None = None,
    checkpoints: str = "final",
    residuals: str | None = None,
    run_effect: bool | None = None,
    schedule: str | None = None,
    min_fraction: float = 0.05,
    downstream: str | None = None,
    noise: str = "constant",
    anneal: str = "loss",
    run_slope: bool = False,
    drift: str = "none",
    link_scale: str = "loss",
    drift_clock: str = "ln_tokens",
    family_prior: str = "half_normal",
) -> ModelOptions:
    """Fill ``None`` options with defaults suited to the table.

    Defaults: pooling ``"family"`` when there are several families, else ``"none"``;
    with ``checkpoints="all"``: ``residuals="ar1"``, ``run_effect=True`` and ``schedule``
    ``"table"`` when the table has a ``schedule`` column, else ``"learned"``; with
    ``checkpoints="final"``: iid residuals, a run effect only when some configuration has
    several seeds, and no schedule term.
    """
    many_families = runs["family"].nunique() > 1
    if pooling is None:
        pooling = "family" if many_families else "none"
    if checkpoints == "all":
        residuals = residuals or "ar1"
        run_effect = True if run_effect is None else run_effect
        schedule = schedule or ("table" if "schedule" in runs else "learned")
    else:
        residuals = residuals or "iid"
        if run_effect is None:
            config = runs.groupby(["family", "params", "total_tokens"])["run"].nunique()
            run_effect = bool((config > 1).any())
        schedule = schedule or "none"
    if schedule == "table" and "schedule" not in runs:
        raise ValueError("schedule='table' needs a 'schedule' column in the runs table (e.g. 'cosine')")
    return ModelOptions(pooling, checkpoints, residuals, bool(run_effect), schedule, min_fraction,
                        downstream or "none", noise, anneal, run_slope, drift, link_scale, drift_clock,
                        family_prior)


def anneal_parameter(options: ModelOptions) -> str | None:
    """Name of the schedule term's parameter: ``"c"`` (nats), ``"c_tokens"`` (ln tokens) or None."""
    if options.schedule == "none":
        return None
    return "c" if options.anneal == "loss" else "c_tokens"


def scheduled_law(law, theta: dict, n, d, u, c, options: ModelOptions, exp):
    """The law at a checkpoint with the schedule term (see ``anneal``); ``exp`` is
    ``numpy.exp`` or ``pytensor.tensor.exp``; ``c`` None means no schedule term."""
    if c is None:
        return law.mean(theta, n, d)
    if options.anneal == "tokens":
        return law.mean(theta, n, d * exp(-c * u))
    return law.mean(theta, n, d) + c * u


def select_rows(runs: pd.DataFrame, options: ModelOptions) -> tuple[pd.DataFrame, dict]:  # noqa: D417
    """Rows the model fits: early checkpoints dropped, or only final ones kept.

    Returns the rows (index reset, sorted by family, run, tokens) and a report of what was
    dropped.
    """
    fraction = runs["tokens"] / runs["total_tokens"]
    if options.checkpoints == "final":
        last = runs["tokens"] == runs.groupby("run")["tokens"].transform("max")
        keep = last
        reason = "not the run's last checkpoint"
    else:
        keep = fraction >= options.min_fraction
        reason = f"before {options.min_fraction:.0%} of the run (min_fraction)"
    rows = runs[keep].sort_values(["family", "run", "tokens"], kind="stable").reset_index(drop=True)
    return rows, {"dropped_rows": int((~keep).sum()), "reason": reason}


def default_schedule(runs: pd.DataFrame) -> Schedule | None:
    """The most common schedule among the runs (used for targets that give none)."""
    per_row = schedules_of(runs)
    if not per_row:
        return None
    return pd.Series(per_row).value_counts().index[0]


def design(
    rows: pd.DataFrame,
    options: ModelOptions,
    scale: Scale,
    families: list[str],
    runs: list[str] | None = None,
    schedule: Schedule | None = None,
) -> dict[str, np.ndarray]:
    """Arrays for the model or for prediction, one entry per row.

    Returns
    -------
    dict
        ``n`` (N/N0), ``d`` (effective tokens / D0), ``u`` (un-annealed part of the run,
        0 at its end), ``family`` (index into ``families``, -1 for an unseen family),
        ``run`` (index into ``runs``, -1 for none), ``prev`` (index of the previous row of
        the same run, -1 for the first), ``gap`` (ln tokens since that row),
        ``ln_fraction`` (ln of tokens / total tokens, 0 at the run's end), and for
        ``drift="walk"`` ``walk_gap`` (the walk's clock since the previous row of the run:
        ln tokens, or the fraction of the run with ``drift_clock="fraction"``; 0 for its
        first row) and ``walk_start`` (index of the run's first row).
    """
    tokens = rows["tokens"].to_numpy(dtype=float)
    total = rows["total_tokens"].to_numpy(dtype=float) if "total_tokens" in rows else tokens
    frac = np.clip(tokens / total, 0.0, 1.0)
    d_eff = tokens.copy()
    u = np.zeros(len(rows))
    if options.schedule == "table":
        per_row = schedules_of(rows) or [schedule] * len(rows)
        for i, sched in enumerate(per_row):
            sched = sched or schedule
            d_eff[i] = tokens[i] * float(sched.lr_area(frac[i]) / sched.lr_area(1.0))
            u[i] = float(sched.annealing(1.0) - sched.annealing(frac[i]))
    elif options.schedule == "learned":
        u = 1.0 - frac
    fam_lookup = {f: i for i, f in enumerate(families)}
    fam = np.array([fam_lookup.get(f, -1) for f in rows.get("family", pd.Series(families[:1] * len(rows)))])
    run_lookup = {r: i for i, r in enumerate(runs or [])}
    run_names = rows["run"].astype(str).tolist() if "run" in rows else [""] * len(rows)
    run_idx = np.array([run_lookup.get(r, -1) for r in run_names], dtype=int)
    prev = np.full(len(rows), -1, dtype=int)
    gap = np.zeros(len(rows))
    for i in range(1, len(rows)):
        if run_idx[i] >= 0 and run_names[i] == run_names[i - 1]:
            prev[i] = i - 1
            gap[i] = np.log(tokens[i] / tokens[i - 1])
    # the walk starts at each run's first fitted row (where its offset sets the level)
    if options.drift_clock == "fraction":
        clock = walk_clock(frac, "fraction")
        walk_gap = np.where(prev >= 0, clock - clock[np.maximum(prev, 0)], 0.0)
    else:
        walk_gap = gap  # the same as differences of walk_clock(frac) within a run
    first = prev < 0
    walk_start = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0)) if len(rows) else np.zeros(0, int)
    return {
        "n": rows["params"].to_numpy(dtype=float) / scale.N0,
        "d": d_eff / scale.D0,
        "u": u,
        "family": fam,
        "run": run_idx,
        "prev": prev,
        "gap": gap,
        "ln_fraction": np.log(np.clip(tokens / total, 1e-12, 1.0)),
        "walk_gap": walk_gap,
        "walk_start": walk_start.astype(int),
    }


def latest_row_of_run(rows: pd.DataFrame, runs, tokens) -> np.ndarray:
    """Index into ``rows`` (fitted rows, sorted by run then tokens) of each query's run's
    latest row at or before the query's ``tokens`` (the run's first row if the query precedes
    them all), shape (T,); -1 where the run has no fitted rows.

    Example: the walk of a fitted run at a checkpoint is its walk at
    ``latest_row_of_run(rows, ["pythia-70m"], [3e10])``.
    """
    rows = rows.reset_index(drop=True)
    by_run = {str(run): group.index.to_numpy() for run, group in rows.groupby(rows["run"].astype(str), sort=False)}
    fitted_tokens = rows["tokens"].to_numpy(dtype=float)
    out = np.full(len(tokens), -1, dtype=int)
    for t, (run, token) in enumerate(zip(runs, np.asarray(tokens, dtype=float))):
        own = by_run.get(str(run))
        if own is None:
            continue
        before = own[fitted_tokens[own] <= token]
        out[t] = int(before[-1]) if len(before) else int(own[0])
    return out


def walk_clock(fraction, clock: str = "ln_tokens") -> np.ndarray:
    """Position on the walk's clock (``drift="walk"``) at ``fraction`` of a run: ln of the
    fraction (ln tokens, up to the run's constant), or the fraction itself with
    ``clock="fraction"``.  The walk's variance grows by ``sigma_drift^2`` per clock unit.

    >>> float(walk_clock(0.5, "fraction")), round(float(walk_clock(0.5)), 3)
    (0.5, -0.693)
    """
    fraction = np.asarray(fraction, dtype=float)
    return fraction if clock == "fraction" else np.log(np.clip(fraction, 1e-12, None))


def walk_variance_units(fraction, min_fraction: float, clock: str = "ln_tokens") -> np.ndarray:
    """Clock units a run has walked (``drift="walk"``) by ``fraction`` of its length, from its
    start at ``min_fraction``: ``max(ln(fraction / min_fraction), 0)`` ln tokens, or
    ``max(fraction - min_fraction, 0)`` with ``clock="fraction"`` (0 when ``min_fraction``
    is 0, i.e. no drift option)."""
    fraction = np.asarray(fraction, dtype=float)
    if min_fraction <= 0:
        return np.zeros_like(fraction)
    return np.maximum(walk_clock(fraction, clock) - walk_clock(min_fraction, clock), 0.0)
