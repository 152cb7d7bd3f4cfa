"""Build the PyMC model of a :class:`~bayescale.model.Model` from the rows it fits.

Named dims: ``obs`` (one fitted loss row), and as the parts need them ``family``, ``run``,
``task``, ``acc_obs`` (one accuracy row), ``acc_run``.  Inputs are ``pm.Data``, so one
compiled model serves every data set of the same structure (see :func:`structure_key`).
Law parameters keep the names of their symbols (``E``, ``a``, ``b``, ``alpha``, ``beta``;
published ``A``, ``B`` as ``Deterministic``).

The parts build in order (see :mod:`bayescale.parts.base`): the law's parameters (one
set, or per family with :class:`~bayescale.parts.FamilyPooling`), the noise scales, the
law's mean at each row (through the schedule term when there is one), the run effects and
drift on ln loss, the downstream link, the AR(1) conditioning; the noise part observes
``ln_loss`` last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from .design import design
from .model import Model
from .parts import BuildContext
from .parts.marginal import RunBlocks
from .runs import Scale

if TYPE_CHECKING:
    from .parts import MarginalRuns, MultiPowerSchedule, ScheduleTerm

#: Order at which the law's mean is evaluated (the schedule term's order).
MEAN_ORDER = 20
#: ``record_mean`` records the mean before the parts from this order on (downstream, AR(1)).
RECORD_ORDER = 50


def design_arrays(model: Model, rows: pd.DataFrame, scale: Scale, families: list[str],
                  runs: list[str] | None, schedule=None) -> dict[str, np.ndarray]:
    """:func:`bayescale.design.design` with the model's schedule term's effective tokens."""
    # the "schedule" slot holds one of the two schedule terms
    term = cast("ScheduleTerm | MultiPowerSchedule | None", model.part("schedule"))
    inputs = term.inputs(rows, schedule) if term is not None else None
    return design(rows, scale, families, runs, inputs)


def build_model(
    model: Model,
    rows: pd.DataFrame,
    scale: Scale,
    families: list[str] | None = None,
    runs: list[str] | None = None,
    schedule=None,
    acc_rows: pd.DataFrame | None = None,
    record_mean: bool = False,
) -> pm.Model:
    """A ``pm.Model`` of ``model`` fitted to ``rows`` (selected loss rows) and ``acc_rows``.

    Parameters
    ----------
    model
        The model description (law and parts).
    rows
        Validated loss rows to fit (see :func:`bayescale.parts.checkpoints.select_rows`),
        n_obs long, sorted by family, run and tokens.
    scale, families, runs
        Centring constants; the ``family`` and ``run`` coordinates (default sorted unique).
    schedule
        Learning-rate schedule for rows that give none (schedule term).
    acc_rows
        With a :class:`~bayescale.parts.Downstream` part: the accuracy rows (dim ``acc_obs``).
    record_mean
        Also record the structural mean of ln loss at each row (law, schedule, run effects,
        drift; before AR(1) conditioning) as ``mu_obs`` (dims ``obs``) and, with accuracy
        rows, the latent ln loss ``mu_acc`` and the accuracy ``p_acc`` (dims ``acc_obs``):
        what the parity tests compare with the numpy predictor.

    Returns
    -------
    pymc.Model
        With an observed ``ln_loss`` (dims ``obs``), and ``acc`` (dims ``acc_obs``).
    """
    families = families or sorted(rows["family"].unique())
    runs = runs or list(dict.fromkeys(rows["run"]))
    has_acc = model.part("downstream") is not None and acc_rows is not None and len(acc_rows) > 0
    fitted_acc = acc_rows if has_acc else None
    x = {"obs": design_arrays(model, rows, scale, families, runs, schedule)}
    if fitted_acc is not None:
        x["acc"] = design_arrays(model, fitted_acc, scale, families, runs, schedule)
    coords: dict[str, Any] = {"obs": np.arange(len(rows))}
    if model.part("family_pooling") is not None:
        coords["family"] = families
    if fitted_acc is not None:
        coords["acc_obs"] = np.arange(len(fitted_acc))
    with pm.Model(coords=coords) as pm_model:
        ctx = BuildContext(model=model, rows=rows, acc_rows=fitted_acc, scale=scale,
                           families=families, runs=runs, x=x, store={"record_mean": record_mean})
        ctx.ln_value = pm.Data("ln_value", np.log(rows["value"].to_numpy(dtype=float)), dims="obs")
        marginal = model.part("marginal_runs")
        if marginal is not None:
            ctx.blocks = RunBlocks.from_previous(x["obs"]["prev"]).register()
        if model.part("family_pooling") is None:
            _shared_law_parameters(ctx)
        recorded = False
        for part in model.parts:
            if part.order > MEAN_ORDER and not ctx.mu:
                _plain_law_mean(ctx)
            if record_mean and part.order >= RECORD_ORDER and not recorded:
                recorded = _record(ctx)
            part.build(ctx)
        if not ctx.mu:
            _plain_law_mean(ctx)
        if record_mean and not recorded:
            _record(ctx)
        if marginal is not None:
            cast("MarginalRuns", marginal).observe(ctx)
        else:
            model.noise.observe(ctx)
    return pm_model


def _record(ctx: BuildContext) -> bool:
    pm.Deterministic("mu_obs", ctx.mu["obs"], dims="obs")
    if "acc" in ctx.mu:
        pm.Deterministic("mu_acc", ctx.mu["acc"], dims="acc_obs")
    return True


def _shared_law_parameters(ctx: BuildContext) -> None:
    """One set of law parameters for every family (no pooling part)."""
    law = ctx.model.law
    priors = ctx.model.priors
    theta = {p: priors[p].create_variable(p) for p in law.sampled}
    ctx.theta_family = theta
    for where in ctx.wheres:
        ctx.theta[where] = theta
    for p, value in law.to_published(theta, ctx.scale.N0, ctx.scale.D0).items():
        if p not in theta:
            pm.Deterministic(p, value)


def _plain_law_mean(ctx: BuildContext) -> None:
    """Ln of the law at each row (no schedule term)."""
    for where in ctx.wheres:
        ctx.mu[where] = pt.log(ctx.model.law.mean(ctx.theta[where], ctx.data("n", where),
                                                  ctx.data("d", where)))


def structure_key(model: Model, pm_model: pm.Model) -> str:
    """What determines the compiled graph: the model description and the dims' lengths.

    Every dim length except ``obs`` counts (and ``obs`` too when a free variable has that dim,
    e.g. the drift's ``z_walk``).  The marginal form's padded run length does not: its graph
    takes that length from the data's shape (see ``RunBlocks.symbolic_length``).

    Two PyMC models with the same key differ only in their ``pm.Data`` values, so a compiled
    sampler can be reused with new data.
    """
    free_obs = any("obs" in (pm_model.named_vars_to_dims.get(v.name) or ())
                   for v in pm_model.free_RVs)
    dims = sorted((k, len(v)) for k, v in pm_model.coords.items() if k != "obs" or free_obs)
    return f"{model.hash()}|{dims}"
