"""Shared helpers: the runs-table columns and small readers with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns every loader returns first, in this order (extras follow).
RUNS_COLUMNS = ["family", "run", "params", "tokens", "total_tokens", "metric", "value", "n_items",
                "chance"]
_FLOATS = ["params", "tokens", "total_tokens", "value", "n_items", "chance"]
PARAM_COUNTS = ("total", "non_embedding")


def check_param_count(param_count: str) -> None:
    if param_count not in PARAM_COUNTS:
        raise ValueError(f"param_count must be one of {PARAM_COUNTS}, got {param_count!r}")


def read_json(path: Path) -> dict:
    """Read a JSON file; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_csv(path: Path, columns) -> pd.DataFrame:
    """Read a CSV file that must hold ``columns``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def runs_table(rows: list[dict], *, dataset: str, source: str, param_count: str) -> pd.DataFrame:
    """Assemble loader rows into a runs table with the standard columns and attrs."""
    df = pd.DataFrame(rows)
    for col in ("n_items", "chance"):
        if col not in df:
            df[col] = np.nan
    for col in _FLOATS:
        df[col] = df[col].astype(float)
    df = df[RUNS_COLUMNS + [c for c in df.columns if c not in RUNS_COLUMNS]].reset_index(drop=True)
    if not (df["params"] > 0).all():
        raise ValueError(f"{dataset}: non-positive or missing parameter counts")
    df.attrs.update(dataset=dataset, source=source, param_count=param_count)
    return df
