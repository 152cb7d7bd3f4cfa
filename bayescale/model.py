"""Build the PyMC model of a scaling law from a runs table, a spec and model options.

Named dims: ``obs`` (one fitted row), ``family`` and ``run``.  Inputs are ``pm.Data``
(``n = N/N0``, ``d = D_eff/D0``, ``u``, index arrays, ``ln_value``; dims ``obs``), so one
compiled model serves every data set of the same structure (see :func:`structure_key`).
Law parameters keep the names of their symbols (``E``, ``a``, ``b``, ``alpha``, ``beta``;
published ``A``, ``B`` as ``Deterministic``); with ``pooling="family"`` they have dims
``family`` and the population is ``<symbol>_pop`` with spread ``<symbol>_sd`` (log scale).

Mean of ln(loss) for row i of run r in family f::

    mu_i = ln( law(theta_f, n_i, d_i) + c u_i ) + sigma_run z_r

(or ``ln law(theta_f, n_i, d_i e^{-c_tokens u_i})`` with ``anneal="tokens"``), plus with
``run_slope=True`` a per-run slope ``sigma_slope z_slope_r ln(D_i / D_total,r)`` that is
zero at the run's end (so ``z_r`` is the run's offset where it finishes), and with
``drift="walk"`` a per-run Brownian motion in ln tokens or, with ``drift_clock="fraction"``,
in the fraction of the run (see :func:`_random_walk`).

With ``noise="size"`` the residual scale of a row is ``sigma n^-kappa`` (larger models
fluctuate less between checkpoints).  With ``residuals="ar1"`` the residual of row i given the previous row of its run is
``rho_i (y_prev - mu_prev)`` with ``rho_i = exp(-gap_i / ell)`` and innovation scale
``sigma sqrt(1 - rho_i^2)`` (an Ornstein-Uhlenbeck process in ln tokens).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg

from .design import ModelOptions, anneal_parameter, design, latest_row_of_run, scheduled_law
from .downstream import REDUCIBLE_FLOOR, link, link_centred, successes, task_table, to_link_scale
from .likelihoods import LIKELIHOODS
from .runs import Scale
from .spec import ModelSpec

OBSERVED = "ln_loss"


def pooled_parameter(
    spec: ModelSpec, name: str, n_families: int, family_prior: str = "half_normal"
) -> pt.TensorVariable:
    """Family-level parameter ``theta_f = exp(mu + delta_f)`` (dims ``family``), pooled on the
    log scale toward a population ``mu = ln_<name>_pop ~ Normal(m0, s0)`` (the spec's
    LogNormal prior of ``name``).

    ``family_prior="half_normal"``: ``delta_f = s z_f``, non-centred, with ``z_f ~ Normal(0, 1)``
    and the spread ``s = <name>_sd`` from the spec's ``family_sd`` prior.

    ``family_prior="student_t"``: the spread's square has the spec's ``family_var`` prior,
    ``s^2 ~ InverseGamma(a, b)``, and is integrated out of the model.  Given ``s`` the F
    deviations are ``Normal(0, s^2 I)``, so without it they are jointly
    ``MvStudentT(nu=2a, scale=(b/a) I)``.  With few families the data hardly pin ``s``, and
    sampling it leaves the funnel between ``s`` and the ``z`` (and a ridge between ``mu`` and
    a large ``s``) where NUTS diverges; this form has neither.  It is sampled in the
    coordinates the data see:

    * ``dev_<name>_rot``, the deviations in an orthonormal (Helmert) basis: the first
      coordinate is ``sqrt(F)`` times their mean (how far the families' mean lies from
      ``mu``), the others their sum-zero part (how the families differ);
    * ``ln_<name>_mean``, the families' mean of ``ln theta_f``, which the data pin, drawn
      as ``Normal(m0 + mean deviation, s0)``, i.e. ``mu = ln_<name>_mean - mean deviation``
      keeps its prior ``Normal(m0, s0)`` exactly.

    ``<name>_sd`` is still reported, drawn from its exact conditional given the deviations,
    ``s^2 | delta ~ InverseGamma(a + F/2, b + |delta|^2 / 2)``, through its own
    ``w_<name> ~ Gamma(a + F/2, 1)`` (which the data never see), so predictions for a new
    family (``exp(mu + s z)``, a fresh ``z``) are draws from the same model.

    Example
    -------
    >>> import pymc as pm
    >>> from bayescale.spec import load_spec
    >>> with pm.Model(coords={"family": ["a", "b", "c"]}):
    ...     alpha = pooled_parameter(load_spec("chinchilla"), "alpha", 3, "student_t")
    >>> alpha.name
    'alpha'
    """
    prior = spec.priors[name]
    if prior.distribution != "LogNormal":
        raise ValueError(f"pooling='family' needs a LogNormal prior for {name!r}, got {prior.distribution}")
    mu, sigma = prior.parameters["mu"], prior.parameters["sigma"]
    if family_prior == "half_normal":
        log_pop = pm.Normal(f"ln_{name}_pop", mu=mu, sigma=sigma)
        pm.Deterministic(f"{name}_pop", pt.exp(log_pop))
        spread = spec.priors["family_sd"].create_variable(f"{name}_sd")
        z = pm.Normal(f"z_{name}", 0.0, 1.0, dims="family")
        return pm.Deterministic(name, pt.exp(log_pop + spread * z), dims="family")
    a, b = _inverse_gamma_parameters(spec)
    basis = scipy.linalg.helmert(n_families, full=True)  # F x F orthonormal; row 0 is the mean direction
    rotated = pm.MvStudentT(f"dev_{name}_rot", nu=2 * a, mu=np.zeros(n_families), scale=(b / a) * np.eye(n_families))
    mean_deviation = rotated[0] / np.sqrt(n_families)
    within = pt.dot(basis[1:].T, rotated[1:])  # sum-zero: each family's deviation from the families' mean
    ln_mean = pm.Normal(f"ln_{name}_mean", mu=mu + mean_deviation, sigma=sigma)
    log_pop = pm.Deterministic(f"ln_{name}_pop", ln_mean - mean_deviation)
    pm.Deterministic(f"{name}_pop", pt.exp(log_pop))
    pm.Deterministic(f"dev_{name}", mean_deviation + within, dims="family")
    w = pm.Gamma(f"w_{name}", alpha=a + n_families / 2, beta=1.0)
    pm.Deterministic(f"{name}_sd", pt.sqrt((b + 0.5 * pt.sum(rotated**2)) / w))
    return pm.Deterministic(name, pt.exp(ln_mean + within), dims="family")


def _inverse_gamma_parameters(spec: ModelSpec) -> tuple[float, float]:
    """``(a, b)`` of the spec's ``family_var`` prior, which must be an InverseGamma."""
    prior = spec.priors.get("family_var")
    if prior is None:
        raise ValueError(f"family_prior='student_t' needs a 'family_var' prior (InverseGamma) in spec {spec.name!r}")
    if prior.distribution != "InverseGamma" or set(prior.parameters) != {"alpha", "beta"}:
        raise ValueError(f"family_prior='student_t' needs family_var ~ InverseGamma(alpha, beta), got "
                         f"{prior.distribution}({', '.join(sorted(prior.parameters))})")
    return float(prior.parameters["alpha"]), float(prior.parameters["beta"])


