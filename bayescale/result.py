"""A fitted scaling law: posterior, diagnostics, predictions, allocation, persistence."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .allocation import optimal_allocation_draws
from .diagnostics import Diagnostics, diagnose
from .likelihoods import LIKELIHOODS
from .predict import bands, predictive_draws, read_targets
from .runs import Scale
from .sampling import SamplerConfig
from .spec import ModelSpec


@dataclass
class ScalingFit:
    """The posterior of a scaling law fitted to a runs table.

    Attributes
    ----------
    idata
        ArviZ InferenceData: ``posterior`` (law parameters by their symbols, dims
        ``chain, draw``), ``sample_stats``, ``observed_data`` and ``log_likelihood``
        (dims ``obs``).
    spec, scale, runs
        The model spec, the centring constants (N0, D0) and the rows that were fitted.
    sampler_config
        What the sampler was asked.
    info
        Provenance: package versions, runs hash, param_count, wall time.
    """

    idata: az.InferenceData
    spec: ModelSpec
    scale: Scale
    runs: pd.DataFrame
    sampler_config: SamplerConfig
    metric: str = "loss"
    info: dict[str, Any] = field(default_factory=dict)
    _diagnostics: Diagnostics | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- parameters
    @property
    def law(self):
        return self.spec.law

    @property
    def parameter_names(self) -> list[str]:
        """Law parameters in the paper's convention plus the noise parameters."""
        noise = LIKELIHOODS[self.spec.likelihood].noise_params
        return list(self.law.published_names) + list(noise)

    def diagnostics(self) -> Diagnostics:
        """R-hat, ESS and divergences of the law's sampled parameters, with a verdict."""
        if self._diagnostics is None:
            names = list(self.law.sampled) + list(LIKELIHOODS[self.spec.likelihood].noise_params)
            self._diagnostics = diagnose(self.idata, names, method=self.sampler_config.method)
        return self._diagnostics

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, sd, HDI, R-hat and ESS of every law parameter.

        Warns (ConvergenceWarning) when the diagnostics fail; the verdict is also in
        ``result.attrs["diagnostics"]``.
        """
        diag = self.diagnostics()
        diag.warn("summary")
        kind = "all" if self.idata.posterior.sizes["chain"] > 1 else "stats"
        table = az.summary(self.idata, var_names=self.parameter_names, hdi_prob=hdi_prob, kind=kind)
        table.attrs["diagnostics"] = diag.message()
        return table

    # ----------------------------------------------------------------- predictions
    def predict_draws(self, targets, kind: str = "observation") -> xr.DataArray:
        """Posterior draws at ``targets``: DataArray with dims ``("chain", "draw", "target")``."""
        table = read_targets(targets)
        return predictive_draws(self.idata, self.spec, self.scale, table, kind, self.sampler_config.random_seed)

    def predict(self, targets, hdi_prob: float = 0.9, kind: str = "observation") -> pd.DataFrame:
        """Posterior predictive bands at target scales.

        Parameters
        ----------
        targets
            DataFrame (or dict, or CSV path) with ``params`` and ``tokens`` (and optionally
            ``family``), one row per target.
        hdi_prob
            Probability mass of the band.
        kind
            ``"observation"`` (default): band of a new run's measured loss, parameter
            uncertainty plus noise. ``"mean"``: band of the law itself.

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
        diag = self.diagnostics()
        diag.warn("predict")
        draws = predictive_draws(self.idata, self.spec, self.scale, table, kind, self.sampler_config.random_seed)
        out = pd.concat([table, bands(draws, hdi_prob)], axis=1)
        out.insert(len(table.columns), "metric", self.metric)
        ladder_c = float((self.runs["params"] * self.runs["tokens"]).max())
        out["extrapolation"] = table["params"] * table["tokens"] / ladder_c
        far = out["extrapolation"] > 1000
        if far.any():
            warnings.warn(
                f"predict: {int(far.sum())} target(s) lie more than 1000x beyond the ladder's largest compute; "
                "the band assumes the law holds that far",
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
        return self.idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()

    def optimal_allocation(self, compute, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Compute-optimal N*, D* and loss at FLOP budgets ``compute``, with bands.

        Returns a DataFrame with one row per (compute, quantity) where quantity is
        ``params`` (N*, parameters), ``tokens`` (D*) or ``loss`` (nats), and columns
        ``mean``, ``median``, ``lower``, ``upper``.
        """
        if self.law.lookup_name != "chinchilla":
            raise ValueError(
                f"optimal_allocation needs a law in N and D separately (e.g. 'chinchilla'); "
                f"{self.law.lookup_name!r} depends on compute only"
            )
        self.diagnostics().warn("optimal_allocation")
        budgets = np.atleast_1d(np.asarray(compute, dtype=float))
        if not np.all(np.isfinite(budgets) & (budgets > 0)):
            raise ValueError(f"compute budgets must be finite and > 0, got {budgets}")
        draws = optimal_allocation_draws(
            *(self.posterior_draws(k) for k in ("E", "A", "B", "alpha", "beta")), compute=budgets
        )
        rows = []
        for quantity, values in draws.items():
            da = xr.DataArray(
                values.T.reshape(len(budgets), self.idata.posterior.sizes["chain"], -1).transpose(1, 2, 0),
                dims=("chain", "draw", "target"),
            )
            b = bands(da, hdi_prob)
            b.insert(0, "quantity", quantity)
            b.insert(0, "compute", budgets)
            rows.append(b)
        return pd.concat(rows, ignore_index=True).sort_values(["compute", "quantity"], kind="stable").reset_index(drop=True)

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write the fit to NetCDF (see :func:`bayescale.load_fit`)."""
        from .io import save_fit

        save_fit(self, path)

    def __repr__(self) -> str:
        diag = self.diagnostics()
        return (
            f"ScalingFit(law={self.law.lookup_name!r}, metric={self.metric!r}, rows={len(self.runs)}, "
            f"runs={self.runs['run'].nunique()}, {diag.message()})"
        )
