"""Posterior predictions at target scales, computed from posterior draws in numpy.

For every posterior draw the law is evaluated at each target with the target's family
parameters (a family the model never saw gets a fresh draw from the population), plus the
schedule term for unfinished targets; a target naming an existing ``run`` gets that run's
offset and, with AR(1) residuals, the part of its last observed residual that persists.
``kind="observation"`` adds what a new measurement would add: a new seed's offset (for
targets that are not an existing run) and the likelihood's noise.

Numpy rather than ``pm.sample_posterior_predictive``: the law is closed-form, so this is
exact, needs no compilation (predicting from a loaded ``.nc`` file takes milliseconds),
and with the stored seed it gives the same numbers after save and load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .build import MEAN_ORDER, RECORD_ORDER, design_arrays
from .model import Model
from .parts import PredictContext
from .runs import RunsTableError, Scale, _numbers, _rows
from .schedules import Schedule

KINDS = ("observation", "mean")
#: Observation draws made from a point estimate (``method="map"``: one posterior draw), so
#: that its observation band shows the noise, new seeds and new families around the point.
POINT_ESTIMATE_COPIES = 2000
NEW_FAMILY = "(new family)"


@dataclass
class Structure:
    """Everything besides the posterior that prediction needs (stored with a fit)."""

    model: Model
    scale: Scale
    families: list[str]
    run_names: list[str]
    schedule: Schedule | None
    rows: pd.DataFrame  # the fitted rows, in model order
    acc_rows: pd.DataFrame | None = None  # fitted accuracy rows (downstream)

    def design(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """The design arrays of ``rows`` (targets or fitted rows) as the fit's model sees them."""
        return design_arrays(self.model, rows, self.scale, self.families, self.run_names,
                             self.schedule)

    def structural_mean(self, ctx: PredictContext, rows: pd.DataFrame) -> np.ndarray:
        """Ln of the latent loss at fitted ``rows`` at the draws of ``ctx``, shape (S, len(rows)).

        Law, schedule, run effects and drift: what the graph records as ``mu_obs``.
        """
        sub = PredictContext(fit=self, idata=ctx.idata, targets=rows, x=self.design(rows),
                             family_labels=rows["family"].astype(str),
                             run_labels=rows["run"].astype(str),
                             known=np.ones(len(rows), dtype=bool), new_draws=False, rng=ctx.rng,
                             store=ctx.store, copies=ctx.copies, frozen=ctx.frozen)
        run_parts(sub, below=RECORD_ORDER)
        assert sub.mu is not None  # run_parts always sets the mean
        return sub.mu


