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
    """

    chosen: str
    reason: str
    candidates: tuple[str, ...]
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    folds: int = 0

    def message(self) -> str:
        """One line: the model used and why."""
        return f"model {self.chosen!r} chosen automatically: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``fit.info["model_choice"]`` holds)."""
        return {"chosen": self.chosen, "reason": self.reason,
                "candidates": list(self.candidates), "folds": self.folds,
                "scores": self.scores.to_dict("records")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelChoice:
        """Rebuild from :meth:`to_dict`."""
        return cls(chosen=str(data["chosen"]), reason=str(data["reason"]),
                   candidates=tuple(data.get("candidates", ())),
                   scores=pd.DataFrame(data.get("scores", [])), folds=int(data.get("folds", 0)))


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


def with_accuracy(model: Model, table: pd.DataFrame,
                  metric: str = "loss") -> tuple[Model, str | None]:
    """``model`` extended to the ``acc:<task>`` metrics of ``table``, and a note saying how.

    The automatic choice compares loss models on the loss rows; a table that also has
    accuracy rows gets the chosen model plus the downstream part (and sampler settings) of
    the ``downstream`` preset, or of ``checkpoints_downstream`` for a checkpoint model:
    each task linked to the latent loss by a sigmoid, Beta-Binomial noise from its items.
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
    part = cast(Downstream, preset.part("downstream"))  # both presets have one
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
                      f"(sigmoid links from the latent loss){average}; the loss model was "
                      "chosen on the loss rows alone")


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


def choose_model(runs: pd.DataFrame, *, metric: str = "loss", draws: int | None = None,
                 tune: int | None = None, chains: int | None = None, random_seed: int = 0,
                 progressbar: bool = True, **sampler_settings: Any) -> tuple[Model, ModelChoice]:
    """Choose the model of ``runs`` (a validated runs table) by a backtest inside the ladder.

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
    sampler_settings
        The backtest fits' other settings (``sampler``, ``target_accept``, ``mass_matrix``,
        ``precision`` ...; see :func:`bayescale.backtest`): the ones ``fit`` was given.

    Returns
    -------
    (Model, ModelChoice)
        The chosen model and the record of the choice.
    """
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
