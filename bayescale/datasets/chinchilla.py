"""Chinchilla final losses as extracted by Epoch AI (Besiroglu et al. 2024)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._paths import locate
from ._table import read_csv, runs_table

SUB = "chinchilla_epoch"
FILE = "svg_extracted_data.csv"
SOURCE = (
    "Hoffmann et al. 2022 (Chinchilla), Figure 4, digitised by Besiroglu et al. 2024, "
    "'Chinchilla Scaling: A replication attempt' "
    "(github.com/epoch-research/analyzing-chinchilla, data/svg_extracted_data.csv)"
)
N_OUTLIERS = 5


def load_chinchilla(path=None, *, exclude_outliers: bool = False, fetch: bool = False,
                    cache_dir=None) -> pd.DataFrame:
    """Load the 245 Chinchilla training runs (final loss only) as a runs table.

    Each CSV row is one run (``run`` = ``"chinchilla-000"`` ... in file order):
    ``params`` = N = ``Model Size``; ``tokens`` = ``total_tokens`` = D = C / (6 N) with
    C = ``Training FLOP``; ``metric`` = ``"loss"`` (nats per token on MassiveText,
    read off the figure's colour scale, so accurate to about 0.01); extra column
    ``flops`` = C. ``attrs["param_count"]`` is ``"total"`` (Chinchilla reports one count).

    Parameters
    ----------
    path : str or path, optional
        The CSV file, a folder holding it, or a folder holding ``chinchilla_epoch/``.
        Default: :func:`find_data_dir`.
    exclude_outliers : bool, default False
        Drop the 5 highest-loss runs (near 1e19 FLOP, well under one token per
        parameter), which Besiroglu et al. excluded from their fit. Run ids are kept.
    fetch : bool, default False
        If no local copy is found, download it (sha256-checked) into ``cache_dir``.
    cache_dir : str or path, optional
        Download cache; default the user cache folder.

    Returns
    -------
    pandas.DataFrame
        Runs table, one ``"loss"`` row per run.

    Raises
    ------
    FileNotFoundError
        If the CSV is not found (and ``fetch`` is False).
    ValueError
        If the CSV lacks a column or holds non-positive sizes or FLOP.

    Examples
    --------
    >>> runs = load_chinchilla()  # doctest: +SKIP
    >>> len(runs), runs.attrs["param_count"]  # doctest: +SKIP
    (245, 'total')
    """
    csv = (Path(path) if path is not None and Path(path).is_file()
           else locate(path, SUB, fetch=fetch, cache_dir=cache_dir) / FILE)
    raw = read_csv(csv, ["Model Size", "Training FLOP", "loss"])
    n = raw["Model Size"].astype(float).to_numpy()
    c = raw["Training FLOP"].astype(float).to_numpy()
    loss = raw["loss"].astype(float).to_numpy()
    if not (np.all(n > 0) and np.all(c > 0) and np.all(np.isfinite(loss))):
        raise ValueError(f"{csv}: 'Model Size' and 'Training FLOP' must be > 0 and 'loss' finite")
    d = c / (6.0 * n)
    rows = pd.DataFrame(
        {
            "family": "chinchilla",
            "run": [f"chinchilla-{i:03d}" for i in range(len(raw))],
            "params": n,
            "tokens": d,
            "total_tokens": d,
            "metric": "loss",
            "value": loss,
            "flops": c,
        }
    )
    if exclude_outliers:
        rows = rows.drop(rows["value"].nlargest(N_OUTLIERS).index)
    return runs_table(rows.to_dict("records"), dataset="chinchilla_epoch", source=SOURCE,
                      param_count="total")
