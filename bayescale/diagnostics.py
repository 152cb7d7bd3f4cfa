"""Convergence diagnostics with a verdict: R-hat, bulk/tail ESS, divergences.

Thresholds follow Vehtari et al. (2021): R-hat <= 1.01 and ESS >= 100 per chain; and no
more than 0.1% divergent transitions.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import arviz as az
import numpy as np

MAX_RHAT = 1.01
MIN_ESS_PER_CHAIN = 100
MAX_DIVERGENT_FRACTION = 0.001


class ConvergenceWarning(UserWarning):
    """The posterior failed a convergence check; its bands may be wrong."""


class ConvergenceError(RuntimeError):
    """Raised by ``fit(..., strict=True)`` when the posterior fails its convergence checks."""


@dataclass(frozen=True)
class Diagnostics:
    """Summary of convergence over the checked variables.

    ``passed`` is None when the method has no diagnostics (MAP, ADVI previews).
    """

    method: str
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    n_draws: int
    min_ess_required: float
    passed: bool | None
    problems: tuple[str, ...]

    def to_dict(self) -> dict:
        """The fields as a plain dict (:func:`dataclasses.asdict`)."""
        return asdict(self)

    def message(self) -> str:
        """One plain sentence for warnings and reports."""
        if self.passed is None:
            return (f"{self.method} is a preview: no convergence diagnostics, bands ignore most "
                    "uncertainty")
        if self.passed:
            return (
                f"converged: max R-hat {self.max_rhat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
                f"{self.divergences} divergences"
            )
        return "NOT CONVERGED: " + "; ".join(self.problems)

    def warn(self, where: str, note: str = "", stacklevel: int = 3) -> None:
        """Emit a :class:`ConvergenceWarning` if the verdict is not a pass (``note`` appended)."""
        if self.passed is not True:
            warnings.warn(f"{where}: {self.message()}{note}", ConvergenceWarning,
                          stacklevel=stacklevel)


def diagnose(idata: az.InferenceData, var_names: list[str], method: str = "nuts") -> Diagnostics:
    """Compute R-hat, ESS and divergences of ``var_names`` and judge them."""
    post = idata["posterior"][var_names]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    if method != "nuts":
        return Diagnostics(method, np.nan, np.nan, np.nan, 0, chains * draws, np.nan, None, ())
    rhat = float(az.rhat(post).to_array().max()) if chains > 1 else np.nan
    ess_bulk = float(az.ess(post, method="bulk").to_array().min())
    ess_tail = float(az.ess(post, method="tail").to_array().min())
    stats = idata["sample_stats"]
    div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    need = MIN_ESS_PER_CHAIN * chains
    problems = []
    if chains < 2:
        problems.append("only one chain: R-hat cannot be computed; run at least 2")
    elif not rhat <= MAX_RHAT:
        problems.append(f"max R-hat {rhat:.3f} > {MAX_RHAT}")
    if not ess_bulk >= need:
        problems.append(f"min bulk ESS {ess_bulk:.0f} < {need} (100 per chain)")
    if not ess_tail >= need:
        problems.append(f"min tail ESS {ess_tail:.0f} < {need} (100 per chain)")
    if div > MAX_DIVERGENT_FRACTION * chains * draws:
        problems.append(f"{div} divergent transitions ({div / (chains * draws):.2%} of draws)")
    return Diagnostics(method, rhat, ess_bulk, ess_tail, div, chains * draws, need, not problems,
                       tuple(problems))
