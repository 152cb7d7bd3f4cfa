"""The runs table: the one input contract of bayescale.

One row per (run, checkpoint, metric).  :func:`read_runs` validates a table with a
pandera schema, fills the optional columns, and raises one :class:`RunsTableError`
naming every offending column and row.

Columns
-------
required
    ``params`` (N, parameters, > 0), ``tokens`` (D, tokens seen at the checkpoint, > 0),
    ``value`` (the observed metric; nats for ``"loss"``, a fraction for ``"acc:<task>"``).
optional
    ``family`` (default ``"default"``), ``run`` (default ``"<family>|N=<params>|D=<total_tokens>"``,
    so without ``run`` and ``total_tokens`` every row is its own finished run),
    ``seed``, ``total_tokens`` (default: the run's largest ``tokens``), ``metric``
    (default ``"loss"``), ``n_items`` and ``chance`` (accuracy metrics only).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

REQUIRED = ("params", "tokens", "value")
NUMERIC = ("params", "tokens", "value", "total_tokens", "n_items", "chance")
STRINGS = ("family", "run", "metric")
DEFAULT_FAMILY = "default"
LOSS = "loss"
ACC_PREFIX = "acc:"

__all__ = ["RunsTableError", "UnitWarning", "is_accuracy", "read_runs", "runs_hash"]


class RunsTableError(ValueError):
    """Invalid runs table; the message lists every problem with its column and rows."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        text = "invalid runs table:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text)


def is_accuracy(metric: pd.Series | str) -> pd.Series | bool:
    """True where ``metric`` is a downstream accuracy (``"acc:<task>"``)."""
    if isinstance(metric, str):
        return metric.startswith(ACC_PREFIX)
    return metric.astype(str).str.startswith(ACC_PREFIX)


def _rows(index: Iterable, limit: int = 8) -> str:
    rows = list(dict.fromkeys(index))
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _finite(series: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(series.to_numpy(dtype=float)), index=series.index)


def _numbers(raw: pd.Series) -> pd.Series:
    """``raw`` as float64 numbers (numbers written as strings may be padded with spaces).

    NaN where a cell is empty or is not a number (``True``, ``"abc"``).
    """
    text = raw.astype(str).str.strip().where(raw.notna())
    return pd.to_numeric(text, errors="coerce").astype(float)


def _valid(series: pd.Series) -> pd.Series:
    """``series`` where it is a finite number > 0, NaN elsewhere."""
    return series.where(np.isfinite(series) & (series > 0))


def _name(value: float) -> str:
    """``value`` in 6 significant digits, in full where 6 digits would also name another number."""
    text = f"{value:.6g}"
    return text if float(text) == value else repr(float(value))


def _whole(series: pd.Series) -> pd.Series:
    """True where a number is finite and has no fractional part."""
    values = series.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return pd.Series(np.isfinite(values) & (values == np.floor(values)), index=series.index)


def _row_check(fn, error: str) -> pa.Check:
    return pa.Check(fn, element_wise=False, error=error, ignore_na=False)


