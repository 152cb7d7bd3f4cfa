"""bayescale.backtest (module bayescale.backtesting): rolling-origin backtests inside a ladder."""

import time

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.backtesting import Backtest, backtest, late_cut, make_folds
from bayescale.model import load_model

#: The default tier's ladder: 5 sizes x 3 token multipliers (15 final losses).
SIZES = (3e7, 6e7, 1.2e8, 2.4e8, 4.8e8)
MULTIPLIERS = (10, 20, 40)
SMALL = {"draws": 200, "tune": 200, "chains": 2}


def ladder(seed=0, **kwargs):
    return bayescale.simulate_ladder(seed=seed, sizes=SIZES, token_multipliers=MULTIPLIERS,
                                     **kwargs)[0]


@pytest.fixture(scope="module")
def small_backtest():
    start = time.perf_counter()
    result = backtest(ladder(seed=0), ["chinchilla", "compute"], folds=2, random_seed=1,
                      progressbar=False, **SMALL)
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------- default tier
def test_small_backtest_table_folds_and_scores(small_backtest):
    result, seconds = small_backtest
    assert isinstance(result, Backtest)
    rows = result.rows
    expected = ["model", "fold", "run", "params", "tokens", "value", "median", "lower_50",
                "upper_50", "lower_90", "upper_90", "log_score", "rel_error", "covered_50",
                "covered_90", "width_90", "extrapolation", "converged"]
    assert set(expected) <= set(rows.columns)
    # 2 models x 2 folds x 3 held-out runs (one per token multiplier)
    assert len(rows) == 2 * 2 * 3
    assert rows.groupby(["model", "fold"]).size().eq(3).all()
    # rolling origin: fold 0 holds out the largest size and fits the rest, fold 1 the second
    # largest and fits the three below it
    assert set(rows.loc[rows["fold"] == 0, "params"]) == {4.8e8}
    assert set(rows.loc[rows["fold"] == 1, "params"]) == {2.4e8}
    assert result.folds[0].train["params"].max() == 2.4e8
    assert result.folds[1].train["params"].max() == 1.2e8
    assert len(result.folds[0].train) == 12 and len(result.folds[1].train) == 9
    # targets are final losses: the held-out values are the ladder's own rows
    runs = ladder(seed=0).set_index("run")
    assert np.allclose(rows["value"], runs.loc[rows["run"], "value"])
    for col in ("log_score", "rel_error", "width_90", "median", "extrapolation"):
        assert np.isfinite(rows[col]).all(), col
    assert (rows["lower_90"] <= rows["lower_50"]).all()
    assert (rows["upper_50"] <= rows["upper_90"]).all()
    # a held-out run of the next size is 1-4x the largest fitted compute
    assert rows["extrapolation"].between(0.99, 4.01).all()

    scores = result.scores
    assert list(scores["model"]) == sorted(scores["model"],
                                           key=lambda m: -scores.set_index("model").loc[
                                               m, "mean_log_score"])
    assert set(scores["model"]) == {"chinchilla", "compute"}
    assert np.isfinite(scores[["mean_log_score", "median_abs_rel_error", "median_width_90",
                               "median_width_ratio"]].to_numpy()).all()
    assert scores[["coverage_50", "coverage_90"]].stack().between(0, 1).all()
    assert (scores["n"] == 6).all() and (scores["folds"] == 2).all()
    assert result.best == scores["model"].iloc[0]
    # the truth is Chinchilla's law; with 6 held-out rows at noise 0.01 the log scores of the
    # two laws are close (compute won 2 of 4 seeds at this size), so this is reported only
    print(f"\nsmall backtest ({seconds:.0f} s):\n{scores.round(3).to_string()}")


def test_small_backtest_plot(small_backtest):
    import matplotlib.figure

    fig = small_backtest[0].plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3  # one per model, and the log scores


