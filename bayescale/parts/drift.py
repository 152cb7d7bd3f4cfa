"""Drift: each run's deviation from the law wanders as a random walk along the run.

``w(t') = w(t) + sigma_drift (N/N0)^-kappa sqrt(clock(t') - clock(t)) z`` (the size factor
with a size-scaled noise part), starting from zero at the run's first fitted checkpoint
(its level there is the run offset).  Unlike stationary AR(1) residuals the walk does not
revert: a run that has drifted from the law (a small model whose evaluation loss flattens
or rises) stays there, its prediction further along starts from where it is, and the band
grows with the clock still ahead.  A new run's band includes the drift it would accumulate
from ``min_fraction`` of its length (where the earliest fitted checkpoints are) to the
target.  Accuracy rows see their run's walk at its latest loss checkpoint at or before them.

Example
-------
>>> float(walk_clock(0.5, "fraction")), round(float(walk_clock(0.5)), 3)
(0.5, -0.693)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design import latest_row_of_run
from .base import BuildContext, Default, ModelError, Part, PredictContext, choice, default

CLOCKS = ("ln_tokens", "fraction")


@dataclass(frozen=True)
class Drift(Part):
    """A random walk of each run away from the law, in ln tokens or in the fraction of the run.

    Parameters
    ----------
    clock
        ``"ln_tokens"`` (default; the walk's variance grows by ``sigma_drift^2`` per unit of
        ln tokens) or ``"fraction"`` (per fraction of the run: most of the variance lies
        late in a run, where evaluation losses are seen to wander, rather than in the first
        few percent, which span as many units of ln tokens as the whole second half).
        Needs the :class:`~bayescale.parts.Checkpoints` part with ``min_fraction > 0``.
    """

    lookup_name = "drift"
    sources = ("drift",)
    order = 40
    clock: str = "ln_tokens"

    def __post_init__(self):
        choice(self.lookup_name, "clock", self.clock, CLOCKS)

    def priors(self) -> dict[str, Default]:
        """``sigma_drift``, the walk's scale per square root of a unit of its clock."""
        if self.clock == "fraction":
            return {"sigma_drift": default(
                "HalfNormal",
                "Scale of the random-walk drift on ln(loss) per square root of the fraction of the "
                "run, at the ladder's centre size. A 5-10% rise of an evaluation loss over the "
                "second half of a run (Pythia's LAMBADA losses of 70M and 160M, Biderman et al. "
                "2023) is a walk of scale 0.07-0.14; half-normal 0.1 (median 0.067) allows that "
                "and shrinks to zero for runs that follow the law.",
                sigma=0.1)}
        return {"sigma_drift": default(
            "HalfNormal",
            "Scale of each run's random-walk drift from the law on ln(loss) per square root of a "
            "unit of ln tokens, at the ladder's centre size. Evaluation losses of small models can "
            "flatten or rise in the second half of training by 5-10% (Pythia's LAMBADA losses of "
            "70M and 160M); half-normal 0.05 allows that and shrinks to zero for runs that follow "
            "the law.", sigma=0.05)}

    def check(self, model) -> None:
        """Require the checkpoints part with ``min_fraction > 0``."""
        checkpoints = model.part("checkpoints")
        if checkpoints is None:
            raise ModelError("drift: needs the checkpoints part (a walk along each run's "
                             "checkpoints)")
        if checkpoints.min_fraction <= 0:
            raise ModelError("drift: needs checkpoints.min_fraction > 0 (a new run's drift is "
                             "counted from there)")

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Add each run's random walk to ``ctx.mu`` of the loss (and accuracy) rows."""
        x = ctx.x["obs"]
        gap = walk_gaps(x, self.clock)
        sigma_drift = ctx.model.priors["sigma_drift"].create_variable("sigma_drift")
        step = pm.Data("walk_gap", gap, dims="obs")
        if ctx.blocks is not None:  # integrated out: row i loads on the run's increments j <= i
            increment = ctx.blocks.gather(sigma_drift * ctx.size_factor("obs") * pt.sqrt(step))
            earlier = ctx.blocks.earlier()  # (L, L), i <= j
            ctx.store.setdefault("run_loadings", {})["z_walk"] = (
                earlier.T[None] * increment[:, None, :], "obs")
            # its covariance, Z Z^T = (sum of squared increments up to row min(i, j)), without
            # the (R, L, L) x (R, L, L) product
            variance = pt.cumsum(increment**2, axis=1)
            ctx.store.setdefault("run_covariances", {})["z_walk"] = pt.where(
                earlier[None], variance[:, :, None], variance[:, None, :])
            return
        start = pm.Data("walk_start", walk_starts(x), dims="obs")
        increments = (sigma_drift * ctx.size_factor("obs") * pt.sqrt(step)
                      * pm.Normal("z_walk", 0.0, 1.0, dims="obs"))
        total = pt.cumsum(increments)
        walk = total - total[start] + increments[start]
        ctx.mu["obs"] = ctx.mu["obs"] + walk
        if "acc" in ctx.wheres:  # an accuracy row sees its run's walk at its checkpoint
            assert ctx.acc_rows is not None  # "acc" is a where only with accuracy rows
            index = latest_row_of_run(ctx.rows, ctx.acc_rows["run"].astype(str),
                                      ctx.acc_rows["tokens"])
            if (index < 0).any():
                missing = sorted(set(ctx.acc_rows["run"].astype(str)[index < 0]))
                raise ModelError("drift: needs loss rows for every run with accuracies; run(s) "
                                 f"{missing[:5]} have accuracy rows (column 'metric' acc:...) but "
                                 "no fitted loss rows")
            ctx.mu["acc"] = ctx.mu["acc"] + walk[pm.Data("acc_walk_index", index, dims="acc_obs")]

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Add :meth:`walk_terms` to ``ctx.mu``."""
        ctx.mu = ctx.mu + self.walk_terms(ctx)

    def walk_at_rows(self, ctx: PredictContext) -> np.ndarray:
        """The fitted walk at every fitted row, shape (S, n_obs)."""
        rows = ctx.fit.rows
        x = ctx.fit.design(rows)
        scale = ctx.draws("sigma_drift")[:, None] * ctx.size_factor(rows["params"])
        increments = scale * np.sqrt(walk_gaps(x, self.clock))[None, :] * ctx.draws("z_walk")
        total = np.cumsum(increments, axis=1)
        start = walk_starts(x)
        return total - total[:, start] + increments[:, start]

    def walk_terms(self, ctx: PredictContext) -> np.ndarray:
        """Drift per draw and target, shape (S, T).

        A fitted run continues from its walk at its latest fitted row at or before the target
        (its first row if the target precedes them all); a new run starts at zero at
        ``min_fraction`` of its length.  With ``ctx.new_draws`` the walk still ahead is added.
        """
        targets = ctx.targets
        out = np.zeros((ctx.n_draws, len(targets)))
        tokens = targets["tokens"].to_numpy(dtype=float)
        total = targets["total_tokens"].to_numpy(dtype=float)
        min_fraction = ctx.fit.model.part("checkpoints").min_fraction
        units = walk_variance_units(tokens / total, min_fraction, self.clock)
        if ctx.known.any():
            walk = self.walk_at_rows(ctx)
            fitted = ctx.fit.rows
            fitted_tokens = fitted["tokens"].to_numpy(dtype=float)
            fitted_total = fitted["total_tokens"].to_numpy(dtype=float)
            at = latest_row_of_run(fitted, ctx.run_labels, tokens)
            for t in np.flatnonzero(ctx.known):  # on the run's own clock (its total tokens)
                out[:, t] = walk[:, at[t]]
                run_total = fitted_total[at[t]]
                units[t] = abs(walk_clock(tokens[t] / run_total, self.clock)
                               - walk_clock(fitted_tokens[at[t]] / run_total, self.clock))
        if ctx.new_draws:
            scale = ctx.draws("sigma_drift")[:, None] * ctx.size_factor()
            z = ctx.random("drift", lambda rng, n: rng.standard_normal((n, out.shape[1])))
            out = out + scale * np.sqrt(units)[None, :] * z
        return out


def walk_gaps(x: dict[str, np.ndarray], clock: str) -> np.ndarray:
    """The walk's clock since the previous fitted row of the same run (0 for a run's first row)."""
    position = walk_clock(x["fraction"], clock)
    prev = x["prev"]
    return np.where(prev >= 0, position - position[np.maximum(prev, 0)], 0.0)


def walk_starts(x: dict[str, np.ndarray]) -> np.ndarray:
    """Index of each row's run's first row (rows sorted by run, then tokens)."""
    first = x["prev"] < 0
    if not len(first):
        return np.zeros(0, dtype=int)
    return np.maximum.accumulate(np.where(first, np.arange(len(first)), 0)).astype(int)


def walk_clock(fraction, clock: str = "ln_tokens") -> np.ndarray:
    """Position on the walk's clock at ``fraction`` of a run.

    The ln of the fraction (ln tokens, up to the run's constant), or the fraction itself with
    ``clock="fraction"``.
    """
    fraction = np.asarray(fraction, dtype=float)
    return fraction if clock == "fraction" else np.log(np.clip(fraction, 1e-12, None))


def walk_variance_units(fraction, min_fraction: float, clock: str = "ln_tokens") -> np.ndarray:
    """Clock units a new run has walked by ``fraction`` of its length since ``min_fraction``.

    That is ``max(clock(fraction) - clock(min_fraction), 0)``.

    >>> float(walk_variance_units(1.0, 0.5, "fraction"))
    0.5
    """
    fraction = np.asarray(fraction, dtype=float)
    if min_fraction <= 0:
        return np.zeros_like(fraction)
    return np.maximum(walk_clock(fraction, clock) - walk_clock(min_fraction, clock), 0.0)


__all__ = ["Drift", "walk_clock", "walk_variance_units"]
