"""Figures of a fitted scaling law (matplotlib), computed apart from drawn.

:mod:`bayescale.plotting.compute` returns the numbers (bands, residuals, predictive
checks, prior draws) as arrays and DataFrames; :mod:`bayescale.plotting.figures` draws
them.  Every function takes a fitted (or loaded) :class:`~bayescale.ScalingFit` and
never fits.  Defaults live in the validated :data:`rcParams`.

Examples
--------
>>> import bayescale
>>> from bayescale.plotting import plot_fit, save_figures
>>> runs, _ = bayescale.simulate_ladder(seed=0)
>>> fit = bayescale.fit(runs, draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
>>> plot_fit(fit).savefig("fit.png")  # doctest: +SKIP
>>> save_figures(fit, "figures/")  # doctest: +SKIP
"""

from . import compute
from .colors import family_colors
from .figures import (
    FIGURES,
    TAKES_TARGETS,
    available_figures,
    plot,
    plot_band_vs_scale,
    plot_downstream,
    plot_energy,
    plot_fit,
    plot_forest,
    plot_ladder,
    plot_ppc,
    plot_prior_posterior,
    plot_rank,
    plot_residuals,
    plot_uncertainty_path,
    plot_variance_parts,
)
from .rcparams import rc_context, rcParams
from .save import encode_png, save_figures

__all__ = [
    "FIGURES",
    "TAKES_TARGETS",
    "available_figures",
    "compute",
    "encode_png",
    "family_colors",
    "plot",
    "plot_band_vs_scale",
    "plot_downstream",
    "plot_energy",
    "plot_fit",
    "plot_forest",
    "plot_ladder",
    "plot_ppc",
    "plot_prior_posterior",
    "plot_rank",
    "plot_residuals",
    "plot_uncertainty_path",
    "plot_variance_parts",
    "rcParams",
    "rc_context",
    "save_figures",
]