def _schema() -> pa.DataFrameSchema:
    positive_finite = [
        _row_check(lambda s: s.notna(), "is missing (NaN)"),
        _row_check(lambda s: _finite(s.fillna(1.0)), "is infinite"),
        _row_check(lambda s: ~(s <= 0), "must be > 0"),
    ]
    finite_value = [
        _row_check(lambda s: s.notna(), "is missing (NaN)"),
        _row_check(lambda s: _finite(s.fillna(0.0)), "is infinite"),
    ]
    loss_positive = _row_check(
        lambda df: ~((df["metric"] == LOSS) & (df["value"] <= 0)),
        "value: a loss must be > 0",
    )
    acc_in_unit = _row_check(
        lambda df: ~(is_accuracy(df["metric"]) & ((df["value"] < 0) | (df["value"] > 1))),
        "value: an accuracy (metric 'acc:*') must lie in [0, 1]",
    )
    tokens_le_total = _row_check(
        lambda df: ~(df["tokens"] > df["total_tokens"] * (1 + 1e-9)),
        "tokens: exceeds the run's total_tokens",
    )
    one_size_per_run = _row_check(  # among valid sizes: a bad one is named by its own check
        lambda df: _valid(df["params"]).groupby(df["run"]).transform("nunique") <= 1,
        "params: changes within one run (a run has one model size)",
    )
    chance_ok = _row_check(
        lambda df: ~(df["chance"].notna() & ((df["chance"] < 0) | (df["chance"] >= 1))),
        "chance: must lie in [0, 1)",
    )
    n_items_ok = _row_check(
        lambda df: ~(df["n_items"].notna() & ~(df["n_items"] >= 1)),
        "n_items: must be >= 1",
    )
    n_items_whole = _row_check(
        lambda df: ~((df["n_items"] >= 1) & ~_whole(df["n_items"])),
        "n_items: must be a whole number (it counts a benchmark's items)",
    )
    return pa.DataFrameSchema(
        {
            "params": pa.Column(float, positive_finite, nullable=True),
            "tokens": pa.Column(float, positive_finite, nullable=True),
            "total_tokens": pa.Column(float, positive_finite, nullable=True),
            "value": pa.Column(float, finite_value, nullable=True),
            "family": pa.Column(str),
            "run": pa.Column(str),
            "metric": pa.Column(str),
            "n_items": pa.Column(float, nullable=True),
            "chance": pa.Column(float, nullable=True),
        },
        checks=[loss_positive, acc_in_unit, tokens_le_total, one_size_per_run, chance_ok,
                n_items_ok, n_items_whole],
        strict=False,
    )


def _coerce_numeric(df: pd.DataFrame, labels: pd.Index, problems: list[str]) -> None:
    for col in NUMERIC:
        if col not in df:
            continue
        raw = df[col]
        num = _numbers(raw)
        bad = raw.notna() & num.isna()
        if bad.any():
            examples = ", ".join(repr(v) for v in raw[bad].head(3))
            problems.append(
                f"column '{col}': not a number at {_rows(labels[bad.to_numpy()])} (e.g. {examples})"
            )
        df[col] = num


def _fill_defaults(df: pd.DataFrame) -> None:
    if "family" not in df:
        df["family"] = DEFAULT_FAMILY
    # astype(object): a categorical column cannot take a new value such as the default
    df["family"] = df["family"].astype(object).fillna(DEFAULT_FAMILY).astype(str)
    if "metric" not in df:
        df["metric"] = LOSS
    df["metric"] = df["metric"].astype(object).fillna(LOSS).astype(str).str.strip()
    for col in ("n_items", "chance"):
        if col not in df:
            df[col] = np.nan
    if "run" not in df:
        # Without run ids a row is its own finished run unless total_tokens says otherwise.
        if "total_tokens" not in df:
            df["total_tokens"] = df["tokens"]
        df["total_tokens"] = df["total_tokens"].fillna(df["tokens"])
        df["run"] = (
            df["family"]
            + "|N="
            + df["params"].map(_name)
            + "|D="
            + df["total_tokens"].map(_name)
        )
    largest = _valid(df["tokens"]).groupby(df["run"]).transform("max")
    if "total_tokens" not in df:
        df["total_tokens"] = largest
    df["total_tokens"] = df["total_tokens"].fillna(largest)
    df["run"] = df["run"].astype(str)


def _failure_messages(err: pa.errors.SchemaErrors, labels: pd.Index) -> list[str]:
    """One line per failed check, naming the column and the rows (table index labels).

    The validated table is indexed by position; ``labels`` are the caller's index labels.
    """
    cases = err.failure_cases.copy()
    cases["check"] = cases["check"].astype(str)
    wide = cases["check"].str.contains(":")
    if wide.any():
        parts = cases.loc[wide, "check"].str.partition(":")
        cases.loc[wide, "column"] = parts[0].str.strip()
        cases.loc[wide, "check"] = parts[2].str.strip()
    out = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        idx = group["index"].dropna()
        where = _rows(labels.take(idx.astype(int))) if len(idx) else "the table"
        out.append(f"column '{column}': {check} at {where}")
    return out


