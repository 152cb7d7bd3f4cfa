"""Learning-rate schedules: how much of a run's learning has happened at a checkpoint.

A checkpoint at a fraction ``f = tokens / total_tokens`` of a run is not a finished run:
its learning rate has not been annealed.  Following the learning-rate-annealing law of
Tissue et al. (2024), ``L = L0 + A S1^-alpha - C S2``, we summarise a schedule at ``f`` by

- ``lr_area(f)``: the mean normalised learning rate over ``[0, f]`` (S1 per token), so the
  law sees *effective* tokens ``D_eff = D * lr_area(f)``;
- ``annealing(f)``: ``1 - lr(f)``, how far the rate has decayed from its peak (S2 with the
  momentum of the original paper set to zero).

Both are in [0, 1] and dimensionless.  Supported: ``"cosine"`` (linear warmup over
``warmup_fraction``, cosine decay to ``final_lr_fraction`` of the peak at the end),
``"linear"`` (warmup, then linear decay) and ``"constant"`` (warmup, then flat).

Example
-------
>>> import numpy as np
>>> s = Schedule("cosine", warmup_fraction=0.01, final_lr_fraction=0.1)
>>> float(np.round(s.lr(1.0), 3)), float(np.round(s.annealing(1.0), 3))
(0.1, 0.9)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

KINDS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as a function of the fraction of the run completed."""

    kind: str = "cosine"
    warmup_fraction: float = 0.01
    final_lr_fraction: float = 0.1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"schedule {self.kind!r} is not one of {KINDS}")
        if not 0 <= self.warmup_fraction < 1 or not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"invalid schedule {self}")

    def lr(self, f) -> np.ndarray:
        """Learning rate over its peak at fraction ``f`` (array in [0, 1])."""
        f = np.clip(np.asarray(f, dtype=float), 0.0, 1.0)
        w, m = self.warmup_fraction, self.final_lr_fraction
        u = np.clip((f - w) / (1 - w), 0.0, 1.0)
        if self.kind == "cosine":
            decay = m + (1 - m) * 0.5 * (1 + np.cos(np.pi * u))
        elif self.kind == "linear":
            decay = 1 - (1 - m) * u
        else:
            decay = np.ones_like(u)
        warm = f / w if w > 0 else np.ones_like(f)
        return np.where(f < w, warm, decay)

    def lr_area(self, f, grid: int = 2001) -> np.ndarray:
        """Mean of :meth:`lr` over ``[0, f]`` (numerical integral, exact to ~1e-6)."""
        f = np.asarray(f, dtype=float)
        x = np.linspace(0.0, 1.0, grid)
        y = self.lr(x)
        cum = np.concatenate([[0.0], np.cumsum((y[1:] + y[:-1]) / 2 * np.diff(x))])
        area = np.interp(np.clip(f, 0, 1), x, cum)
        return np.where(f > 0, area / np.maximum(f, 1e-12), self.lr(0.0))

    def annealing(self, f) -> np.ndarray:
        """How far the rate has decayed from its peak: ``1 - lr(f)`` after warmup, else 0."""
        f = np.asarray(f, dtype=float)
        return np.where(f < self.warmup_fraction, 0.0, 1.0 - self.lr(f))

    def to_dict(self) -> dict:
        """The schedule's fields as a plain dict."""
        return asdict(self)


def schedules_of(runs: pd.DataFrame) -> list[Schedule] | None:
    """Per-row schedules of the runs table, or None when it has no ``schedule`` column.

    From the ``schedule``, ``warmup_fraction`` and ``final_lr_fraction`` columns.
    """
    if "schedule" not in runs:
        return None
    warm = (runs["warmup_fraction"] if "warmup_fraction" in runs
            else pd.Series(0.01, index=runs.index))
    final = (runs["final_lr_fraction"] if "final_lr_fraction" in runs
             else pd.Series(0.1, index=runs.index))
    cache: dict[tuple, Schedule] = {}
    out = []
    for kind, w, m in zip(runs["schedule"].astype(str), warm.astype(float), final.astype(float),
                          strict=True):
        key = (kind, w, m)
        if key not in cache:
            cache[key] = Schedule(kind, w, m)
        out.append(cache[key])
    return out
