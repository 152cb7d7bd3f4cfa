"""Property-based tests (hypothesis) of the two input contracts: runs table, prediction targets.

``read_runs`` and ``read_targets`` take any table a user can write.  The properties: every
input gives either a valid table or the documented error (``RunsTableError``, and
``TypeError`` for an input that is not a table), never another exception; a valid table
loses no row, changes no number and puts the rows in the documented order (``read_runs``:
sorted by family, run, metric and tokens, stably; ``read_targets``: the order given); a
table with one bad cell is refused with a message naming the cell's column and row label;
``drop_invalid=True`` drops exactly the rows with a bad cell.

Every property runs 500 derandomized examples, so the default tier is deterministic.
Rows are followed through ``read_runs``'s sort by an extra column, ``__row__`` (extra
columns are kept), holding each row's position in the input.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bayescale import RunsTableError, read_runs
from bayescale.predict import read_targets
from bayescale.runs import UnitWarning

PROPERTY = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ROW = "__row__"
NAN, INF = float("nan"), float("inf")
NUMBER_COLUMNS = ("params", "tokens", "value", "total_tokens", "n_items", "chance")
METRICS = ("loss", "acc:piqa", "acc:arc e")

positive = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0)
below_one = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
# Names without '|' (the separator of default run ids) and without ', ', '(' or ':' (which
# delimit row lists in the error messages); any other text, unicode and spaces included.
name_text = st.text(st.characters(exclude_characters="|,(:", exclude_categories=("Cs",)),
                    max_size=6)
label_text = st.text("abcdefghij_0123456789-", min_size=1, max_size=5)


# ----------------------------------------------------------------------------- strategies
@st.composite
def labels(draw, n: int, duplicates: bool = True) -> list:
    """Index labels: default, unique ints, unique strings, mixed, or (optionally) repeated."""
    kinds = ["range", "ints", "strings", "mixed"] + (["repeated"] if duplicates else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "range":
        return list(range(n))
    if kind == "ints":
        return draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n, unique=True))
    if kind == "strings":
        return draw(st.lists(label_text, min_size=n, max_size=n, unique=True))
    if kind == "mixed":
        mixed = st.one_of(st.integers(-100, 100), label_text)
        return draw(st.lists(mixed, min_size=n, max_size=n, unique_by=str))
    return draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))


def written(draw, value: float):
    """A number as a float, or as a string the way a CSV or a hand-made table writes it."""
    form = draw(st.sampled_from(["float", "float", "repr", "padded", "g17"]))
    if form == "repr":
        return repr(value)
    if form == "padded":
        return f" {value!r} "
    if form == "g17":
        return f"{value:.17g}"
    return value


@st.composite
def valid_runs(draw, max_runs: int = 3):
    """A valid runs table, with the truth of every row (``truth[i]`` is the row at position i).

    Returns ``(df, truth, has)``: ``has`` says which optional columns are present.
    """
    has = {c: draw(st.booleans())
           for c in ("family", "run", "total_tokens", "metric", "seed", "notes")}
    has["n_items"] = has["chance"] = has["metric"] and draw(st.booleans())
    n_runs = draw(st.integers(1, max_runs))
    run_names = draw(st.lists(name_text, min_size=n_runs, max_size=n_runs, unique=True))
    rows: list[dict] = []
    for r in range(n_runs):
        family = draw(name_text) if has["family"] else "default"
        params = draw(positive)
        seed = draw(st.one_of(st.integers(0, 10), name_text)) if has["seed"] else None
        tokens = draw(st.lists(positive, min_size=1, max_size=3, unique=True))
        largest = max(tokens)
        total = (largest if draw(st.booleans())
                 else draw(st.floats(min_value=largest, allow_infinity=False)))
        for t in tokens:
            metrics = {"loss"}
            if has["metric"]:
                metrics = draw(st.sets(st.sampled_from(METRICS), min_size=1, max_size=2))
            for metric in sorted(metrics):
                acc = metric.startswith("acc:")
                rows.append({
                    "family": family, "run": run_names[r], "params": params, "tokens": t,
                    "total_tokens": total, "metric": metric, "seed": seed,
                    "value": draw(unit if acc else positive),
                    "n_items": float(draw(st.integers(1, 10**6))) if acc and has["n_items"]
                    else NAN,
                    "chance": draw(below_one) if acc and has["chance"] else NAN,
                    "notes": draw(name_text) if has["notes"] else None,
                })
    if not has["run"]:
        # Without run ids a run is (family, params, total_tokens): keep one row per such
        # (run, tokens, metric), so the table has no duplicated rows.
        key = (("family", "params", "total_tokens") if has["total_tokens"]
               else ("family", "params", "tokens"))
        seen: set = set()
        kept = []
        for row in rows:
            k = (*(row[c] for c in key), row["tokens"], row["metric"])
            if k not in seen:
                seen.add(k)
                kept.append(row)
        rows = kept
    rows = draw(st.permutations(rows))
    truth = [dict(row, **{ROW: i}) for i, row in enumerate(rows)]
    columns = ["params", "tokens", "value", *(c for c, present in has.items() if present)]
    data = {}
    for col in draw(st.permutations(columns)):
        cells = [row[col] for row in rows]
        if col in NUMBER_COLUMNS and draw(st.booleans()):
            cells = [v if math.isnan(v) else written(draw, v) for v in cells]
        data[col] = cells
    data[ROW] = list(range(len(rows)))
    df = pd.DataFrame(data, index=draw(labels(len(rows))))
    return df, truth, has


# ----------------------------------------------------------------------------- checks
def number(cell) -> float:
    """The number a cell holds, as the contract reads it (strings may be padded)."""
    return float(cell.strip()) if isinstance(cell, str) else float(cell)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def check_invariants(out: pd.DataFrame) -> list[dict]:
    """What every table read_runs returns satisfies (README, "The runs table"); its rows."""
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(pd.RangeIndex(len(out)))
    for col in NUMBER_COLUMNS:
        assert out[col].dtype == np.float64, col
    records = out.to_dict("records")
    size_of: dict = {}
    seen: set = set()
    for r in records:
        assert all(isinstance(r[col], str) for col in ("family", "run", "metric")), r
        for col in ("params", "tokens", "total_tokens"):
            assert math.isfinite(r[col]) and r[col] > 0, (col, r[col])
        assert math.isfinite(r["value"])
        assert r["tokens"] <= r["total_tokens"] * (1 + 1e-9)
        if r["metric"] == "loss":
            assert r["value"] > 0
        if r["metric"].startswith("acc:"):
            assert 0 <= r["value"] <= 1
        n_items, chance = r["n_items"], r["chance"]
        assert math.isnan(n_items) or (n_items >= 1 and n_items.is_integer()), n_items
        assert math.isnan(chance) or 0 <= chance < 1, chance
        assert size_of.setdefault(r["run"], r["params"]) == r["params"], "two sizes in one run"
        key = (r["run"], r["tokens"], r["metric"])
        assert key not in seen, f"duplicated {key}"
        seen.add(key)
    keys = [(r["family"], r["run"], r["metric"], r["tokens"], r[ROW]) for r in records]
    assert keys == sorted(keys), "not sorted by family, run, metric, tokens (stably)"
    return records


def check_rows(out: pd.DataFrame, truth: list[dict], has: dict, kept: list[int],
               lost_tokens: frozenset = frozenset()) -> None:
    """``out`` holds exactly the input rows at positions ``kept``, with their values."""
    records = check_invariants(out)
    assert sorted(out[ROW]) == kept, "rows dropped, duplicated or invented"
    for row in records:
        t = truth[row[ROW]]
        for col in ("params", "tokens", "value"):
            assert row[col] == t[col], (col, row[col], t[col])
        assert row["family"] == (t["family"] if has["family"] else "default")
        assert row["metric"] == (t["metric"] if has["metric"] else "loss")
        if has["run"]:
            assert row["run"] == t["run"]
        if has["total_tokens"]:
            assert row["total_tokens"] == t["total_tokens"]
        elif has["run"]:  # the run's largest (valid) tokens
            assert row["total_tokens"] == max(u["tokens"] for u in truth
                                              if u["run"] == t["run"] and u[ROW] not in lost_tokens)
        else:
            assert row["total_tokens"] == t["tokens"]
        for col in ("n_items", "chance"):
            assert same(row[col], t[col] if has[col] else NAN), col
        if has["seed"]:
            assert row["seed"] == t["seed"]
        if has["notes"]:
            assert row["notes"] == t["notes"]


ROW_LIST = re.compile(r" at rows? ([^:(]*?)(?: \(|:|$)")


def named(message: str, column: str) -> set[str]:
    """The row labels the error names for ``column``."""
    out: set[str] = set()
    for line in message.splitlines():
        if f"'{column}'" not in line:
            continue
        for match in ROW_LIST.finditer(line):
            out.update(match.group(1).split(", "))
    return out


# ----------------------------------------------------------------------------- corruption
def corruptions(truth: list[dict], has: dict, pos: int,
                row_level: bool) -> list[tuple[str, object, str]]:
    """(column, bad cell, column the error must name) for the row at ``pos``.

    ``row_level``: only problems a row has on its own (what ``drop_invalid`` drops).
    """
    row = truth[pos]
    bad_numbers = [NAN, INF, -INF, 0.0, -1.0, -5e-324]
    out = []
    for col in ("params", "tokens"):
        out += [(col, v, col) for v in bad_numbers]
    out += [("value", v, "value") for v in (NAN, INF, -INF)]
    if row["metric"] == "loss":
        out += [("value", v, "value") for v in (0.0, -1.0, -5e-324)]
    else:
        out += [("value", v, "value") for v in (1.0000001, 2.0, -1e-9)]
    if has["total_tokens"]:
        out += [("total_tokens", v, "total_tokens") for v in (INF, 0.0, -1.0)]
        out += [("tokens", row["total_tokens"] * 4, "tokens")]  # beyond total_tokens
        if row["total_tokens"] > 5e-324:
            out += [("total_tokens", row["tokens"] / 4, "tokens")]
    if has["n_items"]:
        out += [("n_items", v, "n_items") for v in (10.5, 0.0, -3.0, INF, 1e-300)]
    if has["chance"]:
        out += [("chance", v, "chance") for v in (1.0, 2.0, -0.5, INF, -INF)]
    if not row_level:
        for col in ("params", "tokens", "value"):
            out += [(col, v, col) for v in ("abc", "", " ", "1e9x", "nan?", True, None)]
        if has["run"]:
            out.append(("run", None, "run"))
            mates = [u for u in truth if u["run"] == row["run"]]
            if len(mates) > 1 and len({u["params"] for u in mates}) == 1:
                other = row["params"] * 2 if row["params"] * 2 < INF else row["params"] / 2
                out.append(("params", other, "params"))  # a second model size within one run
    return out


def corrupt(df: pd.DataFrame, pos: int, col: str, cell) -> pd.DataFrame:
    bad = df.copy()
    values = list(bad[col])
    values[pos] = cell
    bad[col] = pd.Series(values, index=bad.index, dtype=object)
    return bad


# ----------------------------------------------------------------------------- read_runs
@PROPERTY
@given(valid_runs(), st.booleans())
def test_valid_table_keeps_every_row_and_value(case, drop_invalid):
    df, truth, has = case
    before = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to drop, nothing to warn about ...
        warnings.simplefilter("ignore", UnitWarning)  # ... but tiny sizes look like billions
        out = read_runs(df, drop_invalid=drop_invalid)
    pd.testing.assert_frame_equal(df, before)  # the input is not modified
    check_rows(out, truth, has, kept=list(range(len(truth))))
    assert "dropped" not in out.attrs


@PROPERTY
@given(valid_runs(), st.data())
def test_one_bad_cell_is_named_by_column_and_row(case, data):
    df, truth, has = case
    pos = data.draw(st.integers(0, len(truth) - 1), label="row")
    col, cell, column = data.draw(st.sampled_from(corruptions(truth, has, pos, row_level=False)),
                                  label="corruption")
    bad = corrupt(df, pos, col, cell)
    try:
        read_runs(bad)
    except RunsTableError as err:
        label = str(df.index[pos])
        assert label in named(str(err), column), f"{column!r} at row {label} not named in:\n{err}"
    else:
        raise AssertionError(f"{col}={cell!r} at row {df.index[pos]} was accepted")


@PROPERTY
@given(valid_runs(), st.data())
def test_drop_invalid_drops_exactly_the_bad_rows(case, data):
    df, truth, has = case
    positions = data.draw(st.sets(st.integers(0, len(truth) - 1), min_size=1, max_size=3),
                          label="rows")
    bad = df
    lost_tokens = set()
    for pos in sorted(positions):
        col, cell, _ = data.draw(st.sampled_from(corruptions(truth, has, pos, row_level=True)),
                                 label=f"corruption of row {pos}")
        bad = corrupt(bad, pos, col, cell)
        if col == "tokens":
            lost_tokens.add(pos)
    kept = [i for i in range(len(truth)) if i not in positions]
    if not kept:
        try:
            read_runs(bad, drop_invalid=True)
        except RunsTableError as err:
            assert "no valid rows remain" in str(err)
            return
        raise AssertionError("every row is invalid, yet read_runs returned a table")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_runs(bad, drop_invalid=True)
    assert any(f"dropped {len(positions)} invalid rows" in str(w.message) for w in caught)
    assert Counter(map(str, out.attrs["dropped"])) == Counter(str(df.index[p]) for p in positions)
    check_rows(out, truth, has, kept=kept, lost_tokens=frozenset(lost_tokens))


# Cells for tables that are anything at all: most are good, so that tables get past the
# first checks; any may be bad.
BAD_NUMBER = st.one_of(
    st.floats(), st.integers(-3, 10**12), st.sampled_from([10**30, 2**64, True, False, None]),
    st.sampled_from(["abc", "", "nan", "inf", "-1", "0", "1_000", "0x10", "\u0661\u0662"]),
)
BAD_TEXT = st.one_of(name_text, st.sampled_from([None, NAN, 3, 2.5, "acc:", "LOSS"]))


SIZE = st.one_of(st.sampled_from([1e8, 4e8, "1e8", " 4e8 "]), positive)
# column: (good cells, bad cells)
ANY_COLUMNS = {
    "params": (SIZE, BAD_NUMBER),
    "tokens": (st.one_of(st.sampled_from([1e9, 2e9, "3e9"]), positive), BAD_NUMBER),
    "value": (st.floats(min_value=1e-6, max_value=1.0), BAD_NUMBER),
    "total_tokens": (st.sampled_from([NAN, 1e300, "1e300"]), BAD_NUMBER),
    "n_items": (st.sampled_from([NAN, 1.0, 500.0, "1838"]), BAD_NUMBER),
    "chance": (st.sampled_from([NAN, 0.0, 0.25, "0.5"]), BAD_NUMBER),
    "family": (st.sampled_from(["web", "code", None]), BAD_TEXT),
    "run": (st.sampled_from(["r1", "r2", "r3"]), BAD_TEXT),
    "metric": (st.sampled_from(["loss", " loss ", "acc:piqa", None]), BAD_TEXT),
    "seed": (BAD_TEXT, BAD_TEXT),
    "notes": (BAD_NUMBER, BAD_NUMBER),
}


@st.composite
def any_table(draw, columns: dict) -> pd.DataFrame:
    """A table with any columns (seldom padded or repeated), cells, dtypes and index labels.

    A column is clean (good cells only) or, one time in four, dirty (one cell in three bad).
    """
    names = draw(st.lists(st.sampled_from(sorted(columns)), unique=True, max_size=8))
    if draw(st.integers(0, 4)):  # mostly with the required columns
        names = list(dict.fromkeys([c for c in ("params", "tokens", "value")
                                    if c in columns] + names))
    n = draw(st.integers(0, 8))
    cells = []
    for name in names:
        good, bad = columns[name]
        cell = st.one_of(good, good, bad) if not draw(st.integers(0, 3)) else good
        cells.append(draw(st.lists(cell, min_size=n, max_size=n)))
    headers = [f" {c} " if not draw(st.integers(0, 9)) else c for c in names]  # padded names
    if names and not draw(st.integers(0, 9)):  # a column given twice
        i = draw(st.integers(0, len(names) - 1))
        headers.append(draw(st.sampled_from([names[i], f"{names[i]} "])))
        cells.append(cells[i])
    df = pd.DataFrame(dict(enumerate(cells)), index=pd.RangeIndex(n))
    df.columns = headers  # repeated names are possible, as in a table read with duplicate headers
    for i in range(len(headers)):
        dtype = draw(st.sampled_from([None, None, None, "category", "string", "Float64"]))
        if dtype is not None:
            # any cell this dtype cannot hold stays as it is
            with contextlib.suppress(Exception):
                df.isetitem(i, df.iloc[:, i].astype(dtype))
    df.index = draw(labels(n))
    return df


@PROPERTY
@given(any_table(ANY_COLUMNS), st.booleans())
def test_any_table_gives_a_valid_table_or_the_documented_error(df, drop_invalid):
    df = df.assign(**{ROW: range(len(df))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = read_runs(df, drop_invalid=drop_invalid)
        except RunsTableError as err:
            event("RunsTableError: " + str(err).splitlines()[1].split(" at ")[0][:60])
            return
    event(f"accepted ({'some' if out.attrs.get('dropped') else 'no'} rows dropped)")
    check_invariants(out)
    dropped = out.attrs.get("dropped", [])
    assert len(out) + len(dropped) == len(df), "a row vanished without being reported"
    assert len(set(out[ROW])) == len(out)
    assert Counter(map(str, dropped)) == Counter(str(df.index[i])
                                                 for i in sorted(set(range(len(df)))
                                                                 - set(out[ROW])))
    sources = df.set_axis([str(c).strip() for c in df.columns], axis=1).to_dict("records")
    for row in out.to_dict("records"):
        source = sources[row[ROW]]
        for col in ("params", "tokens", "value"):
            assert row[col] == number(source[col]), (col, row[col], source[col])


NOT_A_TABLE = st.one_of(
    st.none(), st.integers(), st.floats(), st.booleans(), st.binary(max_size=8),
    st.lists(st.floats(), max_size=3), st.tuples(st.integers()), st.sets(st.integers(), max_size=3),
)


@PROPERTY
@given(NOT_A_TABLE)
def test_not_a_table_is_a_type_error(data):
    for read in (read_runs, read_targets):
        try:
            read(data)
        except TypeError as err:
            assert "DataFrame" in str(err)
        else:
            raise AssertionError(f"{read.__name__} accepted {data!r}")


# ----------------------------------------------------------------------------- targets
@st.composite
def valid_targets(draw):
    """Valid prediction targets, as a DataFrame or a dict (scalars broadcast), with their truth."""
    n = draw(st.integers(1, 6))
    params = draw(st.lists(positive, min_size=n, max_size=n))
    tokens = draw(st.lists(positive, min_size=n, max_size=n))
    data: dict = {"params": params, "tokens": tokens}
    if draw(st.booleans()):
        data["total_tokens"] = [draw(st.floats(min_value=t, allow_infinity=False)) for t in tokens]
    for col, values in (("family", name_text), ("run", name_text),
                        ("metric", st.sampled_from(METRICS))):
        if draw(st.booleans()):
            data[col] = draw(st.lists(values, min_size=n, max_size=n))
    truth = {k: list(v) for k, v in data.items()}
    for col in ("params", "tokens", "total_tokens"):
        if col in data and draw(st.booleans()):
            data[col] = [written(draw, v) for v in data[col]]
    data[ROW] = list(range(n))
    if draw(st.booleans()):  # a dict; a column with one value may be given as a scalar
        for col in list(data):
            if len(set(map(repr, data[col]))) == 1 and draw(st.booleans()):
                data[col] = data[col][0]
        return data, truth, [str(i) for i in range(n)]
    index = draw(labels(n))
    return pd.DataFrame(data, index=index), truth, [str(i) for i in index]


@PROPERTY
@given(valid_targets())
def test_valid_targets_keep_every_row_in_order(case):
    targets, truth, _ = case
    out = read_targets(targets)
    n = len(truth["params"])
    assert len(out) == n and out.index.equals(pd.RangeIndex(n))
    assert out[ROW].tolist() == list(range(n)), "targets dropped or reordered"
    for col in ("params", "tokens", "total_tokens"):
        if col in truth:
            assert out[col].dtype == np.float64
            assert out[col].tolist() == truth[col], col
    for col in ("family", "run", "metric"):
        if col in truth:
            assert out[col].tolist() == truth[col], col


@PROPERTY
@given(valid_targets(), st.data())
def test_one_bad_target_cell_is_named_by_column_and_row(case, data):
    targets, truth, names = case
    n = len(truth["params"])
    pos = data.draw(st.integers(0, n - 1), label="row")
    options = [(c, v, c) for c in ("params", "tokens") for v in
               (NAN, INF, -INF, 0.0, -1.0, "abc", "", None, True)]
    if "total_tokens" in truth:
        options += [("total_tokens", v, "total_tokens") for v in (NAN, INF, 0.0, -2.0, "x")]
        options += [("tokens", truth["total_tokens"][pos] * 4, "tokens")]
    col, cell, column = data.draw(st.sampled_from(options), label="corruption")
    if isinstance(targets, dict):
        targets = dict(targets)
        values = list(np.broadcast_to(np.asarray(targets[col], dtype=object), (n,)))
        values[pos] = cell
        targets[col] = values
    else:
        targets = corrupt(targets, pos, col, cell)
    try:
        read_targets(targets)
    except RunsTableError as err:
        message = f"{column!r} at row {names[pos]} not named in:\n{err}"
        assert names[pos] in named(str(err), column), message
    else:
        raise AssertionError(f"target {col}={cell!r} at row {names[pos]} was accepted")


TARGET_COLUMNS = {
    "params": (SIZE, BAD_NUMBER),
    "tokens": (positive, BAD_NUMBER),
    "total_tokens": (st.sampled_from([1e300, "1e300"]), BAD_NUMBER),
    "family": ANY_COLUMNS["family"], "run": ANY_COLUMNS["run"], "metric": ANY_COLUMNS["metric"],
}


@st.composite
def any_targets_dict(draw) -> dict:
    """Targets as a dict: scalars and lists, seldom of different lengths or nested."""
    keys = draw(st.lists(st.sampled_from(sorted(TARGET_COLUMNS)), unique=True, max_size=5))
    if draw(st.integers(0, 4)):
        keys = list(dict.fromkeys(["params", "tokens", *keys]))
    n = draw(st.integers(0, 4))
    out = {}
    for key in keys:
        good, bad = TARGET_COLUMNS[key]
        cell = st.one_of(good, good, bad) if not draw(st.integers(0, 3)) else good
        shape = draw(st.sampled_from(["scalar", *["list"] * 5, "other length", "nested"]))
        if shape == "scalar":
            out[key] = draw(cell)
        elif shape == "nested":
            out[key] = draw(st.lists(st.lists(cell, max_size=2), min_size=1, max_size=2))
        else:
            size = n if shape == "list" else draw(st.integers(0, 5))
            out[key] = draw(st.lists(cell, min_size=size, max_size=size))
    return out


@PROPERTY
@given(st.one_of(any_table(TARGET_COLUMNS), any_targets_dict()))
def test_any_targets_give_valid_targets_or_the_documented_error(targets):
    try:
        out = read_targets(targets)
    except RunsTableError as err:
        event("RunsTableError: " + str(err).splitlines()[1].split(" at ")[0][:60])
        return
    event("accepted")
    if isinstance(targets, pd.DataFrame):
        columns = targets
    else:  # scalars broadcast against the lists, which all have one length
        lengths = {len(v) for v in targets.values() if isinstance(v, list)}
        assert len(lengths) <= 1, f"columns of lengths {lengths} accepted"
        n = lengths.pop() if lengths else 1
        columns = {k: v if isinstance(v, list) else [v] * n for k, v in targets.items()}
    n = len(columns["params"])
    assert len(out) == n and out.index.equals(pd.RangeIndex(n)), "targets dropped or invented"
    for col in ("params", "tokens", "total_tokens"):
        if col in out:
            assert out[col].dtype == np.float64 and (np.isfinite(out[col]) & (out[col] > 0)).all()
    if "total_tokens" in out:
        assert (out["tokens"] <= out["total_tokens"] * (1 + 1e-9)).all()
    for col in ("params", "tokens"):
        assert out[col].tolist() == [number(v) for v in columns[col]], col
