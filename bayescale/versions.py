"""Versions of the packages a fit depended on (recorded with every fit and report)."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("bayescale", "pymc", "pytensor", "arviz", "nutpie", "numpyro", "jax", "numpy", "pandas",
            "xarray")


def versions() -> dict[str, str]:
    """``{package: version}`` for the installed packages that matter to a fit."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
