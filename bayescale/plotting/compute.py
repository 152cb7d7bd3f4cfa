"""The numbers behind the figures: posterior bands, residuals, predictive checks, prior draws.

Pure functions of a fitted :class:`~bayescale.ScalingFit`; nothing here draws and nothing
fits.  The figures in :mod:`bayescale.plotting.figures` only draw what these return, so the
same numbers can be tested, tabulated or plotted with another library.

Bands are highest-density intervals over every posterior draw.  Values of the law and of
new observations always come from the fit's own :meth:`ScalingFit.predict_draws`, so a
figure can never disagree with :meth:`ScalingFit.predict` (family parameters, schedule
terms, run offsets and noise are the prediction code's business, not the plots').

If the posterior has a ``family`` dim (a hierarchical fit), parameters are shown per
family (and the population's, ``<name>_pop``, where the model has one); otherwise one
set of parameters serves every family.
"""

from __future__ import annotations

import warnings
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ..laws import FLOP_PER_PARAM_TOKEN
from ..runs import ACC_PREFIX, LOSS
from . import rcparams

FAMILY = "family"
POPULATION = "population"
#: Words for the unit of each parameter symbol, used on axis labels and in the report.
PARAMETER_UNITS = {
    "E": "nats",
    "A": "nats × N^α",
    "B": "nats × D^β",
    "a": "nats at the ladder's centre",
    "b": "nats at the ladder's centre",
    "alpha": "exponent of N",
    "beta": "exponent of D",
    "gamma": "exponent of C",
    "sigma": "sd of ln loss",
    "nu": "degrees of freedom",
    "sigma_run": "sd of ln loss between runs",
    "sigma_slope": "sd of run slopes, ln loss per ln token",
    "c": "nats",
    "ell": "ln tokens",
    "c_tokens": "ln tokens per unit of un-annealed rate",
    "kappa": "exponent of N in the noise scale",
    "q": "sharpness of the soft maximum",
}


def parameter_unit(name: str) -> str:
    """Unit words of a posterior variable name (``E``, ``E[family0]``, ``E_pop``, ``E_sd``)."""
    base = str(name).split("[")[0]
    if base in PARAMETER_UNITS:
        return PARAMETER_UNITS[base]
    if base.endswith("_pop"):
        return PARAMETER_UNITS.get(base[:-4], "")
    if base.endswith("_sd"):
        return "log-scale sd"
    return ""


# ----------------------------------------------------------------------------- basics
def check_fit(fit: Any) -> None:
    """Raise TypeError unless ``fit`` looks like a :class:`~bayescale.ScalingFit`."""
    missing = [a for a in ("idata", "model", "scale", "runs", "sampler_config")
               if not hasattr(fit, a)]
    if missing:
        raise TypeError(
            f"expected a bayescale ScalingFit (from bayescale.fit or bayescale.load_fit), got "
            f"{type(fit).__name__} without {', '.join(missing)}"
        )
    if "posterior" not in fit.idata.groups():
        raise TypeError("the fit's InferenceData has no posterior group")


def flops(params, tokens) -> np.ndarray:
    """Training compute C = 6 N D, FLOP."""
    return FLOP_PER_PARAM_TOKEN * np.asarray(params, dtype=float) * np.asarray(tokens, dtype=float)


