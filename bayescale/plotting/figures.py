"""Figures of a fitted scaling law.  Each function takes a fit, draws, and returns a Figure.

The numbers come from :mod:`bayescale.plotting.compute`; nothing is fitted here.  Figures
are plain :class:`matplotlib.figure.Figure` objects (not registered with pyplot, so they
need no closing and show once in a notebook); save them with ``fig.savefig``.

Every axis is labelled with its unit ("parameters N", "tokens D", "training compute C
(FLOP)", "loss (nats)"), and every figure colours a family with :func:`family_colors`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import arviz as az
import matplotlib as mpl
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import gaussian_kde

from . import compute as cp
from . import rcparams
from .colors import family_colors

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

LABEL_N = "parameters N"
LABEL_D = "tokens D"
LABEL_C = "training compute C (FLOP)"
#: Chains are not families: rank plots use neutral slate tones, never a family colour.
CHAIN_COLORS = ("#334155", "#94a3b8", "#64748b", "#cbd5e1")

STYLE: dict[RcKeyType, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#4b5563",
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.7,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "xtick.color": "#374151",
    "ytick.color": "#374151",
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
}


def figure_function(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Validate the fit, then draw under the package's matplotlib style."""

    @functools.wraps(func)
    def wrapper(fit: Any, *args: Any, **kwargs: Any) -> Figure:
        cp.check_fit(fit)
        with mpl.rc_context(STYLE):
            fig = func(fit, *args, **kwargs)
            for ax in fig.axes:
                _tidy_log_ticks(ax)
        return fig

    return wrapper


def _plain_number(value: float, _pos: Any = None) -> str:
    return f"{value:g}"


def _tidy_log_ticks(ax) -> None:
    """Readable log axes: 1-2-5 labels as plain numbers over short spans, no minor labels."""
    for axis, limits, scale in ((ax.xaxis, ax.get_xlim(), ax.get_xscale()),
                                (ax.yaxis, ax.get_ylim(), ax.get_yscale())):
        low, high = sorted(limits)
        if scale != "log" or low <= 0:
            continue
        decades = np.log10(high / low)
        if decades < 1.6:
            subs = (1.0, 2.0, 3.0, 5.0) if decades < 1.2 else (1.0, 2.0, 5.0)
            axis.set_major_locator(mticker.LogLocator(base=10, subs=subs))
            axis.set_major_formatter(mticker.FuncFormatter(_plain_number))
        axis.set_minor_formatter(mticker.NullFormatter())


def _figure(width_ratio: float, width: float | None = None) -> Figure:
    width = rcparams.get("figure.width", width)
    return Figure(figsize=(width, width * width_ratio))


def _grid(fig: Figure, n: int, ncols: int, **kwargs: Any) -> list:
    rows = math.ceil(n / ncols)
    axes = np.atleast_1d(fig.subplots(rows, ncols, squeeze=False, **kwargs)).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return list(axes[:n])


def _family_legend(ax, colors: dict[str, str], extra: list | None = None, **kwargs: Any) -> None:
    """Legend of the families (only when there are several) plus ``extra`` handles."""
    handles = ([Line2D([], [], color=c, marker="o", lw=1.5, label=f) for f, c in colors.items()]
               if len(colors) > 1 else [])
    handles += extra or []
    if handles:
        ax.legend(handles=handles, **kwargs)


def _gid(family: Any) -> str | None:
    """Artist id ``"family=<name>"`` of an artist drawn in a family's colour (None for shared ones).

    Lets tests (and users post-processing figures) find every family-coloured artist.
    """
    return None if family is None else f"family={family}"


def _colors(fit: Any) -> dict[str, str]:
    return family_colors(cp.families(fit))


def _fitted_families(fit: Any) -> list[str]:
    return sorted({str(f) for f in fit.runs["family"].unique()})


def _log_axes(ax, x: bool = True, y: bool = False) -> None:
    if x:
        ax.set_xscale("log")
    if y:
        ax.set_yscale("log")


