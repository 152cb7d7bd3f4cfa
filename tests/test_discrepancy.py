"""The model-discrepancy part (bayescale.parts.Discrepancy) and how model="auto" sets it."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.model_choice import calibrate
from bayescale.parts import Discrepancy, ModelError
from bayescale.parts.discrepancy import distance_beyond, estimate_scale

Z90 = 1.6448536269514722


def synthetic_rows(scale, n=400, s=0.01, seed=0):
    """Held-out rows whose ln errors have sd sqrt(s^2 + (scale d)^2) (bands say sd s)."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.3, 3.0, n)
    median = np.full(n, 2.0)
    y = median * np.exp(rng.normal(0.0, np.sqrt(s**2 + (scale * d) ** 2)))
    lower, upper = median * np.exp(-Z90 * s), median * np.exp(Z90 * s)
    return y, median, lower, upper, d


# ---------------------------------------------------------------------------- the scale
@pytest.mark.parametrize("scale", [0.005, 0.02, 0.05])
def test_estimate_scale_recovers_a_known_scale(scale):
    est = estimate_scale(*synthetic_rows(scale))
    assert est == pytest.approx(scale, rel=0.2)


def test_estimate_scale_is_zero_for_calibrated_bands_or_rows_inside_the_ladder():
    y, med, lo, hi, d = synthetic_rows(0.0)
    assert estimate_scale(y, med, lo, hi, d) < 0.002
    y, med, lo, hi, _ = synthetic_rows(0.05)
    assert estimate_scale(y, med, lo, hi, np.zeros_like(y)) == 0.0


def test_a_gross_outlier_is_one_miss_not_the_scale():
    """A few held-out runs 20-40 band-widths off (a diverged or mistyped run) move the
    coverage-matched scale little; under a normal likelihood they would set it."""
    y, med, lo, hi, d = synthetic_rows(0.02, n=200, seed=3)
    clean = estimate_scale(y, med, lo, hi, d)
    y[:3] = med[:3] * np.exp([0.3, -0.25, 0.4])  # 18-24 x the bands' sd of 0.01 (at d <= 3)
    assert estimate_scale(y, med, lo, hi, d) == pytest.approx(clean, rel=0.1)
    assert clean == pytest.approx(0.02, rel=0.25)


def test_distance_is_zero_inside_the_ladder_and_ln_compute_beyond():
    d = distance_beyond([1e18, 1e20, 1e21, 1e23], ladder_compute=1e20)
    assert np.allclose(d, [0.0, 0.0, np.log(10), np.log(1000)])


def test_bad_scale_is_a_one_line_error():
    with pytest.raises(ModelError, match="discrepancy: scale must be a finite number >= 0"):
        Discrepancy(scale=-0.1)
    with pytest.raises(ModelError, match="discrepancy: unknown option"):
        bayescale.parts.get_part({"part": "discrepancy", "width": 1})


def test_calibrate_widens_the_overconfident_candidate_and_ranks_by_the_widened_score():
    y, med, lo, hi, d = synthetic_rows(0.03, n=60, seed=1)
    honest = Z90 * np.sqrt(0.01**2 + (0.03 * d) ** 2)  # the true sd, as a 90% half-width
    good = dict(value=y, median=med, lower_90=med * np.exp(-honest),
                upper_90=med * np.exp(honest), extrapolation=np.exp(d))
    narrow = dict(value=y, median=med, lower_90=lo, upper_90=hi, extrapolation=np.exp(d))
    rows = pd.concat([pd.DataFrame(good).assign(model="good"),
                      pd.DataFrame(narrow).assign(model="narrow")], ignore_index=True)
    out = calibrate(rows).set_index("model")
    assert out.loc["narrow", "discrepancy_scale"] == pytest.approx(0.03, rel=0.35)
    assert out.loc["good", "discrepancy_scale"] < 0.01
    # once widened, the overconfident candidate scores about as well as the honest one
    gap = out.loc["good", "calibrated_log_score"] - out.loc["narrow", "calibrated_log_score"]
    assert abs(gap) < 0.1


# ---------------------------------------------------------------------------- prediction
@pytest.fixture(scope="module")
def fits():
    """A chinchilla fit, and the same posterior read with a discrepancy of 0.05 per e-fold."""
    runs, _ = bayescale.simulate_ladder(seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bayescale.fit(runs, "chinchilla", draws=300, tune=300, chains=2,
                              random_seed=1, progressbar=False, retry=False)
    model = plain.model.with_parts(Discrepancy(scale=0.05))
    return plain, dataclasses.replace(plain, model=model, _diagnostics=None)


def ln_sd(fit, targets, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = fit.predict_draws(targets, kind=kind)
    return np.log(draws).std(dim=("chain", "draw")).to_numpy()


def test_discrepancy_leaves_the_ladder_alone_and_grows_beyond_it(fits):
    plain, wide = fits
    rows = plain.runs
    ladder = float((rows["params"] * rows["tokens"]).max())
    inside = rows.iloc[[0, len(rows) // 2]][["params", "tokens"]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = plain.predict_draws(inside, kind="mean").to_numpy()
        b = wide.predict_draws(inside, kind="mean").to_numpy()
    assert np.array_equal(a, b)  # nothing drawn inside the ladder

    # N and D scaled together: 10x and 100x the ladder's largest compute
    big = rows.loc[(rows["params"] * rows["tokens"]).idxmax()]
    factors = np.array([10.0, 100.0])
    targets = pd.DataFrame({"params": big["params"] * np.sqrt(factors),
                            "tokens": big["tokens"] * np.sqrt(factors)})
    d = distance_beyond(targets["params"] * targets["tokens"], ladder)
    for kind in ("mean", "observation"):
        sd0, sd1 = ln_sd(plain, targets, kind), ln_sd(wide, targets, kind)
        expected = np.sqrt(sd0**2 + (0.05 * d) ** 2)
        assert np.allclose(sd1, expected, rtol=0.08), (kind, sd1, expected)
    # the 100x target's band gains twice what the 10x one gains, in ln loss
    extra = np.sqrt(ln_sd(wide, targets, "mean") ** 2 - ln_sd(plain, targets, "mean") ** 2)
    assert extra[1] / extra[0] == pytest.approx(2.0, rel=0.15)


def test_discrepancy_is_an_epistemic_source_of_the_decomposition(fits):
    _, wide = fits
    big = wide.runs.loc[(wide.runs["params"] * wide.runs["tokens"]).idxmax()]
    target = {"params": big["params"] * 10, "tokens": big["tokens"] * 10}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = wide.uncertainty(target, copies=16, max_draws=300)
    row = parts.iloc[0]
    assert row["discrepancy_var"] > 0
    expected_share = (row["law_var"] + row["discrepancy_var"]) / row["total_var"]
    assert row["epistemic_share"] == pytest.approx(expected_share)
    total = sum(row[c] for c in parts.columns if c.endswith("_var") and c != "total_var")
    assert total == pytest.approx(row["total_var"], rel=1e-6)
