"""Posterior predictions at target scales, computed from posterior draws in numpy.

For every posterior draw the law is evaluated at each target with the target's family
parameters (a family the model never saw gets a fresh draw from the population), plus the
schedule term for unfinished targets; a target naming an existing ``run`` gets that run's
offset and, with AR(1) residuals, the part of its last observed residual that persists.
``kind="observation"`` adds what a new measurement would add: a new seed's offset (for
targets that are not an existing run) and the likelihood's noise.

Numpy rather than ``pm.sample_posterior_predictive``: the law is closed-form, so this is
exact, needs no compilation (predicting from a loaded ``.nc`` file takes milliseconds),
and with the stored seed it gives the same numbers after save and load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .design import (ModelOptions, anneal_parameter, design, latest_row_of_run, scheduled_law, walk_clock,
                     walk_variance_units)
from .downstream import to_link_scale
from .likelihoods import LIKELIHOODS
from .runs import RunsTableError, Scale, _rows
from .schedules import Schedule
from .spec import ModelSpec

KINDS = ("observation", "mean")
NEW_FAMILY = "(new family)"


@dataclass
class Structure:
    """Everything besides the posterior that prediction needs (stored with a fit)."""

    spec: ModelSpec
    scale: Scale
    options: ModelOptions
    families: list[str]
    run_names: list[str]
    schedule: Schedule | None
    rows: pd.DataFrame  # the fitted rows, in model order
    acc_rows: pd.DataFrame | None = None  # fitted accuracy rows (downstream)


def read_targets(targets: pd.DataFrame | dict | str | os.PathLike) -> pd.DataFrame:
    """Validate prediction targets: ``params`` and ``tokens`` (> 0, finite); optional
    ``total_tokens`` (default: ``tokens``, a finished run), ``family`` and ``run``.

    Accepts a DataFrame, a dict of columns or scalars, or a CSV path.
    """
    if isinstance(targets, (str, os.PathLike)):
        targets = pd.read_csv(targets)
    if isinstance(targets, dict):  # scalars broadcast against lists
        length = max(len(np.atleast_1d(v)) for v in targets.values())
        targets = pd.DataFrame({k: np.broadcast_to(np.atleast_1d(v), (length,)) if np.ndim(v) == 0
                                else np.atleast_1d(v) for k, v in targets.items()})
    df = targets.copy().reset_index(drop=True)
    problems = [f"column '{c}' is required in prediction targets" for c in ("params", "tokens") if c not in df]
    if problems:
        raise RunsTableError(problems)
    for col in ("params", "tokens", "total_tokens"):
        if col not in df:
            continue
        num = pd.to_numeric(df[col], errors="coerce")
        bad = ~(np.isfinite(num) & (num > 0))
        if bad.any():
            problems.append(f"column '{col}' of the targets must be a finite number > 0 at {_rows(df.index[bad])}")
        df[col] = num.astype(float)
    if problems:
        raise RunsTableError(problems)
    if "total_tokens" in df:
        late = df["tokens"] > df["total_tokens"] * (1 + 1e-9)
        if late.any():
            raise RunsTableError([f"column 'tokens' of the targets exceeds total_tokens at {_rows(df.index[late])}"])
    return df


def resolve_families(targets: pd.DataFrame, structure: Structure) -> pd.Series:
    """Family label of each target: as given; else the only family; else a new family."""
    if "family" in targets:
        return targets["family"].fillna(NEW_FAMILY).astype(str)
    only = structure.families[0] if len(structure.families) == 1 else NEW_FAMILY
    return pd.Series([only] * len(targets), index=targets.index)


def _stacked(idata: az.InferenceData, name: str) -> np.ndarray:
    return idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def _theta(idata, structure: Structure, fam_labels: pd.Series, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Law parameters per draw and target, shape (S, T)."""
    law = structure.spec.law
    if structure.options.pooling == "none":
        return {p: _stacked(idata, p)[:, None] for p in law.sampled}
    index = {f: i for i, f in enumerate(structure.families)}
    out = {}
    new = sorted({f for f in fam_labels if f not in index})
    for p in law.sampled:
        if p in law.shared:
            out[p] = _stacked(idata, p)[:, None]
            continue
        per_family = _stacked(idata, p)  # (S, F)
        if new:
            ln_pop = np.log(_stacked(idata, f"{p}_pop"))[:, None]
            sd = _stacked(idata, f"{p}_sd")[:, None]
            fresh = np.exp(ln_pop + sd * rng.standard_normal((len(ln_pop), len(new))))
            per_family = np.concatenate([per_family, fresh], axis=1)
        lookup = {**index, **{f: len(index) + i for i, f in enumerate(new)}}
        out[p] = per_family[:, [lookup[f] for f in fam_labels]]
    return out