def build_model(
    rows: pd.DataFrame,
    spec: ModelSpec,
    scale: Scale,
    options: ModelOptions | None = None,
    families: list[str] | None = None,
    runs: list[str] | None = None,
    schedule=None,
    acc_rows: pd.DataFrame | None = None,
) -> pm.Model:
    """A ``pm.Model`` of ``spec`` fitted to ``rows`` (one metric, selected rows).

    Parameters
    ----------
    rows
        Validated runs table rows to fit (see :func:`bayescale.design.select_rows`), n_obs long.
    spec, scale, options
        Model spec (law, priors, likelihood), centring constants, structure.
    families, runs
        Coordinate labels of the ``family`` and ``run`` dims (default: sorted unique).
    acc_rows
        With ``options.downstream``: the ``acc:<task>`` rows (dims ``acc_obs``, tasks on
        dim ``task``), linked to the latent loss of their checkpoint.

    Returns
    -------
    pymc.Model
        With an observed ``ln_loss`` (dims ``obs``).
    """
    options = options or ModelOptions()
    families = families or sorted(rows["family"].unique())
    runs = runs or list(dict.fromkeys(rows["run"]))
    x = design(rows, options, scale, families, runs, schedule)
    law = spec.law
    likelihood = LIKELIHOODS[spec.likelihood]
    coords = {"obs": np.arange(len(rows))}
    if options.pooling == "family":
        coords["family"] = families
    if options.run_effect:
        coords["run"] = runs
    downstream = options.downstream != "none" and acc_rows is not None and len(acc_rows) > 0
    if downstream:
        tasks = task_table(acc_rows)
        coords["task"] = tasks["task"].tolist()
        coords["acc_obs"] = np.arange(len(acc_rows))
        # the run-level downstream effect needs several tasks: with one, it is the benchmark's noise
        run_level_effect = "tau_downstream" in spec.priors and len(tasks) > 1
        if run_level_effect:  # runs with accuracy rows, in the order of ``runs``
            with_acc = set(acc_rows["run"])
            coords["acc_run"] = [r for r in runs if r in with_acc]
    with pm.Model(coords=coords) as model:
        n = pm.Data("n", x["n"], dims="obs")
        d = pm.Data("d", x["d"], dims="obs")
        ln_value = pm.Data("ln_value", np.log(rows["value"].to_numpy(dtype=float)), dims="obs")
        if options.pooling == "family":
            fam = pm.Data("family_index", x["family"], dims="obs")
            theta_f = {p: spec.priors[p].create_variable(p) if p in law.shared
                       else pooled_parameter(spec, p, len(families), options.family_prior)
                       for p in law.sampled}
            theta = {p: v if p in law.shared else v[fam] for p, v in theta_f.items()}
            for p, value in law.to_published(theta_f, scale.N0, scale.D0).items():
                if p not in theta_f:
                    pm.Deterministic(p, value, dims="family")
        else:
            theta = {p: spec.priors[p].create_variable(p) for p in law.sampled}
            for p, value in law.to_published(theta, scale.N0, scale.D0).items():
                if p not in theta:
                    pm.Deterministic(p, value)
        noise = {p: spec.priors[p].create_variable(p) for p in likelihood.noise_params}
        c_name = anneal_parameter(options)
        c = spec.priors[c_name].create_variable(c_name) if c_name else None
        u = pm.Data("u", x["u"], dims="obs") if c_name else None
        mu = pt.log(scheduled_law(law, theta, n, d, u, c, options, pt.exp))
        kappa = spec.priors["kappa"].create_variable("kappa") if options.noise == "size" else None
        if options.run_effect:
            run = pm.Data("run_index", x["run"], dims="obs")
            sigma_run = spec.priors["sigma_run"].create_variable("sigma_run")
            z_run = pm.Normal("z_run", 0.0, 1.0, dims="run")
            mu = mu + sigma_run * z_run[run]
        if options.run_slope:
            sigma_slope = spec.priors["sigma_slope"].create_variable("sigma_slope")
            z_slope = pm.Normal("z_slope", 0.0, 1.0, dims="run")
            slope_scale = sigma_slope if kappa is None else sigma_slope * n ** (-kappa)
            mu = mu + slope_scale * z_slope[run] * pm.Data("ln_fraction", x["ln_fraction"], dims="obs")
        walk = _random_walk(spec, x, n, kappa, options.drift_clock) if options.drift == "walk" else None
        if walk is not None:
            mu = mu + walk
        if downstream:
            xa = design(acc_rows, options, scale, families, runs, schedule)
            theta_a = theta
            if options.pooling == "family":
                fam_a = pm.Data("acc_family_index", xa["family"], dims="acc_obs")
                theta_a = {p: v if p in law.shared else v[fam_a] for p, v in theta_f.items()}
            u_a = pm.Data("acc_u", xa["u"], dims="acc_obs") if c_name else None
            mean_a = scheduled_law(law, theta_a, pm.Data("acc_n", xa["n"], dims="acc_obs"),
                                   pm.Data("acc_d", xa["d"], dims="acc_obs"), u_a, c, options, pt.exp)
            ln_latent = pt.log(mean_a)
            if options.run_effect:
                run_a = pm.Data("acc_run_index", xa["run"], dims="acc_obs")
                ln_latent = ln_latent + sigma_run * z_run[run_a]
            if options.run_slope:
                scale_a = sigma_slope if kappa is None else sigma_slope * xa["n"] ** (-kappa)
                ln_latent = ln_latent + scale_a * z_slope[run_a] * xa["ln_fraction"]
            if walk is not None:  # an accuracy row sees its run's walk at its checkpoint
                ln_latent = ln_latent + walk[pm.Data("acc_walk_index", _walk_rows(rows, acc_rows), dims="acc_obs")]
            if run_level_effect:
                # run-level downstream effect: the tasks of run r see its latent loss times
                # exp(tau z_r), one z per run shared by all its tasks and checkpoints
                acc_run = {r: i for i, r in enumerate(coords["acc_run"])}
                offset_a = pm.Data("acc_offset_index", acc_rows["run"].map(acc_run).to_numpy(), dims="acc_obs")
                tau = spec.priors["tau_downstream"].create_variable("tau_downstream")
                # non-centred: the offsets of runs whose tasks are still at chance are left to the prior
                z_ds = pm.Normal("z_downstream", 0.0, 1.0, dims="acc_run")
                offset = pm.Deterministic("downstream_offset", tau * z_ds, dims="acc_run")
                ln_latent = ln_latent + offset[offset_a]
            E_law = theta_f["E"] if options.pooling == "family" else theta["E"]
            latent = to_link_scale(options.link_scale, pt.exp(ln_latent), theta_a["E"], pt)
            centre = pt.exp(pt.mean(ln_value))  # geometric mean of the fitted losses
            if options.link_scale == "log_reducible":
                centre = pt.log(pt.maximum(centre - pt.mean(E_law), REDUCIBLE_FLOOR))
            _downstream_likelihood(spec, options.downstream, tasks, acc_rows, latent, centre)
        sigma = noise["sigma"]
        if kappa is not None:
            sigma = sigma * n ** (-kappa)
        if options.residuals == "ar1":
            prev = pm.Data("prev_index", np.maximum(x["prev"], 0), dims="obs")
            has_prev = pm.Data("has_prev", (x["prev"] >= 0).astype(float), dims="obs")
            gap = pm.Data("gap", x["gap"], dims="obs")
            ell = spec.priors["ell"].create_variable("ell")
            rho = has_prev * pt.exp(-gap / ell)
            mu = mu + rho * (ln_value[prev] - mu[prev])
            sigma = sigma * pt.sqrt(1.0 - rho**2 + 1e-12)
        likelihood.observe(OBSERVED, mu, sigma, noise, ln_value, dims="obs")
    return model


