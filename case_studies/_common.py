"""Helpers shared by the case studies.

Locating the data, the common command-line options (``--small``, ``--out``, ``--data``,
``--seed``), posterior tables beside published values, and the optional HTML report.

The case studies are scripts (``python case_studies/<name>.py``), importable for tests
with ``case_studies`` on ``sys.path``; each exposes ``main(argv=None)``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Sampler settings of the full run and of the ``--small`` smoke run.
FULL = {"draws": 1000, "tune": 1000, "chains": 4}
SMALL = {"draws": 200, "tune": 200, "chains": 2}


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """An argument parser with the options every case study takes."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small",
        action="store_true",
        help="quick smoke run of every code path: few draws (and, where the case study says, fewer "
             "runs or tasks); its numbers are not forecasts",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / default_out,
                        help=f"output folder (default {default_out})")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder (default: $BAYESCALE_DATA, else ../shared/data relative to the "
             "repository root)",
    )
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the sampler (default 0)")
    parser.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    parser.add_argument("--progress", action="store_true", help="show the sampler's progress bar")
    return parser


def sampler_settings(small: bool) -> dict[str, int]:
    """Draws / tune / chains for a full or a ``--small`` run."""
    return dict(SMALL if small else FULL)


def require_data(sub: str, override: Path | None = None) -> Path:
    """The data folder holding ``sub/``; exit with a clear message when it is absent.

    ``override`` (the ``--data`` option) may be the data folder or ``sub`` itself.
    """
    from bayescale.datasets import find_data_dir
    from bayescale.datasets._paths import data_dir_help

    if override is not None:
        p = Path(override).expanduser()
        if (p / sub).is_dir():
            return p
        if p.is_dir() and p.name == sub:
            return p.parent
        raise SystemExit(f"error: --data {p} holds no '{sub}' folder")
    root = find_data_dir(sub)
    if root is None:
        raise SystemExit(f"error: {data_dir_help(sub)}")
    return root


def posterior_table(fit, names: list[str], hdi_prob: float = 0.9) -> pd.DataFrame:
    """Mean, median and HDI of posterior variables ``names`` (one row each)."""
    import arviz as az

    post = fit.idata.posterior[names]
    hdi = az.hdi(post, hdi_prob=hdi_prob)
    pct = round(100 * hdi_prob)
    rows = []
    for name in names:
        draws = post[name].to_numpy().ravel()
        lo, hi = (float(v) for v in hdi[name].to_numpy())
        rows.append(
            {
                "parameter": name,
                "mean": float(draws.mean()),
                "median": float(np.median(draws)),
                f"hdi{pct}_lower": lo,
                f"hdi{pct}_upper": hi,
            }
        )
    return pd.DataFrame(rows)


def add_published(table: pd.DataFrame, label: str, values: dict[str, float],
                  hdi_prob: float = 0.9) -> pd.DataFrame:
    """Add columns ``<label>`` (the published value) and ``<label>_in_hdi<pct>`` (bool)."""
    pct = round(100 * hdi_prob)
    out = table.copy()
    out[label] = out["parameter"].map(values)
    lo, hi = out[f"hdi{pct}_lower"], out[f"hdi{pct}_upper"]
    out[f"{label}_in_hdi{pct}"] = (out[label] >= lo) & (out[label] <= hi)
    return out


def fmt(x: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, plain for moderate magnitudes."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def print_table(table: pd.DataFrame, title: str | None = None) -> None:
    """Print a DataFrame with numbers to 4 significant digits and yes/no for booleans."""
    shown = table.copy()
    for col in shown.columns:
        if shown[col].dtype == bool:
            shown[col] = shown[col].map({True: "yes", False: "NO"})
        elif pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(fmt)
    if title:
        print(f"\n{title}")
    print(shown.to_string(index=False))


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def write_report_if_available(fit, path: Path, **options) -> Path | None:
    """Write the HTML report with :func:`bayescale.report.write_report` if that module exists.

    Otherwise print why not and return None.

    ``options`` (e.g. ``title``) are passed only if ``write_report`` accepts them.
    Errors raised inside an existing report module propagate.
    """
    try:
        module = importlib.import_module("bayescale.report")
    except ModuleNotFoundError as err:
        if err.name not in ("bayescale.report",):
            raise
        print("HTML report skipped: bayescale.report is not available in this version of the "
              "package")
        return None
    write_report = getattr(module, "write_report", None)
    if write_report is None:
        print("HTML report skipped: bayescale.report has no write_report()")
        return None
    params = inspect.signature(write_report).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in options.items() if takes_any or k in params}
    result = write_report(fit, path, **kwargs)
    return Path(result) if isinstance(result, (str, Path)) else Path(path)


def case_studies_on_path() -> None:
    """Put this folder on ``sys.path`` (for running one case study from another)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