# ----------------------------------------------------------------------------- data
@figure_function
def plot_ladder(fit: Any, targets=None, width: float | None = None) -> Figure:
    """The training ladder: model size N against tokens D, one colour per family.

    Checkpoints of one run share N and are joined into a vertical trajectory; the last
    checkpoint of each run is the large marker.  With several families, markers are
    offset horizontally by a few percent so that families at the same N stay visible.
    Targets, if given, are black stars.  A dashed line marks D = 20 N.

    Parameters
    ----------
    fit
        A :class:`~bayescale.ScalingFit`.
    targets
        Optional prediction targets (``params``, ``tokens``).
    width
        Figure width in inches (default ``rcParams["figure.width"]``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    colors = _colors(fit)
    fams = _fitted_families(fit)
    fig = _figure(0.5, width)
    ax = fig.subplots()
    offsets = cp.family_offsets(fams)
    runs = fit.runs.sort_values("tokens")
    for _, rows in runs.groupby("run", sort=False):
        family = str(rows["family"].iloc[0])
        x = rows["params"].to_numpy() * offsets[family]
        y = rows["tokens"].to_numpy()
        color = colors[family]
        if len(rows) > 1:
            ax.plot(x, y, "-", color=color, lw=1.2, alpha=0.6, gid=_gid(family))
            ax.scatter(x[:-1], y[:-1], s=12, color=color, alpha=0.6, lw=0, gid=_gid(family))
        ax.scatter(x[-1:], y[-1:], s=38, color=color, edgecolor="white", lw=0.6, zorder=3,
                   gid=_gid(family))
    xs = [runs["params"].min(), runs["params"].max()]
    extra = []
    if targets is not None:
        from ..predict import read_targets

        table = read_targets(targets)
        ax.scatter(table["params"], table["tokens"], marker="*", s=180, color="black", zorder=4)
        for i, row in table.iterrows():  # read_targets gives a RangeIndex: i is the position
            ax.annotate(f"target {cast(int, i) + 1}", (row["params"], row["tokens"]),
                        xytext=(7, -3), textcoords="offset points", fontsize=9)
        xs += [table["params"].min(), table["params"].max()]
        extra.append(Line2D([], [], color="black", marker="*", ms=11, lw=0, label="target"))
    lo, hi = min(xs) / 1.6, max(xs) * 1.6
    line = np.geomspace(lo, hi, 2)
    ax.plot(line, 20 * line, "--", color="#9ca3af", lw=1, zorder=0)
    extra.append(Line2D([], [], color="#9ca3af", ls="--", lw=1, label="D = 20 N"))
    ax.set_xlim(lo, hi)
    _log_axes(ax, x=True, y=True)
    ax.set_xlabel(LABEL_N)
    ax.set_ylabel(LABEL_D)
    n_runs = runs["run"].nunique()
    ax.set_title(f"Training ladder: {n_runs} runs, {len(runs)} checkpoints, {len(fams)} "
                 f"famil{'y' if len(fams) == 1 else 'ies'}")
    _family_legend(ax, {f: colors[f] for f in fams}, extra, loc="upper left")
    return fig


@figure_function
def plot_downstream(fit: Any, width: float | None = None, hdi_prob: float | None = None) -> Figure:
    """Downstream accuracy against the loss of the same checkpoint, one panel per task.

    Each panel has the posterior band of the task's link (fits with ``downstream=...``).

    Raises
    ------
    ValueError
        If the fit has no downstream tasks.
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    metrics = cp.downstream_metrics(fit)
    if not metrics:
        raise ValueError("the fit has no downstream tasks (fit with downstream='sigmoid', 'exp' or "
                         "'gompertz')")
    colors = _colors(fit)
    loss = fit.runs.set_index(["run", "tokens"])["value"]
    grid = np.linspace(float(loss.min()) * 0.8, float(loss.max()) * 1.05, 120)
    ncols = min(3, len(metrics))
    fig = _figure(0.42 * math.ceil(len(metrics) / ncols), width)
    for ax, metric in zip(_grid(fig, len(metrics), ncols), metrics, strict=True):
        rows = fit.acc_rows[fit.acc_rows["metric"] == metric]
        keys = list(zip(rows["run"], rows["tokens"], strict=True))
        x = loss.reindex(keys).to_numpy()
        for family, idx in rows.groupby("family").groups.items():
            pos = rows.index.get_indexer(idx)
            ax.plot(x[pos], rows.loc[idx, "value"], "o", ms=3.5, color=colors[str(family)],
                    alpha=0.8, gid=_gid(family))
        band = cp.link_bands(fit, metric, grid, hdi_prob)
        ax.fill_between(band["loss"], band["lower"], band["upper"], color="#6b7280", alpha=0.25,
                        lw=0)
        ax.plot(band["loss"], band["median"], color="#374151", lw=1.2)
        chance = rows["chance"].dropna()
        if len(chance):
            ax.axhline(float(chance.iloc[0]), ls="--", lw=1, color="#9ca3af", label="chance")
        ax.set_xlabel("loss at the checkpoint (nats)")
        ax.set_ylabel(cp.metric_label(metric))
        ax.set_title(metric)
    _family_legend(fig.axes[0], {f: colors[f] for f in _fitted_families(fit)}, loc="lower left")
    return fig


