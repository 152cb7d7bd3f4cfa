"""bayescale.advisor.suggest_runs: which run to train next (preposterior analysis)."""

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import require_sampled
from scipy.stats import multivariate_normal

import bayescale
from bayescale.advisor import (
    COLUMNS,
    log_likelihoods,
    read_candidates,
    run_covariance,
    simulate_results,
    suggest_runs,
)

#: A small final-loss ladder: 4 sizes x 2 token multipliers (8 runs, at most 1.1e19 FLOPs).
SIZES = (2e7, 5e7, 1.2e8, 3e8)
MULTIPLIERS = (5.0, 20.0)
TARGET = {"params": 7e9, "tokens": 1.4e11}  # about 500x the ladder's largest compute
#: Candidates of equal compute, 1.2e20 FLOPs (6 N D seeds): different N/D splits and seeds.
EQUAL_COMPUTE = pd.DataFrame([
    {"params": 1e9, "tokens": 2e10, "seeds": 1},     # 20 tokens per parameter
    {"params": 4e9, "tokens": 5e9, "seeds": 1},      # a large, undertrained model
    {"params": 2.5e8, "tokens": 5e9, "seeds": 16},   # 16 seeds at the ladder's edge
    {"params": 1e7, "tokens": 2e12, "seeds": 1},     # a tiny model, heavily overtrained
    {"params": 5e8, "tokens": 1e10, "seeds": 4},
])


