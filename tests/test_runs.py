"""The runs-table contract: every bad input raises one clear error naming column and rows."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayescale import RunsTableError, read_runs
from bayescale.runs import UnitWarning


def table(**overrides):
    base = {
        "family": ["f", "f", "f", "f"],
        "run": ["r1", "r1", "r2", "r2"],
        "params": [1e8, 1e8, 4e8, 4e8],
        "tokens": [1e9, 2e9, 4e9, 8e9],
        "value": [3.2, 3.0, 2.8, 2.6],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def error_of(df, **kwargs) -> str:
    with pytest.raises(RunsTableError) as info:
        read_runs(df, **kwargs)
    return str(info.value)


def test_valid_table_is_normalised():
    runs = read_runs(table())
    assert list(runs["metric"].unique()) == ["loss"]
    assert runs.groupby("run")["total_tokens"].first().to_dict() == {"r1": 2e9, "r2": 8e9}
    assert runs["params"].dtype == float


def test_missing_required_column():
    msg = error_of(table().drop(columns="value"))
    assert "'value'" in msg and "missing" in msg


@pytest.mark.parametrize("col", ["params", "tokens"])
def test_non_positive(col):
    df = table()
    df.loc[2, col] = -5
    msg = error_of(df)
    assert f"column '{col}'" in msg and "> 0" in msg and "row 2" in msg


@pytest.mark.parametrize("bad,word", [(np.nan, "missing"), (np.inf, "infinite")])
@pytest.mark.parametrize("col", ["params", "tokens", "value"])
def test_nan_and_infinite(col, bad, word):
    df = table()
    df.loc[1, col] = bad
    msg = error_of(df)
    assert f"column '{col}'" in msg and word in msg and "row 1" in msg


def test_loss_not_positive():
    msg = error_of(table(value=[3.2, 0.0, 2.8, 2.6]))
    assert "column 'value'" in msg and "loss must be > 0" in msg and "row 1" in msg


def test_accuracy_outside_unit_interval():
    df = table(metric=["loss", "loss", "acc:piqa", "acc:piqa"], value=[3.2, 3.0, 1.2, 0.5])
    msg = error_of(df)
    assert "accuracy" in msg and "[0, 1]" in msg and "row 2" in msg and "row 3" not in msg


def test_item_counts_must_be_whole_numbers():
    """n_items counts a benchmark's items: 10.5 (or an infinite count) is refused by row."""
    df = table(metric=["loss", "loss", "acc:piqa", "acc:piqa"], value=[3.2, 3.0, 0.6, 0.5],
               n_items=[np.nan, np.nan, 10.5, 1838.0])
    msg = error_of(df)
    assert "n_items" in msg and "whole number" in msg and "row 2" in msg and "row 3" not in msg
    assert "whole number" in error_of(df.assign(n_items=[np.nan, np.nan, np.inf, 1838.0]))
    assert read_runs(df.assign(n_items=[np.nan, np.nan, 10.0, 1838.0]))["n_items"].max() == 1838.0


def test_duplicated_rows():
    df = pd.concat([table(), table().iloc[[3]]], ignore_index=True)
    msg = error_of(df)
    assert "duplicated" in msg and "rows 3, 4" in msg


def test_tokens_beyond_total_tokens():
    msg = error_of(table(total_tokens=[2e9, 2e9, 5e9, 5e9]))
    assert "column 'tokens'" in msg and "total_tokens" in msg and "row 3" in msg


def test_params_change_within_run():
    msg = error_of(table(params=[1e8, 2e8, 4e8, 4e8]))
    assert "column 'params'" in msg and "changes within one run" in msg and "rows 0, 1" in msg


def test_untrained_checkpoint_rejected_with_hint():
    msg = error_of(table(tokens=[0.0, 2e9, 4e9, 8e9]))
    assert "tokens = 0" in msg and "runs[runs['tokens'] > 0]" in msg and "drop_invalid=True" in msg