def read_targets(targets: pd.DataFrame | dict | str | os.PathLike) -> pd.DataFrame:
    """Validate prediction targets: ``params`` and ``tokens`` (> 0, finite), and options.

    Optional columns: ``total_tokens`` (default: ``tokens``, a finished run), ``family`` and
    ``run``.

    Accepts a DataFrame, a dict of columns or scalars, a list of dicts (one per target), or
    a CSV path.  The result keeps the targets' rows in their order, indexed 0, 1, ...

    Raises
    ------
    RunsTableError
        Naming each bad column and its rows (the index labels of ``targets``).
    TypeError
        If ``targets`` is none of these.
    """
    if isinstance(targets, (str, os.PathLike)):
        targets = pd.read_csv(targets)
    if isinstance(targets, list) and targets and all(isinstance(t, dict) for t in targets):
        targets = pd.DataFrame.from_records(targets)  # one dict per target
    if isinstance(targets, dict):  # scalars broadcast against lists
        # dtype=object: numpy's own string dtype would drop trailing NUL characters.
        columns = {k: np.asarray(v, dtype=object) for k, v in targets.items()}
        flat = [f"column '{k}' of the targets must be a scalar or a list, got shape {a.shape}"
                for k, a in columns.items() if a.ndim > 1]
        lengths = {k: len(a) for k, a in columns.items() if a.ndim == 1}
        if len(set(lengths.values())) > 1:
            flat.append(f"the columns of the targets differ in length: {lengths}")
        if flat:
            raise RunsTableError(flat)
        length = max(lengths.values(), default=1)
        targets = pd.DataFrame({k: list(np.broadcast_to(a, (length,))) for k, a in columns.items()})
    if not isinstance(targets, pd.DataFrame):
        raise TypeError("read_targets expects a DataFrame, a dict of columns, a list of dicts "
                        f"or a CSV path, got {type(targets).__name__}")
    labels = targets.index  # messages name the caller's labels
    df = targets.copy().reset_index(drop=True)
    repeated = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
    if repeated:
        raise RunsTableError([f"column '{c}' appears more than once in the targets"
                              for c in repeated])
    problems = [f"column '{c}' is required in prediction targets" for c in ("params", "tokens")
                if c not in df]
    if problems:
        raise RunsTableError(problems)
    for col in ("params", "tokens", "total_tokens"):
        if col not in df:
            continue
        num = _numbers(df[col])  # as read_runs reads numbers: True or "abc" is not one
        bad = ~(np.isfinite(num) & (num > 0))
        if bad.any():
            where = _rows(labels[bad.to_numpy()])
            problems.append(f"column '{col}' of the targets must be a finite number > 0 at {where}")
        df[col] = num
    if problems:
        raise RunsTableError(problems)
    if "total_tokens" in df:
        late = df["tokens"] > df["total_tokens"] * (1 + 1e-9)
        if late.any():
            raise RunsTableError(["column 'tokens' of the targets exceeds total_tokens at "
                                  f"{_rows(labels[late.to_numpy()])}"])
    return df


def resolve_families(targets: pd.DataFrame, structure: Structure) -> pd.Series:
    """Family label of each target: as given; else the only family; else a new family."""
    if "family" in targets:
        return targets["family"].fillna(NEW_FAMILY).astype(str)
    only = structure.families[0] if len(structure.families) == 1 else NEW_FAMILY
    return pd.Series([only] * len(targets), index=targets.index)


def run_parts(ctx: PredictContext, below: int | None = None) -> None:
    """Apply the model's parts in order to ``ctx`` (those with ``order < below``)."""
    model = ctx.fit.model
    if model.part("family_pooling") is None:
        ctx.theta = {p: ctx.draws(p)[:, None] for p in model.law.sampled}
    for part in model.parts:
        if below is not None and part.order >= below:
            break
        if part.order > MEAN_ORDER and ctx.mu is None:
            _plain_law_mean(ctx)
        part.predict(ctx)
    if ctx.mu is None:
        _plain_law_mean(ctx)


def _plain_law_mean(ctx: PredictContext) -> None:
    mean = ctx.fit.model.law.mean(ctx.theta, ctx.x["n"][None, :], ctx.x["d"][None, :])
    ctx.mu = np.log(np.broadcast_to(np.asarray(mean, dtype=float),
                                    (ctx.n_draws, len(ctx.targets))).copy())


def predictive_draws(
    idata: az.InferenceData,
    structure: Structure,
    targets: pd.DataFrame,
    kind: str = "observation",
    seed: int = 0,
) -> xr.DataArray:
    """Draws of the metric at the targets.

    Returns
    -------
    xarray.DataArray
        dims ``("chain", "draw", "target")``, in the metric's units (nats for loss).
    """
    copies = point_copies(idata, kind)
    values = predictive_values(idata, structure, targets, kind,
                               np.random.default_rng([seed, 20_240_601]), copies=copies)
    chains, draws = idata["posterior"].sizes["chain"], idata["posterior"].sizes["draw"]
    draw_labels = idata["posterior"]["draw"].to_numpy() if copies == 1 else np.arange(copies)
    return xr.DataArray(
        values.reshape(chains, draws * copies, -1),
        dims=("chain", "draw", "target"),
        coords={
            "chain": idata["posterior"]["chain"].to_numpy(),
            "draw": draw_labels,
            "target": np.arange(len(targets)),
        },
        name=kind,
    )


