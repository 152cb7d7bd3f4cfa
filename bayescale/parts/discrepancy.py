"""Model discrepancy beyond the ladder: the law's own error grows with the extrapolation.

A fitted law is exact nowhere; inside the ladder its error is absorbed by the noise and the
run effects, but carried far beyond the largest run its functional form may bend away from
the truth, and the posterior of its parameters does not know that.  This part adds to the
ln loss of a target at compute ``C = N x D`` (its parameters times its tokens)

    scale x max(0, ln(C / C_ladder)) x z,    z ~ Normal(0, 1),

with ``C_ladder`` the largest compute of the fitted rows: nothing inside the ladder, a
Gaussian error whose sd grows linearly with the distance in ln compute beyond it (so a
target 100x beyond gets twice the extra width, in ln loss, of one 10x beyond).  It is the
law's error, not a new measurement's: it is drawn for ``kind="mean"`` too, and counts as
epistemic in :meth:`~bayescale.ScalingFit.uncertainty` (``discrepancy_var``).

Nothing inside the ladder informs ``scale`` (every fitted row has distance 0), so it is
fixed, not sampled: :func:`bayescale.fit` with ``model="auto"`` estimates it from its
backtest, the held-out larger runs' errors beyond each fold's ladder
(:func:`estimate_scale`); or set it by hand (nats of ln loss per e-fold of compute).

Example
-------
>>> Discrepancy(scale=0.01).to_dict()
{'part': 'discrepancy', 'scale': 0.01}
>>> float(distance_beyond([1e20, 1e22], ladder_compute=1e21)[1].round(3))
2.303
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from .base import ModelError, Part, PredictContext

#: Largest scale :func:`estimate_scale` returns (ln loss per e-fold of compute).
MAX_SCALE = 0.5


def distance_beyond(compute, ladder_compute: float) -> np.ndarray:
    """``max(0, ln(compute / ladder_compute))`` per target (e-folds of compute beyond)."""
    ratio = np.asarray(compute, dtype=float) / float(ladder_compute)
    return np.maximum(np.log(ratio), 0.0)


def estimate_scale(y, median, lower, upper, distance, hdi_prob: float = 0.9) -> float:
    """The scale with which held-out rows beyond a ladder fall in their bands as often as promised.

    Each held-out row ``i`` (a backtest's larger run) gives its observed value ``y``, the
    fold's predictive median and ``hdi_prob`` band (same units, > 0) and its distance beyond
    that fold's ladder (:func:`distance_beyond`).  In ln loss the band is read as
    ``Normal(ln median, s_i)`` (``s_i`` its half-width over the normal quantile ``q``);
    widened by the discrepancy it covers ``y_i`` once ``scale >= need_i = sqrt((r_i / q)^2 -
    s_i^2) / d_i`` (``r_i = ln y_i - ln median_i``; 0 for a row already covered).  The
    estimate is the ``hdi_prob`` quantile of ``need`` over the rows beyond the ladder
    (``d_i > 0``), at most :data:`MAX_SCALE`: the widened bands cover ``hdi_prob`` of them.
    Matching coverage rather than maximising a normal likelihood keeps a gross outlier (a
    mistyped or diverged run, 20 band-widths off) from setting the scale: it is one miss.
    0 when no row lies beyond its ladder.

    >>> round(estimate_scale([1.1], [1.0], [0.99], [1.01], [1.0]), 3)
    0.058
    """
    y, med, lo, hi, d = (np.asarray(v, dtype=float) for v in (y, median, lower, upper, distance))
    beyond = (np.isfinite(y) & (y > 0) & (med > 0) & (lo > 0) & (hi > lo) & np.isfinite(d)
              & (d > 0))
    if not beyond.any():
        return 0.0
    q = norm.ppf(0.5 + hdi_prob / 2)
    resid = np.log(y[beyond]) - np.log(med[beyond])
    s = (np.log(hi[beyond]) - np.log(lo[beyond])) / (2 * q)
    need = np.sqrt(np.maximum((resid / q) ** 2 - s**2, 0.0)) / d[beyond]
    return float(min(np.quantile(need, hdi_prob), MAX_SCALE))


@dataclass(frozen=True)
class Discrepancy(Part):
    """The law's error beyond the ladder: ln-loss sd ``scale`` per e-fold of compute beyond.

    Parameters
    ----------
    scale
        Sd added to ln loss per unit of ``ln(C / C_ladder)`` beyond the ladder (>= 0); 0
        adds nothing.  ``model="auto"`` sets it from its backtest.
    """

    lookup_name = "discrepancy"
    sources = ("discrepancy",)
    order = 45
    scale: float = 0.0

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale >= 0):
            raise ModelError(f"discrepancy: scale must be a finite number >= 0, got {self.scale}")

    def predict(self, ctx: PredictContext) -> None:
        """Add ``scale x distance x z`` to ``ctx.mu`` at targets beyond the fitted rows."""
        rows = ctx.fit.rows
        ladder = float((rows["params"] * rows["tokens"]).max())
        targets = ctx.targets
        distance = distance_beyond(targets["params"] * targets["tokens"], ladder)
        if self.scale == 0 or not (distance > 0).any():
            return  # nothing drawn: the other sources' random numbers stay as they were
        z = ctx.random("discrepancy", lambda rng, n: rng.standard_normal((n, len(targets))))
        assert ctx.mu is not None  # set by the law and schedule parts before this one
        ctx.mu = ctx.mu + self.scale * distance[None, :] * z