def test_late_holdout_cuts_runs_and_predicts_their_ends():
    runs = ladder(seed=2, checkpoints=6)
    folds = make_folds(runs, "late", folds=2)
    assert [f.label for f in folds] == ["runs cut at 0.5", "runs cut at 0.25"]
    assert late_cut(0) == 0.5 and late_cut(1) == 0.25
    for fold in folds:
        cut = late_cut(fold.index)
        assert (fold.train["tokens"] <= cut * fold.train["total_tokens"] * (1 + 1e-9)).all()
        assert len(fold.held_out) == 15  # every run's final row
        assert (fold.held_out["tokens"] == fold.held_out["total_tokens"]).all()
    # a final-loss law fitted to the runs' halves, predicting each run's end from its own run
    result = backtest(runs, ["chinchilla"], holdout="late", folds=1, progressbar=False,
                      draws=100, tune=100, chains=2)
    assert len(result.rows) == 15
    assert np.isfinite(result.rows["log_score"]).all()
    assert (result.rows["extrapolation"] > 1).any()


def test_largest_holdout_merges_near_equal_sizes_and_holds_out_a_tenth_of_the_runs():
    from bayescale.backtesting import MIN_HELD_OUT, size_levels

    # published ladders give one size with rounding noise: 1e9 and 1.000001e9 are one size
    assert list(size_levels([1e9, 1.000001e9, 2e9, 1.5e9])) == [1.000001e9, 1.000001e9, 2e9,
                                                                 1.5e9]
    # 40 runs of distinct sizes, except that the largest two are the same model: a fold
    # holds out the largest sizes until it has 10% of the runs (4)
    sizes = np.geomspace(1e7, 1e9, 40)
    sizes[-1] = sizes[-2] * (1 + 1e-7)
    runs = pd.DataFrame({"run": [f"r{i}" for i in range(40)], "params": sizes,
                         "tokens": 20 * sizes, "total_tokens": 20 * sizes,
                         "value": 2 + 400 * sizes**-0.3})
    folds = make_folds(runs, "largest", folds=2)
    assert MIN_HELD_OUT * 40 == 4
    assert [len(f.held_out) for f in folds] == [4, 4]
    assert folds[0].label == f"params>={sizes[-4]:.3g} (3 sizes)"  # the pair is one size
    assert folds[0].train["params"].max() == sizes[-5]
    assert folds[1].held_out["params"].min() == sizes[-8]
    assert folds[1].train["params"].max() == sizes[-9]
    # no run is both fitted and held out
    for fold in folds:
        assert not set(fold.train["run"]) & set(fold.held_out["run"])


def test_log_score_is_the_mixture_density_of_the_loss(monkeypatch):
    from scipy.stats import lognorm

    import bayescale.backtesting as bt

    mu = np.log(np.array([[2.0, 3.0], [2.1, 2.9], [1.9, 3.2]]))  # (S=3, T=2)
    s2 = np.array([[0.01, 0.02], [0.02, 0.01], [0.015, 0.03]])
    monkeypatch.setattr(bt, "per_draw_normal", lambda fit, rows, **kw: (mu, s2))
    y = np.array([2.05, 3.4])
    got = bt.log_scores(None, pd.DataFrame({"params": [1e9, 1e9], "tokens": [1e10, 2e10]}), y)
    want = np.log(np.mean(lognorm.pdf(y[None, :], s=np.sqrt(s2), scale=np.exp(mu)), axis=0))
    assert np.allclose(got, want)


