"""Where a band comes from (bayescale.uncertainty): the variance split by source, checked on
simulated ladders with known truth."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import require_sampled
from matplotlib.figure import Figure

import bayescale
from bayescale import Model
from bayescale.parts import Checkpoints, FamilyPooling, Noise, PredictContext, RunEffect
from bayescale.plotting import plot_uncertainty_path, plot_variance_parts
from bayescale.predict import predictive_values, read_targets
from bayescale.report import render_report
from bayescale.uncertainty import extrapolation_path, thin
from bayescale.uncertainty_scaling import nested_subsets

SEED_SPREAD = 0.03


@pytest.fixture(scope="module")
def seeded():
    """Two families x three sizes x three token multipliers x two seeds x three checkpoints,
    seeds 3% apart in loss; families pooled, run offsets, no schedule."""
    runs, truth = bayescale.simulate_ladder(
        seed=3, sizes=(5e7, 1.5e8, 4.5e8), token_multipliers=(5, 20, 80), families=2, seeds=2,
        checkpoints=3, seed_spread=SEED_SPREAD, noise=0.01)
    model = Model("chinchilla", parts=[FamilyPooling(), Checkpoints(), RunEffect(), Noise()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, model, draws=600, tune=500, chains=4, random_seed=1,
                            target_accept=0.95, progressbar=False, retry=False)
    # E and the coefficients sit on a ridge this small ladder cannot resolve: 4 chains of 600
    # draws at target_accept 0.95 keep the ridge's bulk ESS a few times above the tier's bar
    # and its divergences well under it, on every seed tried
    require_sampled(fit)
    scales = az.ess(fit.idata, var_names=["sigma_run", "sigma"])
    assert min(float(scales[v]) for v in scales.data_vars) >= 100
    return runs, truth, fit


def targets_of(runs, params, tokens):
    family = sorted(runs["family"].unique())[0]
    return pd.DataFrame({"params": params, "tokens": tokens, "family": family})


def test_parts_sum_to_the_predictive_variance(seeded):
    """The parts add up to the variance of a new observation (independent draws, Student-t
    noise replaced by its Gaussian core as in the decomposition), within Monte Carlo error,
    at a fitted family, a new family and far out."""
    runs, _, fit = seeded
    family = sorted(runs["family"].unique())[0]
    targets = pd.DataFrame({"params": [1.3e9, 1.3e9, 1e10], "tokens": [2.6e10, 2.6e10, 2e11],
                            "family": [family, "unseen", family]})
    parts = fit.uncertainty(targets, copies=48)
    sources = [c for c in parts if c.endswith("_var") and c != "total_var"]
    assert sources[0] == "law_var" and {"family_var", "run_var", "noise_var"} <= set(sources)
    assert np.allclose(parts[sources].sum(axis=1), parts["total_var"])
    assert (parts[sources] >= 0).all().all()
    assert parts.loc[0, "family_var"] == 0 and parts.loc[1, "family_var"] > 0
    # independent draws of a new observation, the noise from the likelihood's Gaussian core
    draws = predictive_values(fit.idata, fit.structure, read_targets(targets), "observation",
                              np.random.default_rng(99), gaussian_noise=True).T
    centred = (draws - draws.mean(axis=1, keepdims=True)) ** 2
    direct, direct_se = centred.mean(axis=1), centred.std(axis=1) / np.sqrt(draws.shape[1])
    se = np.hypot(direct_se, np.sqrt((parts.attrs["mc_se"] ** 2).sum(axis=1)))
    z = (parts["total_var"] - direct) / se
    print("total_var", parts["total_var"].round(6).tolist(), "direct", direct.round(6).tolist(),
          "z", z.round(2).tolist())
    assert (np.abs(z) < 4).all()


def test_seed_part_covers_the_simulated_seed_spread(seeded):
    """The seed part's 90% interval contains the variance a new seed adds in the simulation:
    a lognormal offset with sd SEED_SPREAD on the true loss."""
    runs, truth, fit = seeded
    family = sorted(runs["family"].unique())[0]
    params, tokens = 1.3e9, 2.6e10
    parts = fit.uncertainty(targets_of(runs, [params], [tokens]), hdi_prob=0.9)
    loss = float(truth.loss(params, tokens, family))
    s2 = SEED_SPREAD**2
    seed_var = loss**2 * np.exp(s2) * (np.exp(s2) - 1)
    lower, upper = parts.loc[0, "run_var_lower"], parts.loc[0, "run_var_upper"]
    print(f"seed variance {seed_var:.3g} in [{lower:.3g}, {upper:.3g}]; "
          f"nested part {parts.loc[0, 'run_var']:.3g}")
    assert lower <= seed_var <= upper
    assert lower <= parts.loc[0, "run_var"] <= upper


def test_epistemic_part_grows_with_extrapolation(seeded):
    runs, _, fit = seeded
    ladder = float((6 * runs["params"] * runs["tokens"]).max())
    path = fit.uncertainty_path(ladder * np.array([1.0, 10.0, 100.0, 1000.0]),
                                family=sorted(runs["family"].unique())[0])
    assert path["extrapolation"].to_numpy() == pytest.approx([1, 10, 100, 1000])
    assert np.all(np.diff(path["law_var"]) > 0), path["law_var"].tolist()
    assert np.all(np.diff(path["epistemic_share"]) > 0)
    assert path.attrs["ladder_compute"] == pytest.approx(ladder)
    crossover = path.attrs["crossover_compute"]
    if crossover is not None:  # from there on the law's part is the largest
        beyond = path[path["compute"] >= crossover]
        others = [c for c in path if c.endswith("_var") and c not in ("law_var", "total_var")]
        assert (beyond["law_var"] > beyond[others].max(axis=1)).all()


def test_figures_and_report_section(seeded, tmp_path):
    runs, _, fit = seeded
    targets = targets_of(runs, [1.3e9], [2.6e10])
    fig = plot_variance_parts(fit, targets)
    assert isinstance(fig, Figure) and "share" in fig.axes[0].get_ylabel()
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"law (epistemic)", "run", "noise"} <= labels
    path_fig = plot_uncertainty_path(fit)
    assert path_fig.axes[0].get_xscale() == "log" and "FLOP" in path_fig.axes[0].get_xlabel()
    html = render_report(fit, targets=targets)
    assert "Where the band comes from" in html and "Variance of each target split" in html


def test_frozen_sources_repeat_across_copies(seeded):
    """Nested Monte Carlo: a frozen source draws the same numbers in every copy, an active one
    does not; inverse-CDF draws (benchmark items) follow their copy's parameters."""
    _, _, fit = seeded
    posterior = thin(fit.idata.posterior, 5)
    ctx = PredictContext(fit=fit.structure, idata=type("I", (), {"posterior": posterior})(),
                         targets=pd.DataFrame({"params": [1e9]}), x={}, family_labels=pd.Series(),
                         run_labels=pd.Series(), known=np.zeros(1, bool), new_draws=True,
                         rng=np.random.default_rng(0), copies=4, frozen=frozenset({"run"}))
    assert ctx.n_draws == 20 and ctx.draws("sigma").shape == (20,)
    frozen = ctx.random("run", lambda rng, n: rng.standard_normal((n, 2))).reshape(4, 5, 2)
    active = ctx.random("noise", lambda rng, n: rng.standard_normal((n, 2))).reshape(4, 5, 2)
    assert np.all(frozen == frozen[:1]) and not np.all(active == active[:1])
    p = np.repeat([0.1, 0.9], 10)
    hits = ctx.random("run", lambda rng, n, p: rng.binomial(100, p), p,
                      inverse=lambda u, p: np.floor(100 * p + 0 * u))
    assert hits.tolist() == np.floor(100 * p).tolist()
    with pytest.raises(ValueError, match="unknown random source"):
        ctx.random("weather", lambda rng, n: rng.random(n))


