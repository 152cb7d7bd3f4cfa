"""Write figures to files, or encode them for inlining in HTML."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from . import rcparams
from .figures import TAKES_TARGETS, available_figures, plot

#: PNG metadata that would make identical figures differ between runs.
_PNG_METADATA = {"Software": None}


def release(fig: Figure) -> None:
    """Free a figure's artists (and close it if pyplot manages it)."""
    import matplotlib.pyplot as plt

    if plt.fignum_exists(getattr(fig, "number", -1)):
        plt.close(fig)
    fig.clear()


def encode_png(fig: Figure, dpi: int | None = None, close: bool = True) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (and released unless ``close=False``)."""
    dpi = rcparams.get("report.dpi", dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=_PNG_METADATA)
    if close:
        release(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def save_figures(
    fit: Any, outdir, targets=None, dpi: int | None = None, names: list[str] | None = None
) -> list[Path]:
    """Draw every figure that applies to ``fit`` and write each to ``<outdir>/<name>.png``.

    Parameters
    ----------
    fit
        A :class:`~bayescale.ScalingFit` (fitted, or loaded with :func:`bayescale.load_fit`).
    outdir
        Folder to write to (created if missing).
    targets
        Prediction targets; adds ``band_vs_scale`` and marks them on ``ladder`` and ``fit``.
    dpi
        Resolution (default ``rcParams["figure.dpi"]``).
    names
        Subset of :func:`available_figures` to draw (default: all that apply).

    Returns
    -------
    list of pathlib.Path
        The written files, in drawing order.

    Examples
    --------
    >>> save_figures(fit, "figures/", targets={"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    """
    dpi = rcparams.get("figure.dpi", dpi)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    applicable = available_figures(fit, targets)
    if names is not None:
        unknown = [n for n in names if n not in applicable]
        if unknown:
            raise ValueError(f"figures {unknown} do not apply to this fit; these do: {applicable}")
        applicable = [n for n in applicable if n in names]
    written = []
    for name in applicable:
        kwargs = {"targets": targets} if name in TAKES_TARGETS else {}
        fig = plot(fit, name, **kwargs)
        path = outdir / f"{name}.png"
        fig.savefig(path, dpi=dpi, metadata=_PNG_METADATA)
        release(fig)
        written.append(path)
    return written