def human(value: float) -> str:
    """A count in words-of-three-digits style: 2e7 -> '20M', 1.4e12 -> '1.4T'."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def metric_label(metric: str) -> str:
    """Axis label with units for a metric name."""
    if metric == LOSS:
        return "loss (nats)"
    if metric.startswith(ACC_PREFIX):
        return f"accuracy on {metric[len(ACC_PREFIX):]} (fraction correct)"
    return metric


def parameter_label(name: str) -> str:
    """``"alpha (exponent of N)"``: a parameter symbol with its unit."""
    unit = parameter_unit(name)
    return f"{name} ({unit})" if unit else f"{name} (dimensionless)"


def family_offsets(names: list[str], spread: float = 0.012) -> dict[str, float]:
    """Multiplicative offsets that dodge families apart on a log axis (1.0 for one family).

    Family i of k is shifted by 10^(spread * (i - (k - 1) / 2)): a few percent, enough to
    keep markers at the same N or C from hiding each other.
    """
    k = len(names)
    return {name: 10 ** (spread * (i - (k - 1) / 2)) for i, name in enumerate(names)}


def has_family_dim(fit: Any) -> bool:
    """True when the posterior carries a ``family`` dim (parameters per family)."""
    return FAMILY in fit.idata.posterior.dims


def families(fit: Any) -> list[str]:
    """Sorted family names of the fit: those in the runs and in the posterior's coords."""
    names = {str(f) for f in fit.runs["family"].unique()}
    if has_family_dim(fit):
        names |= {str(f) for f in fit.idata.posterior[FAMILY].to_numpy()}
    return sorted(names)


def noise_names(fit: Any) -> list[str]:
    """Noise parameters of the fit's likelihood (e.g. ``sigma``, ``nu``)."""
    return list(fit.model.noise.noise_params)


def sampled_names(fit: Any) -> list[str]:
    """Parameters with a prior in the model that the posterior holds under that name.

    The law's sampled parameters first, then the noise parameters, then any others (run
    spread, schedule term, ...), in the model's order.
    """
    post = fit.idata.posterior
    priors = fit.model.priors
    first = list(fit.model.law.sampled) + noise_names(fit)
    ordered = first + [n for n in priors if n not in first]
    return [n for n in ordered if n in priors and n in post.data_vars]


def population_name(fit: Any, name: str) -> str | None:
    """``<name>_pop`` when a family-pooled posterior holds the population value, else None."""
    pop = f"{name}_pop"
    return pop if has_family_dim(fit) and pop in fit.idata.posterior.data_vars else None


def is_mcmc(fit: Any) -> bool:
    """True for a NUTS posterior with more than one draw (so rank/energy plots apply)."""
    post = fit.idata.posterior
    return fit.sampler_config.method == "nuts" and post.sizes["draw"] > 1


def downstream_metrics(fit: Any) -> list[str]:
    """Accuracy metrics (``acc:<task>``) fitted jointly with the loss (a downstream part)."""
    acc = getattr(fit, "acc_rows", None)
    if acc is None or len(acc) == 0:
        return []
    return sorted(str(m) for m in acc["metric"].unique())


def link_bands(fit: Any, metric: str, loss_grid: np.ndarray, hdi_prob: float) -> pd.DataFrame:
    """Posterior band of one task's link, accuracy against loss, on ``loss_grid`` (nats).

    With the link's ``scale="log_reducible"`` the loss is mapped through each draw's ``E`` (the
    mean over families when E is per family: the links are shared by the families).
    """
    from ..downstream import link, task_table, to_link_scale

    tasks = task_table(fit.acc_rows)
    j = tasks["task"].tolist().index(metric)
    slope, midpoint, ceiling = (fit.posterior_draws(p)[:, j][:, None]
                                for p in ("slope", "midpoint", "ceiling"))
    part = fit.model.part("downstream")
    scale = part.scale
    E = fit.posterior_draws("E")
    E = E.reshape(len(E), -1).mean(axis=1)[:, None]
    x = to_link_scale(scale, loss_grid[None, :], E)
    acc = link(part.link, x, float(tasks["chance"].iloc[j]), ceiling, slope, midpoint)
    lo, hi = np.quantile(acc, [(1 - hdi_prob) / 2, 1 - (1 - hdi_prob) / 2], axis=0)
    return pd.DataFrame({"loss": loss_grid, "median": np.median(acc, axis=0), "lower": lo,
                         "upper": hi})


def largest_run(fit: Any) -> pd.Series:
    """The fitted row with the largest compute N x D (the ladder's frontier)."""
    runs = fit.runs
    return runs.loc[(runs["params"] * runs["tokens"]).idxmax()]


