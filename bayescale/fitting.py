"""``bayescale.fit``: from a runs table and a model to a posterior."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from .build import build_model, structure_key
from .diagnostics import ConvergenceError, Diagnostics
from .model import Model, auto_model, load_model
from .parts import ModelError, Remedy
from .parts.checkpoints import select_rows
from .parts.marginal import draw_run_latents
from .parts.schedule import default_schedule
from .result import ScalingFit, retry_note
from .runs import Scale, read_runs, runs_hash
from .sampling import (
    SamplerConfig,
    check_sampler,
    check_settings_used,
    model_precision,
    retry_config,
    run_inference,
)
from .versions import versions

if TYPE_CHECKING:
    from .model_choice import ModelChoice
    from .parts import Checkpoints, Downstream


@dataclass(frozen=True)
class Prepared:
    """A runs table made ready for one model: what :func:`fit` builds and samples.

    ``rows`` are the selected rows of the fitted metric (sorted by family, run and tokens),
    ``acc_rows`` the accuracy rows of a downstream part (else None).  ``build()`` gives the
    PyMC model; ``cache_key(pm_model)`` what identifies its compiled sampler.
    """

    model: Model
    table: pd.DataFrame
    rows: pd.DataFrame
    dropped: dict[str, Any]
    acc_rows: pd.DataFrame | None
    families: list[str]
    run_names: list[str]
    schedule: Any
    scale: Scale

    def build(self, record_mean: bool = False):
        """The ``pm.Model`` of these rows (see :func:`bayescale.build.build_model`)."""
        return build_model(self.model, self.rows, self.scale, self.families, self.run_names,
                           self.schedule, self.acc_rows, record_mean=record_mean)

    def cache_key(self, pm_model) -> str:
        """Key of the compiled sampler.

        The structure, and whether accuracy rows are counts (Binomial likelihoods) or
        fractions (Beta).
        """
        key = structure_key(self.model, pm_model)
        if self.acc_rows is None:
            return key
        return key + ("|acc:counts" if self.acc_rows["n_items"].notna().all() else "|acc:fractions")


def prepare(runs: pd.DataFrame | str, model: str | os.PathLike | Model = "auto", *,
            metric: str = "loss", priors: dict[str, Any] | None = None) -> Prepared:
    """Validate ``runs``, choose and resolve the model, select its rows.

    Everything :func:`fit` does before sampling.

    >>> import bayescale
    >>> ready = prepare(bayescale.simulate_ladder(seed=1)[0], "chinchilla")
    >>> ready.model.name, len(ready.rows)
    ('chinchilla', 20)
    """
    table = read_runs(runs)
    metric_rows = table[table["metric"] == metric].reset_index(drop=True)
    if metric_rows.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics present: "
                         f"{sorted(table['metric'].unique())}")
    chosen = (auto_model(metric_rows) if isinstance(model, str) and model == "auto"
              else load_model(model))
    chosen = chosen.with_priors(priors).resolve(metric_rows)
    # a part's lookup name fixes its class
    checkpoints = cast("Checkpoints | None", chosen.part("checkpoints"))
    rows, dropped = select_rows(metric_rows, checkpoints)
    for part in chosen.parts:
        part.validate(rows)
    downstream = cast("Downstream | None", chosen.part("downstream"))
    acc_rows = (downstream.select(table, rows, checkpoints) if downstream is not None
                else None)
    term = chosen.part("schedule")
    sched = (default_schedule(rows) if term is not None and getattr(term, "source", None) == "table"
             else None)
    return Prepared(model=chosen, table=table, rows=rows, dropped=dropped, acc_rows=acc_rows,
                    families=sorted(rows["family"].unique()),
                    run_names=list(dict.fromkeys(rows["run"])),
                    schedule=sched, scale=Scale.from_runs(rows))


def _prepare_with_accuracy(runs: pd.DataFrame, model: Model, choice: ModelChoice, metric: str,
                           priors: dict[str, Any] | None) -> tuple[Prepared, ModelChoice]:
    """:func:`prepare` the model ``model="auto"`` chose, extended to the table's accuracy rows.

    :func:`bayescale.model_choice.with_accuracy` adds the downstream part (with the link the
    choice's backtest picked, :func:`bayescale.model_choice.choose_link`); when it cannot,
    or when the accuracy rows fail the part's checks, the loss model is prepared alone and
    a ``UserWarning`` (also in the choice's reason) says why.
    """
    from .model_choice import with_accuracy

    extended, note = with_accuracy(model, runs, metric, **choice.link)
    if note is None:
        return prepare(runs, model, metric=metric, priors=priors), choice
    if extended.part("downstream") is not None:
        try:
            prepared = prepare(runs, extended, metric=metric, priors=priors)
        except ModelError as err:
            note = f"the table's accuracy rows are not fitted: {err}"
        else:
            return prepared, replace(choice, chosen=extended.name,
                                     reason=f"{choice.reason}; {note}")
    warnings.warn(note, UserWarning, stacklevel=3)
    return (prepare(runs, model, metric=metric, priors=priors),
            replace(choice, reason=f"{choice.reason}; {note}"))


def _remedy(model: Model, worst: tuple[str, ...], config: SamplerConfig) -> Remedy | None:
    """The first remedy a part of ``model`` offers for ``worst`` that the sampler can take.

    A low-rank mass matrix, for example, needs nutpie.
    """
    for part in model.parts:
        remedy = part.convergence_remedy(model, worst)
        if remedy is None:
            continue
        try:
            check_sampler(config.sampler, config.method,
                          remedy.sampler.get("mass_matrix", config.mass_matrix),
                          config.low_rank_cutoff, config.precision)
        except ValueError:
            continue
        return remedy
    return None


def _prepare_remedy(runs, remedy: Remedy, metric: str, priors) -> Prepared | None:
    """``runs`` prepared for the remedy's model; None when the given ``priors`` do not fit it."""
    try:
        return prepare(runs, remedy.model, metric=metric, priors=priors)
    except ModelError:
        return None


def _better(second: Diagnostics, first: Diagnostics) -> bool:
    """Whether a remedied retry's verdict beats the first attempt's.

    A pass beats a failure; between two failures the retry must have both the lower max
    R-hat and the higher min bulk ESS (a remedied model is kept only if it mixes better).
    """
    if bool(second.passed) != bool(first.passed):
        return bool(second.passed)
    return second.max_rhat <= first.max_rhat and second.min_ess_bulk >= first.min_ess_bulk


def fit(
    runs: pd.DataFrame | str,
    model: str | os.PathLike | Model = "auto",
    *,
    metric: str = "loss",
    priors: dict[str, Any] | None = None,
    sampler: str = "nutpie",
    method: str = "nuts",
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    target_accept: float | None = None,
    random_seed: int = 0,
    cores: int | None = None,
    mass_matrix: str | None = None,
    low_rank_cutoff: float | None = None,
    precision: str | None = None,
    progressbar: bool = True,
    retry: bool = True,
    strict: bool = False,
) -> ScalingFit:
    """Fit a model to a ladder of training runs.

    Parameters
    ----------
    runs
        Runs table (DataFrame or CSV path), see :func:`bayescale.read_runs`.
    model
        A preset name (``bayescale.available_models()``: ``"chinchilla"`` for final losses,
        ``"checkpoints"``, ``"downstream"``, ...), a path to a model TOML file, or a
        :class:`~bayescale.model.Model`.  ``"auto"`` (default): the ladder chooses
        (:mod:`bayescale.model_choice`).  The candidates are the presets that fit the table's
        shape: ``multi_power`` when the rows give each checkpoint's learning rate (an ``lr``
        column); the final-loss laws ``chinchilla``, ``kaplan``, ``gadre`` (and ``compute``, when
        no size was trained for two token budgets), with family pooling when the table has several
        families, run effects when a configuration has several seeds; and for a checkpoint
        ladder also ``checkpoints`` and ``checkpoints_kaplan``.  Several
        candidates are compared by a backtest that holds out the largest model sizes (the
        sampler settings below apply to its fits too); the best is refitted on the whole
        ladder and ``info["model_choice"]`` records why.  A ``method="map"``/``"advi"``
        preview skips the backtest and fits the first candidate.  A table with accuracy
        rows (``acc:<task>``) gets the winner plus a downstream part
        (:func:`bayescale.model_choice.with_accuracy`) whose link (sigmoid, exponential or
        Gompertz, in the loss or in ln(L - E)) a second backtest picks on the held-out
        accuracy rows (:func:`bayescale.model_choice.choose_link`).
    metric
        Which metric's rows are the loss the law describes (default ``"loss"``).
    priors
        Overrides of the model's priors, e.g. ``{"alpha": {"dist": "LogNormal",
        "kwargs": {"mu": -1, "sigma": 0.3}}}``.
    sampler
        NUTS implementation: ``"nutpie"`` (default, CPU), ``"pymc"``, ``"numpyro"``
        (JAX, uses a GPU when present) or ``"blackjax"``.
    method
        ``"nuts"`` (default); ``"map"`` or ``"advi"`` for a fast preview.
    draws, tune, chains, target_accept
        Sampler settings; defaults from the model's ``sampler`` table, else 1000, 1000, 4, 0.9.
    random_seed
        Seeds the sampler and the predictive noise.
    mass_matrix
        ``"diag"`` or ``"low_rank"`` (nutpie only: adapts to the few strongly correlated
        directions of the posterior, such as the E-coefficient ridge of a law). Default
        from the model's ``sampler`` table, else ``"diag"``; see :mod:`bayescale.sampling`.
    low_rank_cutoff
        With ``mass_matrix="low_rank"``: nutpie's ``mass_matrix_eigval_cutoff`` (default
        from the model, else nutpie's 100); lower it (e.g. to 3) for correlations of 0.9-0.95.
    precision
        ``"float64"`` (default) or ``"float32"``: the dtype the model is built and sampled in.
        ``"float32"`` needs ``sampler="numpyro"`` (it can be faster on a GPU, with less
        accurate gradients; ``benchmarks/gpu.py`` compares); the draws come back as float64.
        ``idata.posterior.attrs["chain_method"]`` says how numpyro ran the chains
        (``"vectorized"`` on a GPU; see :func:`bayescale.sampling.jax_chain_method`).
    progressbar
        Show a progress bar.
    retry
        When the posterior fails its convergence checks (see :mod:`bayescale.diagnostics`),
        sample once more with twice the tuning steps and the target acceptance halfway to 1
        (:func:`bayescale.sampling.retry_config`); the fit keeps the second posterior and
        records the first attempt's verdict in ``info["retry"]``.  When a part of the model
        offers a remedy for the worst-mixing variables
        (:meth:`bayescale.parts.Part.convergence_remedy`: family pooling integrates a
        funnelling spread out), the retry first refits the remedied model with the first
        attempt's settings and the remedy's (e.g. the low-rank mass matrix); it is kept if
        it mixes better than the first attempt, else the plain retry follows.
        ``info["retry"]`` names the remedy, the model and what was kept.  ``False`` keeps
        the first attempt.
    strict
        Raise :class:`~bayescale.diagnostics.ConvergenceError` when the posterior still fails
        its checks (after the retry), instead of a :class:`ConvergenceWarning`.  Needs
        ``method="nuts"``: a MAP or ADVI preview has no checks to pass.

    Returns
    -------
    ScalingFit

    Raises
    ------
    ConvergenceError
        With ``strict=True``, when R-hat, ESS or divergences fail their thresholds.

    Examples
    --------
    >>> import bayescale
    >>> runs, truth = bayescale.simulate_ladder(seed=1)
    >>> settings = dict(draws=200, tune=200, chains=2, progressbar=False)
    >>> result = bayescale.fit(runs, "chinchilla", **settings)  # doctest: +SKIP
    >>> print(result.model)  # doctest: +SKIP
    >>> result.predict({"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    """
    check_settings_used(method, draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                        cores=cores, mass_matrix=mass_matrix, low_rank_cutoff=low_rank_cutoff,
                        precision=precision)
    precision = precision or "float64"
    check_sampler(sampler, method, precision=precision)
    if strict and method != "nuts":
        raise ValueError(f"strict=True needs method='nuts': method={method!r} is a preview without "
                         "convergence checks")
    choice = None
    if isinstance(model, str) and model == "auto":
        from .model_choice import ModelChoice, choose_model

        runs = read_runs(runs)
        metric_rows = runs[runs["metric"] == metric]
        if method == "nuts":
            # settings that do not depend on the model fail before the backtest
            check_sampler(sampler, method, mass_matrix or "diag", low_rank_cutoff)
            given: dict[str, Any] = dict(sampler=sampler, target_accept=target_accept,
                                         cores=cores, mass_matrix=mass_matrix,
                                         low_rank_cutoff=low_rank_cutoff, precision=precision)
            model, choice = choose_model(
                runs, metric=metric, draws=draws, tune=tune, chains=chains,
                random_seed=random_seed, progressbar=progressbar,
                **{k: v for k, v in given.items() if v is not None})
        elif not metric_rows.empty:  # (prepare says what is missing)
            # a MAP or ADVI preview takes the shape default without the backtest
            model = auto_model(metric_rows.reset_index(drop=True))
            choice = ModelChoice(model.name, f"a {method} preview takes the first candidate "
                                 "for this table, without the backtest", (model.name,))
    if choice is not None and isinstance(model, Model):
        # (runs was read above)
        prepared, choice = _prepare_with_accuracy(cast(pd.DataFrame, runs), model, choice,
                                                  metric, priors)
    else:
        prepared = prepare(runs, model, metric=metric, priors=priors)
    chosen, rows = prepared.model, prepared.rows
    mass_matrix = mass_matrix or chosen.sampler.get("mass_matrix", "diag")
    if low_rank_cutoff is None and mass_matrix == "low_rank":
        low_rank_cutoff = chosen.sampler.get("low_rank_cutoff")
    check_sampler(sampler, method, mass_matrix, low_rank_cutoff, precision)
    defaults = chosen.sampler
    config = SamplerConfig(
        sampler=sampler,
        method=method,
        draws=int(draws if draws is not None else defaults.get("draws", 1000)),
        tune=int(tune if tune is not None else defaults.get("tune", 1000)),
        chains=int(chains if chains is not None else defaults.get("chains", 4)),
        target_accept=float(target_accept if target_accept is not None
                            else defaults.get("target_accept", 0.9)),
        random_seed=int(random_seed),
        cores=cores,
        mass_matrix=mass_matrix,
        low_rank_cutoff=None if low_rank_cutoff is None else float(low_rank_cutoff),
        precision=precision,
    )
    start = time.perf_counter()
    info: dict[str, Any] = {
        "runs_hash": runs_hash(rows),
        "param_count": prepared.table.attrs.get("param_count", "as given"),
        "versions": versions(),
        "selection": prepared.dropped,
    }
    if choice is not None:
        info["model_choice"] = choice.to_dict()

    built: dict[int, Any] = {}  # the PyMC model of each Prepared, built once

    def attempt(prepared: Prepared, config: SamplerConfig) -> ScalingFit:
        if id(prepared) not in built:
            with model_precision(precision):
                built[id(prepared)] = prepared.build()
        pm_model = built[id(prepared)]
        idata = draw_run_latents(pm_model, run_inference(
            pm_model, config, progressbar=progressbar, cache_key=prepared.cache_key(pm_model)),
            config.random_seed)
        return ScalingFit(
            idata=idata, model=prepared.model, scale=prepared.scale, runs=prepared.rows,
            sampler_config=config, metric=metric,
            info={**info, "fit_seconds": time.perf_counter() - start},
            families=prepared.families, run_names=prepared.run_names,
            schedule=prepared.schedule, acc_rows=prepared.acc_rows,
        )

    result = attempt(prepared, config)
    first = result.diagnostics()
    if retry and first.passed is False:
        info["retry"] = {"first_attempt": first.message()}
        remedy = _remedy(chosen, first.worst, config)
        remedied = None if remedy is None else _prepare_remedy(runs, remedy, metric, priors)
        improved = None
        if remedy is not None and remedied is not None:
            # a remedied model is a new model: its first attempt, with the remedy's settings
            trial = attempt(remedied, replace(config, **remedy.sampler))
            info["retry"].update(remedy=remedy.hint, model=remedied.model.name,
                                 mass_matrix=trial.sampler_config.mass_matrix)
            if _better(trial.diagnostics(), first):
                improved = trial
            else:
                info["retry"]["kept"] = "the plain retry (the remedied model mixed worse)"
        result = (improved if improved is not None  # else no remedy, or it did not help
                  else attempt(prepared, retry_config(config)))
        info["retry"].update(tune=result.sampler_config.tune,
                             target_accept=result.sampler_config.target_accept)
        result.info["retry"] = info["retry"]
    if strict and result.diagnostics().passed is False:
        raise ConvergenceError(result.diagnostics().message() + retry_note(info.get("retry")))
    result.warn_unconverged("fit")
    return result