def test_all_problems_reported_together():
    df = table(params=[1e8, 1e8, -1, -1], value=[3.2, np.nan, 2.8, 2.6])
    msg = error_of(df)
    assert "column 'params'" in msg and "column 'value'" in msg


def test_numbers_as_strings_extra_and_absent_columns_accepted():
    df = table(params=["1e8", "1e8", " 4e8", "400000000"], tokens=["1e9", "2e9", "4e9", "8e9"])
    df["notes"] = ["a", "b", "c", "d"]
    runs = read_runs(df.drop(columns=["family", "run"]))
    assert runs["params"].tolist() == [1e8, 1e8, 4e8, 4e8]
    assert "notes" in runs and (runs["family"] == "default").all()
    # Without run ids or total_tokens every row is its own finished run.
    assert runs["run"].nunique() == 4 and (runs["total_tokens"] == runs["tokens"]).all()


def test_runs_derived_from_total_tokens():
    df = table(total_tokens=[2e9, 2e9, 8e9, 8e9]).drop(columns="run")
    runs = read_runs(df)
    assert runs["run"].nunique() == 2
    assert runs.groupby("run")["tokens"].count().tolist() == [2, 2]


def test_non_numeric_string_named():
    msg = error_of(table(tokens=["1e9", "lots", "4e9", "8e9"]))
    assert "column 'tokens'" in msg and "not a number" in msg and "'lots'" in msg and "row 1" in msg


def test_drop_invalid_reports_dropped_rows():
    df = table(tokens=[0.0, 2e9, 4e9, 8e9], value=[3.2, 3.0, -1.0, 2.6])
    with pytest.warns(UserWarning, match="dropped 2 invalid rows"):
        runs = read_runs(df, drop_invalid=True)
    assert len(runs) == 2 and runs.attrs["dropped"] == [0, 2]


def test_csv_path(tmp_path):
    path = tmp_path / "runs.csv"
    table().to_csv(path, index=False)
    assert len(read_runs(path)) == 4


def test_targets_broadcast_scalars_and_name_bad_columns():
    from bayescale.predict import read_targets

    table = read_targets({"params": 2.8e9, "tokens": 3e11, "family": ["pile", "deduped"]})
    assert len(table) == 2 and (table["params"] == 2.8e9).all()
    with pytest.raises(RunsTableError, match=r"column 'tokens' of the targets.*row 1"):
        read_targets({"params": [1e9, 1e9], "tokens": [1e10, 0]})
    records = read_targets([{"params": 1e9, "tokens": 2e10},
                            {"params": 2e9, "tokens": 4e10, "family": "code"}])
    assert records["params"].tolist() == [1e9, 2e9] and records["family"].isna().tolist() == [
        True, False]
    with pytest.raises(RunsTableError, match=r"column 'tokens' of the targets.*row 1"):
        read_targets([{"params": 1e9, "tokens": 1e10}, {"params": 1e9, "tokens": -1}])


# Regressions found by the property tests (tests/test_properties.py).
def test_not_a_table_is_a_type_error():
    from bayescale.predict import read_targets

    for read in (read_runs, read_targets):
        for data in (None, 5, b"params"):
            with pytest.raises(TypeError, match="expects a DataFrame"):
                read(data)


@pytest.mark.parametrize("names", [["params", "params"], ["params", " params "]])
def test_repeated_column_named(names):
    df = table()
    df = pd.concat([df, df[["params"]].set_axis([names[1]], axis=1)], axis=1)
    assert "column 'params' appears more than once" in error_of(df)


def test_drop_invalid_with_repeated_index_labels_drops_only_the_bad_row():
    df = table(value=[3.2, 3.0, np.nan, 2.6]).set_axis([0, 0, 1, 1])
    with pytest.warns(UserWarning, match="dropped 1 invalid rows"):
        runs = read_runs(df, drop_invalid=True)
    assert runs["value"].tolist() == [3.2, 3.0, 2.6] and runs.attrs["dropped"] == [1]