def point_copies(idata, kind: str) -> int:
    """How many copies of each draw to predict from: more than 1 only for a point estimate.

    :data:`POINT_ESTIMATE_COPIES` for observation draws of a posterior of one draw (MAP),
    else 1.  A point estimate has no parameter uncertainty, but a new run's measured value
    still scatters (noise, a new seed's offset and drift, a benchmark's items): its
    observation band is that scatter around the point; its ``kind="mean"`` band is the point.
    """
    posterior = idata["posterior"]
    one_draw = posterior.sizes["chain"] * posterior.sizes["draw"] == 1
    return POINT_ESTIMATE_COPIES if one_draw and kind == "observation" else 1


def predictive_values(idata, structure: Structure, targets: pd.DataFrame, kind: str,
                      rng: np.random.Generator, copies: int = 1,
                      frozen: frozenset[str] = frozenset(),
                      gaussian_noise: bool = False, streams: bool = False) -> np.ndarray:
    """The metric at the targets per posterior draw, shape (copies x S, T) (copy-major).

    ``idata`` needs only a ``posterior`` attribute.  ``copies``, ``frozen``,
    ``gaussian_noise`` and ``streams``: see :class:`~bayescale.parts.PredictContext`
    (nested Monte Carlo in :mod:`bayescale.uncertainty`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    targets = targets.copy().reset_index(drop=True)
    if "total_tokens" not in targets:
        targets["total_tokens"] = targets["tokens"]
    run_index = {r: i for i, r in enumerate(structure.run_names)}
    runs = targets["run"].astype(str) if "run" in targets else pd.Series([""] * len(targets))
    # a run id the fit has not seen names a planned run: its rows are one new run (a new seed)
    known = runs.map(lambda r: r in run_index).to_numpy()
    metrics = (targets["metric"].astype(str) if "metric" in targets
               else pd.Series(["loss"] * len(targets)))
    downstream = metrics.str.startswith(("acc:", "err:")).to_numpy()
    if downstream.any() and structure.model.part("downstream") is None:
        raise ValueError("this fit has no downstream tasks: fit a model with a downstream part "
                         "(e.g. the 'downstream' preset)")
    ctx = PredictContext(fit=structure, idata=idata, targets=targets, x=structure.design(targets),
                         family_labels=resolve_families(targets, structure), run_labels=runs,
                         known=known, new_draws=kind == "observation", rng=rng, metrics=metrics,
                         copies=copies, frozen=frozen, gaussian_noise=gaussian_noise,
                         streams=streams)
    run_parts(ctx)
    mu = ctx.mu
    assert mu is not None  # run_parts always sets the mean
    if kind == "observation":
        assert ctx.sigma is not None  # set by the noise part, which every model has
        mu = structure.model.noise.add_noise(ctx, mu, ctx.sigma)
    values = np.exp(mu)
    if "accuracy" in ctx.store:
        mask, accuracy = ctx.store["accuracy"]
        values[:, mask] = accuracy
    return values


def bands(draws: xr.DataArray, hdi_prob: float) -> pd.DataFrame:
    """Mean, median and highest-density interval of each target's draws."""
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    flat = draws.stack(sample=("chain", "draw")).transpose("target", "sample").to_numpy()
    if flat.shape[1] > 1:
        interval = az.hdi(flat.T[None, ...], hdi_prob=hdi_prob)  # (target, 2)
    else:
        interval = np.repeat(flat, 2, axis=1)
    return pd.DataFrame(
        {
            "mean": flat.mean(axis=1),
            "median": np.median(flat, axis=1),
            "lower": interval[:, 0],
            "upper": interval[:, 1],
        }
    )