def _random_walk(spec: ModelSpec, x: dict, n, kappa, clock: str = "ln_tokens") -> pt.TensorVariable:
    """Each run's Brownian drift in ln tokens at its rows (``drift="walk"``), dims ``obs``.

    Non-centred: ``z_walk`` (dims ``obs``) are the standardised increments; the increment
    into row i is ``sigma_drift n_i^-kappa sqrt(walk_gap_i) z_i`` and the walk is their
    cumulative sum within the run (rows are sorted by run, then tokens).  ``walk_gap`` is in
    ln tokens, or in fractions of the run with ``drift_clock="fraction"``, whose scale has
    its own prior (``sigma_drift_fraction``; the variable is ``sigma_drift`` either way).
    """
    prior = "sigma_drift_fraction" if clock == "fraction" else "sigma_drift"
    if prior not in spec.priors:
        raise ValueError(f"drift_clock={clock!r} needs a {prior!r} prior in the model spec {spec.name!r}")
    sigma_drift = spec.priors[prior].create_variable("sigma_drift")
    step = pm.Data("walk_gap", x["walk_gap"], dims="obs")
    start = pm.Data("walk_start", x["walk_start"], dims="obs")
    scale = sigma_drift if kappa is None else sigma_drift * n ** (-kappa)
    increments = scale * pt.sqrt(step) * pm.Normal("z_walk", 0.0, 1.0, dims="obs")
    total = pt.cumsum(increments)
    return total - total[start] + increments[start]