def ln_mean_draws(idata, structure: Structure, rows: pd.DataFrame, fam_labels: pd.Series, rng,
                  theta: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """ln of the law (plus schedule term) per draw and row, shape (S, T); no run offsets.
    ``theta``: the law parameters per draw and row (default: drawn by :func:`_theta`)."""
    x = design(rows, structure.options, structure.scale, structure.families, None, structure.schedule)
    theta = _theta(idata, structure, fam_labels, rng) if theta is None else theta
    c_name = anneal_parameter(structure.options)
    c = _stacked(idata, c_name)[:, None] if c_name else None
    mean = scheduled_law(structure.spec.law, theta, x["n"][None, :], x["d"][None, :], x["u"][None, :], c,
                         structure.options, np.exp)
    return np.log(np.asarray(mean, dtype=float))


def predictive_draws(
    idata: az.InferenceData,
    structure: Structure,
    targets: pd.DataFrame,
    kind: str = "observation",
    seed: int = 0,
) -> xr.DataArray:
    """Draws of the metric at the targets.

    Returns
    -------
    xarray.DataArray
        dims ``("chain", "draw", "target")``, in the metric's units (nats for loss).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    rng = np.random.default_rng([seed, 20_240_601])
    opts = structure.options
    targets = targets.copy()
    if "total_tokens" not in targets:
        targets["total_tokens"] = targets["tokens"]
    fam_labels = resolve_families(targets, structure)
    theta = _theta(idata, structure, fam_labels, rng)
    mu = ln_mean_draws(idata, structure, targets, fam_labels, rng, theta)
    run_index = {r: i for i, r in enumerate(structure.run_names)}
    runs = targets["run"].astype(str) if "run" in targets else pd.Series([""] * len(targets))
    known = runs.map(lambda r: r in run_index).to_numpy()
    unknown_named = [r for r, k in zip(runs, known) if r and r != "nan" and not k]
    if unknown_named:
        raise ValueError(f"targets name runs the fit has not seen: {sorted(set(unknown_named))[:5]}")
    sigma = _size_scaled(idata, structure, "sigma", targets["params"])
    if opts.run_effect:
        mu = mu + run_terms(idata, structure, targets, runs, known, kind == "observation", rng)
    if opts.drift == "walk":
        mu = mu + walk_terms(idata, structure, targets, runs, known, kind == "observation", rng)
    metrics = targets["metric"].astype(str) if "metric" in targets else pd.Series(["loss"] * len(targets))
    downstream = metrics.str.startswith(("acc:", "err:")).to_numpy()
    latent = np.exp(mu[:, downstream])
    if downstream.any() and "downstream_offset" in idata.posterior:
        latent = latent * np.exp(_downstream_offsets(idata, runs[downstream], kind == "observation", rng))
    if downstream.any():
        E = np.broadcast_to(theta["E"], mu.shape)[:, downstream]
        latent = to_link_scale(opts.link_scale, latent, E)
    if opts.residuals == "ar1" and known.any():
        mu, sigma = _condition_on_last_residual(idata, structure, targets, runs, known, mu, sigma, rng)
    if kind == "observation":
        likelihood = LIKELIHOODS[structure.spec.likelihood]
        noise = {p: _stacked(idata, p)[:, None] for p in likelihood.noise_params}
        mu = mu + sigma * likelihood.standard_noise(rng, noise, mu.shape)
    values = np.exp(mu)
    if downstream.any():
        values[:, downstream] = accuracy_draws(idata, structure, metrics[downstream].tolist(), latent, kind, rng)
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    return xr.DataArray(
        values.reshape(chains, draws, -1),
        dims=("chain", "draw", "target"),
        coords={
            "chain": idata.posterior["chain"].to_numpy(),
            "draw": idata.posterior["draw"].to_numpy(),
            "target": np.arange(len(targets)),
        },
        name=kind,
    )


def accuracy_draws(idata, structure: Structure, metrics: list[str], latent: np.ndarray, kind: str, rng) -> np.ndarray:
    """Accuracy (``acc:<task>``, ``acc:avg``) or error (``err:...``) draws at latent losses.

    ``latent`` has shape (S, len(metrics)), on the links' scale (see
    :func:`~bayescale.downstream.to_link_scale`). ``acc:avg`` is the mean over every fitted task,
    computed draw by draw so correlations between tasks are kept -- or, when the fit had
    ``acc:avg`` rows of its own (the average fitted as one metric), that metric's link.
    Observation draws use the fit's likelihood: with ``n_items`` known, Beta-Binomial (``p' ~ Beta(p phi, (1-p) phi)``,
    then Binomial) when the fit has a per-task ``phi``, else Binomial; otherwise Beta.
    """
    from .downstream import AVERAGE, link, link_centred, task_table

    if structure.acc_rows is None:
        raise ValueError("this fit has no downstream tasks: fit with downstream='sigmoid', 'exp' or 'gompertz'")
    tasks = task_table(structure.acc_rows)
    names = tasks["task"].tolist()
    posterior = idata.posterior
    centred = "intercept" in posterior and "loss_centre" in posterior
    slope, ceiling = _stacked(idata, "slope"), _stacked(idata, "ceiling")
    location = _stacked(idata, "intercept" if centred else "midpoint")
    centre = _stacked(idata, "loss_centre")[:, None] if centred else None
    phi = _stacked(idata, "phi") if "phi" in posterior else None
    chance = tasks["chance"].to_numpy()
    n_items = tasks["n_items"].to_numpy()
    out = np.empty_like(latent)
    for j, metric in enumerate(metrics):
        task = "acc:" + metric[4:]
        if task in names:  # a fitted task, or an average fitted as its own metric
            columns = [names.index(task)]
        else:
            columns = list(range(len(names))) if task == AVERAGE else None
        if columns is None:
            raise ValueError(f"metric {metric!r} is not a fitted task; fitted: {names} and {AVERAGE}")
        args = (structure.options.downstream, latent[:, [j]], chance[columns], ceiling[:, columns],
                slope[:, columns], location[:, columns])
        acc = link_centred(*args, centre) if centred else link(*args)
        if kind == "observation":
            for k, col in enumerate(columns):
                p = np.clip(acc[:, k], 1e-9, 1 - 1e-9)
                if np.isfinite(n_items[col]):
                    if phi is not None:
                        p = rng.beta(p * phi[:, col], (1 - p) * phi[:, col])
                    acc[:, k] = rng.binomial(int(n_items[col]), p) / n_items[col]
                else:
                    precision = _stacked(idata, "precision")
                    acc[:, k] = rng.beta(p * precision, (1 - p) * precision)
        value = acc.mean(axis=1)
        out[:, j] = 1 - value if metric.startswith("err:") else value
    return out


def _downstream_offsets(idata, runs: pd.Series, new_runs: bool, rng) -> np.ndarray:
    """Run-level downstream offsets on ln(loss) per draw and target, shape (S, T): the fitted
    ``downstream_offset`` of a run with accuracy rows; for any other run a new run's draw
    ``tau_downstream z`` (``new_runs``, observation draws) or zero (the expected run)."""
    fitted = idata.posterior["downstream_offset"]
    names = [str(r) for r in fitted.coords["acc_run"].to_numpy()]
    offsets = _stacked(idata, "downstream_offset")
    out = np.zeros((offsets.shape[0], len(runs)))
    for j, run in enumerate(runs):
        if run in names:
            out[:, j] = offsets[:, names.index(run)]
        elif new_runs:
            out[:, j] = _stacked(idata, "tau_downstream") * rng.standard_normal(offsets.shape[0])
    return out


def run_terms(idata, structure: Structure, rows: pd.DataFrame, runs: pd.Series, known: np.ndarray,
              new_seeds: bool, rng) -> np.ndarray:
    """Run offsets (and, with ``run_slope``, run slopes times ln(tokens / total tokens)) per
    draw and row, shape (S, T): the fitted values for existing runs; for other rows a new
    seed's draw when ``new_seeds``, else zero (the expected run)."""
    opts = structure.options
    sigma_run = _stacked(idata, "sigma_run")[:, None]
    columns = [structure.run_names.index(r) for r in runs[known]]
    n_draws, n_new = sigma_run.shape[0], int((~known).sum())
    z = np.zeros((n_draws, len(rows)))
    z[:, known] = _stacked(idata, "z_run")[:, columns]
    if new_seeds:
        z[:, ~known] = rng.standard_normal((n_draws, n_new))
    terms = sigma_run * z
    if opts.run_slope:
        total = rows["total_tokens"] if "total_tokens" in rows else rows["tokens"]
        ln_fraction = np.log(rows["tokens"].to_numpy(dtype=float) / total.to_numpy(dtype=float))[None, :]
        scale = _size_scaled(idata, structure, "sigma_slope", rows["params"])
        z = np.zeros((n_draws, len(rows)))
        z[:, known] = _stacked(idata, "z_slope")[:, columns]
        if new_seeds:
            z[:, ~known] = rng.standard_normal((n_draws, n_new))
        terms = terms + scale * z * ln_fraction
    return terms