def read_runs(
    data: pd.DataFrame | str | os.PathLike,
    *,
    drop_invalid: bool = False,
) -> pd.DataFrame:
    """Validate and normalise a runs table.

    Parameters
    ----------
    data
        A DataFrame or the path of a CSV file, one row per (run, checkpoint, metric).
    drop_invalid
        If True, rows failing a row-level check are dropped instead of raising, and the
        dropped rows are reported in ``result.attrs["dropped"]`` and with a warning.

    Returns
    -------
    pandas.DataFrame
        A copy with every optional column filled, numbers as float64, sorted by
        family, run, metric and tokens, index reset.

    Raises
    ------
    RunsTableError
        Listing every problem with its column and the offending rows (the index labels of
        ``data``).
    TypeError
        If ``data`` is neither a DataFrame nor a path.

    Examples
    --------
    >>> import pandas as pd, bayescale
    >>> runs = bayescale.read_runs(pd.DataFrame({"params": [1e8, 4e8], "tokens": [2e9, 8e9],
    ...                                          "value": [3.1, 2.8]}))
    >>> list(runs["metric"].unique())
    ['loss']
    """
    if not isinstance(data, (pd.DataFrame, str, os.PathLike)):
        raise TypeError(f"read_runs expects a DataFrame or a CSV path, got {type(data).__name__}")
    df = pd.read_csv(data) if isinstance(data, (str, os.PathLike)) else data.copy()
    df.columns = [str(c).strip() for c in df.columns]
    repeated = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
    if repeated:
        raise RunsTableError([f"column '{c}' appears more than once (names are compared without "
                              "surrounding spaces)" for c in repeated])
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise RunsTableError(
            [f"column '{c}' is required but missing (columns present: {list(df.columns)})"
             for c in missing]
        )
    if len(df) == 0:
        raise RunsTableError(["the table has no rows"])

    # Inside, rows are indexed by position (labels may repeat); messages name the labels.
    labels = df.index
    df = df.reset_index(drop=True)
    problems: list[str] = []
    _coerce_numeric(df, labels, problems)
    if problems:
        raise RunsTableError(problems)

    untrained = labels[(df["tokens"] == 0).to_numpy()]
    if len(untrained) and not drop_invalid:
        raise RunsTableError(
            [
                f"column 'tokens': 0 at {_rows(untrained)}: initialisation checkpoints (tokens = "
                "0) carry no scaling information; drop them with runs[runs['tokens'] > 0] or pass "
                "drop_invalid=True"
            ]
        )
    _fill_defaults(df)

    dropped = pd.DataFrame()
    try:
        _schema().validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        if not drop_invalid:
            raise RunsTableError(_failure_messages(err, labels)) from None
        bad_rows = err.failure_cases["index"].dropna().astype(int).unique()
        dropped = df.loc[df.index.isin(bad_rows)]
        df = df.loc[~df.index.isin(bad_rows)].copy()
        try:
            _schema().validate(df, lazy=True)
        except pa.errors.SchemaErrors as err2:
            raise RunsTableError(_failure_messages(err2, labels)) from None

    dup = df.duplicated(subset=["run", "tokens", "metric"], keep=False)
    if dup.any():
        if not drop_invalid:
            raise RunsTableError(
                ["columns 'run', 'tokens', 'metric': duplicated rows at "
                 f"{_rows(labels.take(df.index[dup].to_numpy()))}"]
            )
        first = df.duplicated(subset=["run", "tokens", "metric"], keep="first")
        dropped = pd.concat([dropped, df.loc[first]])
        df = df.loc[~first]

    if len(df) == 0:
        raise RunsTableError(["no valid rows remain after dropping invalid ones"])
    for message in implausible_units(df, labels):
        import warnings

        warnings.warn(message, UnitWarning, stacklevel=2)
    out = df.sort_values(["family", "run", "metric", "tokens"],
                         kind="stable").reset_index(drop=True)
    out.attrs = dict(data.attrs) if isinstance(data, pd.DataFrame) else {}
    if len(dropped):
        import warnings

        dropped_labels = labels.take(dropped.index.to_numpy())
        warnings.warn(f"read_runs dropped {len(dropped)} invalid rows: {_rows(dropped_labels)}",
                      stacklevel=2)
        out.attrs["dropped"] = dropped_labels.tolist()
    return out


