"""Download the data sets from their public sources on demand, cached and hash-checked.

The registry (``registry.txt``, one ``<path> <sha256>`` a line) lists exactly the files
the loaders read, with paths in the layout of the shared data folder; each prefix maps
to the public repository the file comes from (:data:`BASE_URLS`).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

REGISTRY_FILE = Path(__file__).with_name("registry.txt")

#: Local folder prefix -> public base URL (raw files on GitHub).
BASE_URLS = {
    "chinchilla_epoch/": "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/main/data/",
    "gadre_overtrain/": "https://raw.githubusercontent.com/mlfoundations/scaling/main/exp_data/",
    "pythia/": "https://raw.githubusercontent.com/EleutherAI/pythia/main/evals/",
}

#: Files each loader needs, as glob patterns relative to the data folder.
NEEDED = (
    "chinchilla_epoch/svg_extracted_data.csv",
    "gadre_overtrain/eval_metadata.csv",
    "gadre_overtrain/models/*.json",
    "gadre_overtrain/evals/*.json",
    "pythia/pythia-v1/*/zero-shot/*.json",
)


def url_for(name: str) -> str:
    """Public URL of registry entry ``name``."""
    for prefix, base in BASE_URLS.items():
        if name.startswith(prefix):
            return base + name[len(prefix):]
    raise ValueError(f"no source URL known for {name!r}")


def _download(url: str, output_file, pooch_obj) -> None:
    """Pooch downloader: ``file://`` URLs (local mirrors, tests) are copied, others use HTTP."""
    if url.startswith("file://"):
        shutil.copyfile(unquote(urlparse(url).path), output_file)
        return
    import pooch

    pooch.HTTPDownloader()(url, output_file, pooch_obj)


def make_pooch(cache_dir=None):
    """A :class:`pooch.Pooch` holding the registry, caching into ``cache_dir``.

    ``cache_dir`` defaults to the user cache folder (``pooch.os_cache("bayescale")``).
    """
    import pooch

    p = pooch.create(path=cache_dir or pooch.os_cache("bayescale"), base_url="")
    p.load_registry(REGISTRY_FILE)
    p.urls = {name: url_for(name) for name in p.registry}
    return p


def fetch_dataset(sub: str, cache_dir=None) -> Path:
    """Download (or reuse cached copies of) every registry file of data set ``sub``.

    Parameters
    ----------
    sub : str
        ``"chinchilla_epoch"``, ``"gadre_overtrain"`` or ``"pythia"``.
    cache_dir : str or path, optional
        Cache folder; default the user cache folder.

    Returns
    -------
    pathlib.Path
        The cached data set folder, laid out like the shared data folder.

    Raises
    ------
    ValueError
        If ``sub`` has no registry entries, or a download fails its sha256 check.
    """
    import pooch

    p = make_pooch(cache_dir)
    names = [n for n in p.registry if n.startswith(sub.rstrip("/") + "/")]
    if not names:
        raise ValueError(f"no files registered for data set {sub!r} in {REGISTRY_FILE}")
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # one line per file is too chatty for Pythia's 324 files
    try:
        for name in names:
            p.fetch(name, downloader=_download)
    finally:
        logger.setLevel(level)
    return Path(p.abspath) / sub


def sha256(path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_registry(data_dir, out=REGISTRY_FILE) -> int:
    """(Re)write the registry from a local data folder; returns the number of files.

    A maintainer's tool: run it once on a trusted copy of the data.
    """
    data_dir = Path(data_dir)
    files = sorted({f for pat in NEEDED for f in data_dir.glob(pat) if f.is_file()})
    lines = [f"{f.relative_to(data_dir).as_posix()} {sha256(f)}" for f in files]
    Path(out).write_text("\n".join(lines) + "\n")
    return len(lines)