def _walk_rows(rows: pd.DataFrame, acc_rows: pd.DataFrame) -> np.ndarray:
    """Index of the loss row whose walk each accuracy row shares (its run's latest fitted
    loss checkpoint at or before it); a clear error for runs with accuracies but no loss."""
    index = latest_row_of_run(rows, acc_rows["run"].astype(str), acc_rows["tokens"])
    if (index < 0).any():
        missing = sorted(set(acc_rows["run"].astype(str)[index < 0]))
        raise ValueError(f"drift='walk' with downstream needs loss rows for every run with accuracies; "
                         f"run(s) {missing[:5]} have accuracy rows (column 'metric' acc:...) but no fitted loss rows")
    return index


def _pooled_over_tasks(spec: ModelSpec, name: str, centred: bool = False, record: bool = True) -> pt.TensorVariable:
    """Task-level parameter (dims ``task``) partially pooled around a population value
    ``<name>_pop`` with spread ``<name>_sd``; with a LogNormal ``<name>_pop`` prior on the log
    scale (``ln_<name>_pop`` sampled, ``<name>_pop`` recorded).

    ``centred=False``: ``pop + sd z`` with ``z_<name> ~ N(0, 1)`` -- for parameters that the
    data of many tasks leave weakly identified (their prior dominates).  ``centred=True``:
    the task values (``<name>``, or ``ln_<name>``) are sampled directly around ``pop`` -- for
    parameters every task's data pin down, where the non-centred form ties each ``z`` to
    ``pop`` and ``sd`` and makes NUTS take hundreds of leapfrog steps per draw.
    ``record``: keep the task values as ``<name>`` (a Deterministic unless sampled as such).
    With a single task there is no spread: the task's value is ``<name>_pop`` (the
    population prior is its prior), and ``<name>_sd`` is not in the model.
    """
    prior = spec.priors[f"{name}_pop"]
    log = prior.distribution == "LogNormal"
    if log:
        pop = pm.Normal(f"ln_{name}_pop", mu=prior.parameters["mu"], sigma=prior.parameters["sigma"])
        pm.Deterministic(f"{name}_pop", pt.exp(pop))
    else:
        pop = prior.create_variable(f"{name}_pop")
    if len(pm.modelcontext(None).coords["task"]) == 1:
        # One task: nothing to pool over, and a spread the data cannot see is a funnel
        # (divergences); the population prior is the task's prior.
        value = pt.exp(pop)[None] if log else pop[None]
        return pm.Deterministic(name, value, dims="task") if record else value
    sd = spec.priors[f"{name}_sd"].create_variable(f"{name}_sd")
    if centred and not log and record:
        return pm.Normal(name, mu=pop, sigma=sd, dims="task")
    if centred:
        value = pm.Normal(f"ln_{name}" if log else f"{name}_task", mu=pop, sigma=sd, dims="task")
    else:
        value = pop + sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims="task")
    value = pt.exp(value) if log else value
    return pm.Deterministic(name, value, dims="task") if record else value


