"""The noise of ln loss around the model: its likelihood and how its scale depends on size.

Every model has one (``Noise()`` when none is named).  The observed variable is ``ln_loss``
(dims ``obs``): a Student-t (robust: a few outlying runs are down-weighted rather than
bending the law) or a normal on ln(loss), so a 1% scatter is 1% at any loss.

Example
-------
>>> Noise(by_size=True).priors().keys()
dict_keys(['sigma', 'nu', 'kappa'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm

from .base import BuildContext, Default, Part, PredictContext, choice, default

LIKELIHOODS = ("student_t", "normal")
OBSERVED = "ln_loss"


@dataclass(frozen=True)
class Noise(Part):
    """Residual noise on ln(loss): likelihood and scale ``sigma`` (times ``(N/N0)^-kappa``).

    Parameters
    ----------
    likelihood
        ``"student_t"`` (default; degrees of freedom ``nu`` learned) or ``"normal"``.
    by_size
        Scale ``sigma (N/N0)^-kappa`` instead of ``sigma``: small models' evaluations
        fluctuate more between checkpoints and seeds than large ones', so they should not
        pull the law as hard.  Run slopes and drift scale the same way.
    """

    lookup_name = "noise"
    sources = ("noise",)
    order = 10
    likelihood: str = "student_t"
    by_size: bool = False

    def __post_init__(self):
        choice(self.lookup_name, "likelihood", self.likelihood, LIKELIHOODS)

    def priors(self) -> dict[str, Default]:
        """``sigma``, with ``nu`` (Student-t) and ``kappa`` (``by_size``)."""
        out = {"sigma": default(
            "HalfNormal",
            "Scale of the residual on ln(loss). Digitised or single-seed final losses scatter by "
            "0.5-3% (0.005-0.03 on the log scale); half-normal 0.1 leaves room for noisier "
            "evaluation sets.",
            sigma=0.1)}
        if self.likelihood == "student_t":
            out["nu"] = default(
                "Gamma", "Degrees of freedom of the Student-t likelihood (Juarez and Steel 2010): "
                "mean 20, mass down to ~2 so a few outlying runs are down-weighted rather than "
                "bending the law.", alpha=2.0, beta=0.1)
        if self.by_size:
            out["kappa"] = default(
                "Normal",
                "Exponent of the residual scale in model size, sigma (N/N0)^-kappa. "
                "Between-checkpoint fluctuations of evaluation losses shrink with size in Pythia "
                "(sd of LAMBADA ln ppl after step 13,000 about 5x larger at 70M than at 1.4B: "
                "kappa near 0.5 over a 20x size range); centred at 0 (constant noise) with room "
                "for either sign.", mu=0.0, sigma=0.5)
        return out

    @property
    def noise_params(self) -> tuple[str, ...]:
        """The likelihood's parameters: ``("sigma", "nu")`` or ``("sigma",)``."""
        return ("sigma", "nu") if self.likelihood == "student_t" else ("sigma",)

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Create the noise parameters and set ``ctx.sigma`` (times the size factor)."""
        priors = ctx.model.priors
        ctx.noise = {p: priors[p].create_variable(p) for p in self.noise_params}
        ctx.kappa = priors["kappa"].create_variable("kappa") if self.by_size else None
        ctx.sigma = ctx.noise["sigma"] * ctx.size_factor("obs")

    def observe(self, ctx: BuildContext) -> None:
        """The observed ``ln_loss`` around ``ctx.mu["obs"]``, scale ``ctx.sigma`` (last step)."""
        if self.likelihood == "student_t":
            pm.StudentT(OBSERVED, nu=ctx.noise["nu"], mu=ctx.mu["obs"], sigma=ctx.sigma,
                        observed=ctx.ln_value, dims="obs")
        else:
            pm.Normal(OBSERVED, mu=ctx.mu["obs"], sigma=ctx.sigma, observed=ctx.ln_value,
                      dims="obs")

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Set ``ctx.sigma`` to the residual scale per draw and target, shape (S, T)."""
        ctx.sigma = ctx.draws("sigma")[:, None] * ctx.size_factor()

    def add_noise(self, ctx: PredictContext, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """``mu`` plus a new measurement's noise with scale ``sigma`` (draws, same shape)."""
        width = mu.shape[1]
        if self.likelihood == "student_t" and not ctx.gaussian_noise:
            z = ctx.random("noise", lambda rng, n, nu: rng.standard_t(
                np.broadcast_to(nu[:, None], (n, width))), ctx.draws("nu"))
        else:
            z = ctx.random("noise", lambda rng, n: rng.standard_normal((n, width)))
        return mu + sigma * z
