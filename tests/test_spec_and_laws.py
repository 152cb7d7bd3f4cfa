"""Models as data (presets, TOML files, parts; shipped and broken) and the law functions on
numpy and PyTensor."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest

import bayescale
from bayescale import Model, ModelError, available_models, load_model
from bayescale.build import build_model, structure_key
from bayescale.laws import Chinchilla, Compute, Gadre, Kaplan, get_law
from bayescale.model import auto_model
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
from bayescale.runs import Scale

#: Every part with options away from their defaults (and a compatible set: one model holds them
#: all).
EVERY_PART = [
    FamilyPooling(prior="student_t"), Checkpoints(min_fraction=0.1), RunEffect(slope=True),
    ScheduleTerm(source="learned", anneal="tokens"), Drift(clock="fraction"), AR1Residuals(),
    Noise(likelihood="normal", by_size=True),
    Downstream(link="exp", scale="log_reducible", tasks=("acc:a", "acc:b"), run_effect=False,
               overdispersion=False),
]


# ============================================================================ presets
@pytest.mark.parametrize("name", ["chinchilla", "compute", "kaplan", "gadre", "checkpoints",
                                  "downstream"])
def test_shipped_presets_load_with_provenance(name):
    model = load_model(name)
    assert name in available_models() and available_models()[name] == model.description
    assert model.name == name and len(model.description) > 20
    assert set(model.law.sampled) <= set(model.priors)
    assert set(model.priors) == set(model.provenance)
    assert all(len(text) > 20 for text in model.provenance.values())
    assert model.sampler["chains"] == 4  # from chinchilla, which they all extend
    assert model.noise == Noise(likelihood="student_t", by_size=False)


def test_every_preset_loads_and_its_priors_cover_its_parts():
    names = available_models()
    assert {"chinchilla", "compute", "kaplan", "checkpoints", "downstream"} <= set(names)
    for name in names:
        model = load_model(name)
        parts = {p.lookup_name for p in model.parts}
        assert "noise" in parts and parts <= set(available_parts()), name
        for part in model.parts:
            assert set(part.priors()) <= set(model.priors), (name, part)


def test_preset_parts():
    """The presets named in the docs hold the parts they are documented with."""
    assert [p.lookup_name for p in load_model("chinchilla").parts] == ["noise"]
    assert (load_model("compute").law.lookup_name == "compute"
            and load_model("kaplan").law.lookup_name == "kaplan")
    checkpoints = load_model("checkpoints")
    assert checkpoints.parts == Model("chinchilla", parts=[
        FamilyPooling(), Checkpoints(min_fraction=0.05), RunEffect(),
        ScheduleTerm(source="auto", anneal="loss"), AR1Residuals(), Noise()]).parts
    downstream = load_model("downstream")
    assert downstream.part("downstream") == Downstream(link="sigmoid", scale="loss")
    assert (downstream.part("checkpoints") is None
            and downstream.sampler["mass_matrix"] == "low_rank")


def test_unknown_preset_name():
    with pytest.raises(ModelError, match=r"unknown model 'no_such_law'; presets: .*'chinchilla'"):
        load_model("no_such_law")
    with pytest.raises(ModelError, match="no model file at"):
        load_model("no/such/file.toml")


def test_extends_inherits_and_overrides():
    model, base = load_model("kaplan"), load_model("chinchilla")
    assert model.law.lookup_name == "kaplan" and base.law.lookup_name == "chinchilla"
    assert model.priors["alpha"].to_dict() == base.priors["alpha"].to_dict()
    assert model.priors["q"].distribution == "Beta" and "q" not in base.priors
    assert model.sampler == base.sampler and model.parts == base.parts
    # two levels deep: pythia_lambada extends checkpoints extends chinchilla, part by part
    pythia = load_model("pythia_lambada")
    assert pythia.part("checkpoints") == Checkpoints(min_fraction=0.02)  # overridden
    assert (pythia.part("family_pooling") == FamilyPooling()
            and pythia.part("ar1_residuals") == AR1Residuals())
    assert pythia.part("schedule") == ScheduleTerm(source="table", anneal="tokens")
    assert pythia.noise == Noise(by_size=True) and pythia.part("drift") == Drift(clock="fraction")
    assert pythia.priors["E"].parameters == {"mu": -0.7, "sigma": 0.5}
    assert pythia.provenance["E"].startswith("Irreducible LAMBADA")
    # merged key by key
    assert pythia.sampler["chains"] == 4 and pythia.sampler["target_accept"] == 0.95


def test_a_model_file_extends_a_preset_drops_parts_and_fits(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(textwrap.dedent("""\
        format = 2
        extends = "checkpoints"
        name = "mine"
        description = "checkpoints without AR(1) residuals, with drift"
        drop = ["ar1_residuals", "family_pooling"]
        [parts.drift]
        clock = "ln_tokens"
        [priors.sigma_drift]
        dist = "HalfNormal"
        kwargs = { sigma = 0.02 }
        provenance = "a test"
        [sampler]
        draws = 300
        """))
    model = load_model(path)
    assert model.name == "mine" and load_model(str(path)).to_dict() == model.to_dict()
    assert [p.lookup_name for p in model.parts] == ["checkpoints", "noise", "schedule",
                                                    "run_effect", "drift"]
    assert (model.priors["sigma_drift"].parameters == {"sigma": 0.02}
            and model.provenance["sigma_drift"] == "a test")
    assert model.sampler == {**load_model("chinchilla").sampler, "draws": 300}
    # the same model through fit (a quick MAP preview: the path reaches the fit)
    runs, _ = bayescale.simulate_ladder(seed=0, checkpoints=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, path, method="map", progressbar=False)
    # resolved: no column
    assert fit.model.name == "mine" and fit.model.part("schedule").source == "learned"
    assert "sigma_drift" in fit.idata.posterior and "ell" not in fit.idata.posterior


BROKEN = {
    "wrong_law": ('format = 2\nlaw = "kaplan_2020_typo"\n', ValueError,
                  "unknown law 'kaplan_2020_typo'"),
    "old_format": ('schema_version = 1\nlaw = "chinchilla"\n', ModelError,
                   "model description format None; this version of bayescale reads format 2"),
    "unknown_key": ('format = 2\nlaw = "compute"\nlikelihood = "normal_log"\n', ModelError,
                    r"unknown key\(s\) \['likelihood'\]"),
    "unknown_part": ('format = 2\n[parts.seed_pooling]\n', ModelError,
                     "unknown part 'seed_pooling'"),
    "unknown_option": ('format = 2\n[parts.checkpoints]\n[parts.drift]\nspeed = 2\n', ModelError,
                       r"drift: unknown option\(s\) \['speed'\]; options are \['clock'\]"),
    "bad_option": ('format = 2\n[parts.family_pooling]\nprior = "cauchy"\n', ModelError,
                   "family_pooling: prior='cauchy' is not one of"),
    "unknown_prior": ('format = 2\nlaw = "chinchilla"\n[priors.gamma]\ndist = "LogNormal"\n'
                      'kwargs = { mu = -1.9, sigma = 0.6 }\n', ModelError,
                      "a prior for 'gamma', which no part of the model has"),
    "part_prior_without_part": ('format = 2\n[priors.sigma_run]\ndist = "HalfNormal"\n'
                                'kwargs = { sigma = 0.1 }\n',
                                ModelError,
                                "a prior for 'sigma_run', which no part of the model has"),
    "bad_dist": ('format = 2\n[priors.E]\ndist = "NotADistribution"\nkwargs = { mu = 0.5 }\n',
                 ModelError,
                 "prior 'E' is invalid"),
    "parts_clash": ('format = 2\n[parts.drift]\n', ModelError, "drift: needs the checkpoints part"),
    "unknown_sampler": ('format = 2\n[sampler]\nsteps = 10\n', ModelError,
                        r"unknown sampler setting\(s\) \['steps'\]"),
    "extends_unknown": ('format = 2\nextends = "nope"\n', ModelError, "unknown model 'nope'"),
    "drop_missing": ('format = 2\nextends = "chinchilla"\ndrop = ["drift"]\n', ModelError,
                     "drop = \\['drift'\\], but 'chinchilla' has no such part"),
    "not_toml": ('format = 2\n[parts\n', ModelError, "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_model_files_name_the_problem(name, tmp_path):
    text, error, message = BROKEN[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(error, match=message):
        load_model(path)


def test_parts_that_cannot_live_together_raise_model_error_naming_the_part():
    assert issubclass(ModelError, ValueError) and bayescale.ModelError is ModelError
    cases = [
        ([Drift()], "drift: needs the checkpoints part"),
        ([Checkpoints(min_fraction=0.0), Drift()], "drift: needs checkpoints.min_fraction > 0"),
        ([AR1Residuals()], "ar1_residuals: needs the checkpoints part"),
        ([RunEffect(slope=True)], "run_effect: slope=True needs the checkpoints part"),
        ([ScheduleTerm(), ScheduleTerm(anneal="tokens")], "two parts fill 'schedule'"),
        ([Noise(), Noise(by_size=True)], "two parts fill 'noise'"),
    ]
    for parts, message in cases:
        with pytest.raises(ModelError, match=message):
            Model("chinchilla", parts=parts)
    normal_alpha = {"alpha": {"dist": "Normal", "kwargs": {"mu": 0.3, "sigma": 0.05}}}
    with pytest.raises(ModelError,
                       match="family_pooling: pools on the log scale and needs a LogNormal prior "
                             "for 'alpha'"):
        Model("chinchilla", parts=[FamilyPooling()], prior_overrides=normal_alpha)
    Model("chinchilla", prior_overrides=normal_alpha)  # fine without pooling
    with pytest.raises(ModelError, match="schedule: source='table' needs a 'schedule' column"):
        ScheduleTerm(source="table").validate(pd.DataFrame({"tokens": [1.0]}))


def test_prior_override_merges_over_defaults():
    base = load_model("chinchilla")
    model = base.with_priors({"alpha": {"dist": "Normal", "kwargs": {"mu": 0.3, "sigma": 0.01}}})
    assert (model.priors["alpha"].distribution == "Normal"
            and model.provenance["alpha"] == "set by the user")
    assert model.priors["beta"].distribution == "LogNormal"
    assert base.priors["alpha"].distribution == "LogNormal"  # a copy: the preset is unchanged
    assert model.hash() != base.hash() and base.with_priors(None) is base
    from pymc_extras.prior import Prior

    as_prior = base.with_priors({"alpha": Prior("Normal", mu=0.3, sigma=0.01)})
    assert as_prior.priors["alpha"].to_dict() == model.priors["alpha"].to_dict()


# ========================================================================= parts and models as data
def test_parts_round_trip_through_dicts():
    # every part this test covers is registered (a new part adds itself to the registry)
    assert {p.lookup_name for p in EVERY_PART} <= set(available_parts())
    assert {"family_pooling", "checkpoints", "run_effect", "schedule", "drift", "ar1_residuals",
            "noise",
            "downstream"} <= set(available_parts())
    for part in EVERY_PART:
        data = part.to_dict()
        assert data["part"] == part.lookup_name
        assert get_part(json.loads(json.dumps(data))) == part
        assert get_part(part.lookup_name) == type(part)()  # by name: the defaults
    assert get_part({"part": "checkpoints", "min_fraction": 0.3}) == Checkpoints(min_fraction=0.3)
    with pytest.raises(ModelError, match="unknown part 'walk'; available:"):
        get_part("walk")
    with pytest.raises(ModelError, match=r"run_effect: unknown option\(s\) \['slopes'\]"):
        get_part({"part": "run_effect", "slopes": True})


def test_model_round_trips_through_to_dict_and_from_dict():
    overrides = {"E": {"dist": "LogNormal", "kwargs": {"mu": 0.6, "sigma": 0.2},
                       "provenance": "a test"}}
    model = Model("kaplan", parts=EVERY_PART, prior_overrides=overrides,
                  sampler={"draws": 10, "chains": 2}, name="everything", description="every part")
    data = json.loads(json.dumps(model.to_dict()))
    assert data["format"] == 2 and data["law"] == "kaplan" and data["name"] == "everything"
    assert set(data["parts"]) == {p.lookup_name for p in EVERY_PART}
    again = Model.from_dict(data)
    assert (again.parts == model.parts and again.hash() == model.hash()
            and again.to_dict() == model.to_dict())
    assert (again.priors["E"].parameters == {"mu": 0.6, "sigma": 0.2}
            and again.provenance["E"] == "a test")
    for name in available_models():
        preset = load_model(name)
        assert Model.from_dict(json.loads(preset.to_json())).to_dict() == preset.to_dict(), name
    text = str(model)
    assert ("model 'everything'" in text and "part   drift(clock='fraction')" in text
            and "prior  E ~ LogNormal" in text)
    with pytest.raises(ModelError, match="format 1"):
        Model.from_dict({**data, "format": 1})


def test_hash_is_stable_and_follows_the_description():
    model = Model("chinchilla", parts=[Checkpoints(), RunEffect(), AR1Residuals()])
    # order, default noise
    same = Model("chinchilla", parts=[AR1Residuals(), RunEffect(), Checkpoints(), Noise()])
    assert model.hash() == same.hash() and len(model.hash()) == 16
    assert model.hash() == Model.from_dict(model.to_dict()).hash()
    assert Model("chinchilla",
                 parts=[Checkpoints(min_fraction=0.1), RunEffect(),
                        AR1Residuals()]).hash() != model.hash()
    assert model.with_parts(drop=("ar1_residuals",)).hash() != model.hash()
    assert load_model("chinchilla").hash() == load_model("chinchilla").hash()
    # the same in another process with another string hash seed
    code = ("import bayescale; from bayescale.parts import *; "
            "print(bayescale.load_model('checkpoints').hash(), bayescale.Model('chinchilla', "
            "parts=[Checkpoints(), RunEffect(), AR1Residuals()]).hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.split()
    assert out == [load_model("checkpoints").hash(), model.hash()]


def test_with_parts_adds_replaces_and_drops():
    base = load_model("checkpoints")
    model = base.with_parts(Drift(), drop=("family_pooling",))
    names = [p.lookup_name for p in model.parts]
    assert ("drift" in names and "family_pooling" not in names
            and "family_pooling" in [p.lookup_name for p in base.parts])
    replaced = base.with_parts(ScheduleTerm(source="learned", anneal="tokens"), Noise(by_size=True))
    assert replaced.part("schedule") == ScheduleTerm(source="learned", anneal="tokens")
    assert replaced.noise.by_size and len(replaced.parts) == len(base.parts)
    assert ("c_tokens" in replaced.priors and "c" not in replaced.priors
            and "kappa" in replaced.priors)
    assert model.part("schedule") is base.part("schedule")  # looked up by slot as well as by name
    with pytest.raises(ModelError, match="ar1_residuals: needs the checkpoints part"):
        base.with_parts(drop=("checkpoints",))


def test_auto_model_follows_the_table():
    one, _ = bayescale.simulate_ladder(seed=0)
    one = bayescale.read_runs(one)
    assert auto_model(one).parts == load_model("chinchilla").parts
    many, _ = bayescale.simulate_ladder(seed=0, families=2, seeds=2)
    model = auto_model(bayescale.read_runs(many))
    assert (model.part("family_pooling") == FamilyPooling()
            and model.part("run_effect") == RunEffect())
    assert (model.part("checkpoints") is None
            and model.name == "chinchilla + family_pooling + run_effect")


def test_variables_follow_the_parts():
    model = Model("chinchilla",
                  parts=[FamilyPooling(), Checkpoints(), RunEffect(slope=True), Drift(),
                         AR1Residuals(), Noise(by_size=True)])
    names = model.variables()
    assert names[:5] == list(Chinchilla.sampled)
    assert {"alpha_pop", "alpha_sd", "sigma", "nu", "kappa", "sigma_run", "sigma_slope",
            "sigma_drift", "ell"} <= set(names)
    assert "family_sd" not in names  # the prior's name; the variables are per parameter
    assert (Noise(likelihood="normal").noise_params == ("sigma",)
            and Noise().noise_params == ("sigma", "nu"))


# ============================================================================ laws
def test_chinchilla_matches_numpy_reference_and_pytensor():
    theta = dict(E=1.7, a=0.6, b=0.4, alpha=0.34, beta=0.28)
    n, d = np.array([0.5, 2.0, 8.0]), np.array([1.0, 3.0, 0.2])
    expected = 1.7 + 0.6 * n**-0.34 + 0.4 * d**-0.28
    np.testing.assert_allclose(Chinchilla().mean(theta, n, d), expected)
    sym = {k: pt.as_tensor_variable(v) for k, v in theta.items()}
    np.testing.assert_allclose(Chinchilla().mean(sym, pt.as_tensor(n), pt.as_tensor(d)).eval(),
                               expected)


def test_published_coefficients_round_trip():
    N0, D0 = 3e8, 6e9
    A, B, alpha, beta = 406.4, 410.7, 0.34, 0.28
    theta = dict(E=1.69, a=A * N0**-alpha, b=B * D0**-beta, alpha=alpha, beta=beta)
    pub = Chinchilla().to_published(theta, N0, D0)
    assert pub["A"] == pytest.approx(A) and pub["B"] == pytest.approx(B)
    N, D = 7e10, 1.4e12
    direct = 1.69 + A * N**-alpha + B * D**-beta
    assert Chinchilla().mean(theta, N / N0, D / D0) == pytest.approx(direct)


def test_compute_law_in_flops():
    N0, D0 = 1e8, 2e9
    theta = dict(E=1.8, a=0.9, gamma=0.12)
    pub = Compute().to_published(theta, N0, D0)
    N, D = 5e9, 1e11
    assert Compute().mean(theta, N / N0,
                          D / D0) == pytest.approx(1.8 + pub["A"] * (6 * N * D) ** -0.12)


def test_gadre_law_is_chinchillas_with_one_exponent_and_gadres_form_in_compute():
    theta = dict(E=1.7, a=0.6, b=0.4, alpha=0.3)
    n, d = np.array([0.5, 2.0, 8.0]), np.array([1.0, 3.0, 0.2])
    np.testing.assert_allclose(Gadre().mean(theta, n, d),
                               Chinchilla().mean({**theta, "beta": 0.3}, n, d))
    sym = {k: pt.as_tensor_variable(v) for k, v in theta.items()}
    np.testing.assert_allclose(Gadre().mean(sym, pt.as_tensor(n), pt.as_tensor(d)).eval(),
                               Gadre().mean(theta, n, d))
    # Gadre et al.'s eq. (4): L = E + (A' M^eta + B' M^-eta) C^-eta, eta = alpha / 2.
    N0, D0 = 1e8, 2e9
    pub = Gadre().to_published(theta, N0, D0)
    N, D = np.array([4e8, 4e8, 1e9]), np.array([8e9, 1.3e11, 2e10])
    C, M, eta = 6 * N * D, D / N, 0.15
    gadre = 1.7 + (pub["A"] * 6**eta * M**eta + pub["B"] * 6**eta * M**-eta) * C**-eta
    np.testing.assert_allclose(Gadre().mean(theta, N / N0, D / D0), gadre)
    assert load_model("gadre").law == Gadre()


def test_unknown_law():
    with pytest.raises(ValueError, match="available"):
        get_law("nope")
    with pytest.raises(ValueError, match="unknown law 'nope'"):
        Model("nope")


def test_model_has_named_dims_and_symbol_names():
    runs, _ = bayescale.simulate_ladder(seed=0)
    runs = bayescale.read_runs(runs)
    model = build_model(load_model("chinchilla"), runs, Scale.from_runs(runs))
    names = set(model.named_vars)
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "sigma", "nu", "ln_loss"} <= names
    assert model.named_vars_to_dims["ln_loss"] == ("obs",)
    assert model.named_vars_to_dims["n"] == ("obs",)
    assert len(model.coords["obs"]) == len(runs)
    logp = model.compile_logp()(model.initial_point())
    assert np.isfinite(logp)


def test_structure_key_ignores_the_number_of_rows_but_not_the_model():
    runs, _ = bayescale.simulate_ladder(seed=0)
    runs = bayescale.read_runs(runs)
    chinchilla = load_model("chinchilla")
    key = lambda m, rows: structure_key(m, build_model(m, rows, Scale.from_runs(rows)))  # noqa: E731
    assert key(chinchilla, runs) == key(chinchilla, runs.iloc[:-3])  # same graph, other data
    assert key(chinchilla, runs) != key(load_model("kaplan"), runs)
    assert key(chinchilla, runs) != key(chinchilla.with_parts(Noise(likelihood="normal")), runs)


def test_logp_matches_hand_computation():
    """The observed term is a Student-t on ln(loss) around ln(law)."""
    from scipy import stats

    runs = bayescale.read_runs(pd.DataFrame({"params": [1e8, 4e8], "tokens": [2e9, 8e9],
                                             "value": [3.1, 2.8]}))
    scale = Scale.from_runs(runs)
    model = build_model(load_model("chinchilla"), runs, scale)
    point = {"E": 1.5, "a": 0.8, "b": 0.7, "alpha": 0.3, "beta": 0.25, "sigma": 0.05, "nu": 5.0}
    values = {f"{k}_log__": np.log(v) for k, v in point.items()}
    obs_logp = model.compile_fn(model.logp(vars=[model["ln_loss"]], sum=True),
                                inputs=model.value_vars, on_unused_input="ignore")(values)
    n = runs["params"].to_numpy() / scale.N0
    d = runs["tokens"].to_numpy() / scale.D0
    mu = Chinchilla().mean(point, n, d)
    expected = stats.t.logpdf(np.log(runs["value"]), df=5.0, loc=np.log(mu), scale=0.05).sum()
    assert obs_logp == pytest.approx(expected, rel=1e-8)


def test_kaplan_law_bridges_additive_and_maximum():
    theta = dict(E=1.7, a=0.6, b=0.4, alpha=0.34, beta=0.28, q=1.0)
    n, d = np.array([0.5, 2.0, 8.0]), np.array([1.0, 3.0, 0.2])
    size, data = 0.6 * n**-0.34, 0.4 * d**-0.28
    np.testing.assert_allclose(Kaplan().mean(theta, n, d), Chinchilla().mean(theta, n, d))
    sharp = Kaplan().mean({**theta, "q": 0.02}, n, d)
    np.testing.assert_allclose(sharp, 1.7 + np.maximum(size, data), rtol=0.02)
    mid = {**theta, "q": 0.5}
    np.testing.assert_allclose(Kaplan().mean(mid, n, d), 1.7 + np.sqrt(size**2 + data**2))
    sym = {k: pt.as_tensor_variable(v) for k, v in mid.items()}
    np.testing.assert_allclose(Kaplan().mean(sym, pt.as_tensor(n), pt.as_tensor(d)).eval(),
                               Kaplan().mean(mid, n, d))
    # Small models saturate: more data helps the small model less than the large one.

    def gain(n_):
        return Kaplan().mean(mid, n_, 1.0) - Kaplan().mean(mid, n_, 4.0)

    assert gain(0.05) < 0.5 * gain(20.0)