def test_input_errors():
    runs = ladder(seed=0)
    with pytest.raises(ValueError, match="holdout='newest' is not one of"):
        backtest(runs, ["chinchilla"], holdout="newest")
    with pytest.raises(ValueError, match="leaves 1 model size"):
        backtest(runs, ["chinchilla"], folds=4)  # 5 sizes: the 4th fold fits one size
    with pytest.raises(ValueError, match="at least one candidate"):
        backtest(runs, [])
    with pytest.raises(ValueError, match="unique labels"):
        backtest(runs, ["chinchilla", load_model("chinchilla")])
    with pytest.raises(ValueError, match="folds must be an integer >= 1"):
        backtest(runs, ["chinchilla"], folds=0)
    with pytest.raises(ValueError, match="hdi_probs"):
        backtest(runs, ["chinchilla"], hdi_probs=(0.5, 1.2))
    with pytest.raises(ValueError, match="no rows with metric"):
        backtest(runs, ["chinchilla"], metric="acc:mmlu")
    with pytest.raises(ValueError, match="leaves 1 model size"):
        make_folds(ladder(seed=0, checkpoints=4)[lambda d: d["params"] < 1e8], "largest", 1)
    # a checkpoint ladder cut so early that only one size keeps rows
    short = ladder(seed=0, checkpoints=3)
    short = short[(short["params"] == 3e7) | (short["tokens"] >= 0.9 * short["total_tokens"])]
    with pytest.raises(ValueError, match=r"holdout='late' fold 0 .* leaves 1 model size"):
        make_folds(short, "late", 1)


# ---------------------------------------------------------------------------- slow tier
#: The slow tier's ladder: 6 sizes x 5 token multipliers (30 final losses), 3 folds (15 rows
#: scored per backtest).  The multipliers vary 16-fold, so at equal compute the runs differ in
#: their split of N and D, which the compute law cannot express.
SLOW_SIZES = (1.5e7, 3e7, 6e7, 1.2e8, 2.4e8, 4.8e8)
SLOW_MULTIPLIERS = (5.0, 10.0, 20.0, 40.0, 80.0)
#: A compute-law truth of the same range of losses as simulate_ladder's default Chinchilla
#: truth on this ladder (3.9 nats at the smallest run, 2.5 at the largest).
COMPUTE_TRUTH = {"E": 1.8, "A": 1100.0, "gamma": 0.16}


def compute_ladder(seed: int, noise: float = 0.01) -> pd.DataFrame:
    """Final losses ``(E + A (6 N D)^-gamma) exp(noise z)`` on the slow tier's ladder."""
    rng = np.random.default_rng([seed, 17])
    rows = []
    for n in SLOW_SIZES:
        for m in SLOW_MULTIPLIERS:
            d = m * n
            mean = COMPUTE_TRUTH["E"] + COMPUTE_TRUTH["A"] * (6 * n * d) ** -COMPUTE_TRUTH["gamma"]
            rows.append({"run": f"N{n:.3g}-x{m:g}", "params": n, "tokens": d,
                         "value": mean * np.exp(noise * rng.standard_normal())})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_backtest_prefers_the_true_law():
    """Issue #17, acceptance 1 (first half): on 10 simulated ladders from each of two laws,
    the backtest prefers the true law in at least 8 of 10."""
    start = time.perf_counter()
    table = []
    for truth in ("chinchilla", "compute"):
        for rep in range(10):
            seed = 1000 + rep
            runs = (bayescale.simulate_ladder(seed=seed, sizes=SLOW_SIZES,
                                              token_multipliers=SLOW_MULTIPLIERS)[0]
                    if truth == "chinchilla" else compute_ladder(seed))
            result = backtest(runs, ["chinchilla", "compute"], folds=3, random_seed=rep,
                              progressbar=False, draws=300, tune=300, chains=2)
            scores = result.scores.set_index("model")
            table.append({"truth": truth, "replicate": rep, "best": result.best,
                          "chinchilla": scores.loc["chinchilla", "mean_log_score"],
                          "compute": scores.loc["compute", "mean_log_score"],
                          "coverage_90_true": scores.loc[truth, "coverage_90"]})
    table = pd.DataFrame(table)
    table["margin"] = np.where(table["truth"] == "chinchilla", 1, -1) * (
        table["chinchilla"] - table["compute"])
    print(f"\n{table.round(3).to_string()}\n({time.perf_counter() - start:.0f} s)")
    correct = (table["best"] == table["truth"]).groupby(table["truth"]).sum()
    print(correct.to_dict())
    assert (correct >= 8).all(), correct.to_dict()
