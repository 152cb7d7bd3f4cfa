"""``bayescale.fit``: from a runs table to a posterior."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from .design import default_schedule, resolve_options, select_rows
from .downstream import AVERAGE
from .model import build_model, structure_key
from .result import ScalingFit
from .runs import Scale, read_runs, runs_hash
from .sampling import SamplerConfig, check_sampler, run_inference
from .spec import ModelSpec, load_spec
from .versions import versions


def fit(
    runs: pd.DataFrame | str,
    law: str | ModelSpec = "chinchilla",
    *,
    metric: str = "loss",
    pooling: str | None = None,
    checkpoints: str = "final",
    residuals: str | None = None,
    run_effect: bool | None = None,
    schedule: str | None = None,
    min_fraction: float = 0.05,
    downstream: str | None = None,
    noise: str = "constant",
    anneal: str = "loss",
    run_slope: bool = False,
    drift: str = "none",
    drift_clock: str = "ln_tokens",
    link_scale: str = "loss",
    family_prior: str = "half_normal",
    tasks: list[str] | None = None,
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
    """Fit a scaling law to a ladder of training runs.

    Parameters
    ----------
    runs
        Runs table (DataFrame or CSV path), see :func:`bayescale.read_runs`.
    law
        Name of a shipped model spec (``"chinchilla"``, ``"compute"``), a TOML path, or a
        :class:`~bayescale.spec.ModelSpec`.
    metric
        Which metric's rows to fit (default the upstream ``"loss"``).
    pooling
        ``"none"`` (one law for all families) or ``"family"`` (family-level parameters
        partially pooled toward a population). Default: ``"family"`` when the table has
        several families.
    family_prior
        With ``pooling="family"``, the prior of the spread between families:
        ``"half_normal"`` (default; the spec's ``family_sd``, sampled) or ``"student_t"``
        (``s^2 ~`` the spec's ``family_var`` InverseGamma, integrated out, so the families'
        deviations are Student-t). With few families the data hardly pin the spread, and
        ``"student_t"`` has no funnel to diverge in: on the simulated three-family
        calibration ladder it gave 6x the bulk ESS per draw and 15x per second, but on
        Pythia's two families the half-normal mixed better (``benchmarks/README.md``), so
        compare both when a fit does not converge; see
        :func:`bayescale.model.pooled_parameter`.
    checkpoints
        ``"final"`` (each run's last checkpoint, default) or ``"all"`` (every checkpoint
        from ``min_fraction`` of its run on, fitted jointly).
    residuals, run_effect, schedule
        ``"iid"`` or ``"ar1"`` residuals within a run; a per-run offset with a learned
        seed spread; the learning-rate schedule term (``"none"``, ``"table"`` from the
        runs table's ``schedule`` columns, ``"learned"``). Defaults suit ``checkpoints``;
        see :func:`bayescale.design.resolve_options`.
    min_fraction
        With ``checkpoints="all"``, drop checkpoints before this fraction of their run
        (warmup and untrained models; default 0.05).
    downstream
        ``"sigmoid"``, ``"exp"`` (Gadre et al.'s exponential, bounded) or ``"gompertz"``: fit,
        jointly with the loss law, a link from each
        checkpoint's latent loss to every ``acc:<task>`` metric in the table: with the
        shipped spec, a Beta-Binomial likelihood with ``n_items`` and a per-task precision
        ``phi``, and a run-level downstream effect (the tasks of run r see its latent loss
        times ``exp(tau_downstream z_r)``, a fresh ``z`` for a new run's predictions); see
        :mod:`bayescale.downstream`.
    link_scale
        With ``downstream``: the scale the task links are linear in, ``"loss"`` (default,
        nats) or ``"log_reducible"`` (``ln(L - E)``: links steepen as the loss approaches the
        law's irreducible E; see :func:`bayescale.downstream.to_link_scale`).
    noise
        ``"constant"`` (default) or ``"size"``: residual scale ``sigma (N/N0)^-kappa``, for
        ladders whose small models fluctuate more between checkpoints (needs a ``kappa``
        prior, shipped in the chinchilla spec).
    anneal
        With a schedule term: ``"loss"`` (default, ``c u`` nats added) or ``"tokens"`` (the
        un-annealed part ``u`` is a shortfall of effective tokens, ``D e^{-c_tokens u}``).
    run_slope
        With ``checkpoints="all"``: each run also gets its own slope in ln tokens (zero at
        its end), so drifting curves widen their own bands instead of bending the law.
    drift
        With ``checkpoints="all"``: ``"walk"`` lets each run's deviation from the law wander
        as a Brownian motion in ln tokens (scaled like the noise), so a run that has drifted
        away from the law is predicted from where it is, with a band that grows with the
        ln tokens still ahead; default ``"none"``.  See :mod:`bayescale.design`.
    drift_clock
        With ``drift="walk"``: the walk's clock, ``"ln_tokens"`` (default) or ``"fraction"``
        of the run (variance accrues per token trained, so mostly late in a run; prior
        ``sigma_drift_fraction``).
    tasks
        With ``downstream``: the ``acc:<task>`` metrics to fit (default all).  An average
        over tasks can also be fitted as one metric: ``acc:avg`` rows in the table and
        ``tasks=["acc:avg"]`` (its own link; bounded continuous likelihood when it has no
        ``n_items``).  With one metric there is nothing to pool over and no run-level
        downstream effect (it would be that metric's noise).
    priors
        Overrides of the spec's priors, e.g. ``{"alpha": {"dist": "LogNormal",
        "kwargs": {"mu": -1, "sigma": 0.3}}}``.
    sampler
        NUTS implementation: ``"nutpie"`` (default, CPU), ``"pymc"``, ``"numpyro"``
        (JAX, uses a GPU when present) or ``"blackjax"``.
    method
        ``"nuts"`` (default); ``"map"`` or ``"advi"`` for a fast preview.
    draws, tune, chains, target_accept
        Sampler settings; defaults from the spec's ``[sampler]`` table.
    random_seed
        Seeds the sampler and the predictive noise.
    mass_matrix
        ``"diag"`` or ``"low_rank"`` (nutpie only: adapts to the few strongly correlated
        directions of the posterior, such as the E-coefficient ridge of a law, and mixes
        several times faster per draw on ladders with checkpoints). Default from the spec's
        ``[sampler]`` table, else ``"diag"``; see :mod:`bayescale.sampling`.
    low_rank_cutoff
        With ``mass_matrix="low_rank"``: the low-rank correction takes the directions whose
        posterior variance (in the diagonally scaled space) is more than this factor above or
        below 1 (nutpie's ``mass_matrix_eigval_cutoff``; default from the spec's
        ``[sampler]`` table, else nutpie's 100). Lower it (e.g. to 3) when parameters are
        correlated at 0.9-0.95 rather than 0.99.
    progressbar
        Show a progress bar.

    Returns
    -------
    ScalingFit

    Examples
    --------
    >>> import bayescale
    >>> runs, truth = bayescale.simulate_ladder(seed=1)
    >>> result = bayescale.fit(runs, draws=200, tune=200, chains=2, progressbar=False)  # doctest: +SKIP
    >>> result.predict({"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    """
    spec = law if isinstance(law, ModelSpec) else load_spec(law)
    spec = spec.with_priors(priors)
    mass_matrix = mass_matrix or spec.sampler.get("mass_matrix", "diag")
    if low_rank_cutoff is None and mass_matrix == "low_rank":
        low_rank_cutoff = spec.sampler.get("low_rank_cutoff")
    check_sampler(sampler, method, mass_matrix, low_rank_cutoff)
    table = read_runs(runs)
    metric_rows = table[table["metric"] == metric].reset_index(drop=True)
    if metric_rows.empty:
        raise ValueError(f"no rows with metric {metric!r}; metrics present: {sorted(table['metric'].unique())}")
    options = resolve_options(
        metric_rows, pooling=pooling, checkpoints=checkpoints, residuals=residuals,
        run_effect=run_effect, schedule=schedule, min_fraction=min_fraction, downstream=downstream,
        noise=noise, anneal=anneal, run_slope=run_slope, drift=drift, link_scale=link_scale,
        drift_clock=drift_clock, family_prior=family_prior,
    )
    rows, dropped = select_rows(metric_rows, options)
    acc_rows = None
    if options.downstream != "none":
        acc_all = table[table["metric"].str.startswith("acc:")]
        if tasks is not None:
            acc_all = acc_all[acc_all["metric"].isin(tasks)]
        if acc_all.empty:
            raise ValueError("downstream=... needs 'acc:<task>' rows in the runs table (none found)")
        if AVERAGE in set(acc_all["metric"]) and acc_all["metric"].nunique() > 1:
            raise ValueError(f"the runs table has '{AVERAGE}' rows and per-task 'acc:<task>' rows: fitting both "
                             f"counts the same answers twice; pass tasks=['{AVERAGE}'] to fit the average as one "
                             f"metric, or tasks=[...] without it to fit the tasks (their mean is predicted as "
                             f"'{AVERAGE}')")
        unknown_runs = set(acc_all["run"]) - set(rows["run"])
        if unknown_runs:
            raise ValueError(f"accuracy rows of runs without loss rows: {sorted(unknown_runs)[:5]}")
        acc_rows, _ = select_rows(acc_all, options)
        acc_rows = acc_rows.sort_values(["metric", "family", "run", "tokens"], kind="stable").reset_index(drop=True)
    families = sorted(rows["family"].unique())
    run_names = list(dict.fromkeys(rows["run"]))
    sched = default_schedule(rows) if options.schedule == "table" else None
    defaults = spec.sampler
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
    model = build_model(rows, spec, scale, options, families, run_names, sched, acc_rows)
    cache_key = structure_key(spec, model, options)
    if acc_rows is not None:  # observed counts are constants of the graph
        cache_key += "|" + runs_hash(acc_rows)
    start = time.perf_counter()
    idata = run_inference(model, config, progressbar=progressbar, cache_key=cache_key)
    info = {
        "fit_seconds": time.perf_counter() - start,
        "runs_hash": runs_hash(rows),
        "param_count": table.attrs.get("param_count", "as given"),
        "versions": versions(),
        "selection": dropped,
    }
    result = ScalingFit(
        idata=idata, spec=spec, scale=scale, runs=rows, sampler_config=config, metric=metric, info=info,
        options=options, families=families, run_names=run_names, schedule=sched, acc_rows=acc_rows,
    )
    result.diagnostics().warn("fit")
    return result