def _size_scaled(idata, structure: Structure, name: str, params) -> np.ndarray:
    """A scale parameter per draw and row, shape (S, T): ``name`` times ``(N/N0)^-kappa``
    with ``noise="size"`` (residuals, run slopes and the drift all shrink with size)."""
    scale = _stacked(idata, name)[:, None] * np.ones((1, len(params)))
    if structure.options.noise == "size":
        n = np.asarray(params, dtype=float)[None, :] / structure.scale.N0
        scale = scale * n ** -_stacked(idata, "kappa")[:, None]
    return scale


def walk_at_rows(idata, structure: Structure) -> np.ndarray:
    """The fitted random walk (``drift="walk"``) at every fitted row, shape (S, n_obs)."""
    rows = structure.rows
    x = design(rows, structure.options, structure.scale, structure.families, structure.run_names,
               structure.schedule)
    increments = _size_scaled(idata, structure, "sigma_drift", rows["params"]) * np.sqrt(x["walk_gap"])[None, :] * _stacked(
        idata, "z_walk")
    total = np.cumsum(increments, axis=1)
    start = x["walk_start"]
    return total - total[:, start] + increments[:, start]


def walk_terms(idata, structure: Structure, targets: pd.DataFrame, runs: pd.Series, known: np.ndarray,
               new_steps: bool, rng) -> np.ndarray:
    """Random-walk drift per draw and target, shape (S, T).

    An existing run continues from its walk at its latest fitted row at or before the
    target (its first row if the target precedes them all); a new run starts at zero at
    ``min_fraction`` of its length.  ``new_steps`` (observation draws) adds the walk still
    ahead, ``sigma_drift n^-kappa sqrt(clock units to go) z`` (ln tokens, or the fraction
    of the run with ``drift_clock="fraction"``); without it an existing run
    keeps its walk and a new run gets zero (the expected run).
    """
    out = np.zeros((_stacked(idata, "sigma_drift").shape[0], len(targets)))
    tokens = targets["tokens"].to_numpy(dtype=float)
    total = targets["total_tokens"].to_numpy(dtype=float) if "total_tokens" in targets else tokens
    clock = structure.options.drift_clock
    units = walk_variance_units(tokens / total, structure.options.min_fraction, clock)
    if known.any():
        walk = walk_at_rows(idata, structure)
        fitted_tokens = structure.rows["tokens"].to_numpy(dtype=float)
        fitted_total = structure.rows["total_tokens"].to_numpy(dtype=float)
        at = latest_row_of_run(structure.rows, runs, tokens)
        for t in np.flatnonzero(known):  # on the run's own clock (its total tokens)
            out[:, t] = walk[:, at[t]]
            run_total = fitted_total[at[t]]
            units[t] = abs(walk_clock(tokens[t] / run_total, clock) - walk_clock(fitted_tokens[at[t]] / run_total, clock))
    if new_steps:
        out = out + _size_scaled(idata, structure, "sigma_drift", targets["params"]) * np.sqrt(units)[None, :] * rng.standard_normal(
            out.shape)
    return out