def _downstream_likelihood(spec, kind, tasks, acc_rows, latent_loss, centre) -> None:
    """Task links from latent loss to accuracy; observed variable ``acc`` on dim ``acc_obs``.

    With ``level_pop`` in the spec (the shipped ``chinchilla`` spec), each task's link is
    parametrised where its data are, at the ladder's centre loss ``loss_centre`` (geometric
    mean of the fitted losses, on the link's scale: ``centre``; ``latent_loss`` is on that
    scale too, see :func:`~bayescale.downstream.to_link_scale`):

    - ``level``: logit of the accuracy reached at the centre, as a share of [chance, 1];
    - ``slope``: as in :func:`~bayescale.downstream.link` (1/nats);
    - ``ceiling``: the centre accuracy plus ``sigmoid(h)`` of the headroom above it, with
      ``h`` pooled as ``ceiling_pop + ceiling_sd z_ceiling``.

    ``intercept`` (the link's linear predictor at the centre, see
    :func:`~bayescale.downstream.link_centred`) and ``midpoint = loss_centre + intercept /
    slope`` are recorded.  Level and slope are pinned by every task's data, so they are
    sampled centred around their population values; the ceiling of a task far below it is
    left to the prior (non-centred).  The midpoint parametrisation (older specs: ``midpoint_pop``)
    puts a task still at chance at a midpoint far outside the data, where midpoint, slope and
    ceiling trade off along a curved ridge that NUTS crosses slowly.

    Likelihood: with known ``n_items``, Beta-Binomial with per-task precision ``phi``
    (``ln phi_t ~ Normal(ln phi_pop, phi_sd)``) when the spec has ``phi_pop``, else Binomial;
    without ``n_items``, Beta with one learned precision.
    """
    task_index = {t: i for i, t in enumerate(tasks["task"])}
    t_idx = pm.Data("task_index", acc_rows["metric"].map(task_index).to_numpy(), dims="acc_obs")
    chance = pm.Data("task_chance", tasks["chance"].to_numpy(dtype=float), dims="task")
    if "level_pop" in spec.priors:
        centre = pm.Deterministic("loss_centre", centre)
        slope = _pooled_over_tasks(spec, "slope", centred=True)
        level = _pooled_over_tasks(spec, "level", centred=True)
        headroom = _pooled_over_tasks(spec, "ceiling", record=False)
        at_centre = chance + (1 - chance) * pm.math.sigmoid(level)
        ceiling = pm.Deterministic("ceiling", at_centre + (1 - at_centre) * pm.math.sigmoid(headroom), dims="task")
        # share of [chance, ceiling] reached at the centre, on the link's scale
        if kind == "sigmoid":
            intercept = level + pt.softplus(-headroom)
        else:  # intercept = -z at the centre, from the share reached there (exp: 1 - e^{-e^{-z}}; gompertz: e^{-e^z})
            log_share = pt.log(pm.math.sigmoid(level)) - pt.log(
                pm.math.sigmoid(level) + pm.math.sigmoid(-level) * pm.math.sigmoid(headroom))
            if kind == "exp":
                share = pt.clip(pt.exp(log_share), 1e-12, 1 - 1e-12)
                intercept = pt.log(-pt.log1p(-share))
            else:
                intercept = -pt.log(pt.clip(-log_share, 1e-12, np.inf))
        intercept = pm.Deterministic("intercept", intercept, dims="task")
        pm.Deterministic("midpoint", centre + intercept / slope, dims="task")
        p = link_centred(kind, latent_loss, chance[t_idx], ceiling[t_idx], slope[t_idx], intercept[t_idx], centre,
                         xp=pt)
    else:
        slope = _pooled_over_tasks(spec, "slope")
        ceiling = pm.Deterministic(
            "ceiling", chance + (1 - chance) * pm.math.sigmoid(_pooled_over_tasks(spec, "ceiling", record=False)),
            dims="task",
        )
        midpoint = _pooled_over_tasks(spec, "midpoint")
        p = link(kind, latent_loss, chance[t_idx], ceiling[t_idx], slope[t_idx], midpoint[t_idx], xp=pt)
    p = pt.clip(p, 1e-6, 1 - 1e-6)
    if acc_rows["n_items"].notna().all():
        n_items = acc_rows["n_items"].to_numpy(dtype=float).astype("int64")
        hits = successes(acc_rows).astype("int64")
        if "phi_pop" in spec.priors:
            phi = _pooled_over_tasks(spec, "phi")[t_idx]
            pm.BetaBinomial("acc", n=n_items, alpha=p * phi, beta=(1 - p) * phi, observed=hits, dims="acc_obs")
        else:
            pm.Binomial("acc", n=n_items, p=p, observed=hits, dims="acc_obs")
    else:
        precision = spec.priors["precision"].create_variable("precision")
        value = np.clip(acc_rows["value"].to_numpy(dtype=float), 1e-4, 1 - 1e-4)
        pm.Beta("acc", alpha=p * precision, beta=(1 - p) * precision, observed=value, dims="acc_obs")


def structure_key(spec: ModelSpec, model: pm.Model, options: ModelOptions | None = None) -> str:
    """What determines the compiled graph: spec, options and every dim length except ``obs``.

    Two models with the same key differ only in their ``pm.Data`` values, so a compiled
    sampler can be reused with new data.  When a free variable has dim ``obs`` (``z_walk``
    of ``drift="walk"``) the number of rows sets the size of the sampled vector, so it is
    part of the key too.
    """
    free_obs = any("obs" in (model.named_vars_to_dims.get(v.name) or ()) for v in model.free_RVs)
    dims = sorted((k, len(v)) for k, v in model.coords.items() if k != "obs" or free_obs)
    return f"{spec.hash()}|{options}|{dims}"
