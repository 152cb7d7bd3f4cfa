"""Coverage experiments on simulated ladders with known truth.

Used by the test suite (a few replicates in the default tier, 20 in the slow tier) and by
``benchmarks/``; kept in the package so users can check a model structure on a ladder
shaped like their own before trusting it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .fitting import fit
from .schedules import Schedule
from .simulate import simulate_ladder


@dataclass(frozen=True)
class LadderDesign:
    """Shape of a simulated hierarchical ladder and its held-out target runs."""

    families: int = 3
    sizes: tuple[float, ...] = (2e7, 5e7, 1.2e8, 3e8)
    heldout_sizes: tuple[float, ...] = (3e9,)
    multiplier: float = 20.0
    seeds: int = 3
    checkpoints: int = 25
    noise: float = 0.01
    family_spread: float = 0.1
    seed_spread: float = 0.01
    ar1: float = 0.9


def hierarchical_replicate(
    seed: int,
    design: LadderDesign = LadderDesign(),
    *,
    residuals: str = "ar1",
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    hdi_prob: float = 0.9,
) -> dict:
    """Fit one simulated ladder and score intervals and held-out predictive bands.

    Returns a dict with ``family_alpha_covered`` / ``family_beta_covered`` (lists of
    bools, one per family), ``seed_spread_covered`` (bool), ``heldout_covered`` (list of
    bools, one per held-out run) and ``heldout_width`` (mean relative band width).
    """
    schedule = Schedule("cosine", 0.01, 0.1)
    kwargs = dict(
        families=design.families, token_multipliers=(design.multiplier,), seeds=design.seeds,
        checkpoints=design.checkpoints, noise=design.noise, family_spread=design.family_spread,
        seed_spread=design.seed_spread, ar1=design.ar1, schedule=schedule,
    )
    runs, truth = simulate_ladder(seed, sizes=design.sizes + design.heldout_sizes, **kwargs)
    heldout = runs["params"].isin(design.heldout_sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs[~heldout], checkpoints="all", residuals=residuals, draws=draws, tune=tune,
                     chains=chains, random_seed=seed, progressbar=False)
    lo_q, hi_q = (1 - hdi_prob) / 2, 1 - (1 - hdi_prob) / 2
    out: dict = {"seed": seed, "residuals": residuals, "converged": result.diagnostics().passed}
    for name in ("alpha", "beta"):
        draws_f = result.posterior_draws(name)
        covered = []
        for j, fam in enumerate(result.families):
            lo, hi = np.quantile(draws_f[:, j], [lo_q, hi_q])
            covered.append(bool(lo <= truth.families[fam][name] <= hi))
        out[f"family_{name}_covered"] = covered
    lo, hi = np.quantile(result.posterior_draws("sigma_run"), [lo_q, hi_q])
    out["seed_spread_covered"] = bool(lo <= design.seed_spread <= hi)
    finals = runs[heldout & (runs["tokens"] == runs["total_tokens"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = result.predict(finals[["params", "tokens", "total_tokens", "family"]], hdi_prob=hdi_prob)
    truth_values = finals["value"].to_numpy()
    out["heldout_covered"] = list(((pred["lower"] <= truth_values) & (truth_values <= pred["upper"])).to_numpy())
    out["heldout_width"] = float(((pred["upper"] - pred["lower"]) / pred["median"]).mean())
    return out


def summarise(replicates: list[dict]) -> pd.Series:
    """Pooled coverage rates over replicates."""
    def rate(key):
        values = [v for r in replicates for v in np.atleast_1d(r[key])]
        return float(np.mean(values))

    return pd.Series(
        {
            "family_alpha": rate("family_alpha_covered"),
            "family_beta": rate("family_beta_covered"),
            "seed_spread": rate("seed_spread_covered"),
            "heldout": rate("heldout_covered"),
            "heldout_width": float(np.mean([r["heldout_width"] for r in replicates])),
            "converged": rate("converged"),
        }
    )
