"""Downstream task accuracy as a function of the latent loss, with benchmark noise.

For task t with random-guess accuracy ``chance_t``:

``"sigmoid"`` (as in the OLMo model ladder)
    acc = chance_t + (ceiling_t - chance_t) * sigmoid(-slope_t (L - midpoint_t))
``"exp"`` (Gadre et al. 2024, Err = eps - k exp(-gamma L), bounded by a ceiling)
    acc = chance_t + (ceiling_t - chance_t) * (1 - exp(-exp(-slope_t (L - midpoint_t))))

    Below the ceiling (L well above the midpoint) this is Gadre et al.'s form exactly:
    acc - chance_t = (ceiling_t - chance_t) exp(-slope_t (L - midpoint_t)), i.e. Err =
    eps - k exp(-gamma L) with eps = 1 - chance_t, gamma = slope_t and k = (ceiling_t -
    chance_t) exp(slope_t midpoint_t); at low loss it levels off at the ceiling instead of
    growing without bound.  Accuracy leaves chance as slowly as in the sigmoid (exponentially
    in L) and approaches the ceiling faster.
``"gompertz"``
    acc = chance_t + (ceiling_t - chance_t) * exp(-exp(slope_t (L - midpoint_t)))

    the mirror image: leaves chance faster than exponentially, approaches the ceiling
    exponentially (as the sigmoid does).

Every link keeps accuracy inside [chance, ceiling] for every parameter value.

``L`` is the latent loss on the link's scale (``link_scale``, see :func:`to_link_scale`):
the loss in nats (default), or ``ln(L - E)``, the log of the loss above the law's
irreducible ``E`` (``"log_reducible"``), on which slope and midpoint are then measured.

``slope_t`` is unconstrained: a posterior with mass at or below zero says the task does
not improve with loss (flat, or inverse scaling) rather than forcing a curve through it.
Task parameters are partially pooled across tasks.  Specs with ``level_pop`` (the shipped
``chinchilla`` spec) parametrise each task at the ladder's centre loss -- its accuracy there
(``level``), its ``slope`` and its ceiling above that accuracy -- and record the
``intercept`` of :func:`link_centred` and the ``midpoint``; older specs (``midpoint_pop``)
sample slope, midpoint and the logit of the ceiling's share of the range above chance (see
:func:`bayescale.model._downstream_likelihood` for why the centre is better behaved).

Observation model when ``n_items`` is known: Beta-Binomial with the task's number of items
and a per-task precision ``phi`` (partially pooled on the log scale), when the spec has
``phi_pop``; else Binomial.  The Binomial treats each benchmark's items as the only noise,
but real benchmarks scatter around any smooth curve in loss by far more (prompt format,
checkpoint-to-checkpoint instability, near-duplicate items): in Gadre et al.'s testbed the
residual variance of squad, bbq, boolq, jeopardy or coqa is 24-243x the Binomial variance.
With accuracy ``p`` the Beta-Binomial variance is ``n p (1-p) (1 + (n-1)/(phi+1))``: close to
the Binomial for ``phi >> n`` (a 100-question benchmark stays noisier than a 10,000-question
one), and at most ``p (1-p)/(phi+1)`` on the accuracy scale however many items there are.
Without ``n_items``: a Beta with one learned precision.  The precisions ``phi`` are sampled
non-centred (``ln phi_t = ln phi_pop + phi_sd z_t``): a task whose accuracies are close to
Binomial leaves its ``phi`` anywhere above its number of items, and sampled centred that flat
direction formed a funnel with ``phi_sd`` (R-hat 1.08 and 1% divergent draws on six
simulated Binomial tasks, against 1.015 and none non-centred).

An average over tasks can be fitted as a metric of its own (``acc:avg`` rows, ``tasks=
["acc:avg"]``): its link is then fitted directly and ``predict`` uses it for ``acc:avg``.
With a single metric there is nothing to pool over -- the population priors are its
priors, and spreads the data cannot see would only form funnels -- and no run-level effect,
which with one metric per run is that metric's noise.

Run-level downstream effect (specs with ``tau_downstream``, the shipped ``chinchilla`` spec):
the loss every task of run r sees is the run's latent loss times ``exp(tau_downstream z_r)``,
``z_r ~ Normal(0, 1)``, one per run with accuracy rows (dim ``acc_run``, shared by its tasks
and checkpoints; recorded as ``downstream_offset``, on ln loss).  Errors are correlated across
the tasks of a run -- a run is better or worse at downstream tasks than its upstream loss
says (token multiplier, data mix, seed) -- which per-task noise cannot represent: without
the effect, the ~46 accuracy rows of a run in Gadre et al.'s testbed all pull that run's
latent loss toward the loss its tasks suggest and bend the loss law, and a new run's
``acc:avg`` band averages per-task noise away (too narrow).  Predictions for a run the fit
has not seen draw a fresh ``z`` (``kind="observation"``; zero for ``kind="mean"``); a
fitted run keeps its own offset.  The offset does not depend on the token multiplier: in
Gadre et al.'s fitted models (0.08-0.41B; the 0.01B models are at chance on most tasks) the
residual of average error about its curve in loss shows no trend in ln(tokens/params)
(correlations -0.11, 0.00, 0.13 for the c4, redpajama and refinedweb families).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LINKS = ("sigmoid", "exp", "gompertz")
LINK_SCALES = ("loss", "log_reducible")
AVERAGE = "acc:avg"
#: Smallest reducible loss (nats) the ``log_reducible`` scale takes the log of: a latent loss
#: at or below the irreducible E (possible only through a run's offset) counts as this.
REDUCIBLE_FLOOR = 1e-3


def to_link_scale(scale: str, loss, E, xp=np):
    """The latent loss on the scale the task links are linear in.

    ``"loss"``: the loss itself (nats).  ``"log_reducible"``: ``ln(L - E)``, the log of the
    loss above the law's irreducible ``E``, which is (up to sign and a factor) the log of
    compute or of model size along a compute-optimal ladder.  Equal steps of loss then mean
    ever larger steps on the link's scale as the loss approaches ``E``: the links steepen at
    low loss, where Gadre et al.'s over-trained 1.4B models show that downstream error falls
    faster than any sigmoid in the loss of the smaller models says.

    ``loss`` and ``E`` broadcast (numpy arrays or PyTensor tensors, with ``xp`` the module).

    Examples
    --------
    >>> float(to_link_scale("log_reducible", 2.5, 1.5))
    0.0
    """
    if scale == "loss":
        return loss
    if scale == "log_reducible":
        return xp.log(xp.maximum(loss - E, REDUCIBLE_FLOOR))
    raise ValueError(f"link_scale={scale!r} is not one of {LINK_SCALES}")


def _share(kind: str, z, xp=np):
    """Share of the range above chance reached at linear predictor ``z`` (decreasing in z)."""
    if kind == "sigmoid":
        return 1.0 / (1.0 + xp.exp(z))
    if kind == "exp":
        return -xp.expm1(-xp.exp(-z))
    if kind == "gompertz":
        return xp.exp(-xp.exp(z))
    raise ValueError(f"downstream={kind!r} is not one of {LINKS}")


def link(kind: str, loss, chance, ceiling, slope, midpoint, xp=np):
    """Accuracy at latent ``loss`` (nats). ``xp`` is ``numpy`` or ``pytensor.tensor``."""
    return chance + (ceiling - chance) * _share(kind, slope * (loss - midpoint), xp)


def link_centred(kind: str, loss, chance, ceiling, slope, intercept, centre, xp=np):
    """:func:`link` parametrised by ``intercept = slope (midpoint - centre)``.

    ``intercept`` is the negated linear predictor at loss ``centre``:
    ``z = slope (loss - centre) - intercept``.  For the sigmoid link ``intercept`` is the logit
    of the share of the range above chance reached at ``centre``.  Finite for every slope,
    including 0 (where the midpoint is at infinity).
    """
    return chance + (ceiling - chance) * _share(kind, slope * (loss - centre) - intercept, xp)


def task_table(acc_rows: pd.DataFrame) -> pd.DataFrame:
    """One row per task metric: ``task``, ``chance``, ``n_items`` and ``rows``.

    ``task`` is the metric name, ``n_items`` the median over rows (NaN if unknown) and
    ``rows`` the count.
    """
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
    return np.round(acc_rows["value"].to_numpy(dtype=float)
                    * acc_rows["n_items"].to_numpy(dtype=float))


def improvement_report(slope_draws: np.ndarray, tasks: list[str]) -> pd.DataFrame:
    """Per task: posterior probability that accuracy improves as loss falls, and a verdict.

    P is the posterior probability of slope > 0; the verdict is ``"improves"`` (P > 0.95),
    ``"flat or inverse"`` (P < 0.5), else ``"unclear"``.
    """
    p = (slope_draws > 0).mean(axis=0)
    verdict = np.where(p > 0.95, "improves", np.where(p < 0.5, "flat or inverse", "unclear"))
    return pd.DataFrame({"task": tasks, "p_improves": p,
                         "slope_median": np.median(slope_draws, axis=0),
                         "verdict": verdict})
