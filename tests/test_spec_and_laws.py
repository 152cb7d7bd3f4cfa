"""Model specs (shipped and broken) and the law functions on numpy and PyTensor."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest

import bayescale
from bayescale.laws import Chinchilla, Compute, Kaplan, get_law
from bayescale.model import build_model
from bayescale.runs import Scale
from bayescale.spec import SpecError, load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "specs"


@pytest.mark.parametrize("name", ["chinchilla", "compute", "kaplan"])
def test_shipped_specs_load_with_provenance(name):
    spec = load_spec(name)
    assert name in bayescale.available_specs()
    assert set(spec.law.sampled) <= set(spec.priors)
    assert all(len(text) > 20 for text in spec.provenance.values())
    assert spec.sampler["chains"] == 4


@pytest.mark.parametrize(
    "fixture,expected",
    [
        ("wrong_law.toml", ["unknown law 'kaplan_2020_typo'"]),
        ("wrong_missing_prior.toml", ["priors.gamma is missing"]),
        (
            "wrong_dist_and_provenance.toml",
            ["schema_version must be 1", "priors.E", "priors.a has no provenance"],
        ),
    ],
)
def test_broken_specs_list_every_problem(fixture, expected):
    with pytest.raises(SpecError) as info:
        load_spec(FIXTURES / fixture)
    for text in expected:
        assert text in str(info.value)


def test_unknown_spec_name():
    with pytest.raises(SpecError, match="shipped specs"):
        load_spec("no_such_law")


def test_prior_override_merges_over_defaults():
    spec = load_spec("chinchilla").with_priors({"alpha": {"dist": "Normal", "kwargs": {"mu": 0.3, "sigma": 0.01}}})
    assert spec.priors["alpha"].distribution == "Normal"
    assert spec.priors["beta"].distribution == "LogNormal"
    assert spec.hash() != load_spec("chinchilla").hash()


def test_chinchilla_matches_numpy_reference_and_pytensor():
    theta = dict(E=1.7, a=0.6, b=0.4, alpha=0.34, beta=0.28)
    n, d = np.array([0.5, 2.0, 8.0]), np.array([1.0, 3.0, 0.2])
    expected = 1.7 + 0.6 * n**-0.34 + 0.4 * d**-0.28
    np.testing.assert_allclose(Chinchilla().mean(theta, n, d), expected)
    sym = {k: pt.as_tensor_variable(v) for k, v in theta.items()}
    np.testing.assert_allclose(Chinchilla().mean(sym, pt.as_tensor(n), pt.as_tensor(d)).eval(), expected)


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
    assert Compute().mean(theta, N / N0, D / D0) == pytest.approx(1.8 + pub["A"] * (6 * N * D) ** -0.12)


def test_unknown_law():
    with pytest.raises(ValueError, match="available"):
        get_law("nope")


def test_model_has_named_dims_and_symbol_names():
    runs, _ = bayescale.simulate_ladder(seed=0)
    runs = bayescale.read_runs(runs)
    model = build_model(runs, load_spec("chinchilla"), Scale.from_runs(runs))
    names = set(model.named_vars)
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "sigma", "nu", "ln_loss"} <= names
    assert model.named_vars_to_dims["ln_loss"] == ("obs",)
    assert model.named_vars_to_dims["n"] == ("obs",)
    assert len(model.coords["obs"]) == len(runs)
    logp = model.compile_logp()(model.initial_point())
    assert np.isfinite(logp)


def test_logp_matches_hand_computation():
    """The observed term is a Student-t on ln(loss) around ln(law)."""
    from scipy import stats

    runs = bayescale.read_runs(pd.DataFrame({"params": [1e8, 4e8], "tokens": [2e9, 8e9], "value": [3.1, 2.8]}))
    scale = Scale.from_runs(runs)
    model = build_model(runs, load_spec("chinchilla"), scale)
    point = {"E": 1.5, "a": 0.8, "b": 0.7, "alpha": 0.3, "beta": 0.25, "sigma": 0.05, "nu": 5.0}
    values = {f"{k}_log__": np.log(v) for k, v in point.items()}
    obs_logp = model.compile_fn(model.logp(vars=[model["ln_loss"]], sum=True), inputs=model.value_vars, on_unused_input="ignore")(values)
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
    gain = lambda n_: Kaplan().mean(mid, n_, 1.0) - Kaplan().mean(mid, n_, 4.0)
    assert gain(0.05) < 0.5 * gain(20.0)


def test_spec_extends_inherits_and_overrides():
    spec = load_spec("kaplan")
    base = load_spec("chinchilla")
    assert spec.law.lookup_name == "kaplan" and "extends" not in spec.raw
    assert spec.priors["alpha"].to_dict() == base.priors["alpha"].to_dict()
    assert spec.priors["q"].distribution == "Beta" and "q" not in base.priors
    assert spec.sampler == base.sampler


def test_spec_extending_an_unknown_spec(tmp_path):
    path = tmp_path / "child.toml"
    path.write_text('schema_version = 1\nextends = "nope"\nlaw = "kaplan"\n')
    with pytest.raises(SpecError, match="no model spec named 'nope'"):
        load_spec(path)
