"""A model is data: presets, parts, invalid combinations, and persistence of the model tree."""

from __future__ import annotations

import inspect
import json
import warnings

import pytest

import bayescale
from bayescale import Model, ModelError
from bayescale.build import build_model
from bayescale.parts import (
    AR1Residuals,
    Checkpoints,
    Downstream,
    Drift,
    FamilyPooling,
    Noise,
    RunEffect,
    ScheduleTerm,
    available_parts,
    get_part,
)
from bayescale.runs import Scale, read_runs

STRUCTURE_WORDS = ("pooling", "checkpoints", "residuals", "run_effect", "schedule", "min_fraction",
                   "downstream",
                   "noise", "anneal", "run_slope", "drift", "drift_clock", "link_scale",
                   "family_prior", "tasks", "law")


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_fit_has_no_structure_parameter():
    params = set(inspect.signature(bayescale.fit).parameters)
    assert not params & set(STRUCTURE_WORDS), params & set(STRUCTURE_WORDS)
    assert "model" in params


@pytest.mark.parametrize("option",
                         ["anneal", "tasks", "min_fraction", "drift_clock", "link_scale", "noise"])
def test_old_structure_options_cannot_be_written(option):
    """Options that used to be silently ignored without their part exist only inside the part."""
    runs, _ = bayescale.simulate_ladder(seed=0)
    with pytest.raises(TypeError, match=option):
        bayescale.fit(runs, **{option: "x"})


@pytest.mark.parametrize(("method", "setting"),
                         [("map", {"draws": 500}), ("map", {"mass_matrix": "low_rank"}),
                          ("advi", {"chains": 4}), ("advi", {"target_accept": 0.95})])
def test_sampler_settings_a_method_would_ignore_are_refused(method, setting):
    """``method="map"`` used to drop ``draws`` (and every NUTS setting) without a word."""
    runs, _ = bayescale.simulate_ladder(seed=0)
    with pytest.raises(ValueError,
                       match=f"method='{method}' does not use {next(iter(setting))}") as err:
        bayescale.fit(runs, "chinchilla", method=method, progressbar=False, **setting)
    one_line(err)


def test_compute_law_with_size_scaled_noise_builds():
    """``law="compute", noise="size"`` used to die with KeyError 'kappa': noise owns kappa."""
    runs, _ = bayescale.simulate_ladder(seed=0)
    rows = read_runs(runs)
    model = Model("compute", parts=[Noise(by_size=True)])
    assert "kappa" in model.priors
    pm_model = build_model(model, rows, Scale.from_runs(rows))
    assert {"kappa", "sigma", "gamma"} <= set(pm_model.named_vars)


@pytest.mark.parametrize(
    ("parts", "part_named"),
    [
        ([Drift()], "drift"),
        ([RunEffect(slope=True)], "run_effect"),
        ([AR1Residuals()], "ar1_residuals"),
        ([Checkpoints(min_fraction=0.0), Drift()], "drift"),
        ([ScheduleTerm(), ScheduleTerm(anneal="tokens")], "schedule"),
    ],
)
def test_invalid_combinations_raise_naming_the_part(parts, part_named):
    with pytest.raises(ModelError) as err:
        Model("chinchilla", parts=parts)
    assert part_named in one_line(err)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Drift(clock="hours"), ("drift", "clock")),
        (lambda: Noise(likelihood="cauchy"), ("noise", "likelihood")),
        (lambda: Checkpoints(min_fraction=1.5), ("checkpoints", "min_fraction")),
        (lambda: Downstream(link="probit"), ("downstream", "link")),
        (lambda: Downstream(tasks=("hellaswag",)), ("downstream", "acc:")),
        (lambda: ScheduleTerm(anneal="steps"), ("schedule", "anneal")),
        (lambda: FamilyPooling(prior="cauchy"), ("family_pooling", "prior")),
        (lambda: get_part({"part": "drift", "speed": 2}), ("drift", "speed")),
        (lambda: get_part({"part": "warp"}), ("warp",)),
        (lambda: Model("chinchilla",
                       prior_overrides={"kappa": {"dist": "Normal", "kwargs": {"sigma": 1}}}),
         ("kappa", "no part")),
        (lambda: Model("chinchilla", sampler={"draw": 10}), ("sampler", "draw")),
    ],
)
def test_bad_options_raise_one_line_errors(make, words):
    with pytest.raises(ModelError) as err:
        make()
    text = one_line(err)
    assert all(w in text for w in words), text


def test_pooling_needs_lognormal_law_priors():
    override = {"alpha": {"dist": "HalfNormal", "kwargs": {"sigma": 0.5}}}
    with pytest.raises(ModelError) as err:
        Model("chinchilla", parts=[FamilyPooling()], prior_overrides=override)
    assert "family_pooling" in one_line(err) and "alpha" in str(err.value)


def test_data_dependent_errors_name_the_part():
    runs, _ = bayescale.simulate_ladder(seed=0, checkpoints=3)
    model = Model("chinchilla", parts=[Checkpoints(), ScheduleTerm(source="table")])
    with pytest.raises(ModelError, match="schedule: source='table' needs a 'schedule' column"):
        bayescale.fit(runs, model, progressbar=False)
    with pytest.raises(ModelError, match="downstream: needs 'acc:<task>' rows"):
        bayescale.fit(runs, "downstream", progressbar=False)
    tasks = [bayescale.Task("qa")]
    runs, _ = bayescale.simulate_ladder(seed=0, tasks=tasks)
    with pytest.raises(ModelError, match=r"downstream: task\(s\) \['acc:nope'\]"):
        bayescale.fit(runs, Model("chinchilla", parts=[Downstream(tasks=("acc:nope",))]),
                      progressbar=False)