def test_input_errors(seeded):
    _, _, fit = seeded
    with pytest.raises(ValueError, match="copies"):
        fit.uncertainty({"params": 1e9, "tokens": 2e10}, copies=1)
    with pytest.raises(ValueError, match="hdi_prob"):
        fit.uncertainty({"params": 1e9, "tokens": 2e10}, hdi_prob=1.5)
    with pytest.raises(ValueError, match="tokens_per_param"):
        fit.uncertainty_path(tokens_per_param="lots")
    with pytest.raises(ValueError, match="compute"):
        extrapolation_path([-1.0])


def test_epistemic_width_falls_as_the_ladder_grows():
    """Nested refits, smallest sizes first, on a simulated final-loss ladder: the law's band at
    a target 10x beyond the largest run narrows as larger runs join, and kappa (width ∝
    C^-kappa) comes with an interval."""
    runs, truth = bayescale.simulate_ladder(seed=5, sizes=(3e7, 6e7, 1.2e8, 2.4e8, 4.8e8),
                                            token_multipliers=(10, 20, 40))
    target = {"params": 1.5e9, "tokens": 3e10}
    result = bayescale.uncertainty_scaling(runs, target, "chinchilla", draws=300, tune=300,
                                           chains=2, retry=False, progressbar=False)
    table = result.table
    print(table[["step", "runs", "ladder_compute", "width", "converged"]].to_string())
    print("kappa", result.kappa)
    assert len(table) == 4 and table["runs"].is_monotonic_increasing
    assert table["ladder_compute"].is_monotonic_increasing
    assert table["width"].iloc[-1] < 0.5 * table["width"].iloc[0]
    k = result.kappa
    assert np.isfinite([k["lower"], k["upper"]]).all() and k["lower"] < k["median"] < k["upper"]
    assert k["median"] > 0
    band = result.predict_width(table["ladder_compute"])
    assert (band["lower"] <= band["width"]).all() and (band["width"] <= band["upper"]).all()
    fig = result.plot()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert fig.axes[0].get_xscale() == "log" and any("κ" in label for label in labels)
    true_loss = float(truth.loss(1.5e9, 3e10))
    last = table.iloc[-1]
    assert last["lower"] - last["width"] < true_loss < last["upper"] + last["width"]