# ----------------------------------------------------------------------------- fit
@figure_function
def plot_fit(fit: Any, targets=None, hdi_prob: float | None = None,
             width: float | None = None) -> Figure:
    """The fitted law against the data.

    Top: observed metric against training compute C = 6 N D with the posterior band of the
    compute-optimal law L*(C) (the law minimised over N at each C) per family; targets,
    if given, with their predictive band from :meth:`ScalingFit.predict`.  Bottom, one
    panel per family: the metric against tokens D for each run, with the posterior band
    of the law at each model size N.

    Returns
    -------
    matplotlib.figure.Figure
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    colors = _colors(fit)
    fams = _fitted_families(fit)
    runs = fit.runs
    metric = str(fit.metric)
    ncols = min(3, len(fams))
    nrows = math.ceil(len(fams) / ncols)
    fig = _figure(0.42 + 0.36 * nrows, width)
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[1.25] + [1] * nrows)
    top = fig.add_subplot(grid[0, :])

    observed_c = cp.flops(runs["params"], runs["tokens"])
    c_hi = observed_c.max() * 10
    prediction = None
    if targets is not None:
        prediction = cp.band_width_table(fit, targets, hdi_prob)
        c_hi = max(c_hi, prediction["compute"].max() * 2)
    c_grid = np.geomspace(observed_c.min() / 2, c_hi, 60)
    lows, highs = [runs["value"].min()], [runs["value"].max()]
    bands: dict[str | None, tuple[pd.DataFrame, str]]
    if cp.has_family_dim(fit):
        bands = {f: (cp.frontier_band(fit, c_grid, f, hdi_prob), colors[f]) for f in fams}
    else:
        bands = {None: (cp.frontier_band(fit, c_grid, None, hdi_prob),
                        rcparams.rcParams["posterior_color"])}
    for key, (band, color) in bands.items():
        top.fill_between(band["compute"], band["lower"], band["upper"], color=color, alpha=0.18,
                         lw=0, gid=_gid(key))
        top.plot(band["compute"], band["median"], color=color, lw=1.4, gid=_gid(key))
        lows.append(band["lower"].min())
    for family, rows in runs.groupby("family", sort=True):
        last = rows["tokens"] == rows["total_tokens"]
        c = cp.flops(rows["params"], rows["tokens"])
        top.scatter(c[~last.to_numpy()], rows["value"][~last], s=10, color=colors[str(family)],
                    alpha=0.45, lw=0, gid=_gid(family))
        top.scatter(c[last.to_numpy()], rows["value"][last], s=30, color=colors[str(family)],
                    edgecolor="white", lw=0.5, zorder=3, gid=_gid(family))
    extra = [
        Line2D([], [], color=rcparams.rcParams["posterior_color"] if None in bands else "#6b7280",
               lw=6, alpha=0.3, label=f"compute-optimal L*(C), {hdi_prob:.0%} band"),
    ]
    if prediction is not None:
        top.errorbar(
            prediction["compute"], prediction["median"],
            yerr=[prediction["median"] - prediction["lower"],
                  prediction["upper"] - prediction["median"]],
            fmt="*", ms=11, color="black", capsize=4, lw=1.4, zorder=5,
        )
        lows.append(prediction["lower"].min())
        highs.append(prediction["upper"].max())
        extra.append(Line2D([], [], color="black", marker="*", ms=10,
                            label=f"target prediction, {hdi_prob:.0%} band"))
    span = max(highs) - min(lows)
    top.set_ylim(min(lows) - 0.06 * span, max(highs) + 0.08 * span)
    _log_axes(top)
    top.set_xlabel(LABEL_C)
    top.set_ylabel(cp.metric_label(metric))
    top.set_title("Observed loss and the compute-optimal law" if metric == "loss"
                  else f"Observed {metric} and the law")
    _family_legend(top, {f: colors[f] for f in fams}, extra, loc="upper right",
                   ncols=2 if len(fams) > 2 else 1)

    curves = cp.law_curves(fit, hdi_prob)
    axes: list[Axes] = []
    for i, family in enumerate(fams):
        ax = fig.add_subplot(grid[1 + i // ncols, i % ncols], sharey=axes[0] if axes else None)
        axes.append(ax)
        color = colors[family]
        sub = curves[curves["family"] == family]
        for params, curve in sub.groupby("params", sort=True):
            ax.fill_between(curve["tokens"], curve["lower"], curve["upper"], color=color,
                            alpha=0.15, lw=0, gid=_gid(family))
            ax.plot(curve["tokens"], curve["median"], color=color, lw=0.9, alpha=0.9,
                    gid=_gid(family))
            ax.annotate(f"N={cp.human(cast(float, params))}",
                        (curve["tokens"].iloc[-1], curve["median"].iloc[-1]),
                        xytext=(2, 0), textcoords="offset points", fontsize=7.5, color="#374151",
                        va="center")
        by_run = runs[runs["family"] == family].sort_values("tokens").groupby("run", sort=False)
        for _, run in by_run:
            ax.plot(run["tokens"], run["value"], "o-", ms=3.5, lw=0.8, color=color, mec="white",
                    mew=0.4, zorder=3, gid=_gid(family))
        rows = runs[runs["family"] == family]
        pad = 0.08 * (runs["value"].max() - runs["value"].min())
        ax.set_ylim(runs["value"].min() - pad, runs["value"].max() + pad)
        ax.set_xlim(sub["tokens"].min(), sub["tokens"].max() * 2.2)
        _log_axes(ax)
        ax.set_xlabel(LABEL_D)
        ax.set_ylabel(cp.metric_label(metric))
        title = (f"{family}: {rows['run'].nunique()} runs" if len(fams) > 1
                 else f"{metric} against tokens, per model size")
        ax.set_title(title, fontsize=10)
    return fig


@figure_function
def plot_residuals(fit: Any, width: float | None = None) -> Figure:
    """Residuals ln(observed) - ln(law median) against compute and against tokens per parameter.

    The grey band is plus or minus the posterior median of the noise scale sigma.
    """
    table = cp.observation_table(fit)
    colors = _colors(fit)
    sigma = cp.noise_scale(fit)
    fig = _figure(0.38, width)
    axes = fig.subplots(1, 2, sharey=True)
    dodge = table["family"].map(cp.family_offsets(_fitted_families(fit)))
    xs = {"compute": (table["compute"] * dodge, LABEL_C),
          "ratio": (table["tokens"] / table["params"] * dodge, "tokens per parameter D/N")}
    for ax, (x, label) in zip(axes, xs.values(), strict=True):
        if sigma is not None:
            ax.axhspan(-sigma, sigma, color="#e5e7eb", alpha=0.8, lw=0, zorder=0)
        ax.axhline(0, color="#4b5563", lw=0.9)
        for family, rows in table.groupby("family", sort=True):
            ax.scatter(x[rows.index], rows["residual"], s=18, color=colors[str(family)], alpha=0.85,
                       lw=0, gid=_gid(family))
        _log_axes(ax)
        ax.set_xlabel(label)
        ax.set_ylabel("residual ln L_obs − ln L_law")
    axes[0].set_title("Residuals on the log scale (≈ relative error)")
    extra = ([mpl.patches.Patch(color="#e5e7eb", label=f"±σ = {sigma:.3g} (posterior median)")]
             if sigma is not None else [])
    fams = _fitted_families(fit)
    handles = ([Line2D([], [], color=colors[f], marker="o", lw=0, label=f) for f in fams]
               if len(fams) > 1 else [])
    fig.legend(handles=handles + extra, loc="outside lower center",
               ncols=min(len(handles + extra), 6))
    return fig


@figure_function
def plot_ppc(fit: Any, hdi_prob: float | None = None, width: float | None = None) -> Figure:
    """Posterior predictive check of every fitted observation.

    Left: each observation's predictive interval (law plus noise, as
    ``fit.predict(kind="observation")``), as a percentage of its predictive median, with
    the observation as a dot; open red circles fall outside.  Right: the PIT histogram
    (share of predictive draws below each observation), flat when calibrated.
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    table = cp.observation_table(fit, hdi_prob)
    colors = _colors(fit)
    fig = _figure(0.38, width)
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    rel = lambda v: 100 * (v / table["pred_median"] - 1)  # noqa: E731
    offsets = cp.family_offsets(_fitted_families(fit), spread=0.03)
    x = table["compute"] * table["family"].map(offsets)
    for family, rows in table.groupby("family", sort=True):
        color = colors[str(family)]
        idx = rows.index
        left.vlines(x[idx], rel(rows["pred_lower"])[idx], rel(rows["pred_upper"])[idx], color=color,
                    alpha=0.45, lw=2.2, gid=_gid(family))
        left.scatter(x[idx], rel(rows["value"])[idx], s=14, color=color, zorder=3, lw=0,
                     gid=_gid(family))
    outside = table.index[~table["inside"]]
    left.scatter(x[outside], rel(table["value"])[outside], s=70, facecolor="none",
                 edgecolor="#dc2626", lw=1.2, zorder=4)
    left.axhline(0, color="#4b5563", lw=0.8)
    _log_axes(left)
    left.set_xlabel(LABEL_C)
    left.set_ylabel("observed vs predictive median (%)")
    inside = int(table["inside"].sum())
    left.set_title(f"{inside}/{len(table)} observations inside their {hdi_prob:.0%} predictive "
                   "interval")
    _family_legend(left, {f: colors[f] for f in _fitted_families(fit)}, loc="best")

    bins = int(np.clip(len(table) // 4, 4, 10))
    right.hist(table["pit"], bins=bins, range=(0, 1), color="#94a3b8", edgecolor="white")
    right.axhline(len(table) / bins, color="#1f2937", ls="--", lw=1, label="calibrated")
    right.set_xlim(0, 1)
    right.set_xlabel("PIT = P(predicted ≤ observed)")
    right.set_ylabel("observations")
    right.set_title("PIT histogram")
    right.legend(loc="upper right")
    return fig


# ----------------------------------------------------------------------------- parameters
def _density(values: np.ndarray, grid: np.ndarray, log: bool) -> np.ndarray | None:
    values = values[np.isfinite(values)]
    if log:
        values = np.log10(values[values > 0])
    if values.size < 2 or np.ptp(values) == 0:
        return None
    return gaussian_kde(values)(np.log10(grid) if log else grid)


@figure_function
def plot_prior_posterior(fit: Any, var_names: list[str] | None = None, width: float | None = None,
                         prior_draws: int = 4000) -> Figure:
    """Prior against posterior density of each sampled parameter.

    Priors are drawn from the model's ``pymc_extras`` Prior objects (see
    :func:`bayescale.plotting.compute.prior_draws`).  Positive parameters are shown on a
    log axis with densities per log10 unit.  With a ``family`` dim, one posterior per
    family in the family's colour, and the population's (``<name>_pop``, which the
    model's prior describes) in the neutral posterior colour; otherwise one shared
    posterior.
    """
    names = cp.sampled_names(fit) if var_names is None else list(var_names)
    priors = cp.prior_draws(fit, names, draws=prior_draws, seed=fit.sampler_config.random_seed)
    colors = _colors(fit)
    ncols = min(4, len(names))
    fig = _figure(0.26 * math.ceil(len(names) / ncols), width)
    for ax, name in zip(_grid(fig, len(names), ncols), names, strict=True):
        prior = priors[name].ravel()
        posts = cp.posterior_by_family(fit, name)
        pop = cp.population_name(fit, name)
        if pop is not None:  # the population first, so the families are drawn over it
            posts = {None: cp.posterior_by_family(fit, pop)[None], **posts}
        every = np.concatenate([prior] + [np.ravel(v) for v in posts.values()])
        log = bool(np.all(every > 0))
        post_all = np.concatenate([np.ravel(v) for v in posts.values()])
        lo = min(np.quantile(prior, 0.01), post_all.min())
        hi = max(np.quantile(prior, 0.99), post_all.max())
        grid = (np.geomspace(lo / 1.2, hi * 1.2, 400) if log
                else np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400))
        density = _density(prior, grid, log)
        if density is not None:
            ax.fill_between(grid, density, color=rcparams.rcParams["prior_color"], alpha=0.25, lw=0)
            ax.plot(grid, density, color="#6b7280", lw=1.1, ls="--")
        for family, values in posts.items():
            color = colors[family] if family is not None else rcparams.rcParams["posterior_color"]
            density = _density(np.ravel(values), grid, log)
            if density is None:
                ax.axvline(float(np.ravel(values)[0]), color=color, lw=1.6, gid=_gid(family))
            else:
                ax.fill_between(grid, density, color=color, alpha=0.3, lw=0, gid=_gid(family))
                ax.plot(grid, density, color=color, lw=1.5, gid=_gid(family))
        if log:
            ax.set_xscale("log")
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(bottom=0)
        ax.set_xlabel(cp.parameter_label(name), fontsize=9)
        ax.set_ylabel("density per log10 unit" if log else "density", fontsize=9)
        ax.set_title(name)
    handles = [mpl.patches.Patch(facecolor=rcparams.rcParams["prior_color"], alpha=0.6,
                                 edgecolor="#6b7280",
                                 ls="--", label="prior")]
    if cp.has_family_dim(fit):
        handles += [mpl.patches.Patch(color=colors[f], alpha=0.6, label=f"posterior, {f}")
                    for f in cp.families(fit)]
        if any(cp.population_name(fit, n) for n in names):
            handles.append(mpl.patches.Patch(color=rcparams.rcParams["posterior_color"], alpha=0.6,
                                             label="posterior, population"))
    else:
        handles.append(mpl.patches.Patch(color=rcparams.rcParams["posterior_color"], alpha=0.6,
                                         label="posterior"))
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles))
    return fig


