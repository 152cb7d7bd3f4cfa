"""fit(runs) with model="auto" (bayescale.model_choice): the ladder chooses its model."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.model import load_model
from bayescale.model_choice import ModelChoice, _ranked, auto_candidates, choose_model
from bayescale.runs import read_runs

SMALL = {"draws": 150, "tune": 150, "chains": 2}


def checkpoint_ladder(sizes=(3e7, 6e7, 1.2e8), families=1, seed=0):
    runs, _ = bayescale.simulate_ladder(seed=seed, sizes=sizes, token_multipliers=(20,),
                                        families=families, checkpoints=6)
    return runs


def names(runs):
    return [m.name for m in auto_candidates(read_runs(runs))]


# ---------------------------------------------------------------------------- candidates
def test_final_losses_have_the_final_loss_laws_as_candidates():
    runs, _ = bayescale.simulate_ladder(seed=0)  # 4 token budgets per size: no compute law
    assert names(runs) == ["chinchilla", "kaplan", "gadre"]
    two, _ = bayescale.simulate_ladder(seed=0, families=2, token_multipliers=(20,))
    assert names(two) == ["chinchilla + family_pooling", "kaplan + family_pooling",
                          "compute + family_pooling", "gadre + family_pooling"]


def test_checkpoint_ladder_candidates_follow_the_number_of_families():
    one = names(checkpoint_ladder())  # one token budget per size: the compute law too
    assert one == ["chinchilla", "kaplan", "compute", "gadre", "checkpoints - family_pooling",
                   "checkpoints_kaplan - family_pooling"]
    two = names(checkpoint_ladder(families=2))
    assert two == ["chinchilla + family_pooling", "kaplan + family_pooling",
                   "compute + family_pooling", "gadre + family_pooling", "checkpoints",
                   "checkpoints_kaplan"]
    for model in auto_candidates(read_runs(checkpoint_ladder())):
        assert model.part("family_pooling") is None


def test_a_learning_rate_column_means_the_multi_power_law_only():
    runs = checkpoint_ladder()
    runs["lr"] = 3e-4
    assert [n.split(" ")[0] for n in names(runs)] == ["multi_power"]
    model, choice = choose_model(read_runs(runs), progressbar=False)
    assert model.name.startswith("multi_power") and choice.folds == 0
    assert "only preset" in choice.reason and "learning rate" in choice.reason


def test_two_sizes_are_too_few_to_compare_and_the_fit_says_so():
    runs = read_runs(checkpoint_ladder(sizes=(3e7, 6e7)))
    model, choice = choose_model(runs, progressbar=False)
    assert model.name == "chinchilla"
    assert choice.folds == 0 and "2 model size(s)" in choice.reason
    assert len(choice.candidates) == 6


def test_ranking_puts_converged_candidates_first_then_log_score():
    scores = pd.DataFrame({"model": ["a", "b", "c"], "mean_log_score": [3.0, 1.0, 2.0],
                           "all_converged": [False, True, True]})
    assert list(_ranked(scores)["model"]) == ["c", "b", "a"]
    scores["all_converged"] = False
    assert list(_ranked(scores)["model"]) == ["a", "c", "b"]
    # the score with each candidate's discrepancy term decides when there is one
    scores["calibrated_log_score"] = [1.0, 2.0, 3.0]
    assert list(_ranked(scores)["model"]) == ["c", "b", "a"]


def test_model_choice_round_trips_through_a_dict():
    scores = pd.DataFrame({"model": ["x", "y"], "mean_log_score": [1.5, 0.5],
                           "all_converged": [True, True]})
    choice = ModelChoice("x", "because", ("x", "y"), scores, 2)
    back = ModelChoice.from_dict(choice.to_dict())
    assert back.chosen == "x" and back.candidates == ("x", "y") and back.folds == 2
    pd.testing.assert_frame_equal(back.scores, scores)
    assert "'x' chosen automatically: because" in back.message()


# ---------------------------------------------------------------------------- end to end
#: The end-to-end ladder: 4 sizes x 3 token multipliers of final losses (2 folds).
E2E_SIZES = (3e7, 6e7, 1.2e8, 2.4e8)


@pytest.fixture(scope="module")
def auto_fit():
    runs, _ = bayescale.simulate_ladder(seed=0, sizes=E2E_SIZES, token_multipliers=(10, 20, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(runs, random_seed=3, progressbar=False, **SMALL)


def test_auto_fit_backtests_the_candidates_and_fits_the_best(auto_fit):
    choice = auto_fit.model_choice
    assert choice is not None and choice.folds == 2
    scores = choice.scores
    assert list(scores["model"]) == list(_ranked(scores)["model"])
    assert list(choice.candidates) == ["chinchilla", "kaplan", "gadre"]
    assert set(scores["model"]) == set(choice.candidates) and len(scores) == 3
    assert choice.chosen == auto_fit.model.name
    assert auto_fit.model.name.startswith(scores["model"].iloc[0])
    assert np.isfinite(scores["mean_log_score"]).all()
    assert np.isfinite(scores["calibrated_log_score"]).all()
    # the winner carries the discrepancy term its backtest estimated (none when it is 0)
    scale = float(scores["discrepancy_scale"].iloc[0])
    part = auto_fit.model.part("discrepancy")
    assert (part is None) if scale == 0 else part.scale == pytest.approx(scale, abs=1e-6)
    # 2 folds x 3 runs (one per token multiplier) of the held-out size
    assert (scores["n"] == 6).all() and (scores["folds"] == 2).all()
    # the winner was refitted on the whole ladder, every size included
    assert auto_fit.runs["params"].max() == 2.4e8 and len(auto_fit.runs) == 12
    summary = auto_fit.summary()
    assert "chosen automatically" in summary.attrs["model_choice"]


def test_auto_fit_records_survive_save_and_show_in_the_report(auto_fit, tmp_path):
    path = tmp_path / "fit.nc"
    auto_fit.save(path)
    loaded = bayescale.load_fit(path)
    assert loaded.model_choice is not None
    assert loaded.model_choice.chosen == auto_fit.model_choice.chosen
    html = bayescale.report(loaded, tmp_path / "report.html").read_text()
    assert 'id="model_choice"' in html and "chosen automatically" in html
    assert html.count("<img") >= 1
    assert "Downstream links" not in html  # a loss-only table compares no links
    # a choice that compared links lists them, best first
    links = pd.DataFrame({"model": ["exp link, loss scale", "sigmoid link, loss scale"],
                          "mean_log_score": [1.5, 0.25], "n": [4, 4],
                          "all_converged": [True, True]})
    choice = dataclasses.replace(loaded.model_choice, link={"link": "exp", "scale": "loss"},
                                 link_scores=links)
    linked = dataclasses.replace(loaded, info={**loaded.info, "model_choice": choice.to_dict()})
    html = bayescale.report(linked, tmp_path / "links.html", figures=False).read_text()
    section = html[html.index('id="model_choice"'):]
    assert "Downstream links" in section
    assert section.index("exp link, loss scale") < section.index("sigmoid link, loss scale")


def test_a_named_model_records_no_choice():
    runs, _ = bayescale.simulate_ladder(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, "chinchilla", method="map", progressbar=False)
    assert fit.model_choice is None
    assert "named by the user" in fit.summary().attrs["model_choice"]


def test_unfinished_runs_drop_the_final_loss_candidate():
    runs = checkpoint_ladder()
    cut = runs[runs["tokens"] <= 0.5 * runs["total_tokens"]]
    assert names(cut) == ["checkpoints - family_pooling", "checkpoints_kaplan - family_pooling"]
    model, choice = choose_model(read_runs(cut[cut["params"] < 1e8]), progressbar=False)
    assert model.name == "checkpoints - family_pooling" and choice.folds == 0


def test_a_preview_skips_the_backtest():
    runs, _ = bayescale.simulate_ladder(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, method="map", progressbar=False)
    assert fit.model.name == "chinchilla" and fit.model_choice.folds == 0
    assert "map preview" in fit.model_choice.reason


def test_auto_fits_the_tables_accuracy_rows_with_a_downstream_part():
    from bayescale.model_choice import with_accuracy
    from bayescale.simulate import Task

    tasks = [Task(f"t{i}", chance=0.25, slope=3.0, midpoint=3.0) for i in range(4)]
    runs, _ = bayescale.simulate_ladder(seed=2, tasks=tasks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayescale.fit(runs, method="map", progressbar=False)
    assert not [w for w in caught if "accuracy metric" in str(w.message)]
    assert fit.model.name == "chinchilla + downstream" == fit.model_choice.chosen
    assert fit.model.part("downstream").link == "sigmoid"
    assert fit.model.sampler == {**load_model("chinchilla").sampler,
                                 **load_model("downstream").sampler}
    assert ("4 accuracy metric(s) (acc:t0, acc:t1, acc:t2 and 1 more) are fitted jointly"
            in fit.summary().attrs["model_choice"])
    band = fit.predict({"params": 1e9, "tokens": 2e10, "metric": "acc:t0"})
    assert 0.25 < band["median"].iloc[0] < 1.0
    table = read_runs(runs)
    assert with_accuracy(load_model("chinchilla"), table[table["metric"] == "loss"]) == (
        load_model("chinchilla"), None)
    # a model that integrates the run effects out is fitted in its latent form
    model, _ = with_accuracy(load_model("checkpoints_kaplan"), table)
    assert model.name == "checkpoints_kaplan + downstream - marginal_runs"
    assert model.part("marginal_runs") is None and model.part("downstream") is not None
    # the average and the tasks: the tasks are fitted, their mean predicted as the average
    loss = runs[runs["metric"] == "loss"]
    both = pd.concat([runs, loss.assign(metric="acc:avg", value=0.5, n_items=np.nan)])
    model, note = with_accuracy(load_model("chinchilla"), read_runs(both))
    assert model.part("downstream").tasks == ("acc:t0", "acc:t1", "acc:t2", "acc:t3")
    assert "acc:avg rows left out" in note
    # accuracy rows the part refuses (a run without a loss row): the loss alone, said loudly
    orphan = runs[runs["metric"] == "acc:t0"].iloc[[0]].assign(run="orphan")
    with pytest.warns(UserWarning, match="accuracy rows are not fitted: downstream: accuracy "
                                         "rows of runs without fitted loss rows"):
        fit = bayescale.fit(pd.concat([runs, orphan]), method="map", progressbar=False)
    assert fit.model.name == "chinchilla" and "not fitted" in fit.model_choice.reason


def test_the_fits_sampler_settings_reach_the_backtest(monkeypatch):
    """``fit(runs, sampler=..., target_accept=..., mass_matrix=...)`` with ``model="auto"``:
    the backtest's fits get the same settings (recorded by a stand-in backtest; nothing is
    sampled), and ``backtest`` refuses a setting ``fit`` does not know."""
    import bayescale.backtesting

    seen = {}

    class Stop(Exception):
        pass

    def record(runs, models, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(bayescale.backtesting, "backtest", record)
    runs, _ = bayescale.simulate_ladder(seed=0)
    with pytest.raises(Stop):
        bayescale.fit(runs, sampler="pymc", target_accept=0.97, mass_matrix="diag", cores=1,
                      draws=50, progressbar=False)
    assert {k: seen[k] for k in ("sampler", "target_accept", "mass_matrix", "cores", "draws")} == {
        "sampler": "pymc", "target_accept": 0.97, "mass_matrix": "diag", "cores": 1, "draws": 50}
    monkeypatch.undo()
    with pytest.raises(TypeError, match="tree_depth"):
        bayescale.backtest(runs, ["chinchilla", "kaplan"], tree_depth=10)


@pytest.mark.slow
def test_choose_link_prefers_the_scale_the_task_was_simulated_on(monkeypatch):
    """Slow tier (80-115 s in the CI tier: two downstream models compiled): the link backtest
    (two of the candidates, two folds, small draws) prefers a sigmoid in ln(L - E), the
    simulated task's scale, to the default sigmoid in the loss, and says why.  The default
    tier checks the decision rule on a faked backtest (below)."""
    from bayescale import model_choice
    from bayescale.simulate import Task

    monkeypatch.setattr(model_choice, "LINK_CANDIDATES",
                        (("sigmoid", "loss"), ("sigmoid", "log_reducible")))
    task = Task("arc", slope=2.0, midpoint=0.0, scale="log_reducible")
    runs, _ = bayescale.simulate_ladder(seed=2, tasks=[task])
    link, scores, reason = model_choice.choose_link(
        read_runs(runs), load_model("chinchilla"), draws=200, tune=200, chains=2,
        progressbar=False)
    assert link == {"link": "sigmoid", "scale": "log_reducible"}
    assert list(scores["model"]) == ["sigmoid link, log-reducible scale",
                                     "sigmoid link, loss scale"]
    assert scores["mean_log_score"].iloc[0] > scores["mean_log_score"].iloc[1] + 0.5, scores
    assert "higher than the default link's" in reason and "on acc:arc" in reason
    assert (scores["n"] == 8).all()  # 2 folds x the 4 accuracy rows of the held-out size
    # nothing to compare without accuracy rows
    loss = read_runs(runs[runs["metric"] == "loss"])
    assert model_choice.choose_link(loss, load_model("chinchilla"), progressbar=False) is None


def test_the_chosen_link_is_fitted_and_kept_in_the_record():
    """A choice's link reaches the fitted downstream part and survives the fit's record."""
    import json

    from bayescale.fitting import _prepare_with_accuracy
    from bayescale.model_choice import ModelChoice
    from bayescale.simulate import Task

    runs, _ = bayescale.simulate_ladder(seed=2, tasks=[Task("arc")])
    choice = ModelChoice("chinchilla", "test", ("chinchilla",),
                         link={"link": "gompertz", "scale": "log_reducible"},
                         link_scores=pd.DataFrame({"model": ["gompertz"], "n": [4]}))
    back = ModelChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert back.link == choice.link and back.link_scores.equals(choice.link_scores)
    prepared, record = _prepare_with_accuracy(read_runs(runs), load_model("chinchilla"), back,
                                              "loss", None)
    part = prepared.model.part("downstream")
    assert (part.link, part.scale) == ("gompertz", "log_reducible")
    assert "gompertz links from the latent loss, log-reducible scale" in record.reason


@pytest.mark.parametrize("gains, chosen", [([0.3, -0.2, 0.25, -0.1], "sigmoid"),
                                           ([0.5, 0.6, 0.55, 0.45], "exp")])
def test_a_link_replaces_the_default_only_by_a_clear_margin(monkeypatch, gains, chosen):
    """Paired over the held-out rows, a link must beat the default by LINK_MARGIN_SE standard
    errors: a higher mean score within the noise keeps the default."""
    from bayescale import backtesting, model_choice
    from bayescale.simulate import Task

    def fake_backtest(runs, models, **settings):
        rows = pd.DataFrame([{"model": m.name, "fold": 0, "run": f"r{i}", "rel_error": 0.01,
                              "log_score": 1.0 + (g if m.name.startswith("exp") else 0.0),
                              "covered_50": True, "covered_90": True, "width_50": 0.1,
                              "width_90": 0.3, "converged": True}
                             for m in models for i, g in enumerate(gains)])
        return backtesting.Backtest(rows=rows, scores=backtesting.summarise(rows, (0.5, 0.9)),
                                    holdout="largest", hdi_probs=(0.5, 0.9), folds=[])

    monkeypatch.setattr(backtesting, "backtest", fake_backtest)
    monkeypatch.setattr(model_choice, "LINK_CANDIDATES", (("sigmoid", "loss"), ("exp", "loss")))
    runs, _ = bayescale.simulate_ladder(seed=2, tasks=[Task("arc")])
    link, scores, reason = model_choice.choose_link(read_runs(runs), load_model("chinchilla"),
                                                    progressbar=False)
    assert link == {"link": chosen, "scale": "loss"}
    assert scores["model"].iloc[0] == "exp link, loss scale"  # the higher mean either way
    assert scores["advantage"].iloc[0] == pytest.approx(np.mean(gains))
    assert ("the default: the best link" in reason) == (chosen == "sigmoid"), reason