def test_nested_subsets():
    runs, _ = bayescale.simulate_ladder(seed=0, sizes=(1e8, 2e8, 4e8), seeds=3, checkpoints=9)
    sizes = nested_subsets(runs, "size")
    assert [s[1]["params"].nunique() for s in sizes] == [2, 3]
    seeds = nested_subsets(runs, "seeds")
    assert [s[1]["run"].nunique() for s in seeds] == [len(runs["run"].unique()) // 3 * k
                                                      for k in (1, 2, 3)]
    checkpoints = nested_subsets(runs, "checkpoints")
    assert [len(s[1]) for s in checkpoints] == sorted(len(s[1]) for s in checkpoints)
    assert all((s[1].groupby("run")["tokens"].max() == runs.groupby("run")["tokens"].max()).all()
               for s in checkpoints)
    with pytest.raises(ValueError, match="by="):
        nested_subsets(runs, "weather")
    with pytest.raises(ValueError, match="at least 2"):
        nested_subsets(runs[runs["params"] <= 1e8], "size")


def test_rows_of_one_planned_run_share_its_offset(seeded):
    """Rows naming the same run the fit has not seen are one new run (one offset); rows of
    different new runs, or unnamed rows, are separate runs."""
    runs, _, fit = seeded
    family = sorted(runs["family"].unique())[0]
    rows = pd.DataFrame({"params": 1e9, "tokens": [1e10, 2e10] * 2, "total_tokens": 2e10,
                         "family": family, "run": ["planned", "planned", "a", "b"]})
    draws = fit.predict_draws(rows).stack(s=("chain", "draw")).to_numpy()
    same = np.log(draws[1]) - np.log(draws[0])
    other = np.log(draws[3]) - np.log(draws[2])
    print("sd of the difference: same run", same.std(), "different runs", other.std())
    assert same.std() < 0.7 * other.std()


def test_downstream_parts_include_the_benchmark_items(downstream_fit):
    """Accuracy targets: the benchmark's item sampling is a part, larger for the 100-item
    task than for the 5,000-item one (binomial variance p(1-p)/n), and the parts sum."""
    fit, _, _ = downstream_fit
    targets = {"params": 7e9, "tokens": 1.4e11, "metric": ["acc:big", "acc:small", "loss"]}
    parts = fit.uncertainty(targets, copies=48, max_draws=500)
    assert {"benchmark_var", "noise_var"} <= set(parts.columns)
    big, small, loss = parts.itertuples()
    assert small.benchmark_var > 10 * big.benchmark_var > 0
    assert loss.benchmark_var == 0  # a loss target draws no benchmark items
    p = fit.predict(targets).loc[1, "median"]
    assert small.benchmark_var == pytest.approx(p * (1 - p) / 100, rel=0.3)
    sources = [c for c in parts if c.endswith("_var") and c != "total_var"]
    assert np.allclose(parts[sources].sum(axis=1), parts["total_var"])