@figure_function
def plot_forest(fit: Any, var_names: list[str] | None = None, hdi_prob: float | None = None,
                width: float | None = None) -> Figure:
    """Forest plot: median, 50% and ``hdi_prob`` intervals of each parameter.

    With a ``family`` dim, one row per family in the family's colour, so families can be
    compared; otherwise one row per parameter (shared by all families).
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    table = cp.forest_table(fit, var_names, hdi_prob)
    colors = _colors(fit)
    names = list(dict.fromkeys(table["parameter"]))
    ncols = len(names) if len(names) <= 5 else 4
    per_family = cp.has_family_dim(fit)
    n_rows = len(cp.families(fit)) if per_family else 1
    fig = _figure((0.12 + 0.035 * n_rows) * math.ceil(len(names) / ncols) + 0.04, width)
    for ax, name in zip(_grid(fig, len(names), ncols), names, strict=True):
        rows = table[table["parameter"] == name].reset_index(drop=True)
        labels = []
        for i, row in rows.iterrows():
            y = len(rows) - 1 - i
            family = None if pd.isna(row["family"]) else str(row["family"])
            color = (colors.get(family, rcparams.rcParams["posterior_color"]) if family
                     else rcparams.rcParams["posterior_color"])
            gid = _gid(family) if family in colors else None
            ax.hlines(y, row["lower"], row["upper"], color=color, lw=1.2, gid=gid)
            ax.hlines(y, row["lower_50"], row["upper_50"], color=color, lw=3.5, gid=gid)
            ax.plot(row["median"], y, "o", color="white", mec=color, mew=1.5, ms=6)
            labels.append(family if family is not None else "all families")
        ax.set_yticks(range(len(rows) - 1, -1, -1), labels)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(cp.parameter_label(name), fontsize=9)
        ax.set_ylabel("family")
        ax.set_title(name)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    fig.suptitle(f"Posterior medians, 50% and {hdi_prob:.0%} intervals", x=0.01, ha="left",
                 fontsize=11, fontweight="bold")
    return fig


# ----------------------------------------------------------------------------- diagnostics
def _require_mcmc(fit: Any, what: str) -> None:
    if not cp.is_mcmc(fit):
        raise ValueError(f"{what} needs NUTS draws; this fit used "
                         f"method={fit.sampler_config.method!r}")


@figure_function
def plot_rank(fit: Any, var_names: list[str] | None = None, width: float | None = None) -> Figure:
    """Rank plots (``arviz.plot_rank``) of the sampled parameters: flat bars when chains mix."""
    _require_mcmc(fit, "a rank plot")
    names = cp.sampled_names(fit) if var_names is None else list(var_names)
    post = fit.idata.posterior
    n_panels = sum(int(np.prod([post.sizes[d] for d in post[n].dims if d not in ("chain", "draw")]))
                   for n in names)
    ncols = min(4, n_panels)
    fig = _figure(0.24 * math.ceil(n_panels / ncols), width)
    axes = np.array(_grid(fig, n_panels, ncols))
    az.plot_rank(fit.idata, var_names=names, ax=axes, colors=list(CHAIN_COLORS))
    for ax in axes:
        ax.set_xlabel("rank (all chains)", fontsize=9)
        ax.set_ylabel("chain", fontsize=9)
        ax.title.set_fontsize(10)
    return fig


@figure_function
def plot_energy(fit: Any, width: float | None = None) -> Figure:
    """Marginal energy against energy transition (``arviz.plot_energy``), with BFMI per chain."""
    _require_mcmc(fit, "an energy plot")
    if "sample_stats" not in fit.idata.groups() or "energy" not in fit.idata.sample_stats:
        raise ValueError("an energy plot needs sample_stats.energy, which this fit lacks")
    fig = _figure(0.36, width if width is not None else 0.7 * rcparams.rcParams["figure.width"])
    ax = fig.subplots()
    az.plot_energy(fit.idata, ax=ax, fill_color=("#a5b4fc", "#cbd5e1"))
    ax.set_xlabel("energy − mean energy (log density units)")
    ax.set_ylabel("density")
    ax.set_title("Energy: the two distributions overlap when NUTS explores well")
    return fig


# ----------------------------------------------------------------------------- uncertainty
@figure_function
def plot_band_vs_scale(fit: Any, targets=None, hdi_prob: float | None = None,
                       width: float | None = None) -> Figure:
    """Width of the predictive band against target compute.

    Two curves follow N and D scaled together from the ladder's largest run (see
    :func:`bayescale.plotting.compute.band_width_sweep`): the band of a new run's loss
    (law plus noise) and the band of the law alone (parameter uncertainty only).  The
    targets (default: 10x the largest run in N and D) are stars at the width of
    ``fit.predict(targets)``, labelled with their half-width relative to the median.  The
    shaded span is the ladder's compute; the dotted line 1000x its largest run (beyond
    it, predictions warn).
    """
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    if targets is None:
        targets = cp.default_targets(fit)
    sweep = cp.band_width_sweep(fit, cp.scale_sweep(fit, targets), hdi_prob)
    points = cp.band_width_table(fit, targets, hdi_prob)
    unit = cp.metric_label(str(fit.metric)).split("(")[-1].rstrip(")")
    fig = _figure(0.42, width)
    ax = fig.subplots()
    ladder_c = cp.flops(fit.runs["params"], fit.runs["tokens"])
    color = rcparams.rcParams["posterior_color"]
    ax.axvspan(ladder_c.min(), ladder_c.max(), color="#e5e7eb", alpha=0.7, lw=0,
               label="ladder's compute")
    ax.axvline(1000 * ladder_c.max(), color="#9ca3af", ls=":", lw=1.2, label="1000× largest run")
    ax.plot(sweep["compute"], sweep["width_observation"], color=color, lw=1.8,
            label="new run's loss (law + noise)")
    ax.plot(sweep["compute"], sweep["width_mean"], color=color, lw=1.4, ls="--",
            label="the law (parameters only)")
    ax.scatter(points["compute"], points["width"], marker="*", s=170, color="black", zorder=4,
               label="targets")
    for i, row in points.iterrows():
        ax.annotate(f"target {cast(int, i) + 1}: ±{50 * row['relative_width']:.2g}%",
                    (row["compute"], row["width"]),
                    xytext=(8, -4), textcoords="offset points", fontsize=9)
    _log_axes(ax, x=True, y=True)
    ax.set_xlabel(LABEL_C)
    ax.set_ylabel(f"width of the {hdi_prob:.0%} band ({unit})")
    ax.set_title("How the predictive band widens with extrapolation (N and D scaled together)")
    fig.legend(loc="outside lower center", ncols=5, fontsize=8.5)
    return fig


#: Colours of the variance parts (the law's part in the posterior colour).
SOURCE_COLORS = {"law": "#1d4ed8", "discrepancy": "#60a5fa", "family": "#a855f7",
                 "run": "#f59e0b", "drift": "#10b981", "downstream": "#ef4444",
                 "benchmark": "#6b7280", "noise": "#cbd5e1"}


def _source_columns(table: pd.DataFrame) -> list[str]:
    return [str(c) for c in table.columns if str(c).endswith("_var") and c != "total_var"]


def _target_label(row: pd.Series) -> str:
    label = f"N={cp.human(row['params'])}\nD={cp.human(row['tokens'])}"
    if "family" in row and isinstance(row["family"], str):
        label += f"\n{row['family']}"
    if row.get("metric", "loss") != "loss":
        label += f"\n{row['metric']}"
    return label


@figure_function
def plot_variance_parts(fit: Any, targets=None, width: float | None = None) -> Figure:
    """Where each target's band comes from: its variance split by source, as stacked bars.

    Each bar is one target (default: 10x the largest run in N and D), split into the
    shares of :meth:`~bayescale.ScalingFit.uncertainty` (the law's parameters, a new
    family, a new seed, drift, benchmark items, noise); the total standard deviation is
    written above it.
    """
    if targets is None:
        targets = cp.default_targets(fit)
    table = fit.uncertainty(targets)
    columns = _source_columns(table)
    total = table["total_var"].where(table["total_var"] > 0)
    fig = _figure(0.45, width)
    ax = fig.subplots()
    bottom = np.zeros(len(table))
    x = np.arange(len(table))
    for column in columns:
        share = (100 * table[column] / total).fillna(0).to_numpy()
        source = column.removesuffix("_var")
        ax.bar(x, share, bottom=bottom, color=SOURCE_COLORS.get(source, "#9ca3af"),
               label=source if source != "law" else "law (epistemic)", width=0.6)
        bottom += share
    for i, row in table.iterrows():
        ax.annotate(f"sd {row['total_sd']:.3g}", (x[cast(int, i)], 101), ha="center",
                    va="bottom", fontsize=8.5)
    ax.set_xticks(x, [_target_label(row) for _, row in table.iterrows()], fontsize=8)
    ax.set_ylim(0, 112)
    ax.set_xlabel("target (parameters N, tokens D, family)")
    ax.set_ylabel("share of the predictive variance (%)")
    ax.set_title("Where the band comes from (law of total variance)")
    fig.legend(loc="outside right center", fontsize=8.5)
    return fig


@figure_function
def plot_uncertainty_path(fit: Any, tokens_per_param: float | str = 20.0,
                          family: str | None = None, width: float | None = None) -> Figure:
    """The band's parts along a compute path (fixed tokens per parameter, or ``"optimal"``).

    Left: the standard deviation each source would give alone (square root of its part)
    and the total, against target compute; the ladder's largest compute is the dashed
    line and the point where the law's part takes over is marked.  Right: the shares.
    """
    path = fit.uncertainty_path(tokens_per_param=tokens_per_param, family=family)
    columns = _source_columns(path)
    fig = _figure(0.42, width)
    left, right = fig.subplots(1, 2)
    for column in columns:
        source = column.removesuffix("_var")
        sd = np.sqrt(path[column].where(path[column] > 0))  # a zero part has no place on a log axis
        left.plot(path["compute"], sd, color=SOURCE_COLORS.get(source),
                  lw=1.6, label=source if source != "law" else "law (epistemic)")
    left.plot(path["compute"], path["total_sd"], color="black", lw=1.8, label="total")
    right.stackplot(path["compute"],
                    *[100 * path[c] / path["total_var"].where(path["total_var"] > 0)
                      for c in columns],
                    colors=[SOURCE_COLORS.get(c.removesuffix("_var"), "#9ca3af") for c in columns])
    for ax in (left, right):
        ax.axvline(path.attrs["ladder_compute"], color="#374151", ls="--", lw=1)
        crossover = path.attrs.get("crossover_compute")
        if crossover is not None:
            ax.axvline(crossover, color=SOURCE_COLORS["law"], ls=":", lw=1.2)
        _log_axes(ax, x=True)
        ax.set_xlabel(LABEL_C)
    left.set_yscale("log")
    unit = cp.metric_label(str(fit.metric)).split("(")[-1].rstrip(")")
    left.set_ylabel(f"standard deviation ({unit})")
    right.set_ylabel("share of the variance (%)")
    right.set_ylim(0, 100)
    ratio = ("compute-optimal split" if tokens_per_param == "optimal"
             else f"{float(tokens_per_param):g} tokens per parameter")
    who = f", family {path['family'].iloc[0]}" if "family" in path else ""
    fig.suptitle(f"The band's parts beyond the ladder (dashed: largest run; {ratio}{who})")
    left.legend(fontsize=8)
    return fig


def plot_model_choice(fit: Any) -> Figure:
    """How ``model="auto"`` chose: each candidate's held-out log score and its bands' coverage.

    Left: mean log predictive density of the held-out rows, with each candidate's
    discrepancy term (higher is better; the chosen model in colour, candidates whose
    backtest fits did not all converge hatched).  Right: median absolute relative error and
    the share of held-out rows inside their 90% bands.
    Needs a fit made with ``model="auto"`` that compared several candidates.
    """
    import matplotlib.pyplot as plt

    choice = fit.model_choice
    if choice is None or choice.scores.empty:
        raise ValueError("plot_model_choice needs a fit whose model was chosen by a backtest "
                         "(fit(runs) with model='auto' and several candidates)")
    scores = choice.scores
    names = list(scores["model"])[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 0.7 * len(names) + 1.6))
    key = "calibrated_log_score" if "calibrated_log_score" in scores else "mean_log_score"
    winner = scores["model"].iloc[0]  # ranked best first
    for i, (_, row) in enumerate(scores.iloc[::-1].iterrows()):
        chosen = row["model"] == winner
        left.barh(i, row[key], color="C0" if chosen else "0.7",
                  hatch=None if row["all_converged"] else "//", edgecolor="black", lw=0.5)
    left.set_yticks(range(len(names)), names)
    left.set_xlabel("held-out log score, ln(nats^-1) (higher is better)")
    left.set_title(f"chosen: {choice.chosen}", fontsize=9)
    y = np.arange(len(names))
    right.barh(y - 0.2, 100 * scores["median_abs_rel_error"].to_numpy()[::-1], height=0.4,
               color="C1", label="median |error|, %")
    if "coverage_90" in scores:
        right.barh(y + 0.2, 100 * scores["coverage_90"].to_numpy()[::-1], height=0.4,
                   color="C2", label="rows in 90% band, %")
    right.set_yticks(range(len(names)), [""] * len(names))
    right.set_xlabel("percent")
    right.legend(fontsize=8)
    fig.suptitle(f"Model choice: {choice.folds} rolling-origin fold(s), largest sizes held out")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- registry
FIGURES: dict[str, Callable[..., Figure]] = {
    "ladder": plot_ladder,
    "fit": plot_fit,
    "residuals": plot_residuals,
    "ppc": plot_ppc,
    "prior_posterior": plot_prior_posterior,
    "forest": plot_forest,
    "rank": plot_rank,
    "energy": plot_energy,
    "downstream": plot_downstream,
    "band_vs_scale": plot_band_vs_scale,
    "variance_parts": plot_variance_parts,
    "uncertainty_path": plot_uncertainty_path,
    "model_choice": plot_model_choice,
}
#: Figures that accept ``targets``.
TAKES_TARGETS = frozenset({"ladder", "fit", "band_vs_scale", "variance_parts"})


def available_figures(fit: Any, targets=None) -> list[str]:
    """Names of the figures that apply to ``fit`` (in :data:`FIGURES` order).

    ``forest`` needs a family dim, ``rank``/``energy`` NUTS draws, ``downstream``
    accuracy rows, ``band_vs_scale`` and ``variance_parts`` targets, and the variance
    figures more than one posterior draw, ``model_choice`` a fit whose model a backtest chose.
    """
    cp.check_fit(fit)
    ok = {
        "forest": cp.has_family_dim(fit),
        "rank": cp.is_mcmc(fit) and fit.idata.posterior.sizes["chain"] > 1,
        "energy": cp.is_mcmc(fit) and "sample_stats" in fit.idata.groups()
        and "energy" in fit.idata.sample_stats,
        "downstream": bool(cp.downstream_metrics(fit)),
        "band_vs_scale": targets is not None,
        "variance_parts": targets is not None and _posterior_draws(fit) > 1,
        "uncertainty_path": _posterior_draws(fit) > 1,
        "model_choice": fit.model_choice is not None and not fit.model_choice.scores.empty,
    }
    return [name for name in FIGURES if ok.get(name, True)]


def _posterior_draws(fit: Any) -> int:
    posterior = fit.idata.posterior
    return int(posterior.sizes["chain"] * posterior.sizes["draw"])


def plot(fit: Any, kind: str, **kwargs: Any) -> Figure:
    """Draw one figure by name, e.g. ``plot(fit, "ppc")``; validates the name first.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`FIGURES`.
    """
    if kind not in FIGURES:
        raise ValueError(f"unknown figure {kind!r}; available: {list(FIGURES)}")
    if kwargs.get("targets") is not None and kind not in TAKES_TARGETS:
        raise TypeError(f"figure {kind!r} takes no targets; those that do: {sorted(TAKES_TARGETS)}")
    kwargs = {k: v for k, v in kwargs.items() if k != "targets" or kind in TAKES_TARGETS}
    return FIGURES[kind](fit, **kwargs)
