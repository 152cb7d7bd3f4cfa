"""One colour per family, the same in every figure of a fit."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from . import rcparams


def family_colors(families: Iterable[str]) -> dict[str, str]:
    """Map each family name to a hex colour.

    Colours are assigned in the *sorted* order of the distinct names, so the mapping does
    not depend on the order in which families appear in a table: every figure of a fit
    (which all call this with that fit's families) colours a family the same way.  The
    first colours come from ``rcParams["palette"]`` (Okabe-Ito, colour-blind safe); more
    families than that get evenly spaced colours of the ``turbo`` colour map.

    Parameters
    ----------
    families
        Family names (any iterable; duplicates are ignored).

    Returns
    -------
    dict
        ``{family: "#rrggbb"}``, keys in sorted order.

    Examples
    --------
    >>> family_colors(["pythia", "llama", "pythia"])
    {'llama': '#0072b2', 'pythia': '#d55e00'}
    """
    names = sorted({str(f) for f in families})
    palette = list(rcparams.rcParams["palette"])
    if len(names) > len(palette):
        extra = len(names) - len(palette)
        cmap = colormaps["turbo"]
        palette += [to_hex(cmap(x)) for x in np.linspace(0.05, 0.95, extra)]
    return {name: palette[i] for i, name in enumerate(names)}