def _condition_on_last_residual(idata, structure, targets, runs, known, mu, sigma, rng):
    """AR(1) in ln tokens: an existing run's last residual persists with rho = exp(-gap/ell)."""
    rows = structure.rows
    mu_rows = ln_mean_draws(idata, structure, rows, rows["family"].astype(str), rng)
    if structure.options.run_effect:
        every = np.ones(len(rows), dtype=bool)
        mu_rows = mu_rows + run_terms(idata, structure, rows, rows["run"].astype(str), every, False, rng)
    if structure.options.drift == "walk":
        mu_rows = mu_rows + walk_at_rows(idata, structure)
    resid = np.log(rows["value"].to_numpy(dtype=float))[None, :] - mu_rows
    ell = _stacked(idata, "ell")
    last_row = rows.reset_index(drop=True).groupby("run")["tokens"].idxmax()
    for t in np.flatnonzero(known):
        i = int(last_row[runs.iloc[t]])
        gap = abs(np.log(targets["tokens"].iloc[t] / rows["tokens"].iloc[i]))
        rho = np.exp(-gap / ell)
        mu[:, t] = mu[:, t] + rho * resid[:, i]
        sigma[:, t] = sigma[:, t] * np.sqrt(1 - rho**2)
    return mu, sigma


def bands(draws: xr.DataArray, hdi_prob: float) -> pd.DataFrame:
    """Mean, median and highest-density interval of each target's draws."""
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    flat = draws.stack(sample=("chain", "draw")).transpose("target", "sample").to_numpy()
    if flat.shape[1] > 1:
        interval = az.hdi(flat.T[None, ...], hdi_prob=hdi_prob)  # (target, 2)
    else:
        interval = np.repeat(flat, 2, axis=1)
    return pd.DataFrame(
        {
            "mean": flat.mean(axis=1),
            "median": np.median(flat, axis=1),
            "lower": interval[:, 0],
            "upper": interval[:, 1],
        }
    )
