"""AR(1) residuals: the checkpoints of one run are not independent facts.

An Ornstein-Uhlenbeck process in ln tokens within a run: the residual of row i given the
previous row of its run is ``rho_i (y_prev - mu_prev)`` with ``rho_i = exp(-gap_i / ell)``
(``gap_i`` in ln tokens) and innovation scale ``sigma sqrt(1 - rho_i^2)``, so 30
checkpoints of one run count for less than 30 runs.  A target on a fitted run keeps the
part of the run's last residual that persists to it.

Example
-------
>>> AR1Residuals().variables(None)
['ell']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .base import BuildContext, Default, ModelError, Part, PredictContext, default


@dataclass(frozen=True)
class AR1Residuals(Part):
    """Ornstein-Uhlenbeck (AR(1) in ln tokens) residuals within each run."""

    lookup_name = "ar1_residuals"
    order = 60

    def priors(self) -> dict[str, Default]:
        """``ell``, the correlation length in ln(tokens)."""
        return {"ell": default(
            "LogNormal",
            "Correlation length of within-run residuals in ln(tokens): checkpoints a factor e^ell "
            "apart in tokens have residual correlation 1/e. Median 1 (a factor 2.7 in tokens), 90% "
            "in [0.2, 5].",
            mu=0.0, sigma=1.0)}

    def check(self, model) -> None:
        """Require the checkpoints part."""
        if model.part("checkpoints") is None:
            raise ModelError("ar1_residuals: needs the checkpoints part (residuals correlated "
                             "along a run's checkpoints)")

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Condition each row on its run's previous residual (mean and scale)."""
        x = ctx.x["obs"]
        ell = ctx.model.priors["ell"].create_variable("ell")
        if ctx.blocks is not None:  # integrated out: the run's stationary OU covariance
            position = pm.Data("run_block_ln_tokens",  # ln tokens since the run's first row
                               ctx.blocks.positions(np.cumsum(x["gap"])))
            scale = ctx.blocks.gather(ctx.sigma)
            distance = pt.abs(position[:, :, None] - position[:, None, :])
            ctx.store["run_noise_covariance"] = (scale[:, :, None] * scale[:, None, :]
                                                 * pt.exp(-distance / ell))
            return
        prev = pm.Data("prev_index", np.maximum(x["prev"], 0), dims="obs")
        has_prev = pm.Data("has_prev", (x["prev"] >= 0).astype(float), dims="obs")
        gap = pm.Data("gap", x["gap"], dims="obs")
        rho = has_prev * pt.exp(-gap / ell)
        mu = ctx.mu["obs"]
        ctx.mu["obs"] = mu + rho * (ctx.ln_value[prev] - mu[prev])
        ctx.sigma = ctx.sigma * pt.sqrt(1.0 - rho**2 + 1e-12)

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Condition fitted runs' targets on the residual of the run's last fitted row."""
        if not ctx.known.any():
            return
        assert ctx.mu is not None and ctx.sigma is not None  # set by the law and noise parts
        rows = ctx.fit.rows
        resid = (np.log(rows["value"].to_numpy(dtype=float))[None, :]
                 - ctx.fit.structural_mean(ctx, rows))
        ell = ctx.draws("ell")
        last_row = rows.reset_index(drop=True).groupby("run")["tokens"].idxmax()
        tokens = ctx.targets["tokens"].to_numpy(dtype=float)
        for t in np.flatnonzero(ctx.known):
            i = int(last_row[ctx.run_labels.iloc[t]])
            rho = np.exp(-abs(np.log(tokens[t] / rows["tokens"].iloc[i])) / ell)
            ctx.mu[:, t] = ctx.mu[:, t] + rho * resid[:, i]
            ctx.sigma[:, t] = ctx.sigma[:, t] * np.sqrt(1 - rho**2)
