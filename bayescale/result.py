"""A fitted scaling law: posterior, diagnostics, predictions, allocation, persistence."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .allocation import optimal_allocation_draws
from .diagnostics import Diagnostics, diagnose
from .model import Model
from .model_choice import ModelChoice
from .predict import (
    Structure,
    bands,
    point_copies,
    predictive_draws,
    predictive_values,
    read_targets,
    resolve_families,
)
from .runs import Scale
from .sampling import SamplerConfig
from .schedules import Schedule
from .uncertainty import DEFAULT_COPIES, DEFAULT_MAX_DRAWS, extrapolation_path, variance_parts

#: :meth:`ScalingFit.outliers` flags a fitted row whose leave-one-out log density lies this
#: many nats below the median row's.
OUTLIER_DROP_NATS = 7.0


def retry_note(retry: dict | None) -> str:
    """What a verdict adds about :func:`bayescale.fit`'s retry (``info["retry"]``), or ``""``."""
    if not retry:
        return ""
    remedy = ("" if not retry.get("remedy") else f", as {retry['model']}"
              if "kept" not in retry else f"; the remedied {retry['model']} mixed worse")
    return (f" (after one retry with tune={retry['tune']}, "
            f"target_accept={retry['target_accept']}{remedy})")

@dataclass
class ScalingFit:
    """The posterior of a scaling law fitted to a runs table.

    Attributes
    ----------
    idata
        ArviZ InferenceData: ``posterior`` (law parameters by their symbols, dims
        ``chain, draw``), ``sample_stats``, ``observed_data``, and ``log_likelihood``
        (dims ``obs``) once :meth:`log_likelihood` has computed it.
    model, scale, runs
        The model (:class:`~bayescale.model.Model`: law, parts, priors; ``print(fit.model)``),
        the centring constants (N0, D0) and the loss rows that were fitted.
    families, run_names, schedule
        The ``family`` and ``run`` coordinates, and the default learning-rate schedule for
        targets.
    sampler_config
        What the sampler was asked.
    info
        Provenance: package versions, runs hash, param_count, wall time.
    """

    idata: az.InferenceData
    model: Model
    scale: Scale
    runs: pd.DataFrame
    sampler_config: SamplerConfig
    metric: str = "loss"
    info: dict[str, Any] = field(default_factory=dict)
    families: list[str] = field(default_factory=list)
    run_names: list[str] = field(default_factory=list)
    schedule: Schedule | None = None
    acc_rows: pd.DataFrame | None = None
    _diagnostics: Diagnostics | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False, compare=False)

    # ----------------------------------------------------------------- parameters
    @property
    def law(self):
        """The model's scaling law (:class:`~bayescale.laws.ScalingLaw`)."""
        return self.model.law

    @property
    def structure(self) -> Structure:
        """What prediction needs of the fit: model, scale, families, runs, rows."""
        return Structure(self.model, self.scale, self.families, self.run_names, self.schedule,
                         self.runs, self.acc_rows)

    @property
    def tasks(self) -> list[str]:
        """The ``acc:<task>`` metrics fitted jointly (empty without ``downstream``)."""
        return [] if self.acc_rows is None else sorted(self.acc_rows["metric"].unique())

    def task_report(self) -> pd.DataFrame:
        """Per task: does accuracy improve as loss falls? (posterior of the slope)."""
        from .downstream import improvement_report

        if not self.tasks:
            raise ValueError("this fit has no downstream tasks (fit a model with a downstream "
                             "part, e.g. the 'downstream' preset)")
        return improvement_report(self.posterior_draws("slope"), self.tasks)

    def _structure_names(self) -> list[str]:
        """The parts' variables present in the posterior (populations, spreads, scales)."""
        law = set(self.law.sampled)
        return [n for n in self.model.variables() if n not in law and n in self.idata["posterior"]]

    @property
    def parameter_names(self) -> list[str]:
        """Names of the law's parameters (paper's convention) and of the parts' parameters.

        The law's are per family when pooled; then the population and spread parameters, noise,
        run spread, schedule and AR terms.
        """
        return list(self.law.published_names) + self._structure_names()

    def diagnostics(self) -> Diagnostics:
        """R-hat, ESS and divergences of the population-, family- and noise-level parameters.

        With a verdict (:class:`~bayescale.diagnostics.Diagnostics`).
        """
        if self._diagnostics is None:
            names = [n for n in self.model.variables() if n in self.idata["posterior"]]
            diag = diagnose(self.idata, names, method=self.sampler_config.method)
            hints = tuple(hint for part in self.model.parts
                          if (hint := part.convergence_hint(self.model, diag.worst)))
            self._diagnostics = replace(diag, hints=hints)
        return self._diagnostics

    def warn_unconverged(self, where: str) -> None:
        """Warn (:class:`~bayescale.diagnostics.ConvergenceWarning`) if the fit failed its checks.

        Once per fit: the first of ``fit``, ``summary``, ``predict`` or ``optimal_allocation``
        warns; the tables they return carry the verdict in ``.attrs["diagnostics"]`` every
        time.
        """
        if not self._warned:
            self._warned = True
            self.diagnostics().warn(where, retry_note((self.info or {}).get("retry")),
                                    stacklevel=4)

    @property
    def model_choice(self) -> ModelChoice | None:
        """How ``fit(runs)`` (``model="auto"``) chose the model; None when it was named."""
        data = (self.info or {}).get("model_choice")
        return None if data is None else ModelChoice.from_dict(data)

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, sd, HDI, R-hat and ESS of every law parameter.

        Warns (ConvergenceWarning) when the diagnostics fail; the verdict is also in
        ``result.attrs["diagnostics"]``, which model was used and why in
        ``result.attrs["model_choice"]``, and the rows :meth:`outliers` flags in
        ``result.attrs["outliers"]`` (a list of records).
        """
        diag = self.diagnostics()
        self.warn_unconverged("summary")
        several = self.idata["posterior"].sizes["chain"] > 1
        kind: Literal["all", "stats"] = "all" if several else "stats"
        # a DataFrame: az.summary returns an xarray Dataset only with fmt="xarray"
        table = cast(pd.DataFrame, az.summary(self.idata, var_names=self.parameter_names,
                                              hdi_prob=hdi_prob, kind=kind))
        table.attrs["diagnostics"] = diag.message()
        choice = self.model_choice
        table.attrs["model_choice"] = (choice.message() if choice is not None else
                                       f"model {self.model.name!r} named by the user")
        table.attrs["outliers"] = self.outliers().to_dict("records")
        return table

    def log_likelihood(self) -> xr.Dataset:
        """Pointwise log-likelihood of the fitted rows at every draw (``idata.log_likelihood``).

        ``ln_loss`` has dims ``chain, draw, obs`` (and ``acc`` its own, with accuracy rows).
        Computed on first use (it compiles the model's likelihood once more), then kept in
        ``idata`` and saved with the fit.  What :meth:`outliers` and ``arviz.loo`` read.
        """
        if "log_likelihood" not in self.idata.groups():
            from .build import build_model
            from .sampling import add_log_likelihood, model_precision

            precision = self.sampler_config.precision
            with model_precision(precision):
                pm_model = build_model(self.model, self.runs, self.scale, self.families,
                                       self.run_names, self.schedule, self.acc_rows)
            missing = [v.name for v in pm_model.free_RVs if v.name not in self.idata["posterior"]]
            if missing:
                raise ValueError(f"log_likelihood: the posterior has no draws of {missing[:5]}, "
                                 f"which model {self.model.name!r} samples; was it fitted with "
                                 "another model?")
            add_log_likelihood(self.idata, pm_model, precision)
        return self.idata["log_likelihood"]

    def outliers(self, drop_nats: float = OUTLIER_DROP_NATS) -> pd.DataFrame:
        """Fitted loss rows the model cannot account for: a loss spike, a mistyped value.

        A row is flagged when its leave-one-out log predictive density (PSIS-LOO,
        ``arviz.loo``) lies more than ``drop_nats`` below the median row's: with the default
        7, the fit finds it about 1,000 times less likely than a typical row, given all the
        others.  Returns the flagged rows (``family``, ``run``, ``params``, ``tokens``,
        ``value``, ``drop_nats``), most outlying first; empty for a preview without draws.
        A robust likelihood (the presets' Student-t noise) keeps such a row from pulling
        the law; this says which rows to look at.
        """
        columns = ["family", "run", "params", "tokens", "value", "drop_nats"]
        post = self.idata["posterior"]
        if post.sizes["chain"] * post.sizes["draw"] < 100:
            return pd.DataFrame(columns=columns)
        self.log_likelihood()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arviz warns of high Pareto k: the rows flagged here
            loo = az.loo(self.idata, pointwise=True, var_name="ln_loss")
        density = np.asarray(loo.loo_i).reshape(-1)
        drop = np.median(density) - density
        flagged = self.runs.assign(drop_nats=drop)[drop > drop_nats]
        return flagged[columns].sort_values("drop_nats", ascending=False)

    # ----------------------------------------------------------------- predictions
    def predict_draws(self, targets, kind: str = "observation") -> xr.DataArray:
        """Posterior draws at ``targets``: DataArray with dims ``("chain", "draw", "target")``."""
        table = read_targets(targets)
        return predictive_draws(self.idata, self.structure, table, kind,
                                self.sampler_config.random_seed)

    def predict(self, targets, hdi_prob: float = 0.9, kind: str = "observation") -> pd.DataFrame:
        """Posterior predictive bands at target scales.

        Parameters
        ----------
        targets
            DataFrame (or dict, or CSV path) with ``params`` and ``tokens``, one row per
            target; optionally ``family`` (a fitted family, or any other name for a family
            the model has not seen: drawn from the population), ``run`` (a fitted run:
            its own offset, walk and last residual are used; rows sharing a run id the fit
            has not seen are one planned run, a new seed of its family), ``total_tokens``
            (default ``tokens``: the loss at the end of a finished run), ``metric`` (with a
            downstream part) and any column a part of the model needs.
        hdi_prob
            Probability mass of the band.
        kind
            ``"observation"`` (default): band of a new run's measured loss, parameter
            uncertainty plus a new seed's offset plus noise. ``"mean"``: band of the law
            itself (the expected run).

        Returns
        -------
        pandas.DataFrame
            The target columns plus ``metric``, ``mean``, ``median``, ``lower``, ``upper``
            (nats for loss) and ``extrapolation`` (target compute over the ladder's largest,
            as a factor).  Under a Student-t likelihood a new observation's loss has no
            finite mean (the exponential of a heavy tail), so ``mean`` is then that of the
            likelihood's Gaussian core (the same scale); median and band keep the tails.

        Examples
        --------
        >>> fit.predict({"params": 7e10, "tokens": 1.4e12})  # doctest: +SKIP
        """
        table = read_targets(targets)
        metrics = self._target_metrics(table)
        diag = self.diagnostics()
        self.warn_unconverged("predict")
        draws = predictive_draws(self.idata, self.structure,
                                 table.assign(metric=metrics) if metrics is not None
                                 else table, kind, self.sampler_config.random_seed)
        if "family" not in table and self.model.part("family_pooling") is not None:
            table["family"] = resolve_families(table, self.structure)
        out = pd.concat([table, bands(draws, hdi_prob)], axis=1)
        if kind == "observation" and self.model.noise.likelihood == "student_t":
            # exp of a Student-t has no mean: the mean of the Gaussian core's draws instead
            core = predictive_values(self.idata, self.structure,
                                     table.assign(metric=metrics) if metrics is not None
                                     else table, kind,
                                     np.random.default_rng([self.sampler_config.random_seed,
                                                            20_240_601]),
                                     copies=point_copies(self.idata, kind), gaussian_noise=True)
            out["mean"] = core.mean(axis=0)
        out.insert(len(table.columns), "metric", metrics if metrics is not None else self.metric)
        ladder_c = float((self.runs["params"] * self.runs["tokens"]).max())
        out["extrapolation"] = table["params"] * table["tokens"] / ladder_c
        far = out["extrapolation"] > 1000
        if far.any():
            warnings.warn(
                f"predict: {int(far.sum())} target(s) lie more than 1000x beyond the ladder's "
                "largest compute; the band assumes the law holds that far",
                UserWarning,
                stacklevel=2,
            )
        out.attrs["kind"] = kind
        out.attrs["hdi_prob"] = hdi_prob
        out.attrs["converged"] = diag.passed
        out.attrs["diagnostics"] = diag.message()
        return out

    def _target_metrics(self, table: pd.DataFrame) -> pd.Series | None:
        """Pop and check the targets' ``metric`` column (``None`` without one)."""
        if "metric" not in table:
            return None
        metrics = table.pop("metric").fillna(self.metric).astype(str)
        allowed = {self.metric, *self.tasks, *(("acc:avg",) if self.tasks else ())}
        allowed |= {"err:" + m[4:] for m in allowed if m.startswith("acc:")}
        other = set(metrics) - allowed
        if other:
            raise ValueError(f"targets ask for metric(s) {sorted(other)}; this fit predicts "
                             f"{sorted(allowed)}")
        return metrics

    def uncertainty(self, targets, *, hdi_prob: float | None = None,
                    copies: int = DEFAULT_COPIES,
                    max_draws: int = DEFAULT_MAX_DRAWS) -> pd.DataFrame:
        """The predictive variance at ``targets`` split by where it comes from.

        The law of total variance over nested draws (see :mod:`bayescale.uncertainty`):
        ``law_var`` (the posterior of the model's parameters: epistemic), then one column per
        random source the model draws (``discrepancy_var``: the law's own error beyond the
        ladder, epistemic too; ``family_var``: a family the fit has not seen;
        ``run_var``: a new seed; ``drift_var``; ``downstream_var``; ``benchmark_var``: the
        benchmark's items; ``noise_var``: measurement noise), and ``total_var``, their sum:
        the variance of :meth:`predict`'s observation draws.

        Parameters
        ----------
        targets
            As for :meth:`predict` (``metric`` included).
        hdi_prob
            If given, also ``<source>_var_lower``/``_upper``: each source's variance with every
            other source held fixed, as a central interval over the posterior (e.g. 0.9).
        copies, max_draws
            Inner draws per posterior draw, and posterior draws used (more: less Monte
            Carlo error, more time).

        Returns
        -------
        pandas.DataFrame
            The target columns, ``metric``, the ``<source>_var`` columns, ``total_var``,
            ``total_sd`` and ``epistemic_share`` (``(law_var + discrepancy_var) /
            total_var``); in the metric's units squared (nats^2 for loss).
            ``attrs["mc_se"]``: Monte Carlo standard errors of the parts.

        Examples
        --------
        >>> fit.uncertainty({"params": 7e10, "tokens": 1.4e12})  # doctest: +SKIP
        """
        table = read_targets(targets)
        metrics = self._target_metrics(table)
        self.warn_unconverged("uncertainty")
        with_metric = table.assign(metric=metrics) if metrics is not None else table
        parts = variance_parts(self.idata, self.structure, with_metric,
                               seed=self.sampler_config.random_seed or 0, copies=copies,
                               max_draws=max_draws, hdi_prob=hdi_prob)
        out = pd.concat([table.reset_index(drop=True), parts], axis=1)
        out.insert(len(table.columns), "metric",
                   metrics.to_numpy() if metrics is not None else self.metric)
        out["total_sd"] = np.sqrt(out["total_var"])
        epistemic = out["law_var"] + out.get("discrepancy_var", 0.0)
        out["epistemic_share"] = epistemic / out["total_var"].where(out["total_var"] > 0)
        out.attrs.update(parts.attrs)
        out.attrs["diagnostics"] = self.diagnostics().message()
        return out

    def uncertainty_path(self, compute=None, *, tokens_per_param: float | str = 20.0,
                         family: str | None = None, copies: int = DEFAULT_COPIES,
                         max_draws: int = DEFAULT_MAX_DRAWS) -> pd.DataFrame:
        """How the band and its parts grow as the target moves beyond the ladder.

        Parameters
        ----------
        compute
            Target budgets in FLOPs (default: 30 budgets from the ladder's smallest compute
            to 1000x its largest, log-spaced).
        tokens_per_param
            The path: a fixed ratio of tokens to parameters (default 20), or ``"optimal"``:
            the posterior median compute-optimal split (laws in N and D only).
        family
            The family of the targets (default: the only one, or the first fitted family when
            the model pools several, as :meth:`optimal_allocation`; any other name: a family
            the model has not seen).

        Returns
        -------
        pandas.DataFrame
            One row per budget: ``compute``, ``params``, ``tokens``, ``extrapolation``
            (compute over the ladder's largest), the ``<source>_var`` parts, ``total_var``
            and ``total_sd`` (nats, nats^2).  ``attrs["ladder_compute"]``: the largest fitted
            compute; ``attrs["crossover_compute"]``: the budget from which on the law's
            (epistemic) variance exceeds every other part's (``None`` if it never does).

        Examples
        --------
        >>> path = fit.uncertainty_path(tokens_per_param=20)  # doctest: +SKIP
        >>> bayescale.plotting.plot_uncertainty_path(path)  # doctest: +SKIP
        """
        fitted = self.runs["params"] * self.runs["tokens"] * 6.0
        ladder = float(fitted.max())
        if compute is None:
            compute = np.geomspace(float(fitted.min()), 1000 * ladder, 30)
        if tokens_per_param == "optimal":
            allocation = self.optimal_allocation(compute, family=family)
            params = allocation.query("quantity == 'params'")["median"].to_numpy()
            budgets = allocation.query("quantity == 'params'")["compute"].to_numpy()
            targets = pd.DataFrame({"params": params, "tokens": budgets / (6.0 * params),
                                    "compute": budgets})
        elif isinstance(tokens_per_param, str):
            raise ValueError(f"tokens_per_param must be a number or 'optimal', got "
                             f"{tokens_per_param!r}")
        else:
            targets = extrapolation_path(compute, float(tokens_per_param))
        if family is None and self.model.part("family_pooling") is not None and self.families:
            family = self.families[0]
        if family is not None:
            targets["family"] = family
        parts = self.uncertainty(targets.drop(columns="compute"), copies=copies,
                                 max_draws=max_draws)
        out = pd.concat([targets[["compute"]], parts], axis=1)
        out.insert(3, "extrapolation", out["compute"] / ladder)
        sources = [str(c) for c in out.columns
                   if str(c).endswith("_var") and c not in ("total_var", "law_var")]
        above = (out["law_var"] > out[sources].max(axis=1)).to_numpy()
        # from the crossover on, the law's part stays the largest
        crossing = pd.Series(np.logical_and.accumulate(above[::-1])[::-1], index=out.index)
        out.attrs.update(parts.attrs)
        out.attrs["ladder_compute"] = ladder
        out.attrs["crossover_compute"] = (float(out["compute"][crossing].min())
                                          if crossing.any() else None)
        return out

    def suggest_runs(self, candidates, target, **options: Any) -> pd.DataFrame:
        """Rank candidate runs by the expected shrinkage of ``target``'s band per FLOP.

        See :func:`bayescale.advisor.suggest_runs` (preposterior analysis by importance
        reweighting of the posterior) for the method, the columns and ``options``.

        Examples
        --------
        >>> fit.suggest_runs([{"params": 1e9, "tokens": 2e10},
        ...                   {"params": 3e8, "tokens": 6e9, "seeds": 4}],
        ...                  {"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
        """
        from .advisor import suggest_runs

        self.warn_unconverged("suggest_runs")
        return suggest_runs(self, candidates, target, **options)

    def compare_families(self, target, families: list[str] | None = None,
                         **options: Any) -> pd.DataFrame:
        """Probability that each family (data mix) reaches the best value at ``target``.

        With the expected regret of choosing each; see
        :func:`bayescale.decisions.compare_families` for the columns and ``options``
        (``metric``, ``kind``).

        Examples
        --------
        >>> fit.compare_families({"params": 1.4e9, "tokens": 2.8e10})  # doctest: +SKIP
        """
        from .decisions import compare_families

        self.warn_unconverged("compare_families")
        return compare_families(self, target, families, **options)

    def posterior_draws(self, name: str) -> np.ndarray:
        """Flattened draws of one posterior variable, shape (chain*draw, ...)."""
        return (self.idata["posterior"][name].stack(sample=("chain", "draw"))
                .transpose("sample", ...).to_numpy())

    def optimal_allocation(self, compute, hdi_prob: float = 0.9,
                           family: str | None = None) -> pd.DataFrame:
        """Compute-optimal N*, D* and loss at FLOP budgets ``compute``, with bands.

        Returns a DataFrame with one row per (compute, quantity) where quantity is
        ``params`` (N*, parameters), ``tokens`` (D*) or ``loss`` (nats), and columns
        ``mean``, ``median``, ``lower``, ``upper``.  With family pooling name the
        ``family`` (default: the first) when the model pools families.
        """
        if self.law.lookup_name != "chinchilla":
            raise ValueError(
                f"optimal_allocation needs a law in N and D separately (e.g. 'chinchilla'); "
                f"{self.law.lookup_name!r} depends on compute only"
            )
        self.warn_unconverged("optimal_allocation")
        budgets = np.atleast_1d(np.asarray(compute, dtype=float))
        if not np.all(np.isfinite(budgets) & (budgets > 0)):
            raise ValueError(f"compute budgets must be finite and > 0, got {budgets}")
        column = None
        if self.model.part("family_pooling") is not None:
            family = family or self.families[0]
            if family not in self.families:
                raise ValueError(f"family {family!r} is not one of the fitted families "
                                 f"{self.families}")
            column = self.families.index(family)
        params = [self.posterior_draws(k) for k in ("E", "A", "B", "alpha", "beta")]
        if column is not None:  # parameters shared by the families have no family dim
            params = [p[:, column] if p.ndim == 2 else p for p in params]
        E, A, B, alpha, beta = params
        draws = optimal_allocation_draws(E, A, B, alpha, beta, compute=budgets)
        rows = []
        for quantity, values in draws.items():
            da = xr.DataArray(
                values.T.reshape(len(budgets), self.idata["posterior"].sizes["chain"], -1)
                .transpose(1, 2, 0),
                dims=("chain", "draw", "target"),
            )
            b = bands(da, hdi_prob)
            b.insert(0, "quantity", quantity)
            b.insert(0, "compute", budgets)
            rows.append(b)
        return (pd.concat(rows, ignore_index=True)
                .sort_values(["compute", "quantity"], kind="stable").reset_index(drop=True))

    def allocation_probability(self, compute, params, tokens=None, *, within: float = 0.01,
                               family: str | None = None) -> pd.DataFrame:
        """Probability that an (N, D) split is within ``within`` of the optimal loss.

        See :func:`bayescale.decisions.allocation_probability` (``p_within`` per split, with
        the excess loss over the optimum).

        Examples
        --------
        >>> fit.allocation_probability(1e21, params=[1e9, 3e9, 1e10])  # doctest: +SKIP
        """
        from .decisions import allocation_probability

        self.warn_unconverged("allocation_probability")
        return allocation_probability(self, compute, params, tokens, within=within, family=family)

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write the fit to NetCDF (see :func:`bayescale.load_fit`)."""
        from .io import save_fit

        save_fit(self, path)

    def __repr__(self) -> str:
        diag = self.diagnostics()
        return (
            f"ScalingFit(model={self.model.name!r}, law={self.law.lookup_name!r}, "
            f"metric={self.metric!r}, rows={len(self.runs)}, runs={self.runs['run'].nunique()}, "
            f"{diag.message()})"
        )
