"""Convergence diagnostics with a verdict: R-hat, bulk/tail ESS, divergences.

Thresholds follow Vehtari et al. (2021): R-hat <= 1.01 and ESS >= 100 per chain; and no
more than 0.1% divergent transitions.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import arviz as az
import numpy as np
import xarray as xr

MAX_RHAT = 1.01
MIN_ESS_PER_CHAIN = 100
MAX_DIVERGENT_FRACTION = 0.001
#: Most variables named in :attr:`Diagnostics.worst`.
MAX_WORST = 3


class ConvergenceWarning(UserWarning):
    """The posterior failed a convergence check; its bands may be wrong."""


class ConvergenceError(RuntimeError):
    """Raised by ``fit(..., strict=True)`` when the posterior fails its convergence checks."""


@dataclass(frozen=True)
class Diagnostics:
    """Summary of convergence over the checked variables.

    ``passed`` is None when the method has no diagnostics (MAP, ADVI previews).  ``worst``
    names the variables that failed R-hat or bulk ESS, worst first (at most
    :data:`MAX_WORST`); ``hints`` are the model parts' advice for those variables
    (:meth:`bayescale.parts.Part.convergence_hint`), shown after the problems.
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
    worst: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()

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
        text = "NOT CONVERGED: " + "; ".join(self.problems)
        if self.worst:
            text += f" (worst: {', '.join(self.worst)})"
        return text + "".join(f". Hint: {hint}" for hint in self.hints)

    def warn(self, where: str, note: str = "", stacklevel: int = 3) -> None:
        """Emit a :class:`ConvergenceWarning` if the verdict is not a pass (``note`` appended)."""
        if self.passed is not True:
            warnings.warn(f"{where}: {self.message()}{note}", ConvergenceWarning,
                          stacklevel=stacklevel)


def _worst(rhat: xr.Dataset | None, ess_bulk: xr.Dataset, need: float) -> tuple[str, ...]:
    """Variables failing R-hat or bulk ESS, by their worst element (highest R-hat first)."""
    failing: dict[str, tuple[float, float]] = {}
    for name in map(str, ess_bulk.data_vars):
        r = float(rhat[name].max()) if rhat is not None else np.nan
        e = float(ess_bulk[name].min())
        if r > MAX_RHAT or e < need:
            failing[name] = (-r if np.isfinite(r) else 0.0, e)
    return tuple(sorted(failing, key=failing.__getitem__)[:MAX_WORST])


def diagnose(idata: az.InferenceData, var_names: list[str], method: str = "nuts") -> Diagnostics:
    """Compute R-hat, ESS and divergences of ``var_names`` and judge them."""
    post = idata["posterior"][var_names]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    if method != "nuts":
        return Diagnostics(method, np.nan, np.nan, np.nan, 0, chains * draws, np.nan, None, ())
    rhats = az.rhat(post) if chains > 1 else None
    rhat = float(rhats.to_array().max()) if rhats is not None else np.nan
    bulk = az.ess(post, method="bulk")
    ess_bulk = float(bulk.to_array().min())
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
                       tuple(problems), _worst(rhats, bulk, need) if problems else ())
