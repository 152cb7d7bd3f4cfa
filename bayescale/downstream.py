"""Downstream task accuracy as a function of the latent loss, with benchmark noise.

For task t with random-guess accuracy ``chance_t``:

``"sigmoid"`` (as in the OLMo model ladder)
    acc = chance_t + (ceiling_t - chance_t) * sigmoid(-slope_t (L - midpoint_t))
``"exp"`` (after Gadre et al. 2024, Err = eps - k exp(-gamma L))
    acc = chance_t + (ceiling_t - chance_t) * exp(-exp(slope_t (L - midpoint_t)))

a Gompertz curve: an exponential approach to the ceiling at low loss and to chance at
high loss, so accuracy stays inside [chance, ceiling] for every parameter value.

``slope_t`` is unconstrained: a posterior with mass at or below zero says the task does
not improve with loss (flat, or inverse scaling) rather than forcing a curve through it.
Task parameters are partially pooled across tasks (non-centred normal on slope, midpoint
and the logit of the ceiling's share of the range above chance).

Observation model: Binomial with the task's number of items when ``n_items`` is known
(so a 100-question benchmark is noisier than a 10,000-question one); otherwise a Beta
with a learned precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LINKS = ("sigmoid", "exp")
AVERAGE = "acc:avg"


def link(kind: str, loss, chance, ceiling, slope, midpoint, xp=np):
    """Accuracy at latent ``loss`` (nats). ``xp`` is ``numpy`` or ``pytensor.tensor``."""
    z = slope * (loss - midpoint)
    if kind == "sigmoid":
        share = 1.0 / (1.0 + xp.exp(z))
    elif kind == "exp":
        share = xp.exp(-xp.exp(z))
    else:
        raise ValueError(f"downstream={kind!r} is not one of {LINKS}")
    return chance + (ceiling - chance) * share


def task_table(acc_rows: pd.DataFrame) -> pd.DataFrame:
    """One row per task metric: ``task`` (metric name), ``chance``, ``n_items`` (median over
    rows, NaN if unknown), ``rows`` (count)."""
    grouped = acc_rows.groupby("metric", sort=True)
    table = pd.DataFrame(
        {
            "chance": grouped["chance"].first().fillna(0.0),
            "n_items": grouped["n_items"].median(),
            "rows": grouped.size(),
        }
    )
    table.index.name = "task"
    return table.reset_index()


def successes(acc_rows: pd.DataFrame) -> np.ndarray:
    """Correct answers per row (accuracy x n_items, rounded), for the Binomial likelihood."""
    return np.round(acc_rows["value"].to_numpy(dtype=float) * acc_rows["n_items"].to_numpy(dtype=float))


def improvement_report(slope_draws: np.ndarray, tasks: list[str]) -> pd.DataFrame:
    """Per task: posterior probability that accuracy improves as loss falls (slope > 0) and
    a verdict: ``"improves"`` (P > 0.95), ``"flat or inverse"`` (P < 0.5), else ``"unclear"``."""
    p = (slope_draws > 0).mean(axis=0)
    verdict = np.where(p > 0.95, "improves", np.where(p < 0.5, "flat or inverse", "unclear"))
    return pd.DataFrame({"task": tasks, "p_improves": p, "slope_median": np.median(slope_draws, axis=0),
                         "verdict": verdict})
