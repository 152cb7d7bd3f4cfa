"""Coverage experiments on simulated ladders with known truth.

Used by the test suite (one small replicate in the default tier, 20 in the slow tier) and
by ``benchmarks/calibration.py`` (hierarchical ladders) and
``benchmarks/downstream_calibration.py`` (task accuracies).  A development tool of this
repository, not part of the package's API.

Every interval here is equal-tailed (the 5% and 95% quantiles of the draws for 90%), for
parameters and for predictive bands alike, so the nominal level means the same thing for
every scored quantity.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd

from bayescale import Model, fit
from bayescale.parts import (
    AR1Residuals,
    Checkpoints,
    Downstream,
    FamilyPooling,
    RunEffect,
    ScheduleTerm,
)
from bayescale.schedules import Schedule
from bayescale.simulate import simulate_ladder


def hierarchical_model(residuals: str = "ar1", run_effect: bool = True,
                       family_prior: str = "student_t") -> Model:
    """The checkpoint model the hierarchical replicates fit.

    Pooled families, every checkpoint, the runs table's cosine schedule, and optionally AR(1)
    residuals and run offsets.
    """
    parts = [FamilyPooling(prior=family_prior), Checkpoints(), ScheduleTerm(source="table")]
    parts += [AR1Residuals()] if residuals == "ar1" else []
    parts += [RunEffect()] if run_effect else []
    return Model("chinchilla", parts=parts,
                 name=f"hierarchical ({residuals}, run effect {run_effect})")


@dataclass(frozen=True)
class LadderDesign:
    """Shape of a simulated hierarchical ladder and its held-out target runs.

    Every (family, size, multiplier) configuration is trained with ``seeds`` seeds and
    observed at ``checkpoints`` log-spaced checkpoints (10% to 100% of its tokens).  The
    held-out targets are the final losses of new seeds at ``heldout_sizes`` (one run per
    family, multiplier in ``heldout_multipliers`` and seed), none of which the fit sees.

    The default is the ladder of issue #3: 3 families x 4 sizes (1.8 decades) x 2 token
    multipliers x 3 seeds x 25 checkpoints (1,800 fitted rows), AR(1) residuals with lag-one
    correlation 0.9 between checkpoints (a correlation length of 0.9 in ln tokens, 40% of a
    run's span) and 10 x larger held-out runs.
    """

    families: int = 3
    sizes: tuple[float, ...] = (1.5e7, 6e7, 2.5e8, 1e9)
    multipliers: tuple[float, ...] = (10.0, 40.0)
    heldout_sizes: tuple[float, ...] = (1e10,)
    heldout_multipliers: tuple[float, ...] = (20.0,)
    seeds: int = 3
    checkpoints: int = 25
    noise: float = 0.01
    family_spread: float = 0.1
    seed_spread: float = 0.01
    ar1: float = 0.9

    @property
    def n_obs(self) -> int:
        """Rows the fit sees."""
        return (self.families * len(self.sizes) * len(self.multipliers) * self.seeds
                * self.checkpoints)


def _equal_tailed(draws: np.ndarray, prob: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(draws, [(1 - prob) / 2, 1 - (1 - prob) / 2], axis=axis)
    return lo, hi


def _draw_matrix(draws) -> np.ndarray:
    """(chain, draw, target) DataArray -> (samples, targets) array."""
    return draws.stack(s=("chain", "draw")).transpose("s", "target").to_numpy()


def _pooled_rate(replicates: list[dict], key: str) -> float:
    """Share of True over every replicate's ``key`` (a bool or a list of bools); NaN if none."""
    values = [v for r in replicates for v in np.atleast_1d(r[key])]
    return float(np.mean(values)) if values else float("nan")


def hierarchical_replicate(
    seed: int,
    design: LadderDesign = LadderDesign(),
    *,
    residuals: str = "ar1",
    run_effect: bool = True,
    family_prior: str = "student_t",
    draws: int = 2000,
    tune: int = 800,
    chains: int = 2,
    target_accept: float | None = 0.99,
    mass_matrix: str | None = "low_rank",
    low_rank_cutoff: float | None = 3.0,
    prob: float = 0.9,
    retry: bool = True,
) -> dict:
    """Fit one simulated ladder and score intervals and held-out predictive bands.

    Returns a dict with ``family_alpha_covered`` / ``family_beta_covered`` (lists of
    bools, one per family), ``seed_spread_covered`` (bool), ``heldout_covered`` (list of
    bools, one per held-out run), ``heldout_width`` (mean relative band width), and for
    inspection the truths, intervals, z-scores of each truth within its posterior,
    convergence verdict, divergences, mean tree depth and fit seconds.

    The model and sampler defaults are what the default ladder needs to converge: its three
    families hardly pin the spreads between families, so the families' deviations get the
    Student-t prior (``FamilyPooling(prior="student_t")``: no spread to sample, no funnel); each
    family's ``E``, ``a`` and ``alpha`` are correlated at 0.9-0.95, which nutpie's low-rank
    mass matrix follows with a cutoff of 3 (its default of 100 ignores them); target_accept
    0.99 and 2 x 2,000 draws give bulk ESS >= 400 in most replicates (see
    benchmarks/README.md).
    """
    schedule = Schedule("cosine", 0.01, 0.1)
    kwargs = {
        "families": design.families, "seeds": design.seeds, "checkpoints": design.checkpoints,
        "noise": design.noise,
        "family_spread": design.family_spread, "seed_spread": design.seed_spread, "ar1": design.ar1,
        "schedule": schedule,
    }
    # One simulation holds fitted and held-out runs, so both share every family's truth.
    configs = set(design.sizes) | set(design.heldout_sizes)
    multipliers = tuple(sorted(set(design.multipliers) | set(design.heldout_multipliers)))
    runs, truth = simulate_ladder(seed, sizes=tuple(sorted(configs)), token_multipliers=multipliers,
                                  **kwargs)
    mult = runs["total_tokens"] / runs["params"]
    fitted = runs["params"].isin(design.sizes) & np.isclose(
        mult.to_numpy()[:, None], np.array(design.multipliers)[None, :]).any(axis=1)
    heldout = runs["params"].isin(design.heldout_sizes) & np.isclose(
        mult.to_numpy()[:, None], np.array(design.heldout_multipliers)[None, :]).any(axis=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs[fitted], hierarchical_model(residuals, run_effect, family_prior),
                     draws=draws, tune=tune, chains=chains,
                     target_accept=target_accept, mass_matrix=mass_matrix,
                     low_rank_cutoff=low_rank_cutoff if mass_matrix == "low_rank" else None,
                     random_seed=seed, progressbar=False, retry=retry)
    seconds = time.perf_counter() - start
    diag = result.diagnostics()
    stats = result.idata.sample_stats
    depth_name = next((k for k in ("depth", "tree_depth") if k in stats), None)
    depth = float(stats[depth_name].mean()) if depth_name else float("nan")
    law_level = list(result.law.sampled) + [n for n in result._structure_names()
                                            if n.endswith(("_pop", "_sd"))]
    law_post = result.idata.posterior[law_level]
    out: dict = {
        "seed": seed, "residuals": residuals, "family_prior": family_prior,
        "converged": bool(diag.passed),
        "max_rhat": diag.max_rhat, "min_ess_bulk": diag.min_ess_bulk,
        "divergences": diag.divergences,
        "divergent_fraction": diag.divergences / diag.n_draws,
        # population- and family-level parameters alone (issue #3 asks bulk ESS >= 400 of these)
        "law_max_rhat": float(az.rhat(law_post).to_array().max()),
        "law_min_ess_bulk": float(az.ess(law_post, method="bulk").to_array().min()),
        "tree_depth": depth, "seconds": seconds, "n_obs": int(fitted.sum()),
    }
    for name in ("alpha", "beta"):
        draws_f = result.posterior_draws(name)
        true = np.array([truth.families[fam][name] for fam in result.families])
        lo, hi = _equal_tailed(draws_f, prob)
        out[f"family_{name}_covered"] = [bool(v) for v in (lo <= true) & (true <= hi)]
        out[f"family_{name}_truth"] = true.tolist()
        out[f"family_{name}_interval"] = np.stack([lo, hi], axis=1).tolist()
        out[f"family_{name}_z"] = ((true - draws_f.mean(axis=0)) / draws_f.std(axis=0)).tolist()
    if run_effect:
        lo, hi = _equal_tailed(result.posterior_draws("sigma_run"), prob)
    else:  # no seed spread in the model: nothing to cover it with
        lo = hi = float("nan")
    out["seed_spread_covered"] = bool(lo <= design.seed_spread <= hi)
    out["seed_spread_interval"] = [float(lo), float(hi)]
    finals = runs[heldout & (runs["tokens"] == runs["total_tokens"])]
    targets = finals[["params", "tokens", "total_tokens", "family"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = _draw_matrix(result.predict_draws(targets))
    lo, hi = _equal_tailed(pred, prob)
    median = np.median(pred, axis=0)
    values = finals["value"].to_numpy()
    out["heldout_covered"] = [bool(v) for v in (lo <= values) & (values <= hi)]
    out["heldout_width"] = float(((hi - lo) / median).mean())
    out["heldout_z"] = ((np.log(values) - np.log(pred).mean(axis=0))
                        / np.log(pred).std(axis=0)).tolist()
    out["heldout_params"] = finals["params"].tolist()
    # The law itself at the held-out runs (no seed offset, no residual) against its band.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = _draw_matrix(result.predict_draws(targets, kind="mean"))
    lo, hi = _equal_tailed(law, prob)
    law_truth = np.array([truth.loss(n, d, f)
                          for n, d, f in zip(finals["params"], finals["tokens"], finals["family"],
                                             strict=True)])
    out["heldout_law_covered"] = [bool(v) for v in (lo <= law_truth) & (law_truth <= hi)]
    out["heldout_law_width"] = float(((hi - lo) / np.median(law, axis=0)).mean())
    return out


def summarise(replicates: list[dict]) -> pd.Series:
    """Pooled coverage rates over replicates (and convergence rate, mean fit seconds).

    ``<rate>_converged`` is the same rate over the replicates whose fit passed its
    convergence checks only (NaN if none did), so a coverage that rests on unconverged
    chains shows up as a difference between the two.
    """
    converged = [r for r in replicates if r["converged"]]
    rates = {"family_alpha": "family_alpha_covered", "family_beta": "family_beta_covered",
             "seed_spread": "seed_spread_covered", "heldout": "heldout_covered"}
    out = {name: _pooled_rate(replicates, key) for name, key in rates.items()}
    out |= {
        "heldout_width": float(np.mean([r["heldout_width"] for r in replicates])),
        "heldout_law": _pooled_rate(replicates, "heldout_law_covered"),
        "heldout_law_width": float(np.mean([r["heldout_law_width"] for r in replicates])),
        "converged": _pooled_rate(replicates, "converged"),
        # issue #3's bar: population and family level R-hat <= 1.01 and bulk ESS >= 400, and
        # divergent draws <= 0.1%
        "law_level_converged": float(np.mean([r["law_max_rhat"] <= 1.01
                                              and r["law_min_ess_bulk"] >= 400
                                              and r["divergent_fraction"] <= 0.001
                                              for r in replicates])),
        "seconds": float(np.mean([r["seconds"] for r in replicates])),
    }
    out |= {f"{name}_converged": _pooled_rate(converged, key) for name, key in rates.items()}
    return pd.Series(out)


def describe(out: dict) -> str:
    """One line per replicate, for logs."""
    def fmt(values):
        return "".join("+" if v else "-" for v in values)

    return (
        f"seed {out['seed']:>3} {out['residuals']:<4} {out['seconds']:6.1f}s depth "
        f"{out['tree_depth']:.1f} div {out['divergences']:>3} rhat {out['max_rhat']:.3f} ess "
        f"{out['min_ess_bulk']:5.0f} (law {out['law_max_rhat']:.3f}, "
        f"{out['law_min_ess_bulk']:4.0f}) | alpha {fmt(out['family_alpha_covered'])} z "
        f"{np.round(out['family_alpha_z'], 1).tolist()} | beta {fmt(out['family_beta_covered'])} z "
        f"{np.round(out['family_beta_z'], 1).tolist()} | sd_run "
        f"{fmt([out['seed_spread_covered']])} {np.round(out['seed_spread_interval'], 4).tolist()} "
        f"| heldout {fmt(out['heldout_covered'])} w {out['heldout_width']:.3f} z "
        f"{np.round(out['heldout_z'], 1).tolist()} | law {fmt(out['heldout_law_covered'])} w "
        f"{out['heldout_law_width']:.3f}"
    )


@dataclass(frozen=True)
class DownstreamDesign:
    """Shape of a simulated downstream calibration ladder (issue #4's acceptance 1).

    One family, ``sizes`` x ``multipliers`` runs observed at their final checkpoint, each
    with the loss and ``n_tasks`` benchmark accuracies; the held-out targets are every task's
    accuracy of the runs at ``heldout_sizes`` (none of them fitted), 2x-4x larger than the
    largest fitted model.  Each replicate draws its tasks at random (see
    :func:`draw_tasks`): midpoints spread over the ladder's losses, slopes 2-6 per nat,
    chance 0 (generation), 0.25 or 0.5 (multiple choice), and a number of items log-uniform in
    ``n_items`` -- so the Binomial's noise differs 100-fold between tasks.  Every task of a
    run sees its loss times ``exp(downstream_run_spread z_run)`` (a run better or worse at
    every task than its loss says).
    """

    sizes: tuple[float, ...] = (2e7, 5e7, 1.2e8, 3e8, 7e8)
    multipliers: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0)
    heldout_sizes: tuple[float, ...] = (1.5e9, 3e9)
    heldout_multipliers: tuple[float, ...] = (20.0,)
    n_tasks: int = 6
    n_items: tuple[int, int] = (100, 10000)
    noise: float = 0.01
    downstream_run_spread: float = 0.02


def draw_tasks(rng: np.random.Generator, design: DownstreamDesign, losses: np.ndarray) -> list:
    """``design.n_tasks`` random :class:`~bayescale.simulate.Task` s for a ladder.

    The ladder's fitted final losses are ``losses`` (nats): midpoints spread evenly (with
    jitter) from the ladder's lowest loss minus 0.3 nats to its 70th percentile, so some tasks
    are near their ceiling at the held-out sizes and some still leave chance there.
    """
    from bayescale.simulate import Task

    lo, hi = float(np.min(losses)) - 0.3, float(np.quantile(losses, 0.7))
    k = design.n_tasks
    midpoints = lo + (hi - lo) * (np.arange(k) + rng.uniform(0.2, 0.8, k)) / k
    ln_items = rng.uniform(np.log(design.n_items[0]), np.log(design.n_items[1]), k)
    chances = rng.choice([0.0, 0.25, 0.5], size=k, p=[0.2, 0.6, 0.2])
    return [Task(f"t{i}", n_items=round(float(np.exp(ln_items[i]))), chance=float(chances[i]),
                 slope=float(rng.uniform(2.0, 6.0)), midpoint=float(midpoints[i]))
            for i in range(k)]


def downstream_replicate(
    seed: int,
    design: DownstreamDesign = DownstreamDesign(),
    *,
    link: str = "sigmoid",
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    target_accept: float | None = 0.95,
    prob: float = 0.9,
    retry: bool = True,
) -> dict:
    """Fit one simulated ladder (loss + task accuracies); score the held-out tasks' bands.

    Returns a dict with ``heldout_covered`` (one bool per held-out task accuracy: the
    simulated observation, with its Binomial noise, inside the ``prob`` observation band),
    ``heldout_mean_covered`` (the accuracy of the true law and link, without the run's
    downstream offset, inside the band of ``kind="mean"``), ``n_items`` and
    ``width`` of each band (so band width can be compared with the number of items),
    ``err_avg_covered`` (per held-out run: 1 - the mean of its observed accuracies inside the
    ``err:avg`` band, whose draws share the run's fresh offset across tasks), and the
    convergence verdict and fit seconds.
    """
    rng = np.random.default_rng(10_000 + seed)
    pilot, _ = simulate_ladder(seed, sizes=design.sizes, token_multipliers=design.multipliers,
                               noise=0.0)
    tasks = draw_tasks(rng, design, pilot["value"].to_numpy())
    sizes = tuple(sorted(set(design.sizes) | set(design.heldout_sizes)))
    multipliers = tuple(sorted(set(design.multipliers) | set(design.heldout_multipliers)))
    runs, truth = simulate_ladder(seed, sizes=sizes, token_multipliers=multipliers,
                                  noise=design.noise, tasks=tasks,
                                  downstream_run_spread=design.downstream_run_spread)
    mult = (runs["total_tokens"] / runs["params"]).to_numpy()
    fitted = (runs["params"].isin(design.sizes)
              & np.isclose(mult[:, None], np.array(design.multipliers)).any(axis=1))
    heldout = runs["params"].isin(design.heldout_sizes) & np.isclose(
        mult[:, None], np.array(design.heldout_multipliers)).any(axis=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs[fitted],
                     Model("chinchilla", parts=[Downstream(link=link)],
                           name=f"downstream ({link})"),
                     draws=draws, tune=tune, chains=chains,
                     target_accept=target_accept, random_seed=seed,
                     progressbar=False, retry=retry)
    seconds = time.perf_counter() - start
    diag = result.diagnostics()
    acc = runs[heldout & runs["metric"].str.startswith("acc:")].reset_index(drop=True)
    targets = acc[["params", "tokens", "metric"]]  # no run names: new runs, a fresh offset each
    finals = runs[heldout & (runs["metric"] == "loss")].reset_index(drop=True)
    err_targets = finals[["params", "tokens"]].assign(metric="err:avg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = _draw_matrix(result.predict_draws(targets))
        mean = _draw_matrix(result.predict_draws(targets, kind="mean"))
        err = _draw_matrix(result.predict_draws(err_targets))
    by_name = {t.name: t for t in tasks}
    true_mean = np.array([by_name[m.removeprefix("acc:")].accuracy(truth.loss(n, d))
                          for m, n, d in zip(acc["metric"], acc["params"], acc["tokens"],
                                             strict=True)])
    lo, hi = _equal_tailed(obs, prob)
    lo_m, hi_m = _equal_tailed(mean, prob)
    values = acc["value"].to_numpy()
    observed_err = 1 - acc.groupby("run")["value"].mean().reindex(finals["run"]).to_numpy()
    lo_e, hi_e = _equal_tailed(err, prob)
    return {
        "seed": seed, "link": link, "converged": bool(diag.passed), "max_rhat": diag.max_rhat,
        "min_ess_bulk": diag.min_ess_bulk, "divergences": diag.divergences, "seconds": seconds,
        "heldout_covered": [bool(v) for v in (lo <= values) & (values <= hi)],
        "heldout_mean_covered": [bool(v) for v in (lo_m <= true_mean) & (true_mean <= hi_m)],
        "err_avg_covered": [bool(v) for v in (lo_e <= observed_err) & (observed_err <= hi_e)],
        "n_items": acc["n_items"].astype(int).tolist(),
        "width": (hi - lo).tolist(),
        "accuracy": values.tolist(),
        "task": acc["metric"].tolist(),
    }



def summarise_downstream(replicates: list[dict]) -> pd.Series:
    """Pooled coverage over replicates, and how band width scales with the number of items.

    ``width_items_slope`` is the least-squares slope of ln(width / sqrt(p (1 - p))) on
    ln(n_items) over every held-out accuracy (about -0.5 where item sampling dominates the
    band, 0 where it does not matter).
    """
    width = np.concatenate([r["width"] for r in replicates])
    p = np.clip(np.concatenate([r["accuracy"] for r in replicates]), 0.02, 0.98)
    items = np.concatenate([r["n_items"] for r in replicates])
    slope = float(np.polyfit(np.log(items), np.log(width / np.sqrt(p * (1 - p))), 1)[0])
    return pd.Series({
        "heldout": _pooled_rate(replicates, "heldout_covered"),
        "heldout_mean": _pooled_rate(replicates, "heldout_mean_covered"),
        "err_avg": _pooled_rate(replicates, "err_avg_covered"),
        "cases": sum(len(r["heldout_covered"]) for r in replicates),
        "width_items_slope": slope,
        "converged": float(np.mean([r["converged"] for r in replicates])),
        "seconds": float(np.mean([r["seconds"] for r in replicates])),
    })
