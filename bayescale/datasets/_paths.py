"""Where the real data live: ``$BAYESCALE_DATA`` or ``<project root>/../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BAYESCALE_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the bayescale package


def _candidates() -> list[Path]:
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]).expanduser())
    out += [PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return out


def find_data_dir(required: str | None = None) -> Path | None:
    """Find the folder holding the real data sets.

    Looks, in order, at ``$BAYESCALE_DATA``, ``<project root>/../shared/data`` (the
    project root is the parent of the ``bayescale`` package folder) and
    ``./../shared/data`` relative to the working directory.

    Parameters
    ----------
    required : str, optional
        A subfolder that must exist in the data folder (e.g. ``"pythia"``).

    Returns
    -------
    pathlib.Path or None
        The first existing candidate (holding ``required`` if given), else None.

    Examples
    --------
    >>> root = find_data_dir("pythia")
    >>> root is None or (root / "pythia").is_dir()
    True
    """
    for cand in _candidates():
        if cand.is_dir() and (required is None or (cand / required).is_dir()):
            return cand
    return None


def data_dir_help(required: str | None = None) -> str:
    """A message naming every place searched for the data folder."""
    what = f"subfolder '{required}' of the data folder" if required else "the data folder"
    places = ", ".join(str(c) for c in _candidates())
    return (
        f"could not find {what}; searched ${ENV_VAR} "
        f"({'set' if os.environ.get(ENV_VAR) else 'not set'}) and the default locations "
        f"{PROJECT_ROOT.parent / 'shared' / 'data'} (<project root>/../shared/data) and "
        f"{Path.cwd().parent / 'shared' / 'data'} (./../shared/data). Searched: {places}. "
        f"Set ${ENV_VAR} to the folder, pass path=..., or pass fetch=True to download."
    )


def require_data_dir(sub: str | None = None) -> Path:
    """Like :func:`find_data_dir`, but raise if the data folder is missing.

    Parameters
    ----------
    sub : str, optional
        Subfolder that must exist (e.g. ``"gadre_overtrain"``).

    Returns
    -------
    pathlib.Path
        The data folder (the parent of ``sub``).

    Raises
    ------
    FileNotFoundError
        Naming ``$BAYESCALE_DATA`` and both default locations.

    Examples
    --------
    >>> root = require_data_dir("chinchilla_epoch")  # doctest: +SKIP
    """
    root = find_data_dir(sub)
    if root is None:
        raise FileNotFoundError(data_dir_help(sub))
    return root


def locate(path, sub: str, *, fetch: bool = False, cache_dir=None) -> Path:
    """The folder of data set ``sub``: from ``path``, the default locations, or a download.

    ``path`` may be the data set folder itself or a folder holding ``sub/``. With
    ``path=None`` the default locations are searched first. ``fetch=True`` downloads
    (into ``cache_dir``) only when no local copy is found.
    """
    if path is not None:
        p = Path(path).expanduser()
        if (p / sub).is_dir():
            return p / sub
        if p.is_dir():
            return p
        if p.exists():
            raise FileNotFoundError(f"{sub}: expected a folder, got the file {p}")
        if not fetch:
            raise FileNotFoundError(f"{sub}: no such file or folder: {p} (pass fetch=True to "
                                    "download)")
    else:
        root = find_data_dir(sub)
        if root is not None:
            return root / sub
        if not fetch:
            raise FileNotFoundError(data_dir_help(sub))
    from ._fetch import fetch_dataset

    return fetch_dataset(sub, cache_dir=cache_dir)
