"""The self-contained HTML posterior report of a fit.

One file that opens offline: CSS inline, figures inline as base64 PNG data URIs, no
scripts and no external resources.  It is rendered from a jinja2 template
(``templates/report.html.j2``) and reads only what a saved fit holds, so it can be rebuilt
from a ``.nc`` file (:func:`bayescale.load_fit`).

Sections, in order, each an ``<h2>`` with an ``id``: Headline (``headline``), Data
(``data``), Model (``model``), Model choice (``model_choice``), Fit (``fit``), Parameters
(``parameters``), Diagnostics (``diagnostics``), Downstream (``downstream``), Uncertainty
(``uncertainty``), Reproducibility (``reproducibility``).  A section whose parts the fit
lacks is left out: Model choice when the model was named, Diagnostics for a MAP/ADVI
preview, Downstream without ``acc:`` rows, Uncertainty when no targets were given.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from ..plotting import compute as cp
from ..plotting import figures as figs
from ..plotting import rcparams
from ..plotting.save import encode_png
from ..result import OUTLIER_DROP_NATS

#: ``(id, heading)`` of every section, in report order.
SECTIONS = (
    ("headline", "Headline"),
    ("data", "Data"),
    ("model", "Model"),
    ("model_choice", "Model choice"),
    ("fit", "Fit"),
    ("parameters", "Parameters"),
    ("diagnostics", "Diagnostics"),
    ("downstream", "Downstream"),
    ("uncertainty", "Uncertainty"),
    ("reproducibility", "Reproducibility"),
)
#: Predictions beyond this factor of the ladder's largest compute get a warning.
FAR_EXTRAPOLATION = 1000.0
#: Rows of the runs table shown in the Data section (the rest are counted).
MAX_RUN_ROWS = 40
PREDICTION_COLUMNS = ("params", "tokens", "metric", "median", "lower", "upper")

LIKELIHOOD_WORDS = {
    "student_t": "Student-t on ln(loss), with scale σ and degrees of freedom ν: a few outlying "
                 "runs are down-weighted instead of bending the law.",
    "normal": "Normal on ln(loss) with scale σ: a relative scatter of the same size at every loss.",
}


def default_targets(fit: Any) -> pd.DataFrame:
    """The report's target when none is given: one row 10x the ladder's largest run in N and D.

    The largest run is the fitted row with the largest N x D, so the target lies 100x
    beyond the ladder's compute (see :func:`bayescale.plotting.compute.default_targets`).
    """
    return cp.default_targets(fit)


# ----------------------------------------------------------------------------- formatting
def sig(value: Any, digits: int = 6) -> str:
    """``value`` to ``digits`` significant figures (plain text)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def sci(value: Any, digits: int = 4) -> Markup:
    """A large count as HTML: ``7×10<sup>10</sup>`` (plain below 10,000)."""
    value = float(value)
    if not math.isfinite(value):
        return Markup("–")
    if abs(value) < 1e4:
        return Markup(escape(f"{value:.{digits}g}"))
    exponent = math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10**exponent:.{digits}g}"
    if mantissa == "10":
        mantissa, exponent = "1", exponent + 1
    head = "" if mantissa == "1" else f"{escape(mantissa)}×"
    return Markup(f"{head}10<sup>{exponent}</sup>")


def factor(value: Any) -> str:
    """A ratio in words-friendly form: 0.25, 3.2, 50, 5,000, 1.2e+06."""
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if value >= 1e6:
        return f"{value:.2g}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2g}"


def raw(value: Any) -> str:
    """The exact float as text (``repr``), for ``data-value`` attributes."""
    return repr(float(value))


