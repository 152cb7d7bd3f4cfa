"""Simulation-based calibration of the presets (benchmarks/sbc.py): ranks of the truth among
posterior draws are uniform when the inference is right."""

import numpy as np
import pandas as pd
import pytensor
import pytest
import xarray as xr
from pytensor.graph.replace import clone_replace
from sbc import PriorSimulator, plot_ranks, preset_design, rank_statistics, run_sbc, uniformity

import bayescale
from bayescale.fitting import prepare


def test_rank_statistics_count_draws_below_the_truth():
    draws = np.arange(200.0).reshape(2, 100)  # chain 0: 0..99, chain 1: 100..199
    posterior = xr.Dataset({"x": (("chain", "draw"), draws),
                            "v": (("chain", "draw", "k"), np.stack([draws, -draws], -1))})
    ranks = rank_statistics(posterior, {"x": 150.0, "v": np.array([0.5, 0.5])}, ["x", "v"],
                            thin_to=100)
    assert ranks["x"] == 50 + 25  # all 50 kept draws of chain 0 and half of chain 1's
    assert ranks["v[0]"] == 1 and ranks["v[1]"] == 100


def test_uniformity_rejects_a_skewed_histogram_and_keeps_a_flat_one():
    rng = np.random.default_rng(0)
    flat = pd.DataFrame({"a": rng.integers(0, 101, 200)})
    skewed = pd.DataFrame({"a": rng.integers(0, 40, 200)})  # truth always in the lower part: biased
    assert uniformity(flat, 101, bins=10)["passed"].all()
    assert not uniformity(skewed, 101, bins=10)["passed"].any()


def _lag_one_correlation(ln_ell_mu: float) -> float:
    """Pooled lag-one correlation of simulated residuals (ln loss minus the structural mean,
    before the AR(1) conditioning) between consecutive checkpoints of a run."""
    prepared = prepare(preset_design("checkpoints"), "checkpoints", priors={
        "ell": {"dist": "LogNormal", "kwargs": {"mu": ln_ell_mu, "sigma": 0.01}},
    })
    simulator = PriorSimulator(prepared)
    prior = simulator.prior_draws(30, seed=1)
    recorded = prepared.build(record_mean=True)
    inputs = {rv: rv.type() for rv in recorded.free_RVs}
    structural = pytensor.function(list(inputs.values()),
                                   clone_replace(recorded["mu_obs"], replace=inputs),
                                   on_unused_input="ignore")
    rng = np.random.default_rng(1)
    pairs = []
    for r in range(30):
        truth = {k: v[r] for k, v in prior.items()}
        table = simulator.simulate(truth, rng)
        resid = (np.log(table["value"].to_numpy())
                 - structural(*[truth[rv.name] for rv in recorded.free_RVs]))
        resid /= np.std(resid)
        same = table["run"].to_numpy()[1:] == table["run"].to_numpy()[:-1]
        pairs.append(np.column_stack([resid[:-1][same], resid[1:][same]]))
    both = np.concatenate(pairs)
    return float(np.corrcoef(both[:, 0], both[:, 1])[0, 1])


def test_the_simulator_follows_the_ar1_residuals_along_each_run():
    """Checkpoints 0.46 apart in ln tokens: a correlation length of e^2 gives lag-one
    correlation exp(-0.46 / 7.4) = 0.94, one of e^-3 gives none.  A simulator that drew each
    row independently would give none for both."""
    assert _lag_one_correlation(2.0) > 0.8
    assert abs(_lag_one_correlation(-3.0)) < 0.3


def test_sbc_of_the_chinchilla_preset_small():
    """20 prior draws, each fitted with 2 x (200 + 200) draws and ranked among 100 of them: the
    ranks pass the uniformity test (the slow tier runs 100 replicates of every preset)."""
    result = run_sbc("chinchilla", replicates=20, draws=200, tune=200, seed=0)
    print(result.line())
    assert not result.failed_fits
    assert result.passed, result.test.to_string()


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(bayescale.available_models()))
def test_sbc_of_every_preset(preset, tmp_path):
    result = run_sbc(preset, replicates=100, draws=500, tune=500, seed=0)
    plot_ranks(result, tmp_path / f"sbc_{preset}.png")
    print(result.line())
    assert result.passed, result.test.to_string() + "\n" + "\n".join(result.failed_fits[:5])
