"""Run effects: each run (seed) sits a little above or below its family's law.

A per-run offset on ln(loss), ``sigma_run z_r`` (``z_r ~ Normal(0, 1)``, dims ``run``),
with the spread between seeds ``sigma_run`` learned from every configuration.  A target
naming a fitted run gets that run's offset; any other target is a new seed, which gets a
fresh ``z`` in observation bands (and zero, the expected run, in ``kind="mean"``).

Example
-------
>>> RunEffect(slope=True).variables(None)
['sigma_run', 'sigma_slope']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm

from .base import BuildContext, Default, ModelError, Part, PredictContext, default


@dataclass(frozen=True)
class RunEffect(Part):
    """A per-run offset on ln(loss) with a learned seed spread (and optionally a slope).

    Parameters
    ----------
    slope
        Each run also gets its own slope in ln tokens, ``sigma_slope z_slope_r ln(D /
        D_total)`` (zero at the run's end; times ``(N/N0)^-kappa`` with a size-scaled noise
        part), so curves that drift from the law widen their own bands instead of bending
        it.  Needs the :class:`~bayescale.parts.Checkpoints` part.
    """

    lookup_name = "run_effect"
    sources = ("run",)
    order = 30
    slope: bool = False

    def priors(self) -> dict[str, Default]:
        """``sigma_run`` (and ``sigma_slope`` with ``slope=True``)."""
        out = {"sigma_run": default(
            "HalfNormal",
            "Spread between seeds/runs of one configuration on ln(loss). Seed-to-seed final-loss "
            "differences are typically 0.1-1% (Pythia, OLMo ladders); half-normal 0.03 covers up "
            "to ~6%.",
            sigma=0.03)}
        if self.slope:
            out["sigma_slope"] = default(
                "HalfNormal",
                "Spread of per-run slopes of ln(loss) in ln tokens, relative to the law. Pythia's "
                "70M and 160M LAMBADA curves drift from a monotone law by 0.03-0.06 per unit of ln "
                "tokens in the second half of training; half-normal 0.05 allows that and shrinks "
                "well-behaved runs to the law's shape.",
                sigma=0.05)
        return out

    def check(self, model) -> None:
        """With ``slope=True``, require the checkpoints part."""
        if self.slope and model.part("checkpoints") is None:
            raise ModelError("run_effect: slope=True needs the checkpoints part (a slope within "
                             "each run's checkpoints)")

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Add each run's offset (and slope) to ``ctx.mu`` of its rows."""
        pm.modelcontext(None).add_coord("run", ctx.runs)
        priors = ctx.model.priors
        sigma_run = priors["sigma_run"].create_variable("sigma_run")
        sigma_slope = (priors["sigma_slope"].create_variable("sigma_slope") if self.slope
                       else None)
        if ctx.blocks is not None:  # integrated out: loadings (R, L, 1) of z_run and z_slope
            loadings = ctx.store.setdefault("run_loadings", {})
            loadings["z_run"] = (ctx.blocks.gather(sigma_run)[:, :, None], "run")
            if self.slope:
                slope = ctx.blocks.gather(sigma_slope * ctx.size_factor("obs")
                                          * ctx.data("ln_fraction"))
                loadings["z_slope"] = (slope[:, :, None], "run")
            return
        z_run = pm.Normal("z_run", 0.0, 1.0, dims="run")
        if self.slope:
            z_slope = pm.Normal("z_slope", 0.0, 1.0, dims="run")
        for where in ctx.wheres:
            run = ctx.data("run_index", where)
            ctx.mu[where] = ctx.mu[where] + sigma_run * z_run[run]
            if self.slope:
                slope = sigma_slope * ctx.size_factor(where) * z_slope[run]
                ctx.mu[where] = ctx.mu[where] + slope * ctx.data("ln_fraction", where)

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Add :func:`run_terms` to ``ctx.mu``."""
        ctx.mu = ctx.mu + run_terms(ctx, self.slope)


def run_terms(ctx: PredictContext, slope: bool) -> np.ndarray:
    """Run offsets (and slopes times ln(tokens / total tokens)) per draw and target, (S, T).

    The fitted values for fitted runs; for other targets a new seed's draw when
    ``ctx.new_draws``, else zero (the expected run).
    """
    known = ctx.known
    columns = [ctx.fit.run_names.index(r) for r in ctx.run_labels[known]]
    n_draws = ctx.n_draws

    def standardised(name: str) -> np.ndarray:
        z = np.zeros((n_draws, len(known)))
        z[:, known] = ctx.draws(name)[:, columns]
        if ctx.new_draws:
            # rows naming the same new run are one run (one draw); unnamed rows are one each
            labels = ctx.run_labels[~known].astype(str).tolist()
            keys = [lab if lab not in ("", "nan", "None") else f"\0{i}"
                    for i, lab in enumerate(labels)]
            codes, unique = pd.factorize(pd.Series(keys, dtype=object))
            fresh = ctx.random("run", lambda rng, n: rng.standard_normal((n, len(unique))))
            z[:, ~known] = fresh[:, codes]
        return z

    terms = ctx.draws("sigma_run")[:, None] * standardised("z_run")
    if slope:
        scale = ctx.draws("sigma_slope")[:, None] * ctx.size_factor()
        terms = terms + scale * standardised("z_slope") * ctx.x["ln_fraction"][None, :]
    return terms
