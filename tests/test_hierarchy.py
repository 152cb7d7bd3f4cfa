"""Hierarchical pooling, checkpoints, schedules and correlated residuals."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from conftest import require_sampled
from simulated_calibration import (  # benchmarks/ is on sys.path via conftest
    LadderDesign,
    describe,
    hierarchical_replicate,
    summarise,
)

import bayescale
from bayescale import Model, ModelError, load_model
from bayescale.model import auto_model
from bayescale.parts import AR1Residuals, Checkpoints, FamilyPooling, Noise, RunEffect, ScheduleTerm
from bayescale.parts.checkpoints import select_rows
from bayescale.schedules import Schedule

COSINE = Schedule("cosine", 0.01, 0.1)


def test_schedule_shapes():
    f = np.array([0.005, 0.01, 0.5, 1.0])
    lr = COSINE.lr(f)
    assert (lr[0] == pytest.approx(0.5) and lr[1] == pytest.approx(1.0)
            and lr[3] == pytest.approx(0.1))
    assert COSINE.annealing(1.0) == pytest.approx(0.9)
    area = COSINE.lr_area(np.array([0.5, 1.0]))
    # warmup + mean of cosine to 10%
    assert area[1] == pytest.approx(0.5 * 0.01 + 0.99 * 0.55, rel=1e-3)
    assert area[0] > area[1]  # the first half of a cosine run has the higher mean rate
    with pytest.raises(ValueError, match="schedule"):
        Schedule("step")


def test_presets_and_row_selection():
    """The "checkpoints" preset resolved on a table with a schedule column; rows kept with and
    without the checkpoints part; the automatic model pools families only when there are
    several; a table schedule term without a schedule column and unknown parts or options are
    refused, naming the part."""
    runs, _ = bayescale.simulate_ladder(seed=0, families=2, checkpoints=10, schedule=COSINE)
    runs = bayescale.read_runs(runs)
    model = load_model("checkpoints").resolve(runs)
    expected = Model("chinchilla",
                     parts=[FamilyPooling(prior="half_normal"), Checkpoints(min_fraction=0.05),
                            RunEffect(slope=False), ScheduleTerm(source="table", anneal="loss"),
                            AR1Residuals(), Noise(likelihood="student_t", by_size=False)])
    assert model.parts == expected.parts and model.law.lookup_name == "chinchilla"
    learned = load_model("checkpoints").resolve(runs.drop(columns="schedule")).part("schedule")
    assert learned == ScheduleTerm(source="learned", anneal="loss")
    rows, report = select_rows(runs, model.part("checkpoints"))
    assert (rows["tokens"] / rows["total_tokens"] >= 0.05).all() and report["dropped_rows"] == 0
    late, report = select_rows(runs, Checkpoints(min_fraction=0.5))
    assert (late["tokens"] / late["total_tokens"] >= 0.5).all() and report["dropped_rows"] > 0
    assert len(late) + report["dropped_rows"] == len(runs)
    final, report = select_rows(runs, None)
    assert len(final) == runs["run"].nunique() and report["dropped_rows"] == len(runs) - len(final)
    assert (final["tokens"] == final["total_tokens"]).all()
    assert auto_model(runs).part("family_pooling") == FamilyPooling()
    assert auto_model(runs.assign(family="x")).part("family_pooling") is None
    assert auto_model(runs).part("run_effect") is None  # one seed per configuration
    with pytest.raises(ModelError, match="schedule: source='table' needs a 'schedule' column"):
        bayescale.fit(runs.drop(columns="schedule"),
                      Model("chinchilla", parts=[Checkpoints(), ScheduleTerm("table")]))
    with pytest.raises(ModelError, match="unknown part 'seed_pooling'"):
        Model("chinchilla", parts=["seed_pooling"])
    with pytest.raises(ModelError, match="family_pooling: prior='seed'"):
        FamilyPooling(prior="seed")
    with pytest.raises(ModelError, match="checkpoints: min_fraction"):
        Checkpoints(min_fraction=1.0)


@pytest.fixture(scope="module")
def hier_fit():
    runs, truth = bayescale.simulate_ladder(
        seed=11, families=2, sizes=(3e7, 1e8, 3e8), token_multipliers=(20.0,), seeds=2,
        checkpoints=8, family_spread=0.1, seed_spread=0.01, ar1=0.8, schedule=COSINE,
    )
    # The first run is truncated: its last 3 checkpoints are held out.
    first = runs["run"] == runs["run"].iloc[0]
    heldout = first & (runs["tokens"] > runs.loc[first, "tokens"].sort_values().iloc[-4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs[~heldout], "checkpoints", draws=1000, tune=800, chains=2,
                            progressbar=False, mass_matrix="low_rank", target_accept=0.95,
                            retry=False)
    return fit, truth, runs


def test_hierarchical_posterior_has_named_dims(hier_fit):
    fit, _, runs = hier_fit
    post = fit.idata.posterior
    assert post["alpha"].dims == ("chain", "draw", "family")
    assert list(post["family"].values) == ["family0", "family1"]
    assert (post["z_run"].dims == ("chain", "draw", "run")
            and post.sizes["run"] == runs["run"].nunique())
    for name in ("alpha_pop", "alpha_sd", "sigma_run", "c", "ell"):
        assert post[name].dims == ("chain", "draw")
    table = fit.summary()
    assert "alpha[family1]" in table.index and "sigma_run" in table.index


def test_predictions_for_known_new_and_run_targets(hier_fit):
    fit, truth, runs = hier_fit
    require_sampled(fit)
    total = 20 * 1e9
    targets = pd.DataFrame({"params": [1e9] * 3, "tokens": [total] * 3,
                            "family": ["family0", "family1", "other"]})
    pred = fit.predict(targets)
    assert list(pred["family"]) == ["family0", "family1", "other"]
    width = (pred["upper"] - pred["lower"]).to_numpy()
    assert width[2] > width[0] and width[2] > width[1]  # a new family borrows, but less is known
    for i, fam in enumerate(["family0", "family1"]):
        assert pred["lower"][i] < truth.loss(1e9, total, fam) < pred["upper"][i]
    # A truncated run's own final loss: its offset and last residual are used.
    run = runs["run"].iloc[0]
    last = runs[(runs["run"] == run) & (runs["metric"] == "loss")].iloc[-1]
    target = pd.DataFrame({"params": [last["params"]], "tokens": [last["total_tokens"]],
                           "family": [last["family"]]})
    own = fit.predict(target.assign(run=run))
    new_seed = fit.predict(target)
    assert own["lower"][0] < last["value"] < own["upper"][0]
    assert own["upper"][0] - own["lower"][0] < new_seed["upper"][0] - new_seed["lower"][0]
    # a run id the fit has not seen is a planned run: a new seed, exactly as a target without a run
    planned = fit.predict(target.assign(run="planned-run"))
    assert planned[["median", "lower", "upper"]].equals(new_seed[["median", "lower", "upper"]])


def test_unfinished_target_uses_the_schedule(hier_fit):
    """A mid-run checkpoint (half of a run's tokens) sees effective tokens and the
    un-annealed term: its law value is computed by hand from the posterior draws."""
    fit, _, _ = hier_fit
    t = pd.DataFrame({"params": [1e8, 1e8], "tokens": [1e9, 1e9], "total_tokens": [2e9, 1e9],
                      "family": ["family0"] * 2})
    draws = (fit.predict_draws(t, kind="mean").stack(s=("chain", "draw"))
             .transpose("s", "target").to_numpy())
    post = {p: fit.posterior_draws(p)[:, 0] for p in ("E", "A", "B", "alpha", "beta")}
    c = fit.posterior_draws("c")
    d_eff = 1e9 * COSINE.lr_area(0.5) / COSINE.lr_area(1.0)
    u = COSINE.annealing(1.0) - COSINE.annealing(0.5)

    def law(D):
        return post["E"] + post["A"] * 1e8 ** -post["alpha"] + post["B"] * D ** -post["beta"]

    np.testing.assert_allclose(draws[:, 0], law(d_eff) + c * u, rtol=1e-9)
    np.testing.assert_allclose(draws[:, 1], law(1e9), rtol=1e-9)


def test_save_load_keeps_structure(hier_fit, tmp_path):
    fit, _, _ = hier_fit
    fit.save(tmp_path / "h.nc")
    loaded = bayescale.load_fit(tmp_path / "h.nc")
    assert loaded.model.parts == fit.model.parts and loaded.model.hash() == fit.model.hash()
    assert loaded.model.part("schedule") == ScheduleTerm(source="table", anneal="loss")
    assert loaded.families == fit.families and loaded.schedule == fit.schedule
    t = pd.DataFrame({"params": [1e9], "tokens": [2e10], "family": ["family1"]})
    pd.testing.assert_frame_equal(loaded.predict(t), fit.predict(t))


def test_student_t_family_prior_integrates_out_the_spread():
    """FamilyPooling(prior="student_t") samples Student-t deviations and draws the spread after
    the fact; their joint prior must be the hierarchical one it replaces: the population keeps
    its prior, spread^2 ~ InverseGamma(2, 0.02) (the part's family_var) and, given the
    spread, deviations Normal(0, spread^2) independent of it."""
    from scipy import stats

    from bayescale.parts.pooling import pooled_parameter

    model = Model("chinchilla", parts=[FamilyPooling(prior="student_t")])
    assert model.priors["family_var"].parameters == {"alpha": 2.0, "beta": 0.02}
    with pm.Model(coords={"family": ["a", "b", "c"]}):
        pooled_parameter(model.priors, "alpha", 3, "student_t")
        prior = pm.sample_prior_predictive(draws=4000, random_seed=1).prior
    spread = prior["alpha_sd"].values.ravel()
    deviation = (np.log(prior["alpha"]) - prior["ln_alpha_pop"]).values.reshape(-1, 3)
    assert stats.kstest(spread**2, stats.invgamma(2.0, scale=0.02).cdf).pvalue > 1e-3
    # LogNormal(mu, sigma): ln_alpha_pop ~ Normal(mu, sigma)
    population = model.priors["alpha"].parameters
    population_cdf = stats.norm(population["mu"], population["sigma"]).cdf
    assert stats.kstest(prior["ln_alpha_pop"].values.ravel(), population_cdf).pvalue > 1e-3
    standardised = (deviation / spread[:, None]).ravel()
    assert stats.kstest(standardised, "norm").pvalue > 1e-3
    assert abs(stats.spearmanr(spread, np.abs(deviation / spread[:, None]).mean(axis=1))[0]) < 0.05
    half_normal = {"family_var": {"dist": "HalfNormal", "kwargs": {"sigma": 1}}}
    with (pytest.raises(ModelError, match=r"family_pooling: .*family_var ~ InverseGamma"),
          pm.Model(coords={"family": ["a", "b"]})):
        pooled_parameter(model.with_priors(half_normal).priors, "alpha", 2, "student_t")
    # the families' prior belongs to the pooling part: without it (or with the half-normal
    # spread) there is no family_var to set
    for other in (Model("chinchilla"), Model("chinchilla", parts=[FamilyPooling()])):
        with pytest.raises(ModelError, match="'family_var', which no part of the model has"):
            other.with_priors({"family_var": {"dist": "InverseGamma",
                                              "kwargs": {"alpha": 3.0, "beta": 0.03}}})
    with pytest.raises(ModelError, match="family_pooling: prior='cauchy'"):
        FamilyPooling(prior="cauchy")


def test_student_t_family_prior_builds_the_integrated_spread(hier_fit):
    """Default tier, no sampling: with Student-t family deviations the spread is integrated
    out (``family_var``, no ``family_sd``) and the deviations keep their ``family`` dim."""
    from bayescale.fitting import prepare

    _, _, runs = hier_fit
    model = load_model("checkpoints").with_parts(FamilyPooling(prior="student_t"))
    prepared = prepare(runs, model)
    assert "family_var" in prepared.model.priors and "family_sd" not in prepared.model.priors
    pm_model = prepared.build()
    assert pm_model.named_vars_to_dims["dev_alpha"] == ("family",)
    assert "family_sd" not in pm_model.named_vars
    assert np.isfinite(pm_model.compile_logp()(pm_model.initial_point()))


@pytest.mark.slow
def test_student_t_family_prior_fit(hier_fit):
    """The same ladder fitted with Student-t family deviations: the families' exponents
    cover their truth and a new family's band is wider than a known family's (slow tier:
    3000 draws; the default tier checks the graph)."""
    _, truth, runs = hier_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # diagonal mass matrix, target_accept 0.95, 3000 draws: the low-rank one (cutoff 100 or 3)
        # left R-hat 1.03-1.13 and a few divergent draws here; the diagonal one gives a bulk
        # ESS of about 100 per 1000 draws
        model = load_model("checkpoints").with_parts(FamilyPooling(prior="student_t"))
        fit = bayescale.fit(runs, model, draws=3000, tune=1000, chains=2, target_accept=0.95,
                            progressbar=False, retry=False)
    require_sampled(fit)
    assert fit.model.part("family_pooling").prior == "student_t"
    assert "family_var" in fit.model.priors and "family_sd" not in fit.model.priors
    assert fit.idata.posterior["dev_alpha"].dims == ("chain", "draw", "family")
    alpha = fit.posterior_draws("alpha")
    lo, hi = np.quantile(alpha, [0.05, 0.95], axis=0)
    true = np.array([truth.families[f]["alpha"] for f in fit.families])
    assert ((lo <= true) & (true <= hi)).all()
    targets = pd.DataFrame({"params": [1e9] * 2, "tokens": [2e10] * 2,
                            "family": ["family0", "other"]})
    pred = fit.predict(targets)
    assert pred["upper"][1] - pred["lower"][1] > pred["upper"][0] - pred["lower"][0]


@pytest.mark.slow
def test_calibration_smoke():
    """One small replicate runs end to end and scores every quantity: the quick check to run
    first when the calibration code changes (``pytest --run-slow -k calibration_smoke``); the
    twenty-replicate test below runs the same function at full size."""
    design = LadderDesign(families=2, sizes=(3e7, 1e8, 3e8), multipliers=(20.0,),
                          heldout_sizes=(3e9,), seeds=2, checkpoints=6)
    out = hierarchical_replicate(0, design, draws=200, tune=200, retry=False)
    assert len(out["family_alpha_covered"]) == 2 and len(out["heldout_covered"]) == 2 * 2
    assert len(out["heldout_law_covered"]) == 2 * 2
    rates = summarise([out])  # one replicate: each pooled rate is that replicate's share
    assert rates["seed_spread"] == float(out["seed_spread_covered"])
    assert rates["heldout"] == pytest.approx(np.mean(out["heldout_covered"]))
    assert 0 < out["heldout_width"] < 0.5 and 0 < out["heldout_law_width"] < out["heldout_width"]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 40 fits on 2 cores: ~12 min with AR(1), ~19 min with iid residuals
def test_hierarchical_calibration_twenty_replicates():
    """Acceptance (issue #3): on 20 simulated ladders (3 families x 4 sizes over 1.8 decades
    x 2 token multipliers x 3 seeds x 25 checkpoints; families differ in exponents, runs
    in offsets, checkpoints carry AR(1) residuals), equal-tailed 90% intervals of the family
    exponents and of the seed spread cover the truth in >= 80% of cases and 90% predictive
    bands for the final losses of held-out 10x larger runs (new seeds) cover 80-97%.

    With iid residuals the same intervals are too narrow: 25 correlated checkpoints per
    run count as 25 independent facts, so the family exponents (beta, learned from the
    checkpoints of each run) and the seed spread come out overconfident and miss their
    truth.  The held-out bands are not what breaks on this ladder: they are dominated by the
    seed spread and stay near nominal with either residual model (measured over 20
    replicates: 0.944 with AR(1), 0.883 with iid residuals; see benchmarks/README.md), so
    the assertion is on the beta intervals (iid: 0.417) and the seed spread (iid: 0.200).

    Both arms give the families' deviations the Student-t prior
    (``FamilyPooling(prior="student_t")``), the default of ``hierarchical_replicate``.  The AR(1)
    fits use its sampler defaults (2 x 2,000 draws, low-rank mass matrix with cutoff 3,
    target_accept 0.99), which converge in most replicates.  The iid fits use fewer draws
    (2x(400+400), diagonal mass matrix, target_accept 0.95): they hit the maximum tree depth, and a
    coverage this far below nominal is not an artefact of Monte Carlo error.
    """
    design = LadderDesign()
    results = {}
    iid_sampler = {"draws": 400, "tune": 400, "target_accept": 0.95, "mass_matrix": "diag"}
    for residuals, draws in (("ar1", {}), ("iid", iid_sampler)):
        reps = []
        for seed in range(20):
            reps.append(hierarchical_replicate(seed, design, residuals=residuals, **draws))
            print(describe(reps[-1]), flush=True)
        results[residuals] = summarise(reps)
        print(residuals, results[residuals].round(3).to_dict(), flush=True)
    ar1, iid = results["ar1"], results["iid"]
    assert ar1["family_alpha"] >= 0.8 and ar1["family_beta"] >= 0.8 and ar1["seed_spread"] >= 0.8
    assert 0.8 <= ar1["heldout"] <= 0.97
    # issue #3's bar (population and family level R-hat <= 1.01 and bulk ESS >= 400, at most
    # 0.1% divergent draws) in most replicates (measured: 17 of 20, none with a divergent draw)
    assert ar1["law_level_converged"] >= 0.8
    assert iid["family_beta"] < 0.8 and iid["seed_spread"] < 0.8


def test_a_poorly_mixed_family_spread_is_named_with_the_remedy(hier_fit):
    """Default tier, no sampling: the hierarchical fit with its chains of ``alpha_sd`` pulled
    apart fails its checks, names ``alpha_sd`` first among the worst variables and carries
    the family pooling's advice (the spread integrated out, a low-rank mass matrix); the
    integrated form (``prior="student_t"``) and well-mixed variables give no advice."""
    from dataclasses import replace

    fit, _, _ = hier_fit
    require_sampled(fit)
    pooling = fit.model.part("family_pooling")
    spreads = set(pooling.variables(fit.model))
    before = fit.diagnostics()  # short chains: the package's own checks may fail
    # which variables the short chains mix worst differs between machines: the advice
    # follows them, given exactly when a family spread or population is among the worst
    assert bool(before.hints) == bool(spreads & set(before.worst))
    posterior = fit.idata.posterior.copy()
    spread = posterior["alpha_sd"]
    posterior["alpha_sd"] = spread + xr.DataArray([0.0, 10 * float(spread.std())],
                                                  dims="chain")
    idata = fit.idata.copy()
    idata.posterior = posterior
    diag = replace(fit, idata=idata, _diagnostics=None).diagnostics()
    assert diag.passed is False and diag.worst[0] == "alpha_sd"
    assert len(diag.hints) == 1 and "prior='student_t'" in diag.hints[0]
    assert "worst: alpha_sd" in diag.message() and "mass_matrix='low_rank'" in diag.message()
    assert pooling.convergence_hint(fit.model, ("alpha_sd",)) == diag.hints[0]
    assert pooling.convergence_hint(fit.model, ("sigma_run",)) is None
    assert FamilyPooling(prior="student_t").convergence_hint(fit.model, ("alpha_sd",)) is None


def test_the_retry_refits_with_the_family_poolings_remedy(monkeypatch):
    """Default tier, no NUTS: a first attempt whose family spread mixes worst (made to fail
    here) is retried with the spread integrated out and the low-rank mass matrix; the fit
    records the remedy and keeps the better attempt.  Without nutpie, or with priors the
    remedied model has no place for, the retry is the plain one.  The sampler is replaced by
    prior draws in two chains: this checks the retry's plumbing, not its mixing."""
    import bayescale.fitting as fitting
    from bayescale.diagnostics import Diagnostics
    from bayescale.result import ScalingFit, retry_note
    from bayescale.sampling import SamplerConfig

    runs, _ = bayescale.simulate_ladder(seed=3, families=3, sizes=(3e7, 1e8, 3e8),
                                        token_multipliers=(10.0, 40.0))
    model = Model("chinchilla", parts=[FamilyPooling()])
    configs = []

    def prior_draws(pm_model, config, **kwargs):
        configs.append(config)
        prior = pm.sample_prior_predictive(draws=2 * config.draws, model=pm_model,
                                           random_seed=config.random_seed).prior
        draws = prior.isel(chain=0, drop=True).drop_vars("draw")
        chains = draws.coarsen(draw=config.draws).construct(draw=("chain", "draw"))
        stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, config.draws), bool))})
        return az.InferenceData(posterior=chains.transpose("chain", "draw", ...),
                                sample_stats=stats)

    real = ScalingFit.diagnostics

    def first_fails(fit):
        if fit.model.part("family_pooling").prior == "half_normal":
            return Diagnostics("nuts", 1.5, 10.0, 10.0, 0, 200, 400.0, False,
                               ("max R-hat 1.500 > 1.01",), worst=("alpha_sd",))
        return real(fit)

    monkeypatch.setattr(fitting, "run_inference", prior_draws)
    monkeypatch.setattr(ScalingFit, "diagnostics", first_fails)
    fit = bayescale.fit(runs, model, draws=100, tune=100, chains=2, progressbar=False)
    assert [c.mass_matrix for c in configs] == ["diag", "low_rank"]
    assert [c.tune for c in configs] == [100, 100]  # a new model's first attempt
    assert fit.model.part("family_pooling").prior == "student_t"
    assert "family_var" in fit.model.priors and "family_sd" not in fit.model.priors
    assert fit.sampler_config == configs[1]
    retry = fit.info["retry"]
    assert retry["first_attempt"].startswith("NOT CONVERGED: max R-hat 1.500")
    assert "FamilyPooling(prior='student_t')" in retry["remedy"]
    assert retry["model"] == fit.model.name and "kept" not in retry
    assert retry_note(retry).endswith(f"target_accept=0.9, as {fit.model.name})")

    worst = ("alpha_sd",)
    assert fitting._remedy(model, worst, SamplerConfig(sampler="nutpie")) is not None
    assert fitting._remedy(model, worst, SamplerConfig(sampler="pymc")) is None  # no low rank
    assert fitting._remedy(model, ("sigma",), SamplerConfig(sampler="nutpie")) is None
    remedy = fitting._remedy(model, worst, SamplerConfig(sampler="nutpie"))
    own_spread = {"family_sd": {"dist": "HalfNormal", "kwargs": {"sigma": 0.1}}}
    assert fitting._prepare_remedy(runs, remedy, "loss", own_spread) is None
    assert fitting._prepare_remedy(runs, remedy, "loss", None).model == remedy.model

    def verdict(passed, rhat, ess):
        return Diagnostics("nuts", rhat, ess, ess, 0, 1000, 400.0, passed, ())

    assert fitting._better(verdict(True, 1.01, 500), verdict(False, 1.005, 300))
    assert fitting._better(verdict(False, 1.02, 300), verdict(False, 1.03, 200))
    assert not fitting._better(verdict(False, 1.015, 69), verdict(False, 1.017, 135))
    assert not fitting._better(verdict(False, 1.02, 300), verdict(True, 1.005, 500))

    # a remedied model that mixes worse than the first attempt gives way to the plain retry
    configs.clear()
    monkeypatch.setattr(fitting, "_better", lambda second, first: False)
    kept = bayescale.fit(runs, model, draws=100, tune=100, chains=2, progressbar=False)
    assert [(c.mass_matrix, c.tune) for c in configs] == [("diag", 100), ("low_rank", 100),
                                                          ("diag", 200)]
    assert kept.model.part("family_pooling").prior == "half_normal"
    assert kept.info["retry"]["kept"].startswith("the plain retry")
    assert kept.sampler_config == configs[2] and kept.info["retry"]["tune"] == 200
    assert retry_note(kept.info["retry"]).endswith(
        f"target_accept=0.95; the remedied {fit.model.name} mixed worse)")
