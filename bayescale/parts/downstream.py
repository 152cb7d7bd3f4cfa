"""The downstream link: task accuracy as a function of each checkpoint's latent loss.

Fitted jointly with the loss law: every ``acc:<task>`` row is linked to the latent loss
of its checkpoint (the law at its run and tokens, plus its run's offset and walk) through
a bounded link between the task's chance accuracy and a ceiling (see
:mod:`bayescale.downstream` for the curves).  Each task is parametrised where its data are,
at the ladder's centre loss ``loss_centre`` (geometric mean of the fitted losses, on the
link's scale): ``level`` (logit of the share of [chance, 1] reached there), ``slope``
(1/nats) and the ceiling's share of the headroom above the centre accuracy; the link's
``intercept`` and ``midpoint`` are recorded.  Task parameters are partially pooled across
tasks (``<name>_pop``, ``<name>_sd``; with one task the population prior is its prior).

Likelihood: with ``n_items`` known, Beta-Binomial with a per-task precision ``phi``
(``overdispersion=True``) or Binomial; without ``n_items``, a Beta with one precision.
Run-level effect (``run_effect=True``, several tasks): every task of run r sees the run's
latent loss times ``exp(tau_downstream z_r)``, so errors are correlated across a run's
tasks and a new run's average band does not average per-task noise away.

Example
-------
>>> Downstream(link="sigmoid", tasks=("acc:avg",)).to_dict()["tasks"]
['acc:avg']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from ..downstream import (
    AVERAGE,
    LINK_SCALES,
    LINKS,
    REDUCIBLE_FLOOR,
    link_centred,
    successes,
    task_table,
    to_link_scale,
)
from .base import BuildContext, Default, ModelError, Part, PredictContext, choice, default


@dataclass(frozen=True)
class Downstream(Part):
    """Task accuracies linked to the latent loss, fitted jointly with it.

    Parameters
    ----------
    link
        ``"sigmoid"`` (default, as in the OLMo ladder), ``"exp"`` (Gadre et al. 2024's
        exponential, bounded) or ``"gompertz"``.
    scale
        What the link is linear in: ``"loss"`` (nats) or ``"log_reducible"`` (``ln(L - E)``:
        links steepen as the loss approaches the law's irreducible E).
    tasks
        The ``acc:<task>`` metrics to fit (default every one in the table).  An average fitted
        as one metric: ``("acc:avg",)``.
    run_effect
        The run-level downstream effect (with several tasks).
    overdispersion
        Beta-Binomial (per-task precision ``phi``) rather than Binomial when ``n_items`` is known.
    """

    lookup_name = "downstream"
    sources = ("downstream", "benchmark")
    order = 50
    link: str = "sigmoid"
    scale: str = "loss"
    tasks: tuple[str, ...] | None = None
    run_effect: bool = True
    overdispersion: bool = True

    def random_sources(self, posterior) -> tuple[str, ...]:
        """``benchmark``, and ``downstream`` where the fit has run-level downstream offsets."""
        return self.sources if "downstream_offset" in posterior else ("benchmark",)

    def __post_init__(self):
        choice(self.lookup_name, "link", self.link, LINKS)
        choice(self.lookup_name, "scale", self.scale, LINK_SCALES)
        if self.tasks is not None:
            bad = [t for t in self.tasks if not str(t).startswith("acc:")]
            if bad:
                raise ModelError(f"downstream: tasks must be 'acc:<task>' metrics, got {bad}")

    def priors(self) -> dict[str, Default]:
        """Priors of the task slopes, levels, ceilings and precisions (and run effect)."""
        out = {
            "slope_pop": default("Normal",
                                 "Population slope of accuracy in loss, 1/nats. OLMo-ladder and "
                                 "Gadre et al. fits move from chance to ceiling over 0.5-2 nats of "
                                 "loss (slopes 2-8); centred at 2 with room for flat tasks (0) and "
                                 "inverse scaling (< 0).", mu=2.0, sigma=2.0),
            "slope_sd": default("HalfNormal",
                                "Spread of task slopes around the population, 1/nats: tasks differ "
                                "several-fold in how sharply they respond to loss.", sigma=2.0),
            "level_pop": default("Normal",
                                 "Logit of each task's accuracy at the ladder's centre loss as a "
                                 "share of [chance, 1]. Small-model ladders sit in the lower part "
                                 "of most benchmarks' range; centred at -1 (27% of the range), 90% "
                                 "prior mass in [-4.3, 2.3] (1%-91%).",
                                 mu=-1.0, sigma=2.0),
            "level_sd": default("HalfNormal",
                                "Spread of task levels, logit scale: at the same loss some tasks "
                                "are still at chance (share < 5%) while others are well above it.",
                                sigma=2.0),
            "ceiling_pop": default("Normal",
                                   "Logit of the ceiling's share of the headroom above the task's "
                                   "accuracy at the centre. 2 -> 88%: benchmarks have label noise "
                                   "and unanswerable items.",
                                   mu=2.0, sigma=1.5),
            "ceiling_sd": default("HalfNormal", "Spread of task ceilings on the logit scale.",
                                  sigma=1.0),
            "precision": default("Gamma",
                                 "Precision of the Beta likelihood for accuracies whose number of "
                                 "items is unknown (mean 200: like a benchmark of ~200 items).",
                                 alpha=2.0, beta=0.01),
        }
        if self.overdispersion:
            out["phi_pop"] = default(
                "LogNormal",
                "Population precision of the Beta-Binomial accuracy likelihood: accuracy p "
                "scatters around the link with sd at most sqrt(p(1-p)/(phi+1)) beyond item "
                "sampling. Seed-to-seed accuracy differences of ~0.5-2 points are typical (Madaan "
                "et al. 2024), phi ~ 2500 at p = 0.5: median e^7.8 = 2400, 90% prior mass in [90, "
                "66000]; phi >> n_items is the plain Binomial.",
                mu=7.8, sigma=2.0)
            out["phi_sd"] = default(
                "HalfNormal",
                "Spread of task precisions around phi_pop on the log scale: benchmarks differ by "
                "one to two orders of magnitude in extra-Binomial noise (Gadre et al. 2024: close "
                "to Binomial for some tasks, 24-243x it for squad, bbq, boolq, jeopardy, coqa).",
                sigma=1.5)
        if self.run_effect:
            out["tau_downstream"] = default(
                "HalfNormal",
                "Scale of the run-level downstream effect on ln(loss): every task of run r sees "
                "its latent loss times exp(tau z_r). Seed-to-seed differences alone are 0.5-2 "
                "accuracy points (Madaan et al. 2024), what a few hundredths of a nat buy; "
                "half-normal 0.05 has median 0.034, 95% below 0.1.",
                sigma=0.05)
        return out

    def variables(self, model) -> list[str]:
        """The tasks' population and spread parameters (and ``tau_downstream``), no per-task."""
        names = ["slope_pop", "slope_sd", "level_pop", "level_sd", "ceiling_pop", "ceiling_sd"]
        if self.overdispersion:
            names += ["phi_pop", "phi_sd"]
        if self.run_effect:
            names.append("tau_downstream")
        return names

    # ------------------------------------------------------------------ rows
    def select(self, table: pd.DataFrame, loss_rows: pd.DataFrame, checkpoints) -> pd.DataFrame:
        """The accuracy rows to fit, sorted by metric, family, run and tokens.

        They are chosen like the loss rows by the model's ``checkpoints`` part (see
        :func:`~bayescale.parts.checkpoints.select_rows`).
        """
        from .checkpoints import select_rows

        acc = table[table["metric"].str.startswith("acc:")]
        if self.tasks is not None:
            missing = sorted(set(self.tasks) - set(acc["metric"]))
            if missing:
                raise ModelError(f"downstream: task(s) {missing} are not in the runs table's "
                                 "'metric' column")
            acc = acc[acc["metric"].isin(self.tasks)]
        if acc.empty:
            raise ModelError("downstream: needs 'acc:<task>' rows in the runs table (none found)")
        if AVERAGE in set(acc["metric"]) and acc["metric"].nunique() > 1:
            raise ModelError(f"downstream: the runs table has '{AVERAGE}' rows and per-task "
                             "'acc:<task>' rows; fitting both counts the same answers twice: set "
                             f"tasks=['{AVERAGE}'] to fit the average as one metric, or list the "
                             f"tasks without it (their mean is predicted as '{AVERAGE}')")
        unknown = sorted(set(acc["run"]) - set(loss_rows["run"]))
        if unknown:
            raise ModelError("downstream: accuracy rows of runs without fitted loss rows: "
                             f"{unknown[:5]}")
        acc, _ = select_rows(acc, checkpoints)
        return acc.sort_values(["metric", "family", "run", "tokens"],
                               kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Add the tasks' links and the accuracy likelihood on the ``acc_obs`` rows."""
        acc_rows = ctx.acc_rows
        assert acc_rows is not None  # the model is built with this part only with accuracy rows
        tasks = task_table(acc_rows)
        model = pm.modelcontext(None)
        model.add_coord("task", tasks["task"].tolist())
        priors = ctx.model.priors
        ln_latent = ctx.mu["acc"]
        if self.run_effect and len(tasks) > 1:
            with_acc = set(acc_rows["run"])
            acc_runs = [r for r in ctx.runs if r in with_acc]
            model.add_coord("acc_run", acc_runs)
            lookup = {r: i for i, r in enumerate(acc_runs)}
            index = pm.Data("acc_offset_index", acc_rows["run"].map(lookup).to_numpy(),
                            dims="acc_obs")
            tau = priors["tau_downstream"].create_variable("tau_downstream")
            z = pm.Normal("z_downstream", 0.0, 1.0, dims="acc_run")  # non-centred
            offset = pm.Deterministic("downstream_offset", tau * z, dims="acc_run")
            ln_latent = ln_latent + offset[index]
        E_rows = ctx.theta["acc"]["E"]
        E_law = ctx.theta_family["E"]
        latent = to_link_scale(self.scale, pt.exp(ln_latent), E_rows, pt)
        centre = pt.exp(pt.mean(ctx.ln_value))  # geometric mean of the fitted losses
        if self.scale == "log_reducible":
            centre = pt.log(pt.maximum(centre - pt.mean(E_law), REDUCIBLE_FLOOR))
        self._likelihood(ctx, tasks, latent, centre)

    def _likelihood(self, ctx: BuildContext, tasks: pd.DataFrame, latent, centre) -> None:
        acc_rows = ctx.acc_rows
        assert acc_rows is not None  # see build
        priors = ctx.model.priors
        task_index = {t: i for i, t in enumerate(tasks["task"])}
        t_idx = pm.Data("task_index", acc_rows["metric"].map(task_index).to_numpy(), dims="acc_obs")
        chance = pm.Data("task_chance", tasks["chance"].to_numpy(dtype=float), dims="task")
        centre = pm.Deterministic("loss_centre", centre)
        slope = _pooled_over_tasks(priors, "slope", centred=True)
        level = _pooled_over_tasks(priors, "level", centred=True)
        headroom = _pooled_over_tasks(priors, "ceiling", record=False)
        at_centre = chance + (1 - chance) * pm.math.sigmoid(level)
        ceiling = pm.Deterministic("ceiling",
                                   at_centre + (1 - at_centre) * pm.math.sigmoid(headroom),
                                   dims="task")
        if self.link == "sigmoid":
            intercept = level + pt.softplus(-headroom)
        else:
            # -z at the centre, from the share reached there
            # (exp: 1 - e^{-e^{-z}}; gompertz: e^{-e^z})
            log_share = pt.log(pm.math.sigmoid(level)) - pt.log(
                pm.math.sigmoid(level) + pm.math.sigmoid(-level) * pm.math.sigmoid(headroom))
            if self.link == "exp":
                share = pt.clip(pt.exp(log_share), 1e-12, 1 - 1e-12)
                intercept = pt.log(-pt.log1p(-share))
            else:
                intercept = -pt.log(pt.clip(-log_share, 1e-12, np.inf))
        intercept = pm.Deterministic("intercept", intercept, dims="task")
        pm.Deterministic("midpoint", centre + intercept / slope, dims="task")
        p = link_centred(self.link, latent, chance[t_idx], ceiling[t_idx], slope[t_idx],
                         intercept[t_idx], centre, xp=pt)
        if ctx.store.get("record_mean"):
            pm.Deterministic("p_acc", p, dims="acc_obs")
        p = pt.clip(p, 1e-6, 1 - 1e-6)
        if acc_rows["n_items"].notna().all():
            # data, not constants: one compiled model serves every ladder of this shape
            items = acc_rows["n_items"].to_numpy(dtype=float).astype("int64")
            n_items = pm.Data("acc_items", items, dims="acc_obs")
            hits = pm.Data("acc_hits", successes(acc_rows).astype("int64"), dims="acc_obs")
            if self.overdispersion:
                phi = _pooled_over_tasks(priors, "phi")[t_idx]
                pm.BetaBinomial("acc", n=n_items, alpha=p * phi, beta=(1 - p) * phi, observed=hits,
                                dims="acc_obs")
            else:
                pm.Binomial("acc", n=n_items, p=p, observed=hits, dims="acc_obs")
        else:
            precision = priors["precision"].create_variable("precision")
            fractions = np.clip(acc_rows["value"].to_numpy(dtype=float), 1e-4, 1 - 1e-4)
            value = pm.Data("acc_value", fractions, dims="acc_obs")
            pm.Beta("acc", alpha=p * precision, beta=(1 - p) * precision, observed=value,
                    dims="acc_obs")

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Store accuracy draws of the ``acc:``/``err:`` targets in ``ctx.store["accuracy"]``."""
        assert ctx.metrics is not None and ctx.mu is not None  # set before the parts predict
        downstream = ctx.metrics.str.startswith(("acc:", "err:")).to_numpy()
        if not downstream.any():
            return
        latent = np.exp(ctx.mu[:, downstream])
        if "downstream_offset" in ctx.idata.posterior:
            latent = latent * np.exp(self._offsets(ctx, ctx.run_labels[downstream]))
        E = np.broadcast_to(ctx.theta["E"], ctx.mu.shape)[:, downstream]
        latent = to_link_scale(self.scale, latent, E)
        ctx.store["accuracy"] = (downstream,
                                 self.accuracy_draws(ctx, ctx.metrics[downstream].tolist(), latent))

    def _offsets(self, ctx: PredictContext, runs: pd.Series) -> np.ndarray:
        """Run-level downstream offsets per draw and target, shape (S, T).

        A fitted run's own; a new run's draw ``tau z`` in observation draws, else zero.
        """
        names = [str(r)
                 for r in ctx.idata.posterior["downstream_offset"].coords["acc_run"].to_numpy()]
        offsets = ctx.draws("downstream_offset")
        out = np.zeros((offsets.shape[0], len(runs)))
        for j, run in enumerate(runs):
            if run in names:
                out[:, j] = offsets[:, names.index(run)]
            elif ctx.new_draws:
                z = ctx.random("downstream", lambda rng, n: rng.standard_normal(n))
                out[:, j] = ctx.draws("tau_downstream") * z
        return out

    def accuracy_draws(self, ctx: PredictContext, metrics: list[str],
                       latent: np.ndarray) -> np.ndarray:
        """Accuracy (``acc:<task>``, ``acc:avg``) or error (``err:...``) draws at latent losses.

        ``latent`` is on the link's scale; the draws have shape (S, len(metrics)).  ``acc:avg``
        is the mean over every fitted task draw by draw (correlations kept), or the fitted
        average's own link.
        """
        tasks = task_table(ctx.fit.acc_rows)
        names = tasks["task"].tolist()
        slope, ceiling = ctx.draws("slope"), ctx.draws("ceiling")
        intercept, centre = ctx.draws("intercept"), ctx.draws("loss_centre")[:, None]
        phi = ctx.draws("phi") if "phi" in ctx.idata.posterior else None
        chance, n_items = tasks["chance"].to_numpy(), tasks["n_items"].to_numpy()
        out = np.empty_like(latent)
        for j, metric in enumerate(metrics):
            task = "acc:" + metric[4:]
            if task in names:
                columns = [names.index(task)]
            elif task == AVERAGE:
                columns = list(range(len(names)))
            else:
                raise ModelError(f"downstream: metric {metric!r} is not a fitted task; fitted: "
                                 f"{names} and {AVERAGE}")
            acc = link_centred(self.link, latent[:, [j]], chance[columns], ceiling[:, columns],
                               slope[:, columns], intercept[:, columns], centre)
            if ctx.new_draws:
                for k, col in enumerate(columns):
                    p = np.clip(acc[:, k], 1e-9, 1 - 1e-9)
                    if np.isfinite(n_items[col]):
                        items = int(n_items[col])
                        if phi is not None:
                            p = ctx.random("benchmark", _beta, p, phi[:, col],
                                           inverse=_beta_quantile)
                        acc[:, k] = ctx.random(
                            "benchmark", lambda rng, n, p, m=items: rng.binomial(m, p), p,
                            inverse=lambda u, p, m=items: stats.binom.ppf(u, m, p)) / items
                    else:
                        acc[:, k] = ctx.random("benchmark", _beta, p, ctx.draws("precision"),
                                               inverse=_beta_quantile)
            value = acc.mean(axis=1)
            out[:, j] = 1 - value if metric.startswith("err:") else value
        return out


def _beta(rng: np.random.Generator, n: int, mean: np.ndarray,
          precision: np.ndarray) -> np.ndarray:
    """Beta draws with the given mean and precision (one per draw)."""
    return rng.beta(mean * precision, (1 - mean) * precision)


def _beta_quantile(u: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The Beta(mean, precision) quantile at ``u`` (common random numbers)."""
    return stats.beta.ppf(u, mean * precision, (1 - mean) * precision)


def _pooled_over_tasks(priors, name: str, centred: bool = False,
                       record: bool = True) -> pt.TensorVariable:
    """Task-level parameter (dims ``task``) partially pooled around ``<name>_pop``.

    The spread is ``<name>_sd`` (on the log scale for a LogNormal ``<name>_pop``).

    ``centred=True`` samples the task values directly around the population (parameters every
    task's data pin down: non-centred they tie each ``z`` to pop and sd and NUTS takes hundreds
    of leapfrog steps); ``centred=False`` is ``pop + sd z`` (parameters the data leave to the
    prior).  With one task the population prior is the task's prior (no spread: a spread the
    data cannot see is a funnel).
    """
    prior = priors[f"{name}_pop"]
    log = prior.distribution == "LogNormal"
    if log:
        pop = pm.Normal(f"ln_{name}_pop", mu=prior.parameters["mu"],
                        sigma=prior.parameters["sigma"])
        pm.Deterministic(f"{name}_pop", pt.exp(pop))
    else:
        pop = prior.create_variable(f"{name}_pop")
    if len(pm.modelcontext(None).coords["task"]) == 1:
        value = pt.exp(pop)[None] if log else pop[None]
        return pm.Deterministic(name, value, dims="task") if record else value
    sd = priors[f"{name}_sd"].create_variable(f"{name}_sd")
    if centred and not log and record:
        return pm.Normal(name, mu=pop, sigma=sd, dims="task")
    if centred:
        value = pm.Normal(f"ln_{name}" if log else f"{name}_task", mu=pop, sigma=sd, dims="task")
    else:
        value = pop + sd * pm.Normal(f"z_{name}", 0.0, 1.0, dims="task")
    value = pt.exp(value) if log else value
    return pm.Deterministic(name, value, dims="task") if record else value