def quiet_fit(runs, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(runs, "chinchilla", chains=2, retry=False, progressbar=False,
                             **kwargs)


def quiet_suggest(fit, candidates, target=TARGET, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return suggest_runs(fit, candidates, target, **kwargs)


@pytest.fixture(scope="module")
def ladder_fit():
    runs, truth = bayescale.simulate_ladder(seed=0, sizes=SIZES, token_multipliers=MULTIPLIERS)
    return quiet_fit(runs, draws=1000, tune=1000, random_seed=2), truth


# ---------------------------------------------------------------------------- input errors
@pytest.mark.parametrize(("candidates", "match"), [
    ({"params": [1e9, 2e9]}, r"\['tokens'\] required"),
    ({"params": [1e9, -2e9], "tokens": [1e10, 1e10]}, r"column 'params'.*row 1"),
    ({"params": [1e9, 2e9], "tokens": [1e10, "abc"]}, r"column 'tokens'.*row 1"),
    ([{"params": 1e9, "tokens": 1e10, "seeds": 0}], r"column 'seeds'.*integer >= 1.*row 0"),
    ([{"params": 1e9, "tokens": 1e10, "seeds": 1.5}], r"column 'seeds'.*row 0"),
    ([{"params": 1e9, "tokens": 1e10}, {"params": 1e9, "tokens": 1e10, "checkpoints": 0}],
     r"column 'checkpoints'.*row 1"),
    ([{"params": 1e9, "tokens": 1e10, "checkpoints": 3}],
     r"column 'checkpoints' > 1 at row 0.*final losses only"),
    ([{"params": 1e9, "tokens": 1e10, "run": "r"}], r"column 'run'"),
    ([{"params": 1e9, "tokens": 1e10, "metric": "acc:x"}], r"column 'metric'.*row 0"),
    (pd.DataFrame(columns=["params", "tokens"]), "no candidate rows"),
])
def test_bad_candidates_name_the_column_and_row(ladder_fit, candidates, match):
    fit, _ = ladder_fit
    with pytest.raises(ValueError, match=match):
        suggest_runs(fit, candidates, TARGET)


def test_bad_candidate_rows_use_the_callers_labels(ladder_fit):
    fit, _ = ladder_fit
    table = pd.DataFrame({"params": [1e9, 1e9], "tokens": [1e10, 0.0]}, index=["a", "b"])
    with pytest.raises(ValueError, match=r"column 'tokens'.*row b"):
        suggest_runs(fit, table, TARGET)
    with pytest.raises(TypeError, match="list of dicts"):
        suggest_runs(fit, [1e9, 1e10], TARGET)


def test_bad_target_and_settings(ladder_fit):
    fit, _ = ladder_fit
    one = {"params": 1e9, "tokens": 2e10}
    with pytest.raises(ValueError, match=r"one row.*got 2"):
        suggest_runs(fit, one, {"params": [7e9, 7e10], "tokens": [1.4e11, 1.4e12]})
    with pytest.raises(ValueError, match=r"column 'metric' must be 'loss'.*'acc:x'"):
        suggest_runs(fit, one, {**TARGET, "metric": "acc:x"})
    with pytest.raises(ValueError, match="column 'tokens'"):
        suggest_runs(fit, one, {"params": 7e9, "tokens": -1})
    for setting, match in [({"outcomes": 0}, "outcomes"), ({"copies": 1}, "copies"),
                           ({"hdi_prob": 1.5}, "hdi_prob"), ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=match):
            suggest_runs(fit, one, TARGET, **setting)


def test_family_must_be_fitted_when_the_fit_pools_families():
    pooled = SimpleNamespace(
        model=SimpleNamespace(part=lambda name: object() if name in (
            "family_pooling", "checkpoints") else None, name="stub"),
        structure=SimpleNamespace(families=["a", "b"]), families=["a", "b"])
    with pytest.raises(ValueError, match=r"column 'family' is not a fitted family at row 1"):
        read_candidates(pooled, [{"params": 1e9, "tokens": 1e10, "family": "a"},
                                 {"params": 1e9, "tokens": 1e10, "family": "c"}])
    with pytest.raises(ValueError, match=r"column 'family' is missing.*row 0"):
        read_candidates(pooled, {"params": 1e9, "tokens": 1e10})
    table = read_candidates(pooled, {"params": [1e9, 2e9], "tokens": 1e10, "family": "b",
                                     "checkpoints": [1, 4]})
    assert table["checkpoints"].tolist() == [1, 4] and table["seeds"].tolist() == [1, 1]


# ---------------------------------------------------------------------------- the maths
def test_run_covariance_shares_the_smaller_non_noise_part():
    total = np.array([[4.0, 5.0, 6.0]])
    noise = np.array([[1.0, 1.0, 1.0]])
    cov = run_covariance(total, noise)[0]
    np.testing.assert_allclose(np.diag(cov), [4, 5, 6])
    np.testing.assert_allclose(cov[0, 1:], [3, 3])
    np.testing.assert_allclose(cov[1, 2], 4)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(run_covariance(total[:, :1], noise[:, :1])[:, :, 0], [[4.0]])


def test_log_likelihoods_match_the_multivariate_normal():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, 3))
    cov = run_covariance(rng.uniform(1, 2, size=(6, 3)), rng.uniform(0.2, 0.9, size=(6, 3)))
    y = simulate_results(mu, cov, seeds=4, picks=np.array([0, 5]), rng=rng)
    assert y.shape == (2, 4, 3)
    got = log_likelihoods(y, mu, cov)
    want = np.array([[multivariate_normal(mu[s], cov[s]).logpdf(y[o]).sum() for s in range(6)]
                     for o in range(2)])
    # equal up to the constant left out, the same for every draw
    np.testing.assert_allclose(got - got[:, :1], want - want[:, :1], rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------- ranking
def test_columns_sorting_and_attrs(ladder_fit):
    fit, _ = ladder_fit
    out = quiet_suggest(fit, EQUAL_COMPUTE, outcomes=100)
    assert list(out.columns) == ["params", "tokens", "seeds", "checkpoints", *COLUMNS]
    assert sorted(out.index) == list(range(len(EQUAL_COMPUTE)))  # the candidates' labels
    assert out["rank"].tolist() == list(range(1, len(out) + 1))
    assert out["variance_reduction_per_flop"].is_monotonic_decreasing
    np.testing.assert_allclose(out["flops"], 1.2e20)
    np.testing.assert_allclose(out["variance_reduction"],
                               out["variance_now"] - out["variance_after"])
    np.testing.assert_allclose(out["variance_reduction_per_flop"],
                               out["variance_reduction"] / out["flops"])
    assert (out["band_width_after"] < out["band_width_now"]).all()
    assert out["weights_ess"].between(1, 1000).all()
    assert out.attrs["target"] == TARGET and out.attrs["hdi_prob"] == 0.9
    assert "importance" in out.attrs["method"] and out.attrs["posterior_draws"] == 1000


def test_now_agrees_with_predict_and_uncertainty(ladder_fit):
    fit, _ = ladder_fit
    out = quiet_suggest(fit, {"params": 1e9, "tokens": 2e10}, outcomes=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        band = fit.predict(TARGET)
        total = float(fit.uncertainty(TARGET)["total_var"].iloc[0])
    width = float(band["upper"].iloc[0] - band["lower"].iloc[0])
    assert out["variance_now"].iloc[0] == pytest.approx(total, rel=0.15)
    assert out["band_width_now"].iloc[0] == pytest.approx(width, rel=0.1)


def test_a_large_run_near_the_target_teaches_more_than_a_tiny_far_one(ladder_fit):
    fit, _ = ladder_fit
    require_sampled(fit)
    candidates = [{"params": 1e7, "tokens": 2e8},      # below the ladder, 1/60,000 its compute
                  {"params": 2e9, "tokens": 4e10}]     # 1/10 of the target's compute
    out = quiet_suggest(fit, candidates, outcomes=100)
    tiny, large = out.loc[0], out.loc[1]
    assert large["variance_reduction"] > 3 * max(tiny["variance_reduction"], 0)
    assert large["band_width_after"] < 0.8 * large["band_width_now"]
    assert tiny["band_width_after"] > large["band_width_after"] + 0.05
    # per FLOP the tiny run may still win: the ranking is per FLOP
    assert set(out["rank"]) == {1, 2}


def test_same_seed_same_table(ladder_fit):
    fit, _ = ladder_fit
    first = quiet_suggest(fit, EQUAL_COMPUTE.iloc[:2], outcomes=50, seed=7)
    again = quiet_suggest(fit, EQUAL_COMPUTE.iloc[:2], outcomes=50, seed=7)
    pd.testing.assert_frame_equal(first, again)
    other = quiet_suggest(fit, EQUAL_COMPUTE.iloc[:2], outcomes=50, seed=8)
    assert not np.allclose(first["variance_after"], other["variance_after"].loc[first.index])


def test_warns_when_the_weights_collapse(ladder_fit):
    fit, _ = ladder_fit
    many = {"params": 3e8, "tokens": 6e9, "seeds": 400}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        with pytest.warns(UserWarning, match="effective sample size below 50"):
            out = suggest_runs(fit, many, TARGET, outcomes=50)
    assert out["weights_ess"].iloc[0] < 50


# ---------------------------------------------------------------------------- acceptance
def _band_width(fit) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        band = fit.predict(TARGET)
    return float(band["upper"].iloc[0] - band["lower"].iloc[0])


def _train(candidate, seed: int) -> pd.DataFrame:
    """The candidate's final loss(es), simulated from the true law as the ladder's are."""
    rows, _ = bayescale.simulate_ladder(seed=seed, sizes=(candidate["params"],),
                                        token_multipliers=(candidate["tokens"]
                                                           / candidate["params"],),
                                        seeds=int(candidate["seeds"]))
    return rows.assign(run="candidate-" + rows["run"])


@pytest.mark.slow
def test_training_the_top_candidate_shrinks_the_band_more_than_a_random_one():
    """Over 20 simulated ladders, training the top-ranked of five candidates of equal compute
    (simulated from the true law, then refitted) narrows the target's 90% band more than
    training a random other one: in most replicates and on average."""
    rows = []
    for r in range(20):
        runs, _ = bayescale.simulate_ladder(seed=r, sizes=SIZES, token_multipliers=MULTIPLIERS)
        fit = quiet_fit(runs, draws=300, tune=300, random_seed=r)
        ranked = quiet_suggest(fit, EQUAL_COMPUTE, seed=r)
        top = ranked.index[0]
        other = np.random.default_rng(r).choice(ranked.index[1:])
        widths = {}
        for name, label in (("top", top), ("random", other)):
            trained = _train(EQUAL_COMPUTE.loc[label], seed=10_000 + r)
            refit = quiet_fit(pd.concat([runs, trained], ignore_index=True), draws=300,
                              tune=300, random_seed=r)
            widths[name] = _band_width(refit)
        rows.append({"replicate": r, "top": top, "random": other, "width_now": _band_width(fit),
                     "predicted_top": ranked.loc[top, "band_width_after"],
                     "width_top": widths["top"], "width_random": widths["random"]})
    table = pd.DataFrame(rows)
    margin = float((table["width_random"] - table["width_top"]).mean())
    wins = int((table["width_top"] < table["width_random"]).sum())
    print(table.to_string(float_format="{:.3f}".format))
    print(f"top-ranked narrower in {wins}/{len(table)} replicates; mean margin "
          f"(width after random - width after top) {margin:.4f} nats "
          f"({margin / table['width_now'].mean():.1%} of the band now)")
    assert wins > len(table) / 2
    assert margin > 0


@pytest.mark.slow
def test_checkpoints_of_one_run_teach_more_than_its_final_loss_alone():
    runs, _ = bayescale.simulate_ladder(seed=0, sizes=(2e7, 5e7, 1.2e8),
                                        token_multipliers=(5.0, 20.0), checkpoints=4, seeds=2,
                                        seed_spread=0.02, ar1=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, "checkpoints", draws=300, tune=300, chains=2, retry=False,
                            progressbar=False, random_seed=0)
    candidates = [{"params": 3e8, "tokens": 6e9, "checkpoints": k} for k in (1, 5)]
    out = quiet_suggest(fit, candidates).sort_index()
    assert list(out.columns[:5]) == ["params", "tokens", "checkpoints", "seeds", "family"]
    assert out["flops"].nunique() == 1  # checkpoints are free
    final, five = out.loc[0], out.loc[1]
    assert five["variance_reduction"] > final["variance_reduction"] > 0
    # but less than a second, independent seed would add on top of the first
    assert five["variance_after"] > 0.5 * final["variance_after"]
