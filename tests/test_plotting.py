"""Plotting: figures of a fit, computed apart from drawn, on fake posteriors (no sampling).

The fake fits are built with ``az.from_dict`` around the simulated truth, so every test
here runs in seconds; ``fake_fit`` is also used by ``test_report.py``.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgba_array
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import bayescale
from bayescale.model import Model
from bayescale.parts import Checkpoints, FamilyPooling
from bayescale.plotting import (
    FIGURES,
    TAKES_TARGETS,
    available_figures,
    compute,
    family_colors,
    plot,
    plot_fit,
    rc_context,
    rcParams,
    save_figures,
)
from bayescale.runs import Scale, read_runs
from bayescale.sampling import SamplerConfig
from bayescale.simulate import Task

TARGETS = pd.DataFrame({"params": [1.4e9, 7e9], "tokens": [2.8e10, 1.4e11]})
LAW = ("E", "a", "b", "alpha", "beta")


def fake_fit(
    families: int = 1,
    pooled: bool = False,
    chains: int = 2,
    draws: int = 150,
    method: str = "nuts",
    metric: str = "loss",
    checkpoints: int = 2,
    seed: int = 0,
) -> bayescale.ScalingFit:
    """A ScalingFit whose posterior is a tight cloud around the simulated truth.

    ``pooled=True`` gives the law parameters a ``family`` dim plus ``<name>_pop`` and
    ``<name>_sd`` (as the ``FamilyPooling`` part does); ``method="map"`` a one-draw preview;
    ``metric="acc:<task>"`` a fit of a downstream accuracy.
    """
    tasks = [Task(metric.split(":", 1)[1])] if metric.startswith("acc:") else None
    runs, truth = bayescale.simulate_ladder(
        seed=seed, sizes=(3e7, 1e8, 3e8), token_multipliers=(10, 30), families=families,
        checkpoints=checkpoints, family_spread=0.1 if families > 1 else 0.0, tasks=tasks,
    )
    runs = read_runs(runs)
    runs = runs[runs["metric"] == metric].reset_index(drop=True)
    scale = Scale.from_runs(runs)
    names = sorted(runs["family"].unique())
    rng = np.random.default_rng(seed)

    def centred(p: dict) -> dict:
        return {"E": p["E"], "a": p["A"] * scale.N0 ** -p["alpha"],
                "b": p["B"] * scale.D0 ** -p["beta"],
                "alpha": p["alpha"], "beta": p["beta"]}

    shape = (chains, draws)
    jitter = lambda value, extra=(): value * np.exp(0.01 * rng.standard_normal(shape + extra))  # noqa: E731
    posterior, dims = {}, {}
    if pooled:
        per_family = [centred(truth.families[f]) for f in names]
        for p in LAW:
            posterior[p] = jitter(np.array([fam[p] for fam in per_family]), (len(names),))
            posterior[f"{p}_pop"] = jitter(centred(truth.population)[p])
            posterior[f"{p}_sd"] = np.abs(0.1 + 0.02 * rng.standard_normal(shape))
            dims[p] = ["family"]
        dims.update(A=["family"], B=["family"])
    else:
        for p, value in centred(truth.population).items():
            posterior[p] = jitter(value)
    posterior["A"] = posterior["a"] * scale.N0 ** posterior["alpha"]
    posterior["B"] = posterior["b"] * scale.D0 ** posterior["beta"]
    posterior["sigma"] = jitter(0.01)
    posterior["nu"] = jitter(20.0)
    if method == "map":
        posterior = {k: v[:1, :1] for k, v in posterior.items()}
    kwargs = {}
    if method == "nuts":
        kwargs["sample_stats"] = {"diverging": np.zeros(shape, dtype=bool),
                                  "energy": rng.standard_normal(shape)}
        # a pointwise log-likelihood that flags no row (the posterior has no latent
        # variables from which the fit could compute its own)
        kwargs["log_likelihood"] = {"ln_loss": 0.01 * rng.standard_normal((*shape, len(runs)))}
    idata = az.from_dict(
        posterior=posterior,
        observed_data={"ln_loss": np.log(runs["value"].to_numpy())},
        coords={"family": names, "obs": np.arange(len(runs))},
        dims={**dims, "ln_loss": ["obs"]},
        **kwargs,
    )
    parts = ([FamilyPooling()] if pooled else []) + ([Checkpoints()] if checkpoints > 1 else [])
    config = SamplerConfig(method=method, draws=1 if method == "map" else draws,
                           chains=1 if method == "map" else chains)
    return bayescale.ScalingFit(
        idata=idata, model=Model("chinchilla", parts=parts), scale=scale, runs=runs,
        sampler_config=config,
        metric=metric,
        info={"fit_seconds": 1.5, "runs_hash": "0" * 64,
              "versions": {"bayescale": bayescale.__version__}},
        families=names, run_names=list(dict.fromkeys(runs["run"])),
    )


def test_log_likelihood_names_the_draws_a_posterior_lacks():
    """A fit whose posterior lacks variables its model samples (here the pooled law's
    population and non-centred deviations) cannot compute its log-likelihood, and says
    which."""
    fit = fake_fit(families=3, pooled=True)
    del fit.idata.log_likelihood
    with pytest.raises(ValueError, match=r"no draws of \[.*'z_E'"):
        fit.log_likelihood()


@pytest.fixture(scope="module")
def single():
    return fake_fit()


@pytest.fixture(scope="module")
def pooled():
    return fake_fit(families=3, pooled=True)


@pytest.fixture(scope="module")
def drawn(single, pooled):
    """Every applicable figure of both fake fits, drawn once for the module, with sampling
    and optimisation disabled: a plot that tried to fit would fail here."""
    import pymc

    def no_fitting(*args, **kwargs):
        raise AssertionError("plotting must not fit")

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        for name in ("sample", "find_MAP", "fit", "sample_posterior_predictive"):
            patch.setattr(pymc, name, no_fitting)
        patch.setattr(bayescale, "fit", no_fitting)
        warnings.simplefilter("ignore")
        return {
            which: {name: plot(fit, name, **_kwargs(name))
                    for name in available_figures(fit, TARGETS)}
            for which, fit in (("single", single), ("pooled", pooled))
        }


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _kwargs(name):
    return {"targets": TARGETS} if name in TAKES_TARGETS else {}


def _family_artists(fig: Figure) -> dict[str, set[str]]:
    """``{family: {hex colours}}`` of every artist tagged ``gid="family=<name>"``."""
    found: dict[str, set[str]] = {}
    for artist in fig.findobj(lambda a: str(a.get_gid() or "").startswith("family=")):
        family = artist.get_gid().split("=", 1)[1]
        if isinstance(artist, (Line2D, LineCollection)):
            colours = to_rgba_array(artist.get_color())
        else:  # scatter points, filled bands
            colours = to_rgba_array(artist.get_facecolor())
        found.setdefault(family, set()).update(to_hex(c[:3]) for c in colours)
    return found


# ----------------------------------------------------------------------------- colours and defaults
def test_family_colors_depend_on_names_not_order():
    forward = family_colors(["pythia", "llama", "olmo"])
    backward = family_colors(["olmo", "llama", "pythia", "llama"])
    assert forward == backward
    assert list(forward) == ["llama", "olmo", "pythia"]
    assert len(set(forward.values())) == 3
    many = family_colors([f"f{i:02d}" for i in range(20)])
    assert len(set(many.values())) == 20  # past the palette, still one colour each


def test_rcparams_validate_and_restore():
    with pytest.raises(ValueError, match="hdi_prob"):
        rcParams["hdi_prob"] = 1.5
    with pytest.raises(KeyError, match="not a bayescale plotting rcParam"):
        rcParams["no_such_key"] = 1
    with pytest.raises(ValueError, match="colour"):
        rcParams["palette"] = ["#0072B2", "not-a-colour"]
    with rc_context({"hdi_prob": 0.5, "palette": ["red", "blue"]}):
        assert rcParams["hdi_prob"] == 0.5
        assert family_colors(["x", "y"]) == {"x": "#ff0000", "y": "#0000ff"}
    assert rcParams["hdi_prob"] == 0.9
    assert family_colors(["x"])["x"] == "#0072b2"


# ----------------------------------------------------------------------------- figures
@pytest.mark.parametrize("which", ["single", "pooled"])
def test_every_figure_is_labelled(which, drawn):
    figures = drawn[which]
    # a forest across families needs a family dim
    assert ("forest" in figures) == (which == "pooled")
    assert {"ladder", "fit", "residuals", "ppc", "prior_posterior", "rank", "energy",
            "band_vs_scale"} <= set(figures)
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        assert fig.axes, name
        for ax in fig.axes:
            assert ax.get_xlabel().strip(), f"{name}: an axis has no x label"
            assert ax.get_ylabel().strip(), f"{name}: an axis has no y label"


def test_axes_name_their_units(drawn):
    labels = {ax.get_xlabel() for ax in drawn["single"]["fit"].axes}
    labels |= {ax.get_ylabel() for ax in drawn["single"]["fit"].axes}
    assert {"training compute C (FLOP)", "tokens D", "loss (nats)"} <= labels
    ladder = drawn["single"]["ladder"].axes[0]
    assert (ladder.get_xlabel(), ladder.get_ylabel()) == ("parameters N", "tokens D")
    assert ladder.get_xscale() == ladder.get_yscale() == "log"


def test_family_colours_are_the_same_in_every_figure(pooled, drawn):
    expected = family_colors(compute.families(pooled))
    seen: dict[str, dict[str, set[str]]] = {}
    for name in ("ladder", "fit", "residuals", "ppc", "prior_posterior", "forest"):
        seen[name] = _family_artists(drawn["pooled"][name])
        assert set(seen[name]) == set(expected), f"{name} does not draw every family"
    for name, by_family in seen.items():
        for family, colours in by_family.items():
            assert colours == {expected[family]}, f"{name}: family {family} drawn in {colours}"


def test_plot_rejects_unknown_figures_and_non_fits(single):
    with pytest.raises(ValueError, match="unknown figure"):
        plot(single, "histogram")
    with pytest.raises(TypeError, match="takes no targets"):
        plot(single, "ppc", targets=TARGETS)
    with pytest.raises(TypeError, match="ScalingFit"):
        plot_fit(single.idata)


def test_preview_fit_has_no_mcmc_figures():
    preview = fake_fit(method="map")
    names = available_figures(preview)
    assert "rank" not in names and "energy" not in names
    with pytest.raises(ValueError, match="NUTS"):
        plot(preview, "rank")
    assert isinstance(plot(preview, "prior_posterior"), Figure)  # a one-draw posterior is a line


def test_downstream_figure_only_with_tasks(single, downstream_fit):
    assert "downstream" not in available_figures(single)
    fit = downstream_fit[0]
    assert "downstream" in available_figures(fit)
    axes = plot(fit, "downstream").axes
    titles = [ax.get_title(loc="left") or ax.get_title() for ax in axes]
    assert titles == ["acc:big", "acc:flat", "acc:small"]
    assert axes[0].get_ylabel().startswith("accuracy on big") and "nats" in axes[0].get_xlabel()
    assert len(axes[0].collections) >= 1  # the link's posterior band


def test_save_figures_writes_pngs(single, tmp_path):
    names = ["ladder", "ppc", "band_vs_scale"]
    paths = save_figures(single, tmp_path / "figs", targets=TARGETS, names=names)
    assert paths == [tmp_path / "figs" / f"{name}.png" for name in names]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="do not apply"):
        save_figures(single, tmp_path / "bad", names=["forest"])  # no family dim
    with pytest.raises(ValueError, match="do not apply"):
        save_figures(single, tmp_path / "bad", names=["band_vs_scale"])  # no targets


# ----------------------------------------------------------------------------- computation
def test_law_curves_and_frontier(single):
    curves = compute.law_curves(single)
    assert set(curves["params"]) == set(single.runs["params"])
    assert (curves["lower"] <= curves["median"]).all()
    assert (curves["median"] <= curves["upper"]).all()
    # the compute-optimal frontier is the lower envelope of the law: below every run's law value
    obs = compute.observation_table(single)
    frontier = compute.frontier_band(single, obs["compute"])
    assert (frontier["median"].to_numpy() <= obs["law_median"].to_numpy() * (1 + 1e-3)).all()
    # and it agrees with the closed-form compute-optimal allocation
    budgets = np.array([1e18, 1e21])
    closed = single.optimal_allocation(budgets)
    closed = closed[closed["quantity"] == "loss"]["median"].to_numpy()
    np.testing.assert_allclose(compute.frontier_band(single, budgets)["median"], closed, rtol=2e-3)


def test_frontier_is_per_family_when_pooled(pooled):
    c = np.array([1e19])
    bands = {f: float(compute.frontier_band(pooled, c, f)["median"].iloc[0])
             for f in compute.families(pooled)}
    assert len(set(np.round(list(bands.values()), 6))) == 3  # each family its own law
    assert list(compute.posterior_by_family(pooled, "alpha")) == compute.families(pooled)


def test_observation_table_and_predictive_check(single):
    table = compute.observation_table(single)
    assert len(table) == len(single.runs)
    assert table["pit"].between(0, 1).all()
    assert (table["pred_lower"] < table["pred_upper"]).all()
    # the fake posterior sits on the truth with the true noise: most points are covered
    assert table["inside"].mean() >= 0.6
    assert np.abs(table["residual"]).max() < 0.06


def test_band_widths_match_predict_exactly(single):
    table = compute.band_width_table(single, TARGETS)
    pred = single.predict(TARGETS)
    np.testing.assert_array_equal(table["width"], pred["upper"] - pred["lower"])
    sweep = compute.band_width_sweep(single, compute.scale_sweep(single, TARGETS))
    assert (sweep["width_observation"] >= sweep["width_mean"]).all()  # noise only adds
    assert sweep["compute"].max() >= 3 * table["compute"].max() * 0.999


def test_prior_draws_follow_the_model(single):
    draws = compute.prior_draws(single, ["E", "sigma"], draws=4000, seed=1)
    assert draws["E"].shape == (4000,)
    assert np.median(draws["E"]) == pytest.approx(np.exp(0.5), rel=0.08)  # LogNormal(mu=0.5)
    assert (draws["sigma"] > 0).all()


def test_forest_table_has_population_and_families(pooled, single):
    table = compute.forest_table(pooled)
    e = table[table["parameter"] == "E"]
    assert list(e["family"]) == [*compute.families(pooled), compute.POPULATION]
    assert set(table["parameter"]) == {"E", "A", "B", "alpha", "beta"}  # the ones with a family dim
    assert (table["lower"] <= table["lower_50"]).all()
    assert (table["upper_50"] <= table["upper"]).all()
    shared = compute.forest_table(single)
    assert shared["family"].isna().all() and "sigma" in set(shared["parameter"])


def test_default_targets_are_ten_times_the_largest_run(single):
    top = compute.largest_run(single)
    targets = compute.default_targets(single)
    assert targets.loc[0, "params"] == 10 * top["params"]
    assert targets.loc[0, "tokens"] == 10 * top["tokens"]
    assert set(FIGURES) >= {"ladder", "fit", "residuals", "ppc", "prior_posterior", "forest",
                            "rank", "energy"}
