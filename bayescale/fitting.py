"""``bayescale.fit``: from a runs table and a model to a posterior."""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd

from .build import build_model, structure_key
from .model import Model, auto_model, load_model
from .parts.checkpoints import select_rows
from .parts.schedule import default_schedule
from .result import ScalingFit
from .runs import Scale, read_runs, runs_hash
from .sampling import SamplerConfig, check_sampler, check_settings_used, run_inference
from .versions import versions


def fit(
    runs: pd.DataFrame | str,
    model: "str | os.PathLike | Model" = "auto",
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
    progressbar: bool = True,
) -> ScalingFit:
    """Fit a model to a ladder of training runs.

    Parameters
    ----------
    runs
        Runs table (DataFrame or CSV path), see :func:`bayescale.read_runs`.
    model
        A preset name (``bayescale.available_models()``: ``"chinchilla"`` for final losses,
        ``"checkpoints"``, ``"downstream"``, ...), a path to a model TOML file, or a
        :class:`~bayescale.model.Model`.  ``"auto"`` (default): from the table's
        shape (see :func:`bayescale.model.auto_model`): ``multi_power`` when the rows give
        each checkpoint's learning rate (an ``lr`` column), else the ``chinchilla`` preset
        on final losses, with family pooling when the table has several families and run
        effects when a configuration has several seeds.
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
    progressbar
        Show a progress bar.

    Returns
    -------
    ScalingFit

    Examples
    --------
    >>> import bayescale
    >>> runs, truth = bayescale.simulate_ladder(seed=1)
    >>> result = bayescale.fit(runs, "chinchilla", draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
    >>> print(result.model)  # doctest: +SKIP
    >>> result.predict({"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    """
    check_settings_used(method, draws=draws, tune=tune, chains=chains, target_accept=target_accept, cores=cores,
                        mass_matrix=mass_matrix, low_rank_cutoff=low_rank_cutoff)
    table = read_runs(runs)
    metric_rows = table[table["metric"] == metric].reset_index(drop=True)
    if metric_rows.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics present: {sorted(table['metric'].unique())}")
    chosen = auto_model(metric_rows) if isinstance(model, str) and model == "auto" else load_model(model)
    chosen = chosen.with_priors(priors).resolve(metric_rows)
    mass_matrix = mass_matrix or chosen.sampler.get("mass_matrix", "diag")
    if low_rank_cutoff is None and mass_matrix == "low_rank":
        low_rank_cutoff = chosen.sampler.get("low_rank_cutoff")
    check_sampler(sampler, method, mass_matrix, low_rank_cutoff)
    rows, dropped = select_rows(metric_rows, chosen.part("checkpoints"))
    for part in chosen.parts:
        part.validate(rows)
    downstream = chosen.part("downstream")
    acc_rows = downstream.select(table, rows, chosen.part("checkpoints")) if downstream is not None else None
    families = sorted(rows["family"].unique())
    run_names = list(dict.fromkeys(rows["run"]))
    term = chosen.part("schedule")
    sched = default_schedule(rows) if term is not None and getattr(term, "source", None) == "table" else None
    defaults = chosen.sampler
    config = SamplerConfig(
        sampler=sampler,
        method=method,
        draws=int(draws if draws is not None else defaults.get("draws", 1000)),
        tune=int(tune if tune is not None else defaults.get("tune", 1000)),
        chains=int(chains if chains is not None else defaults.get("chains", 4)),
        target_accept=float(target_accept if target_accept is not None else defaults.get("target_accept", 0.9)),
        random_seed=int(random_seed),
        cores=cores,
        mass_matrix=mass_matrix,
        low_rank_cutoff=None if low_rank_cutoff is None else float(low_rank_cutoff),
    )
    scale = Scale.from_runs(rows)
    pm_model = build_model(chosen, rows, scale, families, run_names, sched, acc_rows)
    cache_key = structure_key(chosen, pm_model)
    if acc_rows is not None:  # observed counts are constants of the graph
        cache_key += "|" + runs_hash(acc_rows)
    start = time.perf_counter()
    idata = run_inference(pm_model, config, progressbar=progressbar, cache_key=cache_key)
    info = {
        "fit_seconds": time.perf_counter() - start,
        "runs_hash": runs_hash(rows),
        "param_count": table.attrs.get("param_count", "as given"),
        "versions": versions(),
        "selection": dropped,
    }
    result = ScalingFit(
        idata=idata, model=chosen, scale=scale, runs=rows, sampler_config=config, metric=metric, info=info,
        families=families, run_names=run_names, schedule=sched, acc_rows=acc_rows,
    )
    result.diagnostics().warn("fit")
    return result

