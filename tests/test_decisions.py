"""Decisions: which family wins at a target (compare_families), allocation probabilities."""

import dataclasses
import itertools
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import require_sampled, shape_default

import bayescale
from bayescale import RunsTableError, load_model
from bayescale.allocation import optimal_allocation_draws
from bayescale.decisions import (
    _metric_column,
    _warn_if_heavy_tailed,
    allocation_excess_draws,
    allocation_probability,
    compare_families,
)
from bayescale.simulate import DEFAULT_TRUTH

SIZES = (2e7, 6e7, 2e8)
MULTIPLIERS = (10.0, 40.0)
#: 9x the ladder's largest compute (2e8 parameters x 8e9 tokens).
TARGET = {"params": 6e8, "tokens": 2.4e10}
#: Three families whose irreducible losses differ by 0.2 nats: "low" wins at any scale.
CLEAR_E = {"low": 1.6, "mid": 1.8, "high": 2.0}


def quiet_fit(runs, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(runs, shape_default(runs), progressbar=False, retry=False,
                             **kwargs)


@pytest.fixture(scope="module")
def clear_fit():
    """The default model (chinchilla + family pooling) on three families of 6 runs each."""
    frames = [bayescale.simulate_ladder(seed=10 + i, truth=dict(DEFAULT_TRUTH, E=e),
                                        families=[name], sizes=SIZES,
                                        token_multipliers=MULTIPLIERS)[0]
              for i, (name, e) in enumerate(CLEAR_E.items())]
    fit = quiet_fit(pd.concat(frames, ignore_index=True), draws=1000, tune=1000, chains=2,
                    random_seed=1)
    assert fit.model.part("family_pooling") is not None
    return fit


def test_input_errors(clear_fit):
    fit = clear_fit
    with pytest.raises(ValueError, match=r"not fitted families; the fitted ones are \['high', "):
        compare_families(fit, TARGET, ["low", "c4"])
    with pytest.raises(ValueError, match="at least two families to compare"):
        compare_families(fit, TARGET, ["low"])
    with pytest.raises(ValueError, match="named more than once"):
        compare_families(fit, TARGET, ["low", "low"])
    unpooled = dataclasses.replace(fit, model=fit.model.with_parts(drop=("family_pooling",)))
    with pytest.raises(ValueError, match="needs a fit whose model pools families"):
        compare_families(unpooled, TARGET)
    with pytest.raises(ValueError, match=r"at least two families; this fit has \['low'\]"):
        compare_families(dataclasses.replace(fit, families=["low"]), TARGET)
    with pytest.raises(ValueError, match="one target row, got 2"):
        compare_families(fit, {"params": [6e8, 1e9], "tokens": 2.4e10})
    with pytest.raises(ValueError, match=r"the target names \['family'\]"):
        compare_families(fit, dict(TARGET, family="low"))
    with pytest.raises(RunsTableError, match="'params' of the targets must be a finite number"):
        compare_families(fit, dict(TARGET, params=-1.0))
    with pytest.raises(ValueError, match=r"metric='acc:piqa' is not one this fit predicts.*no "
                                         r"downstream tasks"):
        compare_families(fit, TARGET, metric="acc:piqa")
    with pytest.raises(ValueError, match="kind='median'"):
        compare_families(fit, TARGET, kind="median")
    # allocation
    with pytest.raises(ValueError, match="needs a law in N and D separately"):
        allocation_probability(dataclasses.replace(fit, model=load_model("compute")), 1e20, 1e9)
    with pytest.raises(ValueError, match="within must be a finite number >= 0"):
        allocation_probability(fit, 1e20, 1e9, within=-0.1)
    with pytest.raises(ValueError, match="params must be finite and > 0"):
        allocation_probability(fit, 1e20, [1e9, 0.0])
    with pytest.raises(ValueError, match="do not broadcast"):
        allocation_probability(fit, [1e20, 1e21], [1e8, 1e9, 1e10])
    with pytest.raises(ValueError, match="family 'c4' is not one of the fitted families"):
        allocation_probability(fit, 1e20, 1e9, family="c4")


def test_metric_directions():
    """Loss and errors: lower is better; accuracies (any fitted task, and their average):
    higher is better."""
    fit = SimpleNamespace(metric="loss", tasks=["acc:piqa"])
    assert _metric_column(fit, "loss") == (None, False)
    assert _metric_column(fit, "acc:piqa") == ("acc:piqa", True)
    assert _metric_column(fit, "acc:avg") == ("acc:avg", True)
    assert _metric_column(fit, "err:piqa") == ("err:piqa", False)
    with pytest.raises(ValueError, match=r"'acc:avg', 'err:piqa', 'err:avg'\]$"):
        _metric_column(fit, "acc:hellaswag")


def test_clear_winner_and_joint_draws(clear_fit):
    fit = require_sampled(clear_fit)
    table = compare_families(fit, TARGET)
    assert list(table.columns) == ["family", "p_best", "p_best_mcse", "expected_regret", "mean",
                                   "median", "lower", "upper"]
    assert table["p_best"].sum() == pytest.approx(1.0)
    assert (table["expected_regret"] >= 0).all()
    assert table["p_best"].is_monotonic_decreasing
    # E differs by 0.2 nats: "low" wins in every draw, and costs nothing
    assert table["family"].iloc[0] == "low" and table["p_best"].iloc[0] > 0.99
    assert table["expected_regret"].idxmin() == table["p_best"].idxmax()
    assert table["expected_regret"].iloc[0] == pytest.approx(0.0, abs=1e-3)
    regrets = table.set_index("family")["expected_regret"]
    assert 0.1 < regrets["mid"] < 0.3 < regrets["high"] < 0.5  # about 0.2 and 0.4 nats
    assert table.attrs["kind"] == "mean" and table.attrs["metric"] == "loss"
    assert table.attrs["target"] == TARGET
    assert table.attrs["diagnostics"] == fit.diagnostics().message()
    assert table.attrs["extrapolation"] == pytest.approx(9.0)
    # the same numbers from the joint draws by hand: draw by draw, the lowest family wins
    families = ["high", "low", "mid"]
    draws = (fit.predict_draws(pd.DataFrame([dict(TARGET, family=f) for f in families]),
                               kind="mean").stack(s=("chain", "draw"))
             .transpose("s", "target").to_numpy())
    best = draws.min(axis=1, keepdims=True)
    by_hand = pd.DataFrame({"p_best": (draws == best).mean(axis=0),
                            "expected_regret": (draws - best).mean(axis=0)}, index=families)
    mine = table.set_index("family").loc[families]
    np.testing.assert_allclose(mine["p_best"], by_hand["p_best"])
    np.testing.assert_allclose(mine["expected_regret"], by_hand["expected_regret"])
    band = fit.predict(pd.DataFrame([dict(TARGET, family=f) for f in families]), kind="mean")
    np.testing.assert_allclose(mine["median"], band["median"])
    # a subset of families: the probabilities are among those
    two = compare_families(fit, pd.Series(TARGET), ["mid", "high"])
    assert list(two["family"]) == ["mid", "high"] and two["p_best"].sum() == pytest.approx(1.0)


def test_observation_kind_adds_noise_and_is_seeded(clear_fit):
    fit = clear_fit
    mean = compare_families(fit, TARGET).set_index("family")
    obs = compare_families(fit, TARGET, kind="observation", seed=3).set_index("family")
    again = compare_families(fit, TARGET, kind="observation", seed=3).set_index("family")
    pd.testing.assert_frame_equal(obs, again)
    assert obs.attrs["kind"] == "observation"
    assert obs["p_best"].sum() == pytest.approx(1.0) and (obs["expected_regret"] >= 0).all()
    assert obs.loc["low", "p_best"] > 0.95  # 0.2 nats is far beyond a run's noise
    # a new run's band is wider than the expected run's
    width = (obs["upper"] - obs["lower"]) - (mean["upper"] - mean["lower"]).loc[obs.index]
    assert (width > 0).all()


def test_allocation_probability(clear_fit):
    fit = require_sampled(clear_fit)
    compute = 1e20  # 10x the ladder's largest run
    opt = fit.optimal_allocation(compute, family="low")
    n_med = float(opt.loc[opt["quantity"] == "params", "median"].iloc[0])
    splits = np.array([n_med, n_med / 100, n_med * 100])
    table = allocation_probability(fit, compute, splits, family="low")
    assert len(table) == 3 and table.attrs["family"] == "low" and table.attrs["within"] == 0.01
    np.testing.assert_allclose(table["tokens"], compute / (6 * splits))
    assert table["p_within"].iloc[0] > 0.7  # flat optimum: the median split is near-optimal (0.86)
    assert table["excess_median"].iloc[0] < 0.01
    assert (table["p_within"].iloc[1:] < 0.02).all()  # 100x off: several % worse in every draw
    assert (table["excess_lower"].iloc[1:] > 0.02).all()
    assert table["params_opt_median"].iloc[0] == pytest.approx(n_med)
    # tokens given explicitly: the same split, the same answer; a looser tolerance, more often
    given = allocation_probability(fit, compute, splits, compute / (6 * splits), family="low")
    pd.testing.assert_frame_equal(given, table)
    loose = allocation_probability(fit, compute, splits, within=0.5, family="low")
    assert (loose["p_within"] >= table["p_within"]).all() and loose["p_within"].iloc[0] == 1.0
    # vectorised over budgets too; the default family is the first, as optimal_allocation's
    both = allocation_probability(fit, [1e20, 1e21], 1e9)
    assert both.attrs["family"] == fit.families[0] and list(both["compute"]) == [1e20, 1e21]


def test_excess_is_zero_at_each_draws_optimum():
    rng = np.random.default_rng(0)
    law = [np.full(50, 1.7), rng.uniform(300, 500, 50), rng.uniform(300, 500, 50),
           rng.uniform(0.28, 0.36, 50), rng.uniform(0.26, 0.32, 50)]
    c = np.array([1e21])
    n_opt = optimal_allocation_draws(*law, compute=c)["params"][:, 0]
    for s in (0, 17):
        excess = allocation_excess_draws(*law, compute=c, params=n_opt[s:s + 1],
                                         tokens=c / (6 * n_opt[s:s + 1]))
        assert excess[s, 0] == pytest.approx(0.0, abs=1e-12) and (excess[:, 0] > -1e-12).all()


def test_warns_when_the_mean_leaves_the_band():
    band = pd.DataFrame({"mean": [40.2, 2.72], "median": [2.72, 2.72], "lower": [2.63, 2.63],
                         "upper": [2.81, 2.81]})
    with pytest.warns(UserWarning, match=r"the mean of \['a'\] lies outside its 90% band"):
        _warn_if_heavy_tailed(band, ["a", "b"], 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_heavy_tailed(band.iloc[1:], ["b"], 0.9)


# ---------------------------------------------------------------------------- slow tier
#: The calibration ladders: three families whose laws differ by a few percent
#: (family_spread 0.03: the families' exponents differ by about 3%, E by 1.5%), 6 runs each,
#: and the target of TARGET (9x the largest run's compute).  At this spread the winner is
#: clear in some replicates and a toss-up in others, so every probability bin gets decisions.
CALIBRATION_SPREAD = 0.03
CALIBRATION_REPLICATES = 45
CALIBRATION_BINS = (0.0, 1 / 3, 2 / 3, 1.0)
MIN_DECISIONS_PER_BIN = 10


def calibration_table(records: pd.DataFrame, edges=CALIBRATION_BINS) -> pd.DataFrame:
    """Per probability bin ([a, b), the last one closed): decisions, mean p, fraction right."""
    edges = np.asarray(edges)
    index = np.clip(np.searchsorted(edges, records["p"], side="right") - 1, 0, len(edges) - 2)
    labels = [f"[{a:.2f}, {b:.2f}{']' if i == len(edges) - 2 else ')'}"
              for i, (a, b) in enumerate(itertools.pairwise(edges))]
    out = (records.assign(bin=pd.Categorical.from_codes(index, labels))
           .groupby("bin", observed=False)
           .agg(decisions=("p", "size"), mean_p=("p", "mean"), fraction_right=("right", "mean")))
    out["gap"] = (out["fraction_right"] - out["mean_p"]).abs()
    return out


@pytest.mark.slow
def test_family_decisions_are_calibrated():
    """Acceptance: on at least 20 simulated multi-family ladders, among decisions made with
    probability p, the fraction that are right is within 0.1 of p in each of at least three
    probability bins.

    Every family of every replicate is a decision ("this family is the best at the target")
    made with probability p_best (kind="mean"), right when the family's noise-free law (the
    simulation's truth) is the lowest of the replicate's families at the target.  Pooling
    every family (not only the top choice) puts decisions in the low bins too.
    """
    records, diagnostics = [], []
    start = time.perf_counter()
    for rep in range(CALIBRATION_REPLICATES):
        runs, truth = bayescale.simulate_ladder(seed=5000 + rep, families=3,
                                                family_spread=CALIBRATION_SPREAD, sizes=SIZES,
                                                token_multipliers=MULTIPLIERS)
        fit = quiet_fit(runs, draws=800, tune=500, chains=2, random_seed=rep)
        diagnostics.append(fit.diagnostics().passed)
        table = compare_families(fit, TARGET)
        true = {f: float(truth.loss(TARGET["params"], TARGET["tokens"], f)) for f in fit.families}
        winner = min(true, key=lambda f: true[f])
        records += [{"replicate": rep, "family": row.family, "p": row.p_best,
                     "right": row.family == winner} for row in table.itertuples()]
    wall = time.perf_counter() - start
    records = pd.DataFrame(records)
    table = calibration_table(records)
    top = records.loc[records.groupby("replicate")["p"].idxmax()]
    print(f"\nfamily decisions: {CALIBRATION_REPLICATES} replicates x 3 families, "
          f"{wall:.0f} s, {sum(d is True for d in diagnostics)} fits passed the package's "
          "convergence checks")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"top choice right in {top['right'].mean():.3f} of replicates; its mean p_best "
          f"{top['p'].mean():.3f}")
    print("finer bins (not asserted):")
    print(calibration_table(records, (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0))
          .to_string(float_format=lambda v: f"{v:.3f}"))
    scored = table[table["decisions"] >= MIN_DECISIONS_PER_BIN]
    assert len(scored) >= 3, f"fewer than 3 bins with {MIN_DECISIONS_PER_BIN} decisions:\n{table}"
    assert (scored["gap"] <= 0.1).all(), f"miscalibrated bins:\n{scored}"