class UnitWarning(UserWarning):
    """A runs table's numbers look like they are in another unit than the contract's."""


#: Smallest plausible parameter count: smaller values look like millions or billions.
MIN_PARAMS = 1e4
#: Smallest plausible tokens per parameter over a whole run: smaller looks like steps.
MIN_TOKENS_PER_PARAM = 0.05
#: Largest plausible loss in nats, ln(256,000): a uniform guess over any language model's
#: vocabulary; larger looks like a perplexity.
MAX_LOSS_NATS = 12.5


def implausible_units(df: pd.DataFrame, labels: pd.Index | None = None) -> list[str]:
    """Warnings for numbers that look like the wrong unit.

    Parameters in millions or billions (``params`` < :data:`MIN_PARAMS`), a run's length
    in steps (``total_tokens / params`` < :data:`MIN_TOKENS_PER_PARAM`), a perplexity given
    as the loss (``value`` > :data:`MAX_LOSS_NATS` on a loss row).  A loss in bits (1.44
    times the nats) cannot be told apart and is not flagged.  ``labels`` name the rows
    (default: ``df.index``).

    >>> [message] = implausible_units(pd.DataFrame({
    ...     "params": [1.4, 7.0], "total_tokens": [2.8e10, 1.4e11], "metric": "loss",
    ...     "value": 2.0}))
    >>> message.split(": give")[0]
    "column 'params': below 10,000 at rows 0, 1"
    """
    labels = df.index if labels is None else labels
    checks = {
        "params": (df["params"] < MIN_PARAMS, "below 10,000",
                   "give the number of parameters (1.4e9), not millions or billions"),
        "total_tokens": (df["total_tokens"] < MIN_TOKENS_PER_PARAM * df["params"],
                         f"under {MIN_TOKENS_PER_PARAM} tokens per parameter",
                         "tokens, not steps?"),
        "value": ((df["metric"] == LOSS) & (df["value"] > MAX_LOSS_NATS),
                  f"a loss above {MAX_LOSS_NATS} nats",
                  "a perplexity? (12.5 = ln 256,000, a uniform guess over any vocabulary) "
                  "give ln(perplexity)"),
    }
    out = []
    for column, (mask, problem, hint) in checks.items():
        if mask.any():
            rows = _rows(labels.take(df.index[mask.to_numpy()].to_numpy()))
            out.append(f"column '{column}': {problem} at {rows}: {hint}")
    return out


def runs_hash(runs: pd.DataFrame) -> str:
    """SHA-256 of the table's canonical CSV: identifies the data a fit saw."""
    cols = ["family", "run", "params", "tokens", "total_tokens", "metric", "value"]
    text = runs[cols].to_csv(index=False, float_format="%.10g")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Scale:
    """Centring constants so the sampler sees O(1) quantities (N/N0, D/D0)."""

    N0: float
    D0: float

    @classmethod
    def from_runs(cls, runs: pd.DataFrame) -> Scale:
        return cls(
            N0=float(np.exp(np.log(runs["params"]).mean())),
            D0=float(np.exp(np.log(runs["tokens"]).mean())),
        )
