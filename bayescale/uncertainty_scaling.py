"""How the epistemic band at a target shrinks as the ladder grows: nested refits.

The ladder is refitted on nested subsets, smallest first: by model size (the runs up to
the k-th smallest size), by seeds (the first k seeds of every configuration) or by
checkpoints (every k-th checkpoint of every run, densest last).  At each step the width
of the law's band at the target (``predict(kind="mean")``: the posterior of the
parameters, no seed or noise) is recorded against the ladder's training compute (the sum
of ``6 N D`` over its runs), and a power law ``width = w0 (C / C_last)^-kappa`` is fitted
to the steps by least squares in logs, with a Student-t interval for ``kappa`` (few
points: the interval is wide on purpose).

Example
-------
>>> target = {"params": 7e9, "tokens": 1.4e11}
>>> result = bayescale.uncertainty_scaling(runs, target)  # doctest: +SKIP
>>> result.table, result.kappa  # doctest: +SKIP
>>> result.plot().savefig("scaling.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .model import Model
from .predict import read_targets
from .runs import read_runs

BY = ("size", "seeds", "checkpoints")


def nested_subsets(runs: pd.DataFrame | str | os.PathLike, by: str = "size",
                   min_steps: int = 2) -> list[tuple[str, pd.DataFrame]]:
    """``(label, rows)`` of each nested subset of ``runs``, smallest first (see module doc).

    By ``"size"`` the first subset holds the two smallest sizes (a law needs two); by
    ``"seeds"`` every configuration's first k seeds; by ``"checkpoints"`` every k-th
    checkpoint for k = 8, 4, 2, 1 (each run keeps its final checkpoint).
    """
    if by not in BY:
        raise ValueError(f"by={by!r} is not one of {BY}")
    runs = read_runs(runs)
    steps: list[tuple[str, pd.DataFrame]] = []
    if by == "size":
        sizes = np.sort(runs["params"].unique())
        for k in range(2, len(sizes) + 1):
            steps.append((f"N <= {sizes[k - 1]:.3g}", runs[runs["params"] <= sizes[k - 1]]))
    elif by == "seeds":
        if "seed" not in runs:
            raise ValueError("by='seeds' needs a 'seed' column in the runs table")
        seeds = np.sort(runs["seed"].unique())
        for k in range(1, len(seeds) + 1):
            steps.append((f"{k} seed(s)", runs[runs["seed"].isin(seeds[:k])]))
    else:
        order = runs.groupby("run")["tokens"].rank(method="first", ascending=False) - 1
        for every in (8, 4, 2, 1):
            kept = runs[(order % every) == 0]
            if not steps or len(kept) > len(steps[-1][1]):
                steps.append((f"every {every}th checkpoint" if every > 1 else "every checkpoint",
                              kept))
    if len(steps) < min_steps:
        raise ValueError(f"by={by!r} gives {len(steps)} nested subset(s) of this ladder; the "
                         f"scaling needs at least {min_steps}")
    return [(label, rows.reset_index(drop=True)) for label, rows in steps]


def ladder_compute(rows: pd.DataFrame) -> float:
    """Training compute of a ladder (FLOPs): ``6 N D_total`` summed over its runs."""
    total = rows["total_tokens"] if "total_tokens" in rows else rows["tokens"]
    per_run = (6.0 * rows["params"] * total).groupby(rows["run"]).max()
    return float(per_run.sum())


@dataclass
class UncertaintyScaling:
    """Result of :func:`uncertainty_scaling`.

    Attributes
    ----------
    table
        One row per nested fit: ``step``, ``runs``, ``rows``, ``ladder_compute`` (FLOPs),
        ``median``, ``lower``, ``upper`` and ``width`` of the law's band at the target
        (nats), ``relative_width`` (width over median), ``converged``.
    kappa
        ``{"median", "lower", "upper"}``: the fitted exponent of ``width ∝ C^-kappa`` and
        its interval (``hdi_prob``; NaN bounds with fewer than three steps).
    target, by, hdi_prob
        What was asked.
    """

    table: pd.DataFrame
    kappa: dict[str, float]
    target: pd.DataFrame
    by: str
    hdi_prob: float
    line: dict[str, Any] = field(default_factory=dict)

    def predict_width(self, compute) -> pd.DataFrame:
        """The fitted power law's width (and its band) at ladder compute(s) ``compute``."""
        x = np.log(np.atleast_1d(np.asarray(compute, dtype=float)) / self.line["c_ref"])
        centre = self.line["intercept"] - self.kappa["median"] * x
        se = self.line["sigma"] * np.sqrt(1 / self.line["n"] + (x - self.line["x_mean"]) ** 2
                                          / self.line["sxx"]) if self.line["n"] > 2 else np.nan
        t = self.line["t"]
        return pd.DataFrame({"ladder_compute": np.exp(x) * self.line["c_ref"],
                             "width": np.exp(centre), "lower": np.exp(centre - t * se),
                             "upper": np.exp(centre + t * se)})

    def plot(self, width: float | None = None) -> Figure:
        """Band width against ladder compute (log-log), with the fitted power law and band."""
        from .plotting import rcparams

        fig = Figure(figsize=(rcparams.get("figure.width", width),
                              0.55 * rcparams.get("figure.width", width)),
                     layout="constrained")
        ax = fig.subplots()
        grid = np.geomspace(self.table["ladder_compute"].min(),
                            self.table["ladder_compute"].max(), 50)
        line = self.predict_width(grid)
        ax.fill_between(line["ladder_compute"], line["lower"], line["upper"], color="#bfdbfe",
                        label=f"fit's {self.hdi_prob:.0%} band")
        k = self.kappa
        ax.plot(line["ladder_compute"], line["width"], color="#1d4ed8",
                label=f"width ∝ C^-κ, κ = {k['median']:.2f} [{k['lower']:.2f}, {k['upper']:.2f}]")
        ax.scatter(self.table["ladder_compute"], self.table["width"], color="black", zorder=3,
                   label="nested refits")
        for _, row in self.table.iterrows():
            ax.annotate(row["step"], (row["ladder_compute"], row["width"]), fontsize=8,
                        xytext=(5, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ladder's training compute (FLOP)")
        ax.set_ylabel(f"width of the law's {self.hdi_prob:.0%} band (nats)")
        ax.set_title(f"How the band at the target shrinks as the ladder grows (by {self.by})")
        ax.legend(fontsize=8)
        return fig


def fit_power_law(compute: np.ndarray, width: np.ndarray,
                  hdi_prob: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Least squares of ln width on ln compute: ``kappa`` (minus the slope) and its interval."""
    c_ref = float(compute[-1])
    x, y = np.log(compute / c_ref), np.log(width)
    n = len(x)
    x_mean = float(x.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    slope = float(((x - x_mean) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x_mean)
    line = {"c_ref": c_ref, "intercept": intercept, "n": n, "x_mean": x_mean, "sxx": sxx,
            "sigma": np.nan, "t": np.nan}
    if n < 3:
        return {"median": -slope, "lower": np.nan, "upper": np.nan}, line
    resid = y - (intercept + slope * x)
    sigma = float(np.sqrt((resid**2).sum() / (n - 2)))
    t = float(stats.t.ppf(0.5 + hdi_prob / 2, n - 2))
    half = t * sigma / np.sqrt(sxx)
    line.update(sigma=sigma, t=t)
    return {"median": -slope, "lower": -slope - half, "upper": -slope + half}, line


def _band_at(fitted, targets: pd.DataFrame, hdi_prob: float) -> dict[str, Any]:
    """The mean's band at the one target, and whether the fit converged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        band = fitted.predict(targets, hdi_prob=hdi_prob, kind="mean").iloc[0]
    return {"median": float(band["median"]), "lower": float(band["lower"]),
            "upper": float(band["upper"]), "converged": bool(fitted.diagnostics().passed)}


def uncertainty_scaling(runs: pd.DataFrame | str | os.PathLike, target,
                        model: str | os.PathLike | Model = "auto", *, by: str = "size",
                        hdi_prob: float = 0.9, progressbar: bool = True, client=None,
                        **fit_kwargs: Any) -> UncertaintyScaling:
    """Refit on nested subsets of the ladder and fit how the target's band shrinks.

    Parameters
    ----------
    runs
        The runs table (see :func:`bayescale.read_runs`).
    target
        One target row (as for :meth:`~bayescale.ScalingFit.predict`), loss metric.
    model
        The model of every refit.  ``"auto"`` (default): chosen once, on the whole ladder
        (:func:`bayescale.model_choice.choose_model`), and refitted on every subset, so
        the widths compare one model.
    by
        ``"size"`` (default), ``"seeds"`` or ``"checkpoints"``: see :func:`nested_subsets`.
    hdi_prob
        Probability mass of the bands and of ``kappa``'s interval.
    progressbar
        Print one line per refit.
    client
        A ``dask.distributed.Client``: the refits run as :func:`bayescale.fit_many` jobs
        on its cluster (each predicts the target on its worker).  ``None`` (default): one
        after another in this process.
    **fit_kwargs
        Passed to :func:`bayescale.fit` (e.g. ``draws``, ``tune``, ``chains``).

    Returns
    -------
    UncertaintyScaling
    """
    from .fitting import fit

    targets = read_targets(target)
    if len(targets) != 1:
        raise ValueError(f"uncertainty_scaling takes one target row, got {len(targets)}")
    fit_kwargs.setdefault("progressbar", False)
    if isinstance(model, str) and model == "auto":
        from .model_choice import choose_model

        settings = {k: fit_kwargs[k] for k in ("metric", "draws", "tune", "chains", "random_seed")
                    if k in fit_kwargs}
        # the loss model: the subsets' bands are of the target's loss
        model, _ = choose_model(read_runs(runs), progressbar=progressbar, links=False,
                                **settings)
    subsets = list(nested_subsets(runs, by))
    measure = partial(_band_at, targets=targets, hdi_prob=hdi_prob)
    if client is not None:
        from .fanout import FitJob, fit_many

        fit_kwargs.pop("progressbar")
        jobs = [FitJob(subset, model, dict(fit_kwargs), label=label, then=measure)
                for label, subset in subsets]
        out = fit_many(jobs, client, returns="result", progressbar=progressbar)
        out.raise_on_failure("uncertainty_scaling")
        bands = [out.results[label] for label, _ in subsets]
    else:
        bands = []
        for label, subset in subsets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bands.append(measure(fit(subset, model, **fit_kwargs)))
            if progressbar:
                print(f"{label}: {subset['run'].nunique()} runs, band width "
                      f"{bands[-1]['upper'] - bands[-1]['lower']:.4g}", flush=True)
    rows = []
    for (label, subset), band in zip(subsets, bands, strict=True):
        rows.append({"step": label, "runs": subset["run"].nunique(), "rows": len(subset),
                     "ladder_compute": ladder_compute(subset), "median": band["median"],
                     "lower": band["lower"], "upper": band["upper"],
                     "width": band["upper"] - band["lower"], "converged": band["converged"]})
        rows[-1]["relative_width"] = rows[-1]["width"] / rows[-1]["median"]
    table = pd.DataFrame(rows)
    kappa, line = fit_power_law(table["ladder_compute"].to_numpy(), table["width"].to_numpy(),
                                hdi_prob)
    return UncertaintyScaling(table, kappa, targets, by, hdi_prob, line)