def _seconds(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


# ----------------------------------------------------------------------------- context
@dataclass
class InlineFigure:
    """One inlined figure."""

    key: str
    src: str
    alt: str
    caption: str


@dataclass
class ReportBuilder:
    """Collects the report's parts from a fit; :meth:`context` hands them to the template."""

    fit: Any
    targets: pd.DataFrame
    targets_given: bool
    title: str
    hdi_prob: float
    dpi: int
    draw: bool | frozenset[str] = True
    problems: list[str] = field(default_factory=list)

    def figure(self, key: str, caption: str, alt: str, **kwargs: Any) -> InlineFigure | None:
        """Draw and encode one figure; a failure becomes a note, not a broken report."""
        if self.draw is False or (self.draw is not True and key not in self.draw):
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = figs.plot(self.fit, key, **kwargs)
            return InlineFigure(key, encode_png(fig, dpi=self.dpi), alt, caption)
        except Exception as err:  # noqa: BLE001 - one bad figure must not lose the whole report
            self.problems.append(f"The {key} figure could not be drawn ({type(err).__name__}: "
                                 f"{err}).")
            warnings.warn(f"write_report: the {key} figure could not be drawn: {err}", UserWarning,
                          stacklevel=3)
            return None

    # ------------------------------------------------------------------ sections
    def headline(self) -> dict[str, Any]:
        """The predictions table, verdict, warnings and notes of the report's top."""
        fit = self.fit
        predictions = cp.quiet_predict(fit, self.targets, self.hdi_prob)
        diag = fit.diagnostics()
        columns = (["family"] if "family" in predictions else []) + list(PREDICTION_COLUMNS)
        rows = []
        for _, row in predictions.iterrows():
            cells = []
            for col in columns:
                value = row[col]
                if col in ("params", "tokens"):
                    cells.append({"col": col, "text": sci(value), "value": raw(value),
                                  "numeric": True})
                elif col in ("median", "lower", "upper"):
                    cells.append({"col": col, "text": sig(value, 6), "value": raw(value),
                                  "numeric": True})
                else:
                    cells.append({"col": col, "text": str(value), "value": str(value),
                                  "numeric": False})
            rows.append(cells)
        warnings_ = []
        if diag.passed is False:
            warnings_.append(
                "The sampler did not converge, so the numbers in this report may be wrong: sample "
                "longer (more tune and draws) or revisit the model before trusting them. The "
                "Diagnostics section has the details."
            )
        elif diag.passed is None:
            warnings_.append(
                f"This fit is a {fit.sampler_config.method.upper()} preview: it has no convergence "
                "diagnostics and its bands ignore most of the posterior uncertainty. Fit with "
                "method='nuts' before relying on these numbers."
            )
        outliers = fit.outliers()
        if len(outliers):
            shown = "; ".join(f"run {r['run']} at D = {sci(r['tokens'])} (loss {r['value']:.4g})"
                              for _, r in outliers.head(5).iterrows())
            more = f" and {len(outliers) - 5} more" if len(outliers) > 5 else ""
            warnings_.append(
                f"{len(outliers)} fitted row(s) the model cannot account for (leave-one-out log "
                f"density more than {OUTLIER_DROP_NATS:g} nats below the typical row's): {shown}"
                f"{more}. A loss spike or a wrong value? The robust noise keeps them from pulling "
                "the law, but check them."
            )
        for i, row in predictions.iterrows():
            if row["extrapolation"] > FAR_EXTRAPOLATION:
                warnings_.append(
                    Markup(
                        f"Target {cast(int, i) + 1} (N = {sci(row['params'])}, "
                        f"D = {sci(row['tokens'])}) lies "
                        f"{factor(row['extrapolation'])}× beyond the ladder's largest compute: its "
                        "band assumes the law holds that far, which the data cannot check."
                    )
                )
        notes: list[str] = []
        if not self.targets_given:
            top = cp.largest_run(fit)
            notes.append(
                Markup(
                    "No targets were given: the table shows the default target, 10× the largest "
                    f"run (N = {sci(top['params'])}, D = {sci(top['tokens'])}) in both N and D."
                )
            )
        notes.append(
            f"Bands are {self.hdi_prob:.0%} highest-density intervals of a new run's measured "
            f"{fit.metric} (parameter uncertainty plus noise), from fit.predict(targets)."
        )
        extrapolation = [
            {"index": cast(int, i) + 1, "factor": float(row["extrapolation"]),
             "compute": cp.flops(row["params"], row["tokens"])}
            for i, row in predictions.iterrows()
        ]
        verdict = {True: "pass", False: "fail", None: "preview"}[diag.passed]
        return {
            "columns": columns,
            "rows": rows,
            "verdict": verdict,
            "verdict_text": diag.message(),
            "warnings": warnings_,
            "notes": notes,
            "extrapolation": extrapolation,
            "hdi_prob": self.hdi_prob,
            "metric": str(fit.metric),
        }

    def data(self) -> dict[str, Any]:
        """The Data section: facts about the ladder, its runs and the ladder figure."""
        fit = self.fit
        runs = fit.runs
        table = cp.ladder_table(fit)
        compute = cp.flops(runs["params"], runs["tokens"])
        facts = [
            ("runs", f"{runs['run'].nunique():,}"),
            ("fitted rows (checkpoints)", f"{len(runs):,}"),
            ("families", ", ".join(cp.families(fit))),
            ("metric", fit.metric),
            ("parameters N", Markup(f"{sci(runs['params'].min())} – {sci(runs['params'].max())}")),
            ("tokens D", Markup(f"{sci(runs['tokens'].min())} – {sci(runs['tokens'].max())}")),
            ("training compute C = 6ND (FLOP)",
             Markup(f"{sci(compute.min())} – {sci(compute.max())}")),
        ]
        shown = table.head(MAX_RUN_ROWS)
        rows = [
            {
                "family": r["family"],
                "run": r["run"],
                "params": sci(r["params"]),
                "total_tokens": sci(r["total_tokens"]),
                "checkpoints": int(r["checkpoints"]),
                "value": sig(r["value"], 4),
                "compute": sci(r["compute"], 3),
            }
            for _, r in shown.iterrows()
        ]
        ladder = self.figure(
            "ladder",
            "Each dot is a checkpoint (large: the run's last); checkpoints of one run are joined. "
            "Stars: prediction targets. Dashed: 20 tokens per parameter.",
            "Training ladder: parameters N against tokens D",
            targets=self.targets,
        )
        return {"facts": facts, "rows": rows, "hidden": len(table) - len(shown), "figure": ladder}

    def model(self) -> dict[str, Any]:
        """The Model section: law, likelihood, priors (used and unused) and structure."""
        fit = self.fit
        model = fit.model
        law = model.law
        doc = (type(law).__doc__ or "").strip().splitlines()
        used = set(cp.sampled_names(fit))
        if cp.has_family_dim(fit):
            pooling = model.part("family_pooling")
            used.add("family_var" if pooling is not None and pooling.prior == "student_t"
                     else "family_sd")
        priors: list[dict[str, str]] = []
        unused: list[dict[str, str]] = []
        provenance = model.provenance
        for name, prior in model.priors.items():
            entry = {"name": name, "prior": _prior_text(prior),
                     "provenance": provenance.get(name, "")}
            (priors if name in used else unused).append(entry)
        structure = [(f"part {p.lookup_name}",
                      ", ".join(f"{k}={v!r}" for k, v in p.to_dict().items() if k != "part")
                      or "(defaults)") for p in model.parts]
        figure = self.figure(
            "prior_posterior",
            "Grey: the model's prior; coloured: the posterior. Where the posterior is much "
            "narrower than the prior, the data, not the prior, set the parameter.",
            "Prior against posterior density of each parameter",
        )
        return {
            "name": model.name,
            "law": law.lookup_name,
            "equation": law.equation,
            "description": model.description or (doc[0] if doc else ""),
            "likelihood": model.noise.likelihood,
            "likelihood_words": LIKELIHOOD_WORDS.get(model.noise.likelihood, ""),
            "noise": list(model.noise.noise_params),
            "scale": [("N0", sci(fit.scale.N0)), ("D0", sci(fit.scale.D0))],
            "priors": priors,
            "unused_priors": unused,
            "structure": structure,
            "figure": figure,
        }

    def model_choice(self) -> dict[str, Any]:
        """The Model choice section: why ``model="auto"`` fitted this model, and the scores."""
        choice = self.fit.model_choice
        columns = [c for c in ("model", "calibrated_log_score", "discrepancy_scale",
                               "mean_log_score", "median_abs_rel_error", "coverage_50",
                               "coverage_90", "median_width_90", "n", "all_converged")
                   if c in choice.scores]
        rows = [[sig(v, 4) if isinstance(v, float) else str(v) for v in rec]
                for rec in choice.scores[columns].itertuples(index=False)]
        figure = (self.figure("model_choice", "Each candidate's log predictive density of "
                              "the held-out rows, and its error and coverage there.",
                              "Backtest scores of the candidate models")
                  if rows else None)
        link_columns = [c for c in ("model", "mean_log_score", "median_abs_rel_error",
                                    "coverage_50", "coverage_90", "median_width_90", "n",
                                    "all_converged") if c in choice.link_scores]
        link_rows = [[sig(v, 4) if isinstance(v, float) else str(v) for v in rec]
                     for rec in choice.link_scores[link_columns].itertuples(index=False)]
        return {"message": choice.message(), "candidates": ", ".join(choice.candidates),
                "folds": choice.folds, "columns": columns, "rows": rows, "figure": figure,
                "link_columns": link_columns, "link_rows": link_rows}

    def fit_section(self) -> dict[str, Any]:
        """The Fit section: the fit, residual and posterior predictive figures."""
        figures = [
            self.figure(
                "fit",
                "Top: observed loss against compute with the posterior band of the compute-optimal "
                "law (the law minimised over N at each C); stars are the targets' predictive "
                "bands. Bottom: loss against tokens, with the law's band at each model size.",
                "Observed loss and the fitted law",
                targets=self.targets,
            ),
            self.figure(
                "residuals",
                "ln(observed) − ln(law): roughly the relative error. Structure here (a trend, a "
                "family off the line) is misfit the bands do not include. Grey band: ±σ.",
                "Residuals against compute and tokens per parameter",
            ),
            self.figure(
                "ppc",
                "Each observation against the predictive interval of a new run with its N, D and "
                "family. A calibrated model puts about the nominal share inside and gives a flat "
                "PIT histogram.",
                "Posterior predictive check",
            ),
        ]
        return {"figures": [f for f in figures if f is not None]}

    def parameters(self) -> dict[str, Any]:
        """The Parameters section: the summary table (no MCSE) and the forest figure."""
        fit = self.fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = fit.summary(hdi_prob=self.hdi_prob)
        columns = [c for c in summary.columns if not c.startswith("mcse")]
        rows = [
            {"name": str(name), "unit": cp.parameter_unit(str(name)),
             "cells": [sig(row[c], 4) for c in columns]}
            for name, row in summary.iterrows()
        ]
        forest = None
        if cp.has_family_dim(self.fit):
            forest = self.figure(
                "forest",
                f"Posterior medians with 50% (thick) and {self.hdi_prob:.0%} (thin) intervals, per "
                "family.",
                "Forest plot of the parameters across families",
            )
        return {"columns": columns, "rows": rows, "forest": forest}

    def diagnostics(self) -> dict[str, Any]:
        """The Diagnostics section: verdict, R-hat, ESS, divergences and figures."""
        diag = self.fit.diagnostics()
        facts = [
            ("method", f"{self.fit.sampler_config.method} ({self.fit.sampler_config.sampler})"),
            ("max R-hat", f"{diag.max_rhat:.3f} (needs ≤ 1.01)"),
            ("min bulk ESS", f"{diag.min_ess_bulk:.0f} (needs ≥ {diag.min_ess_required:.0f})"),
            ("min tail ESS", f"{diag.min_ess_tail:.0f} (needs ≥ {diag.min_ess_required:.0f})"),
            ("divergent transitions", f"{diag.divergences} of {diag.n_draws:,} draws"),
        ]
        available = figs.available_figures(self.fit)
        figures = []
        if "rank" in available:
            figures.append(self.figure("rank",
                                       "Rank histograms per chain: roughly flat and alike when the "
                                       "chains sample the same distribution.", "Rank plots"))
        if "energy" in available:
            figures.append(self.figure("energy",
                                       "NUTS energy: the marginal and transition distributions "
                                       "overlap when the sampler explores the posterior well (BFMI "
                                       "above 0.3).",
                                       "Energy plot"))
        return {
            "verdict": {True: "pass", False: "fail", None: "preview"}[diag.passed],
            "verdict_text": diag.message(),
            "facts": facts,
            "problems": list(diag.problems),
            "figures": [f for f in figures if f is not None],
        }

    def downstream(self) -> dict[str, Any]:
        """The Downstream section: per-task verdicts, likelihood and the figure."""
        figure = self.figure("downstream",
                             "Accuracy of each checkpoint against its loss, with the posterior "
                             "median and band of each task's link; dashed: chance.",
                             "Downstream accuracy against loss")
        report = self.fit.task_report()
        tasks = [
            {"task": r.task, "p": f"{r.p_improves:.2f}", "slope": sig(r.slope_median, 3),
             "verdict": r.verdict}
            for r in report.itertuples()
        ]
        binomial = self.fit.acc_rows["n_items"].notna().all()
        posterior = self.fit.idata.posterior
        likelihood = ("Beta-Binomial (n_items, per-task precision)" if "phi" in posterior
                      else "Binomial (n_items)") \
            if binomial else "Beta"
        return {"metrics": cp.downstream_metrics(self.fit), "figure": figure, "tasks": tasks,
                "link": self.fit.model.part("downstream").link, "likelihood": likelihood}

    def uncertainty(self) -> dict[str, Any]:
        """The Uncertainty section: band widths at the targets and their figure."""
        table = cp.band_width_table(self.fit, self.targets, self.hdi_prob)
        rows = [
            {
                "index": cast(int, i) + 1,
                "compute": sci(r["compute"], 3),
                "extrapolation": f"{factor(r['extrapolation'])}×",
                "width": sig(r["width"], 4),
                "relative": f"±{50 * r['relative_width']:.2g}%",
            }
            for i, r in table.iterrows()
        ]
        figure = self.figure(
            "band_vs_scale",
            "Width of the predictive band as the target moves beyond the ladder (N and D scaled "
            "together from its largest run). Solid: a new run's loss; dashed: the law alone. "
            "Stars: the targets.",
            "Band width against target compute",
            targets=self.targets,
        )
        parts_figure = None
        parts_rows: list[dict[str, Any]] = []
        if "variance_parts" in figs.available_figures(self.fit, self.targets):
            parts = self.fit.uncertainty(self.targets)
            columns = [c for c in parts if c.endswith("_var") and c != "total_var"]
            parts_rows = [
                {"index": cast(int, i) + 1, "sd": sig(r["total_sd"], 3),
                 "shares": ", ".join(f"{c.removesuffix('_var')} {100 * r[c] / r['total_var']:.0f}%"
                                     for c in columns if r["total_var"] > 0)}
                for i, r in parts.iterrows()
            ]
            parts_figure = self.figure(
                "variance_parts",
                "Where each target's band comes from: the law of total variance over the "
                "model's parameters (law, epistemic) and each random source (a new family, a new "
                "seed, drift, benchmark items, noise), as shares of the predictive variance.",
                "Variance of each target split by source",
                targets=self.targets,
            )
        return {"rows": rows, "figure": figure, "unit": cp.metric_label(str(self.fit.metric)),
                "parts_rows": parts_rows, "parts_figure": parts_figure}

    def reproducibility(self) -> dict[str, Any]:
        """The Reproducibility section: hashes, seed, sampler, versions, model JSON."""
        fit = self.fit
        info = fit.info or {}
        sampler = fit.sampler_config.to_dict()
        created = fit.idata.posterior.attrs.get("created_at", "")
        facts = [
            ("runs data hash (SHA-256)",
             Markup(f'<code class="hash">{escape(info.get("runs_hash", "–"))}</code>')),
            ("model",
             Markup(f'{escape(fit.model.name)}, hash <code '
                    f'class="hash">{escape(fit.model.hash())}</code>')),
            ("random seed", str(sampler.get("random_seed", "–"))),
            ("fit wall time", _seconds(info.get("fit_seconds"))),
            ("posterior created", str(created) or "–"),
            ("parameter count convention", str(info.get("param_count", "–"))),
            ("centring N0, D0", f"{fit.scale.N0:.6g}, {fit.scale.D0:.6g}"),
        ]
        return {
            "facts": facts,
            "sampler": [(k, "–" if v is None else str(v)) for k, v in sampler.items()],
            "versions": sorted((str(k), str(v)) for k, v in (info.get("versions") or {}).items()),
            "spec_json": json.dumps(fit.model.to_dict(), indent=2, sort_keys=True, default=str),
        }

    # ------------------------------------------------------------------ all
    def context(self) -> dict[str, Any]:
        """The template's context: title, subtitle, sections and each section's dict."""
        fit = self.fit
        diag = fit.diagnostics()
        parts: dict[str, Any] = {"headline": self.headline(), "data": self.data(),
                                 "model": self.model(),
                                 "fit": self.fit_section(), "parameters": self.parameters()}
        if fit.model_choice is not None:
            parts["model_choice"] = self.model_choice()
        if diag.passed is not None and cp.is_mcmc(fit):
            parts["diagnostics"] = self.diagnostics()
        if cp.downstream_metrics(fit):
            parts["downstream"] = self.downstream()
        if self.targets_given:
            parts["uncertainty"] = self.uncertainty()
        parts["reproducibility"] = self.reproducibility()
        parts["headline"]["warnings"] += self.problems
        sections = [{"id": sid, "title": title} for sid, title in SECTIONS if sid in parts]
        runs = fit.runs
        subtitle = (
            f"model {fit.model.name} ({fit.model.law.equation}) fitted to {runs['run'].nunique()} "
            f"runs ({len(runs)} rows) of {fit.metric}"
        )
        return {"title": self.title, "subtitle": subtitle, "sections": sections, **parts}


def _prior_text(prior: Any) -> str:
    params = ", ".join(f"{k}={v}" for k, v in getattr(prior, "parameters", {}).items())
    dims = getattr(prior, "dims", None)
    text = f"{getattr(prior, 'distribution', prior)}({params})"
    return f"{text}, dims {tuple(dims)}" if dims else text


# ----------------------------------------------------------------------------- rendering
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bayescale.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sig"] = sig
    env.filters["factor"] = factor
    return env


def render_report(fit: Any, targets=None, title: str | None = None, hdi_prob: float | None = None,
                  dpi: int | None = None, figures: bool | Iterable[str] = True) -> str:
    """The report's HTML as a string (see :func:`write_report`)."""
    from ..predict import read_targets

    if isinstance(fit, (str, os.PathLike)):
        from ..io import load_fit

        fit = load_fit(fit)
    cp.check_fit(fit)
    hdi_prob = rcparams.get("hdi_prob", hdi_prob)
    dpi = rcparams.get("report.dpi", dpi)
    given = targets is not None
    table = read_targets(targets) if given else default_targets(fit)
    title = title or f"Scaling-law posterior: {fit.model.name} on {fit.runs['run'].nunique()} runs"
    if not isinstance(figures, bool):
        figures = frozenset(figures)
        unknown = sorted(figures - set(figs.FIGURES))
        if unknown:
            raise ValueError(f"unknown figures {unknown}; available: {list(figs.FIGURES)}")
    builder = ReportBuilder(fit, table, given, title, hdi_prob, dpi, draw=figures)
    return _environment().get_template("report.html.j2").render(**builder.context())


def write_report(fit: Any, path, targets=None, title: str | None = None,
                 hdi_prob: float | None = None,
                 dpi: int | None = None, figures: bool | Iterable[str] = True) -> Path:
    """Write the self-contained HTML posterior report of a fit.

    One file that opens offline (CSS inline, figures as base64 PNG data URIs, no scripts
    and no external resources).  Sections: Headline (the target predictions, the
    convergence verdict and warnings in plain words), Data, Model, Model choice, Fit, Parameters,
    Diagnostics, Downstream, Uncertainty and Reproducibility; a section whose parts the
    fit lacks is left out (Model choice when the model was named, Diagnostics for a MAP/ADVI
    preview, Downstream without ``acc:`` rows, Uncertainty when ``targets`` is None).

    Parameters
    ----------
    fit
        A :class:`~bayescale.ScalingFit`, or the path of a fit saved with
        :meth:`ScalingFit.save` (the report reads only what the file holds).
    path
        Where to write the ``.html`` file (parent folders are created).
    targets
        Prediction targets (DataFrame, dict or CSV path with ``params`` and ``tokens``).
        Default: one target 10x the ladder's largest run in both N and D (see
        :func:`default_targets`); the Uncertainty section then is left out.
    title
        Page title (default names the model and the number of runs).
    hdi_prob
        Probability mass of every band (default ``rcParams["hdi_prob"]``, 0.9).
    dpi
        Resolution of the inlined PNGs (default ``rcParams["report.dpi"]``).
    figures
        True (default) draws every figure that applies; False none (tables and text only,
        seconds faster); a collection of names from
        :data:`bayescale.plotting.FIGURES` only those.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The numbers in the prediction table (``<table class="predictions">``) are exactly
    those of ``fit.predict(targets, hdi_prob)``: shown to 6 significant figures, with the
    full float in each cell's ``data-value`` attribute.

    Examples
    --------
    >>> from bayescale.report import write_report
    >>> targets = {"params": 7e9, "tokens": 1.4e11}
    >>> write_report(fit, "report.html", targets=targets)  # doctest: +SKIP
    """
    html = render_report(fit, targets=targets, title=title, hdi_prob=hdi_prob, dpi=dpi,
                         figures=figures)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
