"""Size-dependent residual scale (``Noise(by_size=True)``), annealing as a token shortfall
(``ScheduleTerm(anneal="tokens")``) and per-run slopes (``RunEffect(slope=True)``), with the
Kaplan-form law whose family pooling leaves ``q`` shared."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import require_sampled

import bayescale
from bayescale import Model, ModelError
from bayescale.laws import Chinchilla, Kaplan
from bayescale.parts import Checkpoints, FamilyPooling, Noise, RunEffect, ScheduleTerm
from bayescale.schedules import Schedule

COSINE = Schedule("cosine", 0.01, 0.1)


def test_token_shortfall_scales_with_the_data_term():
    """With ScheduleTerm(anneal="tokens") the un-annealed deficit is large where the law still
    gains from data and small where the size term has taken over (Kaplan form); with "loss"
    it is the same number of nats at every size."""
    theta = dict(E=1.7, a=0.6, b=0.4, alpha=0.34, beta=0.28, q=0.4)
    n = np.array([0.02, 50.0])
    tokens = ScheduleTerm(source="table", anneal="tokens")
    loss = ScheduleTerm(source="table", anneal="loss")
    assert (tokens.parameter, loss.parameter) == ("c_tokens", "c")

    def deficit(law, term):
        return (term.law_mean(law, theta, n, 1.0, 0.8, 0.7, np.exp)
                - term.law_mean(law, theta, n, 1.0, 0.0, 0.7, np.exp))

    by_tokens = deficit(Kaplan(), tokens)
    assert by_tokens[0] < 0.2 * by_tokens[1]
    np.testing.assert_allclose(deficit(Chinchilla(), loss), [0.56, 0.56])
    with pytest.raises(ModelError, match="schedule: anneal='exp'"):
        ScheduleTerm(anneal="exp")
    with pytest.raises(ModelError, match="noise: likelihood='seed'"):
        Noise(likelihood="seed")
    with pytest.raises(ModelError, match="run_effect: slope=True needs the checkpoints part"):
        Model("chinchilla", parts=[RunEffect(slope=True)])  # a slope within each run's checkpoints


#: Kaplan's law, families pooled, every checkpoint, run offsets and slopes, the table's schedule
#: as a token shortfall, iid residuals whose scale falls with size.  The families' spread is
#: integrated out (``prior="student_t"``): a sampled spread of two families is a funnel that
#: short chains mix poorly, and the noise, not the pooling, is under test here.
MODEL = Model("kaplan",
              parts=[FamilyPooling(prior="student_t"), Checkpoints(min_fraction=0.05),
                     RunEffect(slope=True),
                     ScheduleTerm(source="table", anneal="tokens"), Noise(by_size=True)])


@pytest.fixture(scope="module")
def noisy_small_models():
    """A ladder whose small models scatter more: ln-loss noise 0.01 (N / 1e8)^-0.5, kappa = 0.5."""
    runs, truth = bayescale.simulate_ladder(
        seed=5, families=2, sizes=(2e7, 6e7, 2e8, 6e8), token_multipliers=(20.0,), checkpoints=8,
        noise=1e-4, family_spread=0.05, schedule=COSINE,
    )
    rng = np.random.default_rng(5)
    scale = 0.01 * (runs["params"] / 1e8) ** -0.5
    runs["value"] = runs["value"] * np.exp(scale * rng.standard_normal(len(runs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, MODEL, draws=1000, tune=800, chains=2, mass_matrix="low_rank",
                            progressbar=False, random_seed=5, retry=False)
    return fit, truth


def test_size_noise_is_learned_and_widens_small_model_bands(noisy_small_models):
    fit, _ = noisy_small_models
    require_sampled(fit)
    kappa = fit.posterior_draws("kappa")
    lo, hi = np.quantile(kappa, [0.05, 0.95])
    assert lo < 0.5 < hi and lo > 0.15  # recovered, and clearly not constant noise
    post = fit.idata.posterior
    assert post["q"].dims == ("chain", "draw") and post["alpha"].dims == ("chain", "draw", "family")
    assert "c_tokens" in post and "c" not in post
    names = fit.summary().index
    assert {"kappa", "q", "c_tokens"} <= set(names) and "q_pop" not in names
    t = pd.DataFrame({"params": [2e7, 6e8], "tokens": [4e8, 1.2e10], "family": ["family0"] * 2})
    pred = fit.predict(t)
    width = (pred["upper"] - pred["lower"]) / pred["median"]
    assert width[0] > 2 * width[1]


def test_size_noise_fit_survives_save_and_load(noisy_small_models, tmp_path):
    fit, _ = noisy_small_models
    fit.save(tmp_path / "fit.nc")
    loaded = bayescale.load_fit(tmp_path / "fit.nc")
    assert loaded.model.parts == fit.model.parts and loaded.model.hash() == fit.model.hash()
    assert loaded.model.noise.by_size and loaded.model.part("schedule").anneal == "tokens"
    assert loaded.law.lookup_name == "kaplan" and loaded.model.part("run_effect").slope
    t = pd.DataFrame({"params": [1e9], "tokens": [2e10], "total_tokens": [4e10],
                      "family": ["family1"]})
    pd.testing.assert_frame_equal(loaded.predict(t), fit.predict(t))


def test_existing_run_mid_way_adds_its_offset_and_slope(noisy_small_models):
    """Mean prediction for an existing run half-way through: law (with the schedule's token
    shortfall) + sigma_run z_run + sigma_slope n^-kappa z_slope ln(1/2), computed by hand."""
    fit, _ = noisy_small_models
    run = fit.run_names[3]
    row = fit.runs[fit.runs["run"] == run].iloc[-1]
    t = pd.DataFrame({"params": [row["params"]], "tokens": [row["total_tokens"] / 2],
                      "total_tokens": [row["total_tokens"]], "family": [row["family"]],
                      "run": [run]})
    got = (fit.predict_draws(t, kind="mean").stack(s=("chain", "draw"))
           .transpose("s", "target").to_numpy()[:, 0])
    base = fit.predict_draws(t.drop(columns="run"),
                             kind="mean").stack(s=("chain", "draw")).to_numpy().ravel()
    j = fit.run_names.index(run)
    n = row["params"] / fit.scale.N0
    slope = (fit.posterior_draws("sigma_slope") * n ** -fit.posterior_draws("kappa")
             * fit.posterior_draws("z_slope")[:, j])
    offset = fit.posterior_draws("sigma_run") * fit.posterior_draws("z_run")[:, j]
    np.testing.assert_allclose(np.log(got), np.log(base) + offset + slope * np.log(0.5), rtol=1e-9)