def default_targets(fit: Any) -> pd.DataFrame:
    """One target 10x beyond the ladder's largest run in both N and D (100x its compute).

    The largest run is the fitted row with the largest N x D.
    """
    top = largest_run(fit)
    return pd.DataFrame({"params": [10.0 * float(top["params"])],
                         "tokens": [10.0 * float(top["tokens"])]})


# ----------------------------------------------------------------------------- draws
def thinned_posterior(fit: Any, names: list[str], max_draws: int | None = None) -> xr.Dataset:
    """Posterior variables ``names``, chain and draw stacked into an evenly thinned ``sample``."""
    max_draws = rcparams.get("max_draws", max_draws)
    post = fit.idata.posterior[names]
    total = post.sizes["chain"] * post.sizes["draw"]
    keep = np.unique(np.linspace(0, total - 1, min(total, max_draws)).round().astype(int))
    flat = post.stack(sample=("chain", "draw")).isel(sample=keep)
    return flat.drop_vars(["sample", "chain", "draw"], errors="ignore")


def target_frame(params, tokens, family: str | None = None, total_tokens=None) -> pd.DataFrame:
    """A prediction-targets table (``params, tokens`` and optionally ``total_tokens, family``)."""
    params = np.atleast_1d(np.asarray(params, dtype=float))
    frame = pd.DataFrame({"params": params,
                          "tokens": np.broadcast_to(np.asarray(tokens, dtype=float), params.shape)})
    if total_tokens is not None:
        frame["total_tokens"] = np.broadcast_to(np.asarray(total_tokens, dtype=float), params.shape)
    if family is not None:
        frame["family"] = str(family)
    return frame


