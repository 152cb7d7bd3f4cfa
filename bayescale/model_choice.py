"""``fit(runs)`` with ``model="auto"``: the ladder chooses its model by a backtest inside it.

The candidates are the presets that fit the table's shape (:func:`auto_candidates`):

* final losses (each run one row): the final-loss laws :data:`FINAL_LOSS_LAWS`
  (``chinchilla``, ``kaplan``, ``compute``, ``gadre``), each as
  :func:`bayescale.model.auto_model` builds it for the table (with family pooling and run
  effects as the table needs them).
  ``compute`` (a law in ``6 N D`` alone) only when no model size was trained for two
  token budgets: a ladder that varies the data at a fixed size shows the split of
  compute between N and D, which that law cannot express;
* a table with an ``lr`` column at every checkpoint: one candidate, ``multi_power``;
* a checkpoint ladder without learning rates: the final-loss models above (only when every
  run is finished, i.e. has a row at its ``total_tokens``: an unfinished run's last row is
  not a final loss), the ``checkpoints`` preset and the ``checkpoints_kaplan`` preset
  (family pooling dropped when the table has one family).

With one candidate there is nothing to choose.  With several, :func:`choose_model` runs a
rolling-origin backtest (:func:`bayescale.backtest`, ``holdout="largest"``): fold k holds
out the (k+1)-th largest model size (or the next few sizes, when one size has fewer than
a tenth of the ladder's runs) and fits the smaller ones, with up to :data:`CHOICE_FOLDS`
folds while at least two sizes remain to fit.

The held-out runs lie beyond each fold's ladder, so they also show how wrong a law gets
when carried beyond it.  For each candidate the scale of a model-discrepancy term
(:class:`~bayescale.parts.Discrepancy`: an ln-loss error whose sd grows linearly with the
e-folds of compute beyond the ladder) is estimated from its held-out errors
(:func:`bayescale.parts.discrepancy.estimate_scale`), and the candidate is scored by the
mean log predictive density of the held-out final losses under its bands widened by that
term (``calibrated_log_score``; each band read as a normal in ln loss).  The candidate whose
backtest fits all converged and whose calibrated score is highest wins (when none
converged, the highest score); it is refitted on the whole ladder with its discrepancy
term, so that a target 100x beyond the ladder gets a wider band than one 2x beyond in the
proportion the backtest showed.  A ladder of fewer than three sizes cannot hold one out:
the first candidate (the ``chinchilla`` final-loss model, or ``checkpoints`` when the runs
are unfinished) is used without a discrepancy term, and the fit says so.  Name a model
(``fit(runs, "chinchilla")``) to skip the choice.

A table with accuracy rows (``acc:<task>``, ``acc:avg``) then gets the chosen model plus a
downstream part (:func:`with_accuracy`), and its link is chosen the same way
(:func:`choose_link`): each of :data:`LINK_CANDIDATES` (sigmoid, exponential and Gompertz
links, linear in the loss or in ``ln(L - E)``) is fitted with the chosen loss model and
scored on the held-out largest sizes' accuracies (``acc:avg`` when the table has it).

What was chosen and why is recorded as a :class:`ModelChoice` in ``fit.info["model_choice"]``
(a dict, so it survives :meth:`~bayescale.ScalingFit.save`), shown by
:meth:`~bayescale.ScalingFit.summary` (``attrs["model_choice"]``), the CLI and the HTML
report's Model choice section.

Example
-------
>>> import bayescale
>>> runs, _ = bayescale.simulate_ladder(seed=0)
>>> [m.name for m in auto_candidates(bayescale.read_runs(runs))]
['chinchilla', 'kaplan', 'gadre']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd
from scipy.stats import norm

from .model import Model, ModelError, auto_model, load_model
from .parts import Discrepancy, Downstream
from .parts.discrepancy import distance_beyond, estimate_scale
from .parts.downstream import AVERAGE

#: Laws of the final-loss candidates, shape default first.
FINAL_LOSS_LAWS = ("chinchilla", "kaplan", "compute", "gadre")
#: Largest number of rolling-origin folds of the choice (fewer when the ladder is short).
CHOICE_FOLDS = 2
#: Presets tried on a checkpoint ladder without learning rates, after the final-loss model.
CHECKPOINT_PRESETS = ("checkpoints", "checkpoints_kaplan")


@dataclass(frozen=True)
class ModelChoice:
    """How ``model="auto"`` chose: the candidates, the backtest scores and the verdict.

    Attributes
    ----------
    chosen
        Name of the model fitted.
    reason
        One sentence: why it was chosen.
    candidates
        Names of the candidates, in the order tried.
    scores
        The backtest's per-candidate summary (:attr:`bayescale.Backtest.scores`: mean log
        score, median absolute relative error, coverage, widths, convergence), best first;
        empty when nothing was backtested.
    folds
        Rolling-origin folds scored (0 when nothing was backtested).
    link
        The downstream link chosen for the table's accuracy rows (``{"link": ..., "scale":
        ...}``, see :func:`choose_link`); empty when the table has none or the links were not
        compared.
    link_scores
        The links' backtest summary, best first (empty when they were not compared).
    """

    chosen: str
    reason: str
    candidates: tuple[str, ...]
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    folds: int = 0
    link: dict[str, str] = field(default_factory=dict)
    link_scores: pd.DataFrame = field(default_factory=pd.DataFrame)

    def message(self) -> str:
        """One line: the model used and why."""
        return f"model {self.chosen!r} chosen automatically: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``fit.info["model_choice"]`` holds)."""
        return {"chosen": self.chosen, "reason": self.reason,
                "candidates": list(self.candidates), "folds": self.folds,
                "scores": self.scores.to_dict("records"), "link": dict(self.link),
                "link_scores": self.link_scores.to_dict("records")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelChoice:
        """Rebuild from :meth:`to_dict`."""
        return cls(chosen=str(data["chosen"]), reason=str(data["reason"]),
                   candidates=tuple(data.get("candidates", ())),
                   scores=pd.DataFrame(data.get("scores", [])), folds=int(data.get("folds", 0)),
                   link={str(k): str(v) for k, v in data.get("link", {}).items()},
                   link_scores=pd.DataFrame(data.get("link_scores", [])))


def has_checkpoints(table: pd.DataFrame) -> bool:
    """Whether some run of ``table`` (one metric's rows) has rows at several token counts."""
    return bool(len(table)) and int(table.groupby("run")["tokens"].nunique().max()) > 1


def runs_finished(table: pd.DataFrame) -> bool:
    """Whether every run of ``table`` has a row at its ``total_tokens`` (its final loss)."""
    last = table.groupby("run").agg(tokens=("tokens", "max"), total=("total_tokens", "max"))
    return bool((last["tokens"] >= last["total"] * (1 - 1e-9)).all())


def one_budget_per_size(table: pd.DataFrame) -> bool:
    """Whether every model size of ``table`` was trained for a single ``total_tokens``."""
    return bool((table.groupby("params")["total_tokens"].nunique() <= 1).all())


def auto_candidates(table: pd.DataFrame) -> list[Model]:
    """The presets that fit the shape of ``table`` (one metric's rows), shape default first.

    See the module docstring.  Each candidate has a distinct ``name``.
    """
    if "lr" in table and has_checkpoints(table):
        return [auto_model(table)]
    finals = [auto_model(table, law) for law in FINAL_LOSS_LAWS
              if law != "compute" or one_budget_per_size(table)]
    if not has_checkpoints(table):
        return finals
    several_families = table["family"].nunique() > 1
    out = finals if runs_finished(table) else []
    for name in CHECKPOINT_PRESETS:
        model = load_model(name)
        if not several_families and model.part("family_pooling") is not None:
            model = replace(model.with_parts(drop=("family_pooling",)),
                            name=f"{name} - family_pooling")
        out.append(model)
    return out


#: Presets whose downstream part ``model="auto"`` adds for a table's accuracy rows.
DOWNSTREAM_PRESETS = {"final": "downstream", "checkpoints": "checkpoints_downstream"}


def with_accuracy(model: Model, table: pd.DataFrame, metric: str = "loss", *,
                  link: str = "sigmoid", scale: str = "loss") -> tuple[Model, str | None]:
    """``model`` extended to the ``acc:<task>`` metrics of ``table``, and a note saying how.

    The automatic choice compares loss models on the loss rows; a table that also has
    accuracy rows gets the chosen model plus the downstream part (and sampler settings) of
    the ``downstream`` preset, or of ``checkpoints_downstream`` for a checkpoint model:
    each task linked to the latent loss by ``link`` on ``scale`` (default: a sigmoid in the
    loss; :func:`choose_link` picks them by a backtest), Beta-Binomial noise from its items.
    A model with :class:`~bayescale.parts.MarginalRuns` is fitted in its latent form (the
    link needs each checkpoint's latent loss).  A table with both ``acc:avg`` and per-task
    rows fits the tasks (their mean is predicted as ``acc:avg``).  The note is None when
    there are no accuracy rows (or ``model`` already fits them); when the chosen model
    cannot take the part, ``model`` comes back unchanged and the note says so.

    >>> import bayescale
    >>> from bayescale.simulate import Task
    >>> runs, _ = bayescale.simulate_ladder(seed=2, tasks=[Task("arc")])
    >>> model, note = with_accuracy(load_model("kaplan"), bayescale.read_runs(runs))
    >>> model.name, model.part("downstream").link
    ('kaplan + downstream', 'sigmoid')
    """
    accuracy = sorted(m for m in table["metric"].unique() if m != metric and m.startswith("acc:"))
    if not accuracy or model.part("downstream") is not None:
        return model, None
    shown = ", ".join(accuracy[:3]) + (f" and {len(accuracy) - 3} more" if len(accuracy) > 3
                                       else "")
    preset = load_model(DOWNSTREAM_PRESETS["checkpoints" if model.part("checkpoints") is not None
                                           else "final"])
    part = replace(cast(Downstream, preset.part("downstream")),  # both presets have one
                   link=link, scale=scale)
    tasks = [m for m in accuracy if m != AVERAGE]
    if AVERAGE in accuracy and tasks:  # the tasks are fitted, their mean predicted as the average
        part = replace(part, tasks=tuple(tasks))
    # the link reads each checkpoint's latent loss: a model that integrates the run effects
    # out (marginal_runs) is fitted in its latent form, the same model sampled directly
    drop = ("marginal_runs",) if model.part("marginal_runs") is not None else ()
    try:
        extended = replace(model.with_parts(part, drop=drop),
                           name=" - ".join([f"{model.name} + downstream", *drop]),
                           sampler={**model.sampler, **preset.sampler})
    except ModelError as err:
        return model, (f"the table's {len(accuracy)} accuracy metric(s) ({shown}) are not "
                       f"fitted: the chosen model cannot take a downstream part ({err}); name "
                       "a downstream preset (bayescale.available_models()) to fit them")
    average = (f" ({AVERAGE} rows left out: the tasks' mean is predicted as {AVERAGE})"
               if AVERAGE in accuracy and tasks else "")
    return extended, (f"the table's {len(accuracy)} accuracy metric(s) ({shown}) are fitted "
                      f"jointly with the loss by the {preset.name!r} preset's downstream part "
                      f"({link} links from the latent loss, {scale.replace('_', '-')} scale)"
                      f"{average}; the loss model was chosen on the loss rows alone")


def _ranked(scores: pd.DataFrame) -> pd.DataFrame:
    """Candidates whose backtest fits all converged first, then by calibrated log score."""
    key = "calibrated_log_score" if "calibrated_log_score" in scores else "mean_log_score"
    return (scores.assign(_conv=~scores["all_converged"].astype(bool))
            .sort_values(["_conv", key], ascending=[True, False], kind="stable")
            .drop(columns="_conv").reset_index(drop=True))


def calibrate(rows: pd.DataFrame, hdi_prob: float = 0.9) -> pd.DataFrame:
    """Each candidate's discrepancy scale and calibrated log score, from backtest rows.

    ``rows`` is :attr:`bayescale.Backtest.rows` (with ``lower_<p>``/``upper_<p>`` of
    ``hdi_prob``).  Returns one row per model: ``discrepancy_scale`` (ln loss per e-fold
    of compute beyond the ladder) and ``calibrated_log_score``: the mean over held-out rows
    of ``log Normal(ln y; ln median, s^2 + (scale d)^2) - ln y`` (``s`` from the band,
    ``d`` the e-folds of compute beyond the fold's ladder), in ln(nats^-1).
    """
    pct = f"{100 * hdi_prob:g}".replace(".", "_")
    quantile = float(norm.ppf(0.5 + hdi_prob / 2))
    out = []
    for model, sub in rows.groupby("model", sort=False):
        y, med = sub["value"].to_numpy(float), sub["median"].to_numpy(float)
        lo, hi = sub[f"lower_{pct}"].to_numpy(float), sub[f"upper_{pct}"].to_numpy(float)
        dist = distance_beyond(sub["extrapolation"].to_numpy(float), 1.0)
        scale = estimate_scale(y, med, lo, hi, dist, hdi_prob)
        s = (np.log(hi) - np.log(lo)) / (2 * quantile)
        sd = np.sqrt(s**2 + (scale * dist) ** 2)
        score = norm.logpdf(np.log(y), np.log(med), sd) - np.log(y)
        out.append({"model": model, "discrepancy_scale": scale,
                    "calibrated_log_score": float(np.mean(score))})
    return pd.DataFrame(out)


#: Downstream links (link, scale) compared on a table's held-out accuracy rows, default first.
LINK_CANDIDATES = (("sigmoid", "loss"), ("exp", "loss"), ("gompertz", "loss"),
                   ("sigmoid", "log_reducible"), ("exp", "log_reducible"),
                   ("gompertz", "log_reducible"))
#: Standard errors by which a link's held-out log score must beat the default link's (paired
#: over the held-out rows) to replace it: links are hard to tell apart on a ladder's narrow
#: range of losses, and a choice made on noise would move the forecast for nothing.
LINK_MARGIN_SE = 2.0


def paired_advantage(rows: pd.DataFrame, model: str, baseline: str) -> tuple[float, float]:
    """Mean and standard error of ``model``'s log score minus ``baseline``'s, row by row.

    ``rows`` is :attr:`bayescale.Backtest.rows`; the rows are paired by fold and run.

    >>> rows = pd.DataFrame({"model": ["a", "a", "b", "b"], "fold": 0, "run": ["r", "s"] * 2,
    ...                      "log_score": [2.0, 3.0, 1.0, 1.0]})
    >>> paired_advantage(rows, "a", "b")
    (1.5, 0.5)
    """
    key = ["fold", "run"]
    a = rows[rows["model"] == model].set_index(key)["log_score"]
    b = rows[rows["model"] == baseline].set_index(key)["log_score"]
    diff = (a - b).dropna().to_numpy(dtype=float)
    if len(diff) < 2:
        return float(diff.mean()) if len(diff) else 0.0, float("inf")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def scored_accuracy(table: pd.DataFrame, metric: str = "loss") -> str | None:
    """The accuracy metric the downstream links are compared on, or None.

    ``acc:avg`` when ``table`` has it, else its one ``acc:<task>`` metric, else None (no
    accuracy rows, or several tasks and no average).

    >>> scored_accuracy(pd.DataFrame({"metric": ["loss", "acc:arc", "acc:avg"]}))
    'acc:avg'
    """
    accuracy = sorted(m for m in table["metric"].unique() if m != metric and m.startswith("acc:"))
    if AVERAGE in accuracy:
        return AVERAGE
    return accuracy[0] if len(accuracy) == 1 else None


def choose_link(runs: pd.DataFrame, model: Model, *, metric: str = "loss",
                scored: str | None = None, draws: int | None = None, tune: int | None = None,
                chains: int | None = None, random_seed: int = 0, progressbar: bool = True,
                **sampler_settings: Any) -> tuple[dict[str, str], pd.DataFrame, str] | None:
    """Choose the downstream link of ``model`` for a table's accuracy rows by a backtest.

    Each (link, scale) of :data:`LINK_CANDIDATES` extends ``model`` (the chosen loss model)
    as :func:`with_accuracy` does, fitted to the loss and the one accuracy metric
    :func:`scored_accuracy` names (``acc:avg`` when the table has it: a table of many tasks
    is compared on their average, since a fit of every task per candidate and fold would
    cost as many times more).  The folds hold out that metric's largest sizes
    (:func:`bayescale.backtest` with ``scored``), up to :data:`CHOICE_FOLDS`; candidates
    whose fits all converged rank first, then by mean held-out log score.  The best replaces
    the default link (the first candidate) only when the default's fits did not all converge,
    or when its log score is higher by at least :data:`LINK_MARGIN_SE` standard errors of the
    paired difference (:func:`paired_advantage`).

    Returns
    -------
    (link, scores, reason) or None
        ``{"link": ..., "scale": ...}``, the backtest summary (best first) and one sentence;
        None when there is nothing to compare (no scorable accuracy metric, too few sizes,
        or a model that cannot take a downstream part).
    """
    from .backtesting import backtest, largest_fold_count

    scored = scored or scored_accuracy(runs, metric)
    if scored is None:
        return None
    folds = min(CHOICE_FOLDS, largest_fold_count(runs, scored))
    if folds < 1:
        return None
    subset = runs[runs["metric"].isin([metric, scored])].reset_index(drop=True)
    candidates, labels = [], {}
    for link, scale in LINK_CANDIDATES:
        extended, _ = with_accuracy(model, subset, metric, link=link, scale=scale)
        if extended.part("downstream") is None:
            return None
        label = f"{link} link, {scale.replace('_', '-')} scale"
        labels[label] = {"link": link, "scale": scale}
        candidates.append(replace(extended, name=label))
    if progressbar:
        print(f"bayescale: choosing the downstream link: backtest of {len(candidates)} links on "
              f"{scored} ({folds} fold(s), the largest size(s) held out)", flush=True)
    result = backtest(subset, candidates, holdout="largest", folds=folds, metric=metric,
                      scored=scored, draws=draws, tune=tune, chains=chains,
                      random_seed=random_seed, progressbar=progressbar, **sampler_settings)
    advantage = {m: paired_advantage(result.rows, m, candidates[0].name)
                 for m in result.scores["model"]}
    scores = _ranked(result.scores.assign(advantage=[advantage[m][0]
                                                     for m in result.scores["model"]]))
    best = scores.iloc[0]
    default = scores[scores["model"] == candidates[0].name].iloc[0]
    gain, se = advantage[best["model"]]
    if best["model"] == default["model"]:
        why = "highest held-out log score"
    elif bool(best["all_converged"]) and not bool(default["all_converged"]):
        why = "the default link's backtest fits did not all converge; highest held-out log score"
    elif gain >= LINK_MARGIN_SE * se:
        why = (f"held-out log score higher than the default link's by {gain:.3f} "
               f"({gain / se:.1f} standard errors)")
    else:
        why = (f"the default: the best link ({best['model']}) scored only {gain:.3f} higher "
               f"({gain / se if se > 0 else 0:.1f} standard errors, fewer than "
               f"{LINK_MARGIN_SE:g})")
        best = default
    reason = (f"downstream link {best['model']!r}: {why} on {scored} of {len(candidates)} links"
              + (" (its backtest fits converged" if bool(best["all_converged"]) else
                 " (its backtest fits did not all converge")
              + f"; {int(best['n'])} held-out rows, median error "
              f"{100 * best['median_abs_rel_error']:.2g}%)")
    return labels[str(best["model"])], scores, reason


def choose_model(runs: pd.DataFrame, *, metric: str = "loss", draws: int | None = None,
                 tune: int | None = None, chains: int | None = None, random_seed: int = 0,
                 progressbar: bool = True, links: bool = True,
                 **sampler_settings: Any) -> tuple[Model, ModelChoice]:
    """Choose the model of ``runs`` (a validated runs table) by a backtest inside the ladder.

    The loss model is chosen on the loss rows; a table with accuracy rows then has its
    downstream link chosen for that model (:func:`choose_link`, unless ``links=False``),
    recorded in the choice's ``link`` for :func:`with_accuracy`.

    Parameters
    ----------
    runs
        Runs table, as :func:`bayescale.read_runs` returns it.
    metric
        The metric fitted and scored.
    draws, tune, chains, random_seed
        Sampler settings of the backtest fits (default: each candidate's own).
    progressbar
        Print one line per backtest fit and the verdict.
    links
        Also choose the downstream link when ``runs`` has accuracy rows.
    sampler_settings
        The backtest fits' other settings (``sampler``, ``target_accept``, ``mass_matrix``,
        ``precision`` ...; see :func:`bayescale.backtest`): the ones ``fit`` was given.

    Returns
    -------
    (Model, ModelChoice)
        The chosen model and the record of the choice.
    """
    settings: dict[str, Any] = dict(draws=draws, tune=tune, chains=chains,
                                    random_seed=random_seed, progressbar=progressbar,
                                    **sampler_settings)
    chosen, choice = _choose_loss_model(runs, metric=metric, **settings)
    link = choose_link(runs, chosen, metric=metric, **settings) if links else None
    if link is None:
        return chosen, choice
    chosen_link, link_scores, reason = link
    return chosen, replace(choice, reason=f"{choice.reason}; {reason}", link=chosen_link,
                           link_scores=link_scores)


def _choose_loss_model(runs: pd.DataFrame, *, metric: str, draws: int | None, tune: int | None,
                       chains: int | None, random_seed: int, progressbar: bool,
                       **sampler_settings: Any) -> tuple[Model, ModelChoice]:
    """The loss model :func:`choose_model` chooses (see the module docstring)."""
    from .backtesting import backtest, largest_fold_count

    rows = runs[runs["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics present: "
                         f"{sorted(runs['metric'].unique())}")
    candidates = auto_candidates(rows)
    names = tuple(m.name for m in candidates)
    if len(candidates) == 1:
        return candidates[0], ModelChoice(
            candidates[0].name, "the only preset for this shape of ladder (the runs table gives "
            "each checkpoint's learning rate)", names)
    folds = min(CHOICE_FOLDS, largest_fold_count(runs, metric))
    if folds < 1:
        sizes = rows["params"].nunique()
        return candidates[0], ModelChoice(
            candidates[0].name,
            f"the ladder has {sizes} model size(s), too few to hold the largest out and fit the "
            "rest (needs 3), so the candidates were not compared; this is the first of them",
            names)
    if progressbar:
        print(f"bayescale: choosing the model: backtest of {len(candidates)} candidates "
              f"({', '.join(names)}) on {folds} fold(s), the largest size(s) held out",
              flush=True)
    result = backtest(runs, candidates, holdout="largest", folds=folds, metric=metric,
                      draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                      progressbar=progressbar, **sampler_settings)
    scores = _ranked(result.scores.merge(calibrate(result.rows), on="model"))
    best = scores.iloc[0]
    converged = bool(best["all_converged"])
    scale = float(best["discrepancy_scale"])
    chosen = next(m for m in candidates if m.name == best["model"])
    if scale > 0:
        chosen = replace(chosen.with_parts(Discrepancy(scale=round(scale, 6))),
                         name=f"{chosen.name} + discrepancy")
    reason = (f"highest held-out log score ({best['calibrated_log_score']:.3f}, with its "
              f"discrepancy term) of {len(candidates)} candidates"
              + (" whose backtest fits converged" if converged else
                 " (none of whose backtest fits all converged)")
              + f", holding out the largest sizes in {folds} rolling-origin fold(s) "
              f"({int(best['n'])} held-out rows; median error "
              f"{100 * best['median_abs_rel_error']:.2g}%); discrepancy scale {scale:.3g} "
              "ln loss per e-fold of compute beyond the ladder")
    choice = ModelChoice(chosen.name, reason, names, scores, folds)
    if progressbar:
        print(f"bayescale: {choice.message()}", flush=True)
    return chosen, choice
