"""A fitted scaling law: posterior, diagnostics, predictions, allocation, persistence."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .allocation import optimal_allocation_draws
from .diagnostics import Diagnostics, diagnose
from .model import Model
from .predict import Structure, bands, predictive_draws, read_targets, resolve_families
from .runs import Scale
from .sampling import SamplerConfig
from .schedules import Schedule

#: :meth:`ScalingFit.outliers` flags a fitted row whose leave-one-out log density lies this
#: many nats below the median row's.
OUTLIER_DROP_NATS = 7.0


@dataclass
class ScalingFit:
    """The posterior of a scaling law fitted to a runs table.

    Attributes
    ----------
    idata
        ArviZ InferenceData: ``posterior`` (law parameters by their symbols, dims
        ``chain, draw``), ``sample_stats``, ``observed_data`` and ``log_likelihood``
        (dims ``obs``).
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
            self._diagnostics = diagnose(self.idata, names, method=self.sampler_config.method)
        return self._diagnostics

    def warn_unconverged(self, where: str) -> None:
        """Warn (:class:`~bayescale.diagnostics.ConvergenceWarning`) if the fit failed its checks.

        Once per fit: the first of ``fit``, ``summary``, ``predict`` or ``optimal_allocation``
        warns; the tables they return carry the verdict in ``.attrs["diagnostics"]`` every
        time.
        """
        if not self._warned:
            self._warned = True
            retry = (self.info or {}).get("retry")
            note = (f" (after one retry with tune={retry['tune']}, "
                    f"target_accept={retry['target_accept']})" if retry else "")
            self.diagnostics().warn(where, note, stacklevel=4)

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, sd, HDI, R-hat and ESS of every law parameter.

        Warns (ConvergenceWarning) when the diagnostics fail; the verdict is also in
        ``result.attrs["diagnostics"]``, and the rows :meth:`outliers` flags in
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
        table.attrs["outliers"] = self.outliers().to_dict("records")
        return table

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
        if ("log_likelihood" not in self.idata.groups()
                or post.sizes["chain"] * post.sizes["draw"] < 100):
            return pd.DataFrame(columns=columns)
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
            as a factor).

        Examples
        --------
        >>> fit.predict({"params": 7e10, "tokens": 1.4e12})  # doctest: +SKIP
        """
        table = read_targets(targets)
        metrics = table.pop("metric").fillna(self.metric).astype(str) if "metric" in table else None
        if metrics is not None:
            allowed = {self.metric, *self.tasks, *(("acc:avg",) if self.tasks else ())}
            allowed |= {"err:" + m[4:] for m in allowed if m.startswith("acc:")}
            other = set(metrics) - allowed
            if other:
                raise ValueError(f"targets ask for metric(s) {sorted(other)}; this fit predicts "
                                 f"{sorted(allowed)}")
        diag = self.diagnostics()
        self.warn_unconverged("predict")
        draws = predictive_draws(self.idata, self.structure,
                                 table.assign(metric=metrics) if metrics is not None
                                 else table, kind, self.sampler_config.random_seed)
        if "family" not in table and self.model.part("family_pooling") is not None:
            table["family"] = resolve_families(table, self.structure)
        out = pd.concat([table, bands(draws, hdi_prob)], axis=1)
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