def test_every_preset_loads_and_describes_itself():
    presets = bayescale.available_models()
    assert {"chinchilla", "checkpoints", "downstream", "pythia_lambada", "gadre_average",
            "gadre_tasks"} <= set(presets)
    for name, line in presets.items():
        model = bayescale.load_model(name)
        assert line and "\n" not in line
        assert model.name == name
        assert str(model).splitlines()[1].startswith("  law")
        assert Model.from_dict(json.loads(model.to_json())) == model  # the tree round-trips
        for prior in model.priors:
            assert model.provenance[prior], f"{name}: prior {prior} has no provenance"


def test_extends_merges_parts_and_priors():
    pythia = bayescale.load_model("pythia_lambada")
    assert pythia.law.lookup_name == "kaplan"
    assert pythia.part("checkpoints").min_fraction == 0.02  # overridden
    assert pythia.part("ar1_residuals") is not None  # inherited from 'checkpoints'
    assert pythia.part("drift").clock == "fraction"
    assert pythia.priors["E"].parameters == {"mu": -0.7, "sigma": 0.5}
    # merged by key
    assert pythia.sampler["mass_matrix"] == "low_rank" and pythia.sampler["draws"] == 1000
    downstream = bayescale.load_model("pythia_downstream")
    assert (downstream.part("downstream").scale == "log_reducible"
            and downstream.part("drift") is not None)


def test_a_model_file_is_loaded_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('format = 2\nextends = "checkpoints"\nname = "mine"\ndrop = ["ar1_residuals"]\n'
                    '[parts.drift]\nclock = "fraction"\n')
    model = bayescale.load_model(path)
    assert model.part("ar1_residuals") is None and model.part("drift").clock == "fraction"
    path.write_text('format = 2\nname = "bad"\n[parts.drift]\n')
    with pytest.raises(ModelError, match="drift: needs the checkpoints part"):
        bayescale.load_model(path)


def test_every_part_documents_itself():
    for name, line in available_parts().items():
        assert line, f"part {name} has no docstring"
        cls = type(get_part(name)) if name != "warp" else None
        assert cls.__doc__ and "Example" in (inspect.getmodule(cls).__doc__ or ""), name


def test_case_studies_load_their_models_by_name():
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "case_studies"))
    pythia = importlib.import_module("pythia_checkpoints")
    assert isinstance(bayescale.load_model(pythia.MODEL), Model)
    assert isinstance(bayescale.load_model(pythia.DOWNSTREAM_MODEL), Model)
    gadre = importlib.import_module("gadre_overtrain")
    assert gadre.joint_model("sigmoid", "log_reducible") == bayescale.load_model("gadre_tasks")


# ------------------------------------------------------------------ persistence
@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory):
    runs, _ = bayescale.simulate_ladder(seed=0, families=2, checkpoints=3)
    model = Model("chinchilla", parts=[FamilyPooling(), Checkpoints(), RunEffect()],
                  name="small tree")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, model, method="map", progressbar=False)
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    fit.save(path)
    return fit, path


def test_a_saved_fit_stores_and_reloads_its_model_tree(saved_fit):
    fit, path = saved_fit
    loaded = bayescale.load_fit(path)
    assert loaded.model == fit.model and loaded.model.hash() == fit.model.hash()
    assert [p.lookup_name for p in loaded.model.parts] == [p.lookup_name for p in fit.model.parts]
    target = {"params": 3e8, "tokens": 6e9, "family": fit.families[0]}
    assert (loaded.predict(target)["median"].iloc[0]
            == pytest.approx(fit.predict(target)["median"].iloc[0]))


def test_a_file_of_an_older_format_is_refused_naming_its_writer(saved_fit, tmp_path):
    import arviz as az

    _, path = saved_fit
    idata = az.from_netcdf(str(path))
    meta = json.loads(idata.posterior.attrs["bayescale"])
    old = {"format_version": 1, "spec": {"law": "chinchilla"},
           "info": {"versions": {"bayescale": "0.1.0"}},
           **{k: meta[k] for k in ("scale", "sampler", "metric")}}
    idata.posterior.attrs["bayescale"] = json.dumps(old)
    older = tmp_path / "old.nc"
    idata.to_netcdf(str(older))
    with pytest.raises(ValueError,
                       match=r"written by bayescale 0\.1\.0 in file format 1; this version reads "
                             r"format 2"):
        bayescale.load_fit(older)


def test_pooling_parameters_must_be_the_laws():
    with pytest.raises(ModelError) as err:
        Model("compute", parts=[FamilyPooling(parameters=("beta",))])
    assert "family_pooling" in one_line(err) and "beta" in str(err.value)
    with pytest.raises(ModelError, match="pools nothing"):
        FamilyPooling(parameters=())


def test_allocation_with_a_shared_exponent_per_family(tmp_path):
    runs, _ = bayescale.simulate_ladder(seed=0, families=2)
    model = Model("chinchilla", parts=[FamilyPooling(parameters=("a", "b"))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, model, method="map", progressbar=False)
        table = fit.optimal_allocation([1e21], family="family1")
    assert set(table["quantity"]) == {"params", "tokens", "loss"} and (table["median"] > 0).all()
