"""The schedule term: a checkpoint is not a finished run, its learning rate is still high.

Following the learning-rate-annealing law of Tissue et al. (2024), a checkpoint at a
fraction ``f`` of its run sees *effective* tokens ``D_eff = D lr_area(f) / lr_area(1)``
(the area under its schedule so far) and still owes the loss its remaining decay will
buy, in proportion to its un-annealed part ``u = annealing(1) - annealing(f)`` (see
:mod:`bayescale.schedules`).  With ``source="learned"`` (no schedule known) ``u = 1 - f``
and the law sees the raw tokens: a learned discrepancy ``c (1 - f)``.

Example
-------
>>> ScheduleTerm(anneal="tokens").priors().keys()
dict_keys(['c_tokens'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..schedules import Schedule, schedules_of
from .base import BuildContext, Default, ModelError, Part, PredictContext, choice, default

SOURCES = ("auto", "table", "learned")
ANNEALS = ("loss", "tokens")


@dataclass(frozen=True)
class ScheduleTerm(Part):
    """Effective tokens and the annealing still ahead of a checkpoint (Tissue et al. 2024).

    Parameters
    ----------
    source
        ``"table"`` (the runs table's ``schedule``, ``warmup_fraction`` and
        ``final_lr_fraction`` columns), ``"learned"`` (no schedule known: ``c (1 - f)``),
        or ``"auto"`` (default: ``"table"`` when the table has a ``schedule`` column).
    anneal
        ``"loss"`` adds ``c u`` nats; ``"tokens"`` counts ``u`` as a shortfall of effective
        tokens, ``D_eff e^{-c_tokens u}``, so the deficit is as large as the law's
        sensitivity to data at that size.
    """

    lookup_name = "schedule"
    order = 20
    slot = "schedule"
    source: str = "auto"
    anneal: str = "loss"

    def __post_init__(self):
        choice(self.lookup_name, "source", self.source, SOURCES)
        choice(self.lookup_name, "anneal", self.anneal, ANNEALS)

    @property
    def parameter(self) -> str:
        """The annealing parameter: ``"c"`` (nats) or ``"c_tokens"``."""
        return "c" if self.anneal == "loss" else "c_tokens"

    def priors(self) -> dict[str, Default]:
        """The prior of :attr:`parameter`."""
        if self.anneal == "loss":
            return {"c": default(
                "HalfNormal",
                "Annealing term, nats: loss a checkpoint still owes to the learning-rate decay "
                "ahead of it (Tissue et al. 2024 report 0.1-0.5 nats for cosine schedules at small "
                "scale).", sigma=0.5)}
        return {"c_tokens": default(
            "HalfNormal",
            "Annealing as a shortfall of effective tokens: a checkpoint whose learning rate has "
            "yet to decay by u (0-0.9 for cosine to 10%) counts as e^(-c_tokens u) of its "
            "effective tokens. Annealing a cosine run gains roughly what 1.5-3x more tokens at "
            "constant rate would (Hagele et al. 2024; Tissue et al. 2024), i.e. c_tokens of "
            "0.5-1.2; half-normal 1 allows that and up to ~2.", sigma=1.0)}

    def resolve(self, rows: pd.DataFrame) -> ScheduleTerm:
        """With ``source="auto"`` settled: ``"table"`` with a ``schedule`` column."""
        if self.source != "auto":
            return self
        return replace(self, source="table" if "schedule" in rows else "learned")

    def validate(self, rows: pd.DataFrame) -> None:
        """With ``source="table"``, require a ``schedule`` column."""
        if self.source == "table" and "schedule" not in rows:
            raise ModelError("schedule: source='table' needs a 'schedule' column in the runs table "
                             "(e.g. 'cosine')")

    def inputs(self, rows: pd.DataFrame, fallback: Schedule | None) -> dict[str, np.ndarray]:
        """``d_eff`` (effective tokens, same units as ``tokens``) and ``u`` per row."""
        tokens = rows["tokens"].to_numpy(dtype=float)
        total = rows["total_tokens"].to_numpy(dtype=float)
        frac = np.clip(tokens / total, 0.0, 1.0)
        if self.source == "learned":
            return {"d_eff": tokens, "u": 1.0 - frac}
        d_eff, u = tokens.copy(), np.zeros(len(rows))
        per_row: Sequence[Schedule | None] = schedules_of(rows) or [fallback] * len(rows)
        rows_of: dict[Schedule, list[int]] = {}  # each schedule evaluated once, on its rows
        for i, sched in enumerate(per_row):
            sched = sched or fallback
            if sched is None:
                raise ModelError(f"schedule: target row {i} gives no schedule and the fit has none "
                                 "to fall back on")
            rows_of.setdefault(sched, []).append(i)
        for sched, index in rows_of.items():
            d_eff[index] = tokens[index] * sched.lr_area(frac[index]) / sched.lr_area(1.0)
            u[index] = sched.annealing(1.0) - sched.annealing(frac[index])
        return {"d_eff": d_eff, "u": u}

    def law_mean(self, law, theta: dict, n, d, u, c, exp):
        """The law at a checkpoint with the schedule term; ``exp`` is numpy's or PyTensor's."""
        if self.anneal == "tokens":
            return law.mean(theta, n, d * exp(-c * u))
        return law.mean(theta, n, d) + c * u

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Set ``ctx.mu`` to ln of the law with the annealing term at every row."""
        import pytensor.tensor as pt

        c = ctx.model.priors[self.parameter].create_variable(self.parameter)
        for where in ctx.wheres:
            mean = self.law_mean(ctx.model.law, ctx.theta[where], ctx.data("n", where),
                                 ctx.data("d", where), ctx.data("u", where), c, pt.exp)
            ctx.mu[where] = pt.log(mean)

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Set ``ctx.mu`` to ln of the law with the annealing term, shape (S, T)."""
        c = ctx.draws(self.parameter)[:, None]
        x = ctx.x
        mean = self.law_mean(ctx.fit.model.law, ctx.theta, x["n"][None, :], x["d"][None, :],
                             x["u"][None, :], c, np.exp)
        ctx.mu = np.log(np.asarray(mean, dtype=float))


def default_schedule(rows: pd.DataFrame) -> Schedule | None:
    """The most common schedule among the runs (used for targets that give none)."""
    per_row = schedules_of(rows)
    if not per_row:
        return None
    return pd.Series(per_row).value_counts().index[0]
