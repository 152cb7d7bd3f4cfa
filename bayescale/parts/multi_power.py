"""The multi-power law of a loss curve under any learning-rate schedule (Luo et al. 2025).

An alternative schedule term for checkpoint ladders whose runs table gives each row's
learning rate (an ``lr`` column).  A checkpoint at tokens ``t`` of its run has

    L(t) = law(N, D_eff(t)) - LD(t),    D_eff(t) = S1(t) / peak_lr

(the law's data term sees the summed learning rate ``S1``, the tokens the run would have
needed at its peak rate), and the loss drop of every decay so far,

    LD(t) = B (N/N0)^-phi sum_k (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),
    G(x) = 1 - (C x + 1)^-beta_drop,

with ``eta = lr / peak_lr`` and ``S_k(t)`` the summed learning rate from checkpoint k to t.
``B`` (nats) is the loss a full decay can buy, ``C``, ``beta_drop`` and ``gamma`` how fast
it is bought (Luo et al.'s C, beta and gamma); ``phi`` lets it change with model size.

How the sums are read from the rows (the runs-table contract): within a run (rows sorted by
tokens) the learning rate is taken as linear between checkpoints, so each integral is a
trapezoid sum over consecutive rows; the area before a run's first row is a linear warmup
from zero to it (``lr_first * tokens_first / 2``), or, when the table has a
``warmup_tokens`` column, a linear warmup to ``peak_lr`` over those tokens followed by the
first row's rate.  A decay between rows k-1 and k is placed at row k.  Summed learning rates
are in units of ``D0`` tokens at the peak rate.  Rows of a run may be at most a quarter of
the run apart (``MAX_GAP_FRACTION``, counted from the warmup's end before the first row);
sparser runs are refused rather than summed wrongly.  Rows every 128 steps reproduce per-step
sums to 0.02% of the loss (mean relative error) on Luo et al.'s schedules.

Prediction targets give the schedule of the run they belong to: target rows sharing a run
id (a fitted run, or a new planned run, which is predicted as a new seed of its family)
are one run, and their ``lr`` column is its schedule.

Example
-------
>>> MultiPowerSchedule(peak_lr=3e-4).priors().keys()
dict_keys(['B_drop', 'phi_drop', 'C_drop', 'beta_drop', 'gamma_drop'])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse

from .base import BuildContext, Default, ModelError, Part, PredictContext, default

#: Draws per block when the drop is evaluated over posterior draws (bounds memory).
DRAW_BLOCK = 256


@dataclass(frozen=True)
class MultiPowerSchedule(Part):
    """Luo et al.'s multi-power law: summed learning rate and the loss drop of every decay.

    Parameters
    ----------
    peak_lr
        The learning rate the summed rate is counted in (``eta = lr / peak_lr``); default:
        the largest ``lr`` of the fitted rows, recorded when the model is fitted.
    """

    lookup_name = "multi_power"
    order = 20
    slot = "schedule"
    peak_lr: float | None = None

    def __post_init__(self):
        if self.peak_lr is not None and not (np.isfinite(self.peak_lr) and self.peak_lr > 0):
            raise ModelError(f"multi_power: peak_lr must be a finite number > 0, "
                             f"got {self.peak_lr}")

    def priors(self) -> dict[str, Default]:
        """Priors of the loss drop: ``B_drop, phi_drop, C_drop, beta_drop, gamma_drop``."""
        return {
            "B_drop": default("LogNormal",
                              "Loss a full decay of the learning rate buys, nats, at the ladder's "
                              "centre size. Annealing to 10% of the peak lowers the loss of "
                              "25M-400M models by 0.05-0.3 nats (Luo et al. 2025; Hagele et al. "
                              "2024); median 0.2, 90% in [0.04, 1.0].",
                              mu=-1.6, sigma=1.0),
            "phi_drop": default("Normal",
                                "Exponent of the drop's size dependence, B (N/N0)^-phi; 0 (the "
                                "same drop at every size) with room for either sign.", mu=0.0,
                                sigma=0.5),
            "C_drop": default("LogNormal",
                              "Rate at which a decay's drop is bought, per D0 tokens of summed "
                              "learning rate: C = 100 buys most of it after a hundredth of a "
                              "typical run. Luo et al.'s fits saturate within hundreds to "
                              "thousands of steps of runs of ~10^4; 90% in [8.5, 1200].",
                              mu=4.6, sigma=1.5),
            "beta_drop": default("LogNormal",
                                 "Power of the drop's saturation, G(x) = 1 - (C x + 1)^-beta (Luo "
                                 "et al.'s beta, 0.3-0.6 in their fits). Kept to that range: as "
                                 "beta falls to 0 G becomes beta ln(1 + C x) and beta and C trade "
                                 "off along a ridge the sampler crosses slowly (fits to Luo et "
                                 "al.'s training curves slid to beta 0.06, C 4000). Median 0.4, "
                                 "90% in [0.21, 0.77].", mu=-0.9, sigma=0.4),
            "gamma_drop": default("LogNormal",
                                  "Exponent of the learning rate in the drop's clock, eta_k^-gamma "
                                  "S_k (Luo et al. 2025 fit 0.5-0.6); median 0.6, 90% in [0.26, "
                                  "1.4].",
                                  mu=-0.5, sigma=0.5),
        }

    def check(self, model) -> None:
        """Require the checkpoints part."""
        if model.part("checkpoints") is None:
            raise ModelError("multi_power: needs the checkpoints part (a loss curve along each "
                             "run's checkpoints)")

    def resolve(self, rows: pd.DataFrame) -> MultiPowerSchedule:
        """With ``peak_lr`` the largest ``lr`` of ``rows`` when it was not given."""
        if self.peak_lr is not None or "lr" not in rows:
            return self
        return replace(self, peak_lr=float(pd.to_numeric(rows["lr"], errors="coerce").max()))

    def validate(self, rows: pd.DataFrame) -> None:
        """Require an ``lr`` column that is finite and >= 0 on every row."""
        check_lr(rows, "runs table")

    # ------------------------------------------------------------------ the sums
    def inputs(self, rows: pd.DataFrame, fallback=None) -> dict[str, np.ndarray]:
        """``d_eff`` (summed learning rate in tokens at the peak rate) and ``u`` (0) per row."""
        what = "targets" if "value" not in rows else "runs table"
        check_lr(rows, what)
        check_spacing(rows, what)
        sums = summed_rates(rows, self.peak_lr or float(rows["lr"].max()), 1.0)
        return {"d_eff": sums["S1"], "u": np.zeros(len(rows))}

    def pairs(self, rows: pd.DataFrame, D0: float) -> dict[str, np.ndarray]:
        """The (row t, decay k) pairs of the drop sum, in units of ``D0``."""
        return summed_rates(rows, self.peak_lr or float(rows["lr"].max()), D0)

    def drop(self, params: dict, n, pairs: dict, n_rows: int, xp):
        """LD per row: ``B n^-phi sum_k drop_k G(eta_k^-gamma S_k(t))``.

        ``params`` are scalars or (S, 1) draws, ``n`` is per row (centred size).
        """
        x = pairs["eta"] ** (-params["gamma_drop"]) * pairs["S"]
        g = 1.0 - (params["C_drop"] * x + 1.0) ** (-params["beta_drop"])
        terms = pairs["drop"] * g
        if xp is np:
            to_rows = scipy.sparse.csr_array((np.ones(len(pairs["t"])),
                                              (pairs["t"], np.arange(len(pairs["t"])))),
                                             shape=(n_rows, len(pairs["t"])))
            out = (to_rows @ np.atleast_2d(terms).T).T  # (S, rows): each row's pairs summed
        else:
            out = xp.zeros((n_rows,))[pairs["t"]].inc(terms) if n_rows else xp.zeros((0,))
        return params["B_drop"] * n ** (-params["phi_drop"]) * out

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Set ``ctx.mu`` to ln(law - drop) at the loss (and accuracy) rows."""
        import pymc as pm
        import pytensor.tensor as pt

        priors = ctx.model.priors
        params = {p: priors[p].create_variable(p) for p in self.priors()}
        rows = {"obs": ctx.rows}
        if ctx.acc_rows is not None:
            rows["acc"] = ctx.acc_rows
        for where in ctx.wheres:
            pairs = self.pairs(rows[where], ctx.scale.D0)
            dim = "mpl_pair" if where == "obs" else "acc_mpl_pair"
            pm.modelcontext(None).add_coord(dim, np.arange(len(pairs["t"])))
            data = {k: pm.Data(f"{dim}_{k}", pairs[k], dims=dim) for k in ("t", "eta", "drop", "S")}
            n = ctx.data("n", where)
            law = ctx.model.law.mean(ctx.theta[where], n, ctx.data("d", where))
            drop = self.drop(params, n, data, len(rows[where]), pt)
            ctx.mu[where] = pt.log(pt.maximum(law - drop, 1e-6))

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Set ``ctx.mu`` to ln(law - drop) per draw and target, shape (S, T)."""
        targets = ctx.targets
        pairs = self.pairs(targets, ctx.fit.scale.D0)
        n = ctx.x["n"][None, :]
        law = ctx.fit.model.law.mean(ctx.theta, n, ctx.x["d"][None, :])
        law = np.broadcast_to(np.asarray(law, dtype=float), (ctx.n_draws, len(targets)))
        drop = np.empty_like(law)
        params = {p: ctx.draws(p)[:, None] for p in self.priors()}
        for start in range(0, ctx.n_draws, DRAW_BLOCK):
            block = {k: v[start:start + DRAW_BLOCK] for k, v in params.items()}
            drop[start:start + DRAW_BLOCK] = self.drop(block, n, pairs, len(targets), np)
        ctx.mu = np.log(np.maximum(law - drop, 1e-6))


def check_lr(rows: pd.DataFrame, what: str) -> None:
    """The ``lr`` column the multi-power law needs: present, finite and >= 0 on every row."""
    if "lr" not in rows:
        raise ModelError(f"multi_power: the {what} needs an 'lr' column (the learning rate at each "
                         "row's checkpoint)")
    lr = pd.to_numeric(rows["lr"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(lr) & (lr >= 0))
    if bad.any():
        raise ModelError(f"multi_power: column 'lr' of the {what} must be a finite number >= 0 at "
                         f"row(s) {rows.index[bad].tolist()[:8]}")
    if not (lr > 0).any():
        raise ModelError(f"multi_power: column 'lr' of the {what} is zero everywhere")


#: Largest gap between a run's consecutive rows (or between its warmup and its first row),
#: as a fraction of its last row's tokens, that the trapezoid sums accept.
MAX_GAP_FRACTION = 0.25


def check_spacing(rows: pd.DataFrame, what: str) -> None:
    """Refuse runs whose rows are too far apart to read the schedule's integrals from them.

    A planned run given by its final row alone would get a summed rate from a linear ramp to
    that row's rate: a silent wrong answer.

    >>> rows = pd.DataFrame({"run": "plan", "tokens": [9e9, 1e10], "lr": [1e-4, 3e-5]})
    >>> check_spacing(rows, "targets")
    Traceback (most recent call last):
    ...
    bayescale.parts.base.ModelError: multi_power: run 'plan' of the targets has 90% of its tokens
    before its first row (at most 25%): give the run's rows from its start (the lr column is its
    schedule)
    """
    tokens = rows["tokens"].to_numpy(dtype=float)
    warmup = (rows["warmup_tokens"].to_numpy(dtype=float) if "warmup_tokens" in rows
              else np.zeros(len(rows)))
    runs = rows["run"].astype(str).to_numpy() if "run" in rows else np.zeros(len(rows), dtype=str)
    for run in pd.unique(runs):
        idx = np.flatnonzero(runs == run)
        t = np.sort(tokens[idx])
        w = warmup[idx][np.argmin(tokens[idx])]
        start = w if np.isfinite(w) and 0 < w <= t[0] else 0.0
        gaps = np.r_[t[0] - start, np.diff(t)] / t[-1]
        worst = int(np.argmax(gaps))
        if gaps[worst] > MAX_GAP_FRACTION:
            where = ("before its first row" if worst == 0
                     else f"between its rows at {t[worst - 1]:.4g} and {t[worst]:.4g} tokens")
            raise ModelError(f"multi_power: run {run!r} of the {what} has {gaps[worst]:.0%} of its "
                             f"tokens {where} (at most {MAX_GAP_FRACTION:.0%}): give the run's "
                             "rows from its start (the lr column is its schedule)")


def summed_rates(rows: pd.DataFrame, peak_lr: float, unit: float) -> dict[str, np.ndarray]:
    """Summed learning rates of each run of ``rows``, in tokens at ``peak_lr`` divided by ``unit``.

    The rows of a run may come in any order; ``run`` groups them, a table without ``run`` is
    one run.

    Returns ``S1`` per row, and the drop-sum pairs ``t`` (row), ``eta`` (eta_k), ``drop``
    (eta_{k-1} - eta_k) and ``S`` (summed rate from row k to row t) for every row t and every
    earlier-or-same row k of its run where the rate changed.

    >>> rows = pd.DataFrame({"run": "r", "tokens": [100.0, 200.0, 300.0], "lr": [1.0, 1.0, 0.5]})
    >>> out = summed_rates(rows, 1.0, 1.0)
    >>> out["S1"].tolist(), out["t"].tolist(), out["drop"].tolist()
    ([50.0, 150.0, 225.0], [2], [0.5])
    """
    tokens = rows["tokens"].to_numpy(dtype=float)
    eta_all = pd.to_numeric(rows["lr"], errors="coerce").to_numpy(dtype=float) / peak_lr
    warmup = rows["warmup_tokens"].to_numpy(dtype=float) if "warmup_tokens" in rows else None
    runs = rows["run"].astype(str).to_numpy() if "run" in rows else np.zeros(len(rows), dtype=str)
    S1 = np.empty(len(rows))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "eta", "drop", "S")}
    for run in pd.unique(runs):
        idx = np.flatnonzero(runs == run)
        idx = idx[np.argsort(tokens[idx], kind="stable")]
        t, e = tokens[idx], eta_all[idx]
        if np.any(np.diff(t) <= 0):
            raise ModelError(f"multi_power: run {run!r} has two rows at the same tokens")
        if warmup is not None and np.isfinite(warmup[idx[0]]) and 0 < warmup[idx[0]] <= t[0]:
            # linear to the peak, then e[0]
            before = warmup[idx[0]] / 2 + e[0] * (t[0] - warmup[idx[0]])
        else:
            before = e[0] * t[0] / 2  # linear warmup from zero to the first row
        cum = np.cumsum(np.r_[before, np.diff(t) * (e[1:] + e[:-1]) / 2]) / unit
        S1[idx] = cum * unit
        for k in np.flatnonzero(np.r_[False, e[1:] != e[:-1]]):
            later = np.arange(k, len(idx))
            out["t"].append(idx[later])
            # a rate decayed to 0 ends the clock
            out["eta"].append(np.full(len(later), max(e[k], 1e-6)))
            out["drop"].append(np.full(len(later), e[k - 1] - e[k]))
            out["S"].append(cum[later] - cum[k])
    pairs = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    pairs["t"] = pairs["t"].astype(int)
    return {"S1": S1, **pairs}