def predictive_samples(fit: Any, targets: pd.DataFrame, kind: str = "mean") -> np.ndarray:
    """``fit.predict_draws(targets, kind)`` flattened to shape (sample, target), quietly.

    Going through the fit's own prediction keeps every figure consistent with
    :meth:`ScalingFit.predict` (family parameters, schedule terms, run offsets, noise).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = fit.predict_draws(targets, kind=kind)
    return draws.stack(sample=("chain", "draw")).transpose("sample", "target").to_numpy()


def law_draws(fit: Any, params, tokens, family: str | None = None, total_tokens=None) -> np.ndarray:
    """The law (``kind="mean"``) at (params, tokens) for each posterior draw, shape (sample, n)."""
    return predictive_samples(fit, target_frame(params, tokens, family, total_tokens), "mean")


def interval(draws: np.ndarray, hdi_prob: float | None = None) -> pd.DataFrame:
    """Median and HDI of each column of ``draws`` (shape (sample, n))."""
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    draws = np.asarray(draws, dtype=float)
    if draws.shape[0] > 1:
        bounds = np.asarray(az.hdi(draws[None, ...], hdi_prob=hdi_prob)).reshape(-1, 2)
    else:
        bounds = np.repeat(draws.T, 2, axis=1)
    return pd.DataFrame({"median": np.median(draws, axis=0), "lower": bounds[:, 0],
                         "upper": bounds[:, 1]})


# ----------------------------------------------------------------------------- bands
def law_curves(fit: Any, hdi_prob: float | None = None, points: int = 40) -> pd.DataFrame:
    """Band of the law over tokens at each model size of the ladder, per family.

    Tokens run over the family's fitted range (widened by 30% each way); each point is a
    finished run (``total_tokens = tokens``).

    Returns
    -------
    pandas.DataFrame
        Columns ``family, params, tokens, median, lower, upper`` (metric units).
    """
    frames = []
    for family, rows in fit.runs.groupby("family", sort=True):
        grid = np.geomspace(rows["tokens"].min() / 1.3, rows["tokens"].max() * 1.3, points)
        sizes = np.sort(rows["params"].unique())
        draws = law_draws(fit, np.repeat(sizes, points), np.tile(grid, len(sizes)), str(family))
        band = interval(draws, hdi_prob)
        band.insert(0, "tokens", np.tile(grid, len(sizes)))
        band.insert(0, "params", np.repeat(sizes, points).astype(float))
        band.insert(0, "family", str(family))
        frames.append(band)
    return pd.concat(frames, ignore_index=True)


def frontier_band(
    fit: Any, compute, family: str | None = None, hdi_prob: float | None = None, grid: int = 161
) -> pd.DataFrame:
    """Band of the compute-optimal metric L*(C) = min over N of L(N, C / 6N).

    For each draw and each compute budget the law is minimised over a log grid of
    tokens-per-parameter ratios D/N from 1e-2 to 1e6 (161 points, 0.05 decades apart;
    the law is flat near its optimum, so the grid costs well under 0.1% in loss).
    For a law in compute only this is the law itself.

    Returns
    -------
    pandas.DataFrame
        Columns ``compute`` (FLOP), ``median, lower, upper`` (metric units) and
        ``params_opt`` (posterior median of the optimal N).
    """
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    ratio = np.geomspace(1e-2, 1e6, grid)
    n_draws = fit.idata.posterior.sizes["chain"] * fit.idata.posterior.sizes["draw"]
    per_call = max(1, int(4e6 // (n_draws * grid)))  # bound memory: ~4M values per call
    best, n_opt = [], []
    for start in range(0, len(compute), per_call):
        chunk = compute[start:start + per_call]
        n = np.sqrt(chunk[:, None] / (FLOP_PER_PARAM_TOKEN * ratio[None, :]))  # (C, grid)
        loss = law_draws(fit, n.ravel(), (ratio[None, :] * n).ravel(), family)
        loss = loss.reshape(loss.shape[0], len(chunk), grid)
        idx = np.nanargmin(loss, axis=2)  # (S, C)
        best.append(np.take_along_axis(loss, idx[..., None], axis=2)[..., 0])
        n_opt.extend(np.median(n[np.arange(len(chunk))[None, :], idx], axis=0))
    out = interval(np.concatenate(best, axis=1), hdi_prob)
    out.insert(0, "compute", compute)
    out["params_opt"] = n_opt
    return out


def observation_table(fit: Any, hdi_prob: float | None = None) -> pd.DataFrame:
    """Residuals and posterior predictive intervals of every fitted row.

    Each row is compared with the predictive distribution ``fit.predict`` gives for a new
    run at its N, D (and family, and the run's total tokens): the law plus what a new
    measurement adds (noise, and a new seed's offset where the model has run effects).

    Returns
    -------
    pandas.DataFrame
        One row per fitted observation: ``family, run, params, tokens, compute, value``,
        ``law_median`` (median of the law), ``residual`` (ln value - ln law_median),
        ``pred_median, pred_lower, pred_upper`` (predictive HDI), ``pit`` (share of
        predictive draws at or below the observation) and ``inside`` (bool).
    """
    rows = fit.runs
    targets = pd.DataFrame(
        {
            "params": rows["params"].to_numpy(dtype=float),
            "tokens": rows["tokens"].to_numpy(dtype=float),
            "total_tokens": rows["total_tokens"].to_numpy(dtype=float),
            "family": rows["family"].astype(str).to_numpy(),
        }
    )
    law = np.median(predictive_samples(fit, targets, "mean"), axis=0)
    pred = predictive_samples(fit, targets, "observation")
    band = interval(pred, hdi_prob)
    value = rows["value"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        residual = np.log(value) - np.log(law)
    return pd.DataFrame(
        {
            "family": rows["family"].astype(str).to_numpy(),
            "run": rows["run"].astype(str).to_numpy(),
            "params": targets["params"].to_numpy(),
            "tokens": targets["tokens"].to_numpy(),
            "compute": flops(targets["params"], targets["tokens"]),
            "value": value,
            "law_median": law,
            "residual": residual,
            "pred_median": band["median"].to_numpy(),
            "pred_lower": band["lower"].to_numpy(),
            "pred_upper": band["upper"].to_numpy(),
            "pit": (pred <= value[None, :]).mean(axis=0),
            "inside": (value >= band["lower"].to_numpy()) & (value <= band["upper"].to_numpy()),
        },
        index=rows.index,
    )


def noise_scale(fit: Any) -> float | None:
    """Posterior median of the residual scale ``sigma`` (over families too), or None."""
    if "sigma" not in fit.idata.posterior:
        return None
    return float(fit.idata.posterior["sigma"].median())


# ----------------------------------------------------------------------------- priors
def prior_draws(
    fit: Any, names: list[str] | None = None, draws: int = 2000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Draws from the model's priors, ``{name: array of shape (draws, *dim sizes)}``.

    Each ``pymc_extras`` Prior creates its variable inside a fresh ``pm.Model`` whose
    coords are the posterior's (so hierarchical priors with ``dims=("family",)`` get the
    fit's families), then ``pm.draw`` samples them all at once.
    """
    import pymc as pm

    names = sampled_names(fit) if names is None else list(names)
    post = fit.idata.posterior
    coords = {d: post[d].to_numpy() for d in post.dims if d not in ("chain", "draw")}
    with pm.Model(coords=coords):
        priors = fit.model.priors
        variables = [priors[name].create_variable(name) for name in names]
        values = pm.draw(variables, draws=draws, random_seed=seed)
    if len(variables) == 1:
        values = [values]
    return {name: np.asarray(v, dtype=float) for name, v in zip(names, values, strict=True)}


def posterior_by_family(fit: Any, name: str,
                        max_draws: int | None = None) -> dict[str | None, np.ndarray]:
    """Thinned draws of ``name``: ``{family: draws}`` with a family dim, else ``{None: draws}``."""
    post = thinned_posterior(fit, [name], max_draws)[name]
    if FAMILY in post.dims:
        return {str(f): post.isel({FAMILY: i}).to_numpy()
                for i, f in enumerate(post[FAMILY].to_numpy())}
    return {None: post.to_numpy().reshape(post.sizes["sample"], -1)[:, 0]}


# ----------------------------------------------------------------------------- tables
def forest_table(fit: Any, var_names: list[str] | None = None,
                 hdi_prob: float | None = None) -> pd.DataFrame:
    """Median, HDI and central 50% HDI of each parameter (per family where a family dim exists).

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, family`` (None for a shared parameter, ``"population"`` for
        the population value of a family-pooled one), ``median, lower, upper, lower_50,
        upper_50``.  By default the parameters with a ``family`` dim when there is one
        (the comparison across families), else every parameter of ``fit.parameter_names``.
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    post = fit.idata.posterior
    if var_names is None:
        var_names = [n for n in fit.parameter_names if not n.endswith("_pop") and n in post]
        if has_family_dim(fit):
            var_names = [n for n in var_names if FAMILY in post[n].dims]
    rows = []
    for name in var_names:
        groups = posterior_by_family(fit, name, max_draws=10**9)
        pop = population_name(fit, name)
        if pop is not None:
            groups[POPULATION] = posterior_by_family(fit, pop, max_draws=10**9)[None]
        for family, values in groups.items():
            outer = interval(values[:, None], hdi_prob).iloc[0]
            inner = interval(values[:, None], 0.5).iloc[0]
            rows.append(
                {
                    "parameter": name,
                    "family": family,
                    "median": outer["median"],
                    "lower": outer["lower"],
                    "upper": outer["upper"],
                    "lower_50": inner["lower"],
                    "upper_50": inner["upper"],
                }
            )
    return pd.DataFrame(rows)


def ladder_table(fit: Any) -> pd.DataFrame:
    """One row per run, at its last checkpoint.

    Columns ``family, run, params, total_tokens, checkpoints``, ``tokens`` (last checkpoint),
    ``value`` (metric at the last checkpoint) and ``compute`` (6 N D at the last checkpoint).
    """
    runs = fit.runs.sort_values(["family", "params", "total_tokens", "tokens"], kind="stable")
    last = runs.groupby("run", sort=False).tail(1).set_index("run")
    out = pd.DataFrame(
        {
            "family": last["family"].astype(str),
            "params": last["params"],
            "total_tokens": last["total_tokens"],
            "checkpoints": runs.groupby("run", sort=False).size(),
            "tokens": last["tokens"],
            "value": last["value"],
        }
    )
    out["compute"] = flops(out["params"], out["tokens"])
    return out.reset_index()


def quiet_predict(fit: Any, targets, hdi_prob: float | None = None) -> pd.DataFrame:
    """:meth:`ScalingFit.predict` without its warnings (figures and reports show them in words)."""
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit.predict(targets, hdi_prob=hdi_prob)


def band_width_table(fit: Any, targets, hdi_prob: float | None = None) -> pd.DataFrame:
    """``fit.predict(targets)`` plus ``compute``, ``width`` and ``relative_width``.

    ``compute`` in FLOP, ``width`` is upper - lower (metric units) and ``relative_width`` is
    width / median.
    """
    table = quiet_predict(fit, targets, hdi_prob)
    table["compute"] = flops(table["params"], table["tokens"])
    table["width"] = table["upper"] - table["lower"]
    table["relative_width"] = table["width"] / table["median"]
    return table


def band_width_sweep(fit: Any, targets, hdi_prob: float | None = None) -> pd.DataFrame:
    """Band widths along a sweep of targets, with common random numbers across targets.

    ``width_mean`` is the HDI width of the law (parameter uncertainty, from
    ``fit.predict_draws(kind="mean")``).  For ``width_observation`` the noise a new
    measurement adds is taken once per posterior draw, as ln(observation) - ln(law) of
    ``fit.predict_draws`` at the first target, and shared by every target, so the curve is
    smooth (``fit.predict`` draws fresh noise per target, so its widths scatter around this
    curve by Monte Carlo error).  Targets get the family of the ladder's largest run.

    Returns
    -------
    pandas.DataFrame
        Columns ``params, tokens, compute, median, width_mean, width_observation``.
    """
    from ..predict import read_targets

    table = read_targets(targets)
    family = str(largest_run(fit)["family"])
    frame = target_frame(table["params"], table["tokens"], family)
    mu = predictive_samples(fit, frame, "mean")
    first = frame.iloc[:1]
    eps = (np.log(predictive_samples(fit, first, "observation"))
           - np.log(predictive_samples(fit, first, "mean")))
    law = interval(mu, hdi_prob)
    observation = interval(mu * np.exp(eps), hdi_prob)
    return pd.DataFrame(
        {
            "params": table["params"],
            "tokens": table["tokens"],
            "compute": flops(table["params"], table["tokens"]),
            "median": observation["median"],
            "width_mean": law["upper"] - law["lower"],
            "width_observation": observation["upper"] - observation["lower"],
        }
    )


def scale_sweep(fit: Any, targets=None, points: int = 30) -> pd.DataFrame:
    """Targets along the ray through the ladder's largest run (N and D scaled together).

    From the ladder's smallest compute to 3x the largest target's compute (or 1e4x the
    ladder's largest compute when no targets are given).

    Returns
    -------
    pandas.DataFrame
        Columns ``params, tokens``.
    """
    top = largest_run(fit)
    c_top = float(top["params"] * top["tokens"])
    c_min = float((fit.runs["params"] * fit.runs["tokens"]).min())
    if targets is None:
        c_max = 1e4 * c_top
    else:
        from ..predict import read_targets

        table = read_targets(targets)
        c_max = 3.0 * max(float((table["params"] * table["tokens"]).max()), 10.0 * c_top)
    scale = np.sqrt(np.geomspace(c_min / c_top, c_max / c_top, points))
    return pd.DataFrame({"params": float(top["params"]) * scale,
                         "tokens": float(top["tokens"]) * scale})
