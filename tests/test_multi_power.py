"""The multi-power-law schedule term (Luo et al. 2025): its sums, its errors, and recovery of
its parameters from a simulated ladder with warmup-stable-decay schedules."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import require_sampled

import bayescale
from bayescale import Model, ModelError
from bayescale.parts import Checkpoints, MultiPowerSchedule, Noise
from bayescale.parts.multi_power import summed_rates

TRUTH = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.30,
         "B_drop": 0.2, "phi_drop": 0.1, "C_drop": 150.0, "beta_drop": 0.5, "gamma_drop": 0.6}
PEAK = 1e-3


def wsd_lr(steps: np.ndarray, total: float, decay_from: float | None,
           final: float = 0.1) -> np.ndarray:
    """Warmup-stable-decay: the peak rate, then a geometric decay to ``final`` of it from
    ``decay_from`` of the run to its end (None: constant)."""
    lr = np.full(len(steps), PEAK)
    if decay_from is not None:
        late = steps > decay_from * total
        lr[late] = PEAK * final ** ((steps[late] - decay_from * total) / ((1 - decay_from) * total))
    return lr


def true_loss(runs: pd.DataFrame, N0: float, D0: float) -> np.ndarray:
    """The Chinchilla law of ``TRUTH`` at the summed learning rate, minus the multi-power
    drop; ``B_drop`` and ``C_drop`` are in the units of the centre ``N0``, ``D0``."""
    part = MultiPowerSchedule(peak_lr=PEAK)
    d_eff = summed_rates(runs, PEAK, 1.0)["S1"]
    law = (TRUTH["E"] + TRUTH["A"] * runs["params"].to_numpy() ** -TRUTH["alpha"] + TRUTH["B"]
           * d_eff ** -TRUTH["beta"])
    drop = part.drop({k: TRUTH[k] for k in part.priors()}, runs["params"].to_numpy() / N0,
                     part.pairs(runs, D0), len(runs), np)
    return law - np.ravel(drop)


def simulate_wsd(seed: int = 0, sizes=(3e7, 1e8, 3e8), decays=(None, 0.5, 0.8),
                 rows_per_run: int = 40, noise: float = 0.003) -> pd.DataFrame:
    """Runs of three sizes under warmup-stable-decay schedules that start decaying at
    different points, from :func:`true_loss` centred at the ladder's geometric means (the
    fit's ``N0``, ``D0``, so ``TRUTH`` is in the fit's units)."""
    rng = np.random.default_rng(seed)
    frames = []
    for N in sizes:
        total = 20 * N
        tokens = np.linspace(0.05, 1.0, rows_per_run) * total
        for decay in decays:
            frames.append(pd.DataFrame({"family": "sim", "run": f"{N:.0e}-decay{decay}",
                                        "params": N, "tokens": tokens,
                                        "total_tokens": total, "lr": wsd_lr(tokens, total, decay)}))
    runs = pd.concat(frames, ignore_index=True)
    centre = (float(np.exp(np.log(runs["params"]).mean())),
              float(np.exp(np.log(runs["tokens"]).mean())))
    return runs.assign(value=true_loss(runs,
                                       *centre) * np.exp(noise * rng.standard_normal(len(runs))))


def test_summed_rates_are_trapezoid_sums_with_a_warmup_before_the_first_row():
    rows = pd.DataFrame({"run": ["r"] * 4, "tokens": [100.0, 200.0, 300.0, 400.0],
                         "lr": [2.0, 2.0, 1.0, 1.0]})
    out = summed_rates(rows, peak_lr=2.0, unit=1.0)
    # eta = 1, 1, 0.5, 0.5: warmup area 100 * 1 / 2, then trapezoids 100, 75, 50
    np.testing.assert_allclose(out["S1"], [50, 150, 225, 275])
    assert out["t"].tolist() == [2, 3] and out["drop"].tolist() == [0.5, 0.5]
    np.testing.assert_allclose(out["S"], [0.0, 50.0])  # the decay placed at row 2
    with_warmup = summed_rates(rows.assign(warmup_tokens=50.0), peak_lr=2.0, unit=1.0)
    # linear to the peak over 50, then flat
    assert with_warmup["S1"][0] == pytest.approx(50 / 2 + 1.0 * 50)
    shuffled = summed_rates(rows.iloc[[2, 0, 3, 1]], peak_lr=2.0, unit=1.0)
    np.testing.assert_allclose(shuffled["S1"], [225, 50, 275, 150])  # rows of a run in any order


def test_the_drop_grows_after_a_decay_and_saturates():
    part = MultiPowerSchedule(peak_lr=PEAK)
    runs = simulate_wsd(noise=0.0)
    run = runs[runs["run"] == "1e+08-decay0.5"].reset_index(drop=True)
    params = {k: TRUTH[k] for k in part.priors()}
    drop = part.drop(params, np.ones(len(run)), part.pairs(run, float(run["tokens"].mean())),
                     len(run), np).ravel()
    decaying = run["tokens"] > 0.5 * run["total_tokens"]
    assert np.all(drop[~decaying] == 0) and np.all(np.diff(drop[decaying]) > 0)
    # bounded by B times the total fall of the rate (G < 1)
    assert drop.max() < TRUTH["B_drop"] * (1 - run["lr"].iloc[-1] / PEAK)


def test_errors_name_the_part():
    with pytest.raises(ModelError, match="multi_power: needs the checkpoints part"):
        Model("chinchilla", parts=[MultiPowerSchedule()])
    with pytest.raises(ModelError, match="two parts fill 'schedule'"):
        Model("chinchilla",
              parts=[Checkpoints(), MultiPowerSchedule(), bayescale.parts.ScheduleTerm()])
    with pytest.raises(ModelError, match="multi_power: peak_lr"):
        MultiPowerSchedule(peak_lr=-1.0)
    runs = simulate_wsd().drop(columns="lr")
    model = Model("chinchilla", parts=[Checkpoints(min_fraction=0.0), MultiPowerSchedule()])
    with pytest.raises(ModelError, match="multi_power: the runs table needs an 'lr' column"):
        bayescale.fit(runs, model, progressbar=False)


def test_the_multi_power_preset_loads():
    model = bayescale.load_model("multi_power")
    assert isinstance(model.part("schedule"), MultiPowerSchedule)
    assert model.part("checkpoints").min_fraction == 0.0  # the sums need every row of a run


@pytest.fixture(scope="module")
def wsd_fit():
    runs = simulate_wsd(seed=0)
    model = Model("chinchilla",
                  parts=[Checkpoints(min_fraction=0.0), MultiPowerSchedule(), Noise()], name="wsd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, model, draws=600, tune=600, chains=2, target_accept=0.95,
                            random_seed=3, progressbar=False, retry=False)
    return fit, runs


def test_a_simulated_wsd_ladder_recovers_the_multi_power_parameters(wsd_fit):
    fit, _ = wsd_fit
    require_sampled(fit)
    missed = {}
    for name in ("B_drop", "phi_drop", "C_drop", "beta_drop", "gamma_drop", "E", "A", "B", "alpha",
                 "beta"):
        lo, hi = np.quantile(fit.posterior_draws(name), [0.05, 0.95])
        if not lo <= TRUTH[name] <= hi:
            missed[name] = (TRUTH[name], lo, hi)
    assert not missed, f"90% intervals missing the truth: {missed}"


def test_a_planned_run_is_predicted_from_its_own_schedule(wsd_fit):
    """Targets sharing a run id the fit has not seen are one new run, whose lr column is its
    schedule: a run that decays predicts a lower final loss than one that stays constant."""
    fit, _ = wsd_fit
    N = 1e8
    total = 20 * N
    tokens = np.linspace(0.05, 1.0, 40) * total
    planned = []
    for name, decay in (("plan-constant", None), ("plan-decay0.65", 0.65)):
        planned.append(pd.DataFrame({"params": N, "tokens": tokens, "total_tokens": total,
                                     "family": "sim",
                                     "run": name, "lr": wsd_lr(tokens, total, decay)}))
    targets = pd.concat(planned, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = fit.predict(targets, kind="mean")
    final = pred.groupby("run")["median"].last()
    assert final["plan-decay0.65"] < final["plan-constant"] - 0.05
    truth = true_loss(targets, fit.scale.N0, fit.scale.D0)
    ends = targets.groupby("run").tail(1).index
    np.testing.assert_allclose(pred["median"].to_numpy()[ends], truth[ends], rtol=0.01)


def test_a_planned_run_given_by_its_last_rows_alone_is_refused(wsd_fit):
    """The summed learning rate of a run is read from its rows from the start: a planned run
    given only near its end would be summed as a ramp to its last rate, so it is refused."""
    fit, _ = wsd_fit
    N, total = 1e8, 2e9
    tokens = np.array([0.9, 0.95, 1.0]) * total
    late = pd.DataFrame({"params": N, "tokens": tokens, "total_tokens": total, "family": "sim",
                         "run": "plan-late",
                         "lr": wsd_lr(tokens, total, 0.5)})
    with pytest.raises(ModelError,
                       match="run 'plan-late' of the targets has 90% of its tokens before its "
                             "first row"):
        fit.predict(late)
    runs = simulate_wsd(rows_per_run=3)  # rows at 5%, 52% and 100% of each run
    with pytest.raises(ModelError, match=r"multi_power: run .* of the runs table has 48% of its "
                                         r"tokens between"):
        bayescale.fit(runs,
                      Model("chinchilla",
                            parts=[Checkpoints(min_fraction=0.0), MultiPowerSchedule()]),
                      progressbar=False)


def test_fit_without_a_model_uses_the_multi_power_preset_when_the_table_gives_the_schedule():
    """``model="auto"``: a checkpoint table with an ``lr`` column gets the multi-power law (the
    only preset that reads it), without family pooling for one family; final losses keep
    the Chinchilla preset even with an ``lr`` column."""
    from bayescale.model import auto_model

    runs = bayescale.read_runs(simulate_wsd(seed=0))
    one_family = auto_model(runs)
    assert isinstance(one_family.part("schedule"), MultiPowerSchedule)
    assert (one_family.part("family_pooling") is None
            and one_family.name == "multi_power - family_pooling")
    two = runs.assign(family=np.where(runs["params"] > 5e7, "big", "small"))
    assert auto_model(two) == bayescale.load_model("multi_power")
    finals = runs.sort_values("tokens").groupby("run").tail(1)
    assert auto_model(finals).part("schedule") is None