@pytest.mark.parametrize("col,bad", [("params", -1.0), ("params", np.inf), ("tokens", np.inf)])
def test_drop_invalid_drops_the_bad_row_not_its_run(col, bad):
    """A bad size or token count is the row's problem: its run's other rows are kept."""
    df = table()
    df.loc[1, col] = bad
    with pytest.warns(UserWarning, match="dropped 1 invalid rows"):
        runs = read_runs(df, drop_invalid=True)
    assert runs["tokens"].tolist() == [1e9, 4e9, 8e9] and runs.attrs["dropped"] == [1]
    # run r1 went as far as its dropped row's tokens, when those are a number of tokens
    assert runs["total_tokens"].tolist() == [1e9 if col == "tokens" else 2e9, 8e9, 8e9]
    assert "changes within one run" not in error_of(df)


def test_missing_family_in_a_categorical_column_is_the_default():
    runs = read_runs(table(family=pd.Categorical(["f", None, "f", "f"])))
    assert sorted(runs["family"]) == ["default", "f", "f", "f"]


def test_default_run_ids_tell_apart_sizes_beyond_six_digits():
    """Without run ids each row is its own run, however close two sizes or lengths are."""
    df = pd.DataFrame({"params": [1.0000001e8, 1.0000002e8, 1e8, 1e8],
                       "tokens": [1e9, 1e9, 1.0000001e9, 1.0000002e9],
                       "value": [3.0, 3.0, 3.0, 3.0]})
    runs = read_runs(df)
    assert runs["run"].nunique() == 4 and (runs["total_tokens"] == runs["tokens"]).all()
    assert read_runs(table().drop(columns="run"))["run"].iloc[0] == "f|N=1e+08|D=1e+09"


def test_targets_errors_name_index_labels_and_read_numbers_as_read_runs_does():
    from bayescale.predict import read_targets

    targets = pd.DataFrame({"params": [1e9, -1.0], "tokens": [1e10, 1e10]}, index=["small", "big"])
    with pytest.raises(RunsTableError, match=r"column 'params' of the targets.*row big"):
        read_targets(targets)
    with pytest.raises(RunsTableError, match=r"column 'params' of the targets.*row 0"):
        read_targets({"params": [True], "tokens": [1e10]})  # True is not a number of parameters
    assert read_targets({"params": " 1e9 ", "tokens": 1e10,
                         "family": "a\x00"})["family"].tolist() == ["a\x00"]


@pytest.mark.parametrize("targets,message", [
    ({}, "column 'params' is required"),
    ({"params": [1e9, 2e9], "tokens": [1e10, 1e10, 1e10]}, "differ in length"),
    ({"params": [[1e9, 2e9]], "tokens": 1e10}, "must be a scalar or a list"),
    (pd.DataFrame([[1e9, 1e10, 2e9]], columns=["params", "tokens", "params"]),
     "appears more than once"),
])
def test_malformed_targets_named(targets, message):
    from bayescale.predict import read_targets

    with pytest.raises(RunsTableError, match=message):
        read_targets(targets)


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"params": [0.07, 0.14, 0.28]}, "params"),  # in billions
        ({"tokens": [1e3, 2e3, 4e3]}, "total_tokens"),  # steps, not tokens
        ({"value": [40.0, 30.0, 25.0]}, "value"),  # perplexities
    ],
)
def test_numbers_in_the_wrong_unit_are_flagged_with_their_column(change, column):
    good = pd.DataFrame({"params": [7e7, 1.4e8, 2.8e8], "tokens": [1.4e9, 2.8e9, 5.6e9],
                         "value": [3.4, 3.1, 2.9]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plausible table warns of nothing
        read_runs(good)
    with pytest.warns(UnitWarning, match=rf"column '{column}': .* at rows 0, 1, 2"):
        read_runs(good.assign(**change))
