"""The ``bayescale`` command line: models, fit, predict, summarise, allocate, report, demo.

Every subcommand has ``--help``.  Errors in the input (a bad runs table, a missing file,
a bad model file or option, a missing optional sampler) print one line
``bayescale: error: ...`` on stderr and exit with status 2; an unexpected internal error
prints one line and exits with status 1 (``--debug`` shows the traceback instead).  A fit
that fails its convergence checks is sampled once more with longer tuning (``--no-retry``
keeps the first attempt); if it still fails, it prints ``WARNING: NOT CONVERGED: ...`` once
(in the summary on stdout, or on stderr where there is no summary) and exits 0, or with
``fit --strict`` exits with status 3 without writing the fit.

Examples
--------
.. code-block:: console

    $ bayescale models
    $ bayescale fit runs.csv --model checkpoints --out fit.nc
    $ bayescale summary fit.nc
    $ bayescale predict fit.nc --params 7e9 --tokens 1.4e11
    $ bayescale allocate fit.nc --compute 1e21 1e23
    $ bayescale report fit.nc --out report.html
    $ bayescale demo --out demo_out
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pandas as pd

__all__ = ["build_parser", "main"]

PROG = "bayescale"
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_NOT_CONVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# The demo: a simulated ladder with two families (data mixes), two seeds per configuration,
# every checkpoint under a cosine schedule and one downstream task, fitted with a preset.
DEMO_MODEL = "checkpoints_downstream"
DEMO_FAMILIES = ("web", "code")
DEMO_SIZES = (3e7, 1e8, 3e8)
DEMO_TASK: dict[str, Any] = {"name": "qa", "chance": 0.25, "slope": 3.0, "midpoint": 3.0,
                             "n_items": 1000}
# Target scales beyond the ladder (largest run: 3e8 params x 6e9 tokens), per family.
DEMO_TARGET_SCALES = ((1.4e9, 2.8e10), (7e9, 1.4e11))
PREDICTION_COLUMNS = ("metric", "mean", "median", "lower", "upper", "extrapolation")
QUICK = {"draws": 100, "tune": 100, "chains": 2}

_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- argument types
def _number(text: str) -> float:
    """A positive finite number: ``7e9``, ``7000000000``, ``7B``, ``1.4T``, ``70M``, ``5k``."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMbBgGtT]?)\s*", text)
    try:
        if not match:
            raise ValueError
        value = float(match.group(1)) * _SUFFIXES.get(match.group(2).upper(), 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 7e9, 7B, 1.4T)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _int_at_least(minimum: int):
    """Argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie strictly between 0 and 1")
    return value


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bayescale: error: <what>; see '<prog> --help'``."""

    def error(self, message: str):  # argparse API
        sys.stderr.write(f"{PROG}: error: {message}; see '{self.prog} --help'\n")
        self.exit(EXIT_USAGE)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    from . import __version__
    from .predict import KINDS
    from .sampling import MASS_MATRICES, METHODS, PRECISIONS, SAMPLERS

    common = _Parser(add_help=False)  # the subcommands' parsers are _Parser: so are their parents
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show the full traceback on errors"
    )

    parser = _Parser(
        prog=PROG,
        formatter_class=_formatter,
        description=_wrap(
            "Bayesian scaling-law inference: fit a scaling law to a ladder of training runs "
            "with PyMC, predict the loss at a target scale with posterior bands, find the "
            "compute-optimal allocation, write a self-contained HTML report."
        ),
        epilog=(
            "examples:\n"
            "  bayescale demo --out demo_out                      "
            "# offline: simulate, fit, report\n"
            "  bayescale models                                   # the model presets\n"
            "  bayescale fit runs.csv --model checkpoints --out fit.nc\n"
            "  bayescale summary fit.nc\n"
            "  bayescale predict fit.nc --params 7e9 --tokens 1.4e11\n"
            "  bayescale allocate fit.nc --compute 1e21 1e23\n"
            "  bayescale report fit.nc --out report.html\n"
            "  bayescale uncertainty fit.nc --params 7e9 --tokens 1.4e11   "
            "# where the band comes from\n\n"
            "Run 'bayescale COMMAND --help' for a command's options. Input errors exit with "
            "status 2, internal errors with 1."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)

    # models ---------------------------------------------------------------------------
    p = sub.add_parser(
        "models",
        parents=[common],
        formatter_class=_formatter,
        help="list the model presets, or show one (law, parts, priors)",
        description=_wrap(
            "Without NAME: one line per shipped preset. With NAME (a preset or a model TOML file): "
            "its law, its parts with their options, and every prior with its provenance."
        ),
        epilog="examples:\n  bayescale models\n  bayescale models pythia_lambada",
    )
    p.add_argument("name", nargs="?", metavar="NAME|FILE.toml", help="show this model in full")
    p.set_defaults(handler=_cmd_models)

    # fit ------------------------------------------------------------------------------
    p = sub.add_parser(
        "fit",
        parents=[common],
        formatter_class=_formatter,
        help="fit a model to a runs table (CSV) and save the posterior",
        description=_wrap(
            "Read a runs table (CSV, see the README's runs-table contract), fit a model (a preset "
            "name from 'bayescale models' or a model TOML file), save the fit (NetCDF) and print "
            "the model, the parameter summary and the convergence verdict."
        ),
        epilog=("examples:\n"
                "  bayescale fit runs.csv --out fit.nc                       "
                "# auto: from the table's shape\n"
                "  bayescale fit runs.csv --model checkpoints --out fit.nc --draws 1000 "
                "--chains 4\n"
                "  bayescale fit runs.csv --model my_model.toml --out fit.nc"),
    )
    p.add_argument("runs", metavar="RUNS.csv",
                   help="runs table: columns params, tokens, value (+ optional ones)")
    p.add_argument(
        "--model",
        default="auto",
        metavar="NAME|FILE.toml",
        help="a preset (see 'bayescale models') or a model TOML file; auto: the ladder chooses "
             "among the presets that fit the table's shape by a backtest that holds out its "
             "largest sizes (multi_power alone when the table has an lr column; see "
             "bayescale.model_choice) (default: %(default)s)",
    )
    p.add_argument("--out", required=True, metavar="FIT.nc", help="where to write the fit (NetCDF)")
    p.add_argument("--sampler", choices=SAMPLERS, default="nutpie",
                   help="NUTS implementation (default: %(default)s)")
    p.add_argument(
        "--method", choices=METHODS, default="nuts",
        help="nuts, or map/advi for a quick preview (default: %(default)s)"
    )
    p.add_argument("--draws", type=_positive_int, metavar="N",
                   help="posterior draws per chain (default: the model's)")
    p.add_argument("--tune", type=_positive_int, metavar="N",
                   help="tuning steps per chain (default: the model's)")
    p.add_argument("--chains", type=_positive_int, metavar="N",
                   help="number of chains (default: the model's)")
    p.add_argument("--target-accept", type=_probability, metavar="P",
                   help="NUTS target acceptance (default: the model's)")
    p.add_argument(
        "--mass-matrix", choices=MASS_MATRICES,
        help="NUTS mass matrix: diag, or low_rank (nutpie only; faster on ridged posteriors) "
             "(default: the model's, else diag)",
    )
    p.add_argument(
        "--low-rank-cutoff", type=float, metavar="C",
        help="with --mass-matrix low_rank: correct directions whose scaled variance is C times "
             "above or below 1 (nutpie's mass_matrix_eigval_cutoff; default: the model's, else "
             "100)",
    )
    p.add_argument(
        "--precision", choices=PRECISIONS,
        help="dtype the model is built and sampled in: float32 needs --sampler numpyro (faster "
             "on some GPUs, less accurate gradients) (default: float64)",
    )
    p.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="random seed (default: %(default)s)")
    p.add_argument(
        "--no-retry", dest="retry", action="store_false",
        help="keep the first posterior even if it fails its convergence checks (default: sample "
             "once more with twice the tuning and a higher target acceptance)",
    )
    p.add_argument(
        "--strict", action="store_true",
        help="fail (exit status 3, no fit written) instead of warning when the posterior fails its "
             "convergence checks after the retry",
    )
    p.add_argument("--metric", default="loss",
                   help="which metric's rows to fit (default: %(default)s)")
    p.add_argument(
        "--drop-invalid",
        action="store_true",
        help="drop rows that fail validation (with a warning) instead of stopping",
    )
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="HDI mass in the summary (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: shown on a terminal)")
    p.set_defaults(handler=_cmd_fit)

    # predict --------------------------------------------------------------------------
    p = sub.add_parser(
        "predict",
        parents=[common],
        formatter_class=_formatter,
        help="posterior predictive bands at target scales",
        description=_wrap(
            "Predict the fitted metric at target model sizes and token counts, with the "
            "posterior mean, median and a highest-density band. Give --params and --tokens "
            "(several values pair up; one value is repeated), or a --targets CSV with columns "
            "params, tokens and optionally family (a fitted family, or a new one drawn from the "
            "population), run (an existing run) and total_tokens (for an unfinished run)."
        ),
        epilog=(
            "examples:\n"
            "  bayescale predict fit.nc --params 7e9 --tokens 1.4e11\n"
            "  bayescale predict fit.nc --params 7B 70B --tokens 1.4T --hdi 0.8 --kind mean\n"
            "  bayescale predict fit.nc --targets targets.csv --out preds.csv"
        ),
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    p.add_argument("--params", type=_number, nargs="+", metavar="N",
                   help="target model size(s), parameters")
    p.add_argument("--tokens", type=_number, nargs="+", metavar="D", help="target training tokens")
    p.add_argument("--family",
                   help="family of the --params/--tokens targets (a fitted one, or a new name)")
    p.add_argument("--targets", metavar="TARGETS.csv",
                   help="CSV of targets: params, tokens[, family, run, total_tokens]")
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="band mass (default: %(default)s)")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="observation",
        help="observation: a new run's measured value (law + noise); mean: the law itself "
             "(default: %(default)s)",
    )
    p.add_argument("--out", metavar="PREDS.csv", help="also write the table to this CSV")
    p.set_defaults(handler=_cmd_predict)

    # summary --------------------------------------------------------------------------
    p = sub.add_parser(
        "summary",
        parents=[common],
        formatter_class=_formatter,
        help="parameter table and convergence diagnostics of a fit",
        description=_wrap("Print the posterior summary (mean, sd, HDI, R-hat, ESS) of every law "
                          "parameter and the diagnostics."),
        epilog="example:\n  bayescale summary fit.nc --hdi 0.9",
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="HDI mass (default: %(default)s)")
    p.set_defaults(handler=_cmd_summary)

    # allocate -------------------------------------------------------------------------
    p = sub.add_parser(
        "allocate",
        parents=[common],
        formatter_class=_formatter,
        help="compute-optimal model size and tokens at FLOP budgets, with bands",
        description=_wrap(
            "Compute-optimal allocation N*, D* and the loss there, under C = 6 N D, for each "
            "FLOP budget, with posterior bands (needs a law in N and D, e.g. chinchilla)."
        ),
        epilog="example:\n  bayescale allocate fit.nc --compute 1e21 5.76e23 --out allocation.csv",
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    p.add_argument("--compute", type=_number, nargs="+", required=True, metavar="C",
                   help="FLOP budget(s)")
    p.add_argument("--family", help="with family pooling: which family's law (default: the first)")
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="band mass (default: %(default)s)")
    p.add_argument("--out", metavar="ALLOCATION.csv", help="also write the table to this CSV")
    p.set_defaults(handler=_cmd_allocate)

    # report ---------------------------------------------------------------------------
    p = sub.add_parser(
        "report",
        parents=[common],
        formatter_class=_formatter,
        help="write a self-contained HTML report of a fit",
        description=_wrap("Write a self-contained HTML report (figures inlined) of a fit, "
                          "optionally with predictions at targets."),
        epilog="example:\n  bayescale report fit.nc --out report.html --targets targets.csv",
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    p.add_argument("--out", required=True, metavar="REPORT.html", help="where to write the report")
    p.add_argument("--targets", metavar="TARGETS.csv",
                   help="CSV of targets (params, tokens) to predict in the report")
    p.add_argument("--title", help="report title")
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="band mass (default: %(default)s)")
    p.set_defaults(handler=_cmd_report)

    # demo -----------------------------------------------------------------------------
    p = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=_formatter,
        help="offline end-to-end demo: simulate a ladder, fit, predict, plot, report",
        description=_wrap(
            "Fully offline: simulate a seeded ladder with a known law (two families, two seeds per "
            "configuration, every checkpoint under a cosine schedule, one downstream task), fit it "
            f"with the {DEMO_MODEL!r} preset on nutpie, predict loss and accuracy beyond the "
            "ladder next to the truth, and write DIR/runs.csv, DIR/fit.nc, DIR/predictions.csv, "
            "DIR/figures/ and DIR/report.html."
        ),
        epilog="examples:\n  bayescale demo --out demo_out\n"
               "  bayescale demo --out /tmp/smoke --quick",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="seed of the simulated ladder and the sampler (default: %(default)s)")
    p.add_argument("--draws", type=_positive_int, default=1000, metavar="N",
                   help="draws per chain (default: %(default)s)")
    p.add_argument("--tune", type=_positive_int, default=500, metavar="N",
                   help="tuning steps per chain (default: %(default)s)")
    p.add_argument("--chains", type=_positive_int, default=4, metavar="N",
                   help="chains (default: %(default)s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK['draws']} draws, {QUICK['tune']} tune, {QUICK['chains']} chains "
        "(expect the convergence check to fail)",
    )
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: shown on a terminal)")
    p.set_defaults(handler=_cmd_demo)

    from .cli_uncertainty import add_commands

    add_commands(sub, common)
    return parser


# --------------------------------------------------------------------------- output helpers
def _out(*lines: Any) -> None:
    for line in lines:
        print(line, file=sys.stdout)
    sys.stdout.flush()


def _err(line: str) -> None:
    print(line, file=sys.stderr)
    sys.stderr.flush()


def _fmt(x: Any, spec: str = ".4g") -> str:
    try:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "nan"
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


def _table(df: pd.DataFrame, formats: dict[str, str], default: str = ".4g",
           index: bool = False) -> str:
    """Plain-text table with per-column number formats."""
    formatters = {}
    for col in df.columns:
        if pd.api.types.is_bool_dtype(df[col]):
            formatters[col] = lambda v: "yes" if v else "no"
        elif pd.api.types.is_numeric_dtype(df[col]):
            spec = formats.get(col, default)
            formatters[col] = (lambda s: (lambda v: _fmt(v, s)))(spec)
    return df.to_string(index=index, formatters=formatters)


def _one_line(err: BaseException) -> str:
    """An exception's message as a single line (multi-line lists become '; '-separated)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    head, rest = lines[0], [line.lstrip("-* ").strip() for line in lines[1:]]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])


def _require_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CLIError(f"{what} not found: {p}")
    if not p.is_file():
        raise CLIError(f"{what} is not a file: {p}")
    return p


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def _load(path: str):
    from .io import load_fit

    p = _require_file(path, "fit file")
    try:
        return load_fit(p)
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(
            f"cannot read fit file {p} (is it a file written by 'bayescale fit' with this "
            f"version?): {_one_line(err)}"
        ) from err


def _read_runs_csv(path: str, drop_invalid: bool = False) -> pd.DataFrame:
    from .runs import RunsTableError, read_runs

    p = _require_file(path, "runs table")
    try:
        return read_runs(p, drop_invalid=drop_invalid)
    except RunsTableError as err:
        raise CLIError(f"invalid runs table {p}: " + "; ".join(err.problems)) from err
    except pd.errors.EmptyDataError:
        raise CLIError(f"invalid runs table {p}: the file is empty") from None
    except pd.errors.ParserError as err:
        raise CLIError(f"invalid runs table {p}: not a readable CSV ({_one_line(err)})") from err


def _read_targets_csv(path: str) -> pd.DataFrame:
    from .predict import read_targets
    from .runs import RunsTableError

    p = _require_file(path, "targets file")
    try:
        table = read_targets(pd.read_csv(p))
    except RunsTableError as err:
        raise CLIError(f"invalid targets {p}: " + "; ".join(err.problems)) from err
    except pd.errors.EmptyDataError:
        raise CLIError(f"invalid targets {p}: the file is empty") from None
    clash = [c for c in table.columns if c in PREDICTION_COLUMNS]
    if clash:
        warnings.warn(f"ignoring column(s) {clash} of {p}: the prediction table computes them",
                      UserWarning, stacklevel=2)
        table = table.drop(columns=clash)
    return table


def _verdict(fit, *, in_summary: bool) -> bool:
    """Print the convergence verdict; loud on stderr (and in the summary) when it fails."""
    diag = fit.diagnostics()
    message = diag.message()
    if diag.passed:
        if in_summary:
            _out(f"Diagnostics: {message}")
        return True
    if diag.passed is False:
        line = (f"WARNING: {message} -- do not trust the bands; refit with more "
                "--draws/--tune/--chains")
    else:
        line = f"WARNING: {message} (use --method nuts for a posterior you can check)"
    if in_summary:
        _out(line)  # once: the summary on stdout says it
    else:
        _err(line)
    return False


def _describe(fit, source: str) -> list[str]:
    cfg = fit.sampler_config
    runs = fit.runs
    families = sorted(runs["family"].astype(str).unique()) if "family" in runs else []
    how = (
        f"{cfg.sampler} NUTS, {cfg.chains} chains x {cfg.draws} draws ({cfg.tune} tune)"
        + (f", {cfg.mass_matrix} mass matrix" if cfg.mass_matrix != "diag" else "")
        + (f" (cutoff {cfg.low_rank_cutoff:g})" if cfg.low_rank_cutoff else "")
        if cfg.method == "nuts"
        else f"{cfg.method} preview"
    )
    info = fit.info or {}
    seconds = info.get("fit_seconds")
    took = f", {float(seconds):.1f} s" if seconds is not None else ""
    data_hash = str(info.get("runs_hash", ""))[:12]
    return [
        f"Fit: {source}",
        *[("  " + line) for line in str(fit.model).splitlines()],
        f"  data     {len(runs)} rows of metric {fit.metric!r}, {runs['run'].nunique()} runs, "
        f"{len(families)} famil{'y' if len(families) == 1 else 'ies'}"
        + (f", sha256 {data_hash}" if data_hash else ""),
        f"  sampler  {how}, seed {cfg.random_seed}{took}",
        *([f"  retried  once: the first attempt was {info['retry']['first_attempt']}"]
          if info.get("retry") else []),
        *([f"  remedy   {info['retry']['model']}, mass_matrix={info['retry']['mass_matrix']}; "
           f"kept: {info['retry'].get('kept', 'the remedied model')}"]
          if info.get("retry", {}).get("remedy") else []),
        *([f"  chosen   {fit.model_choice.reason}"] if fit.model_choice is not None else []),
    ]


def _selection_note(fit, n_metric_rows: int) -> None:
    """Say loudly when the fit used fewer rows than the table had (final losses only)."""
    selection = (fit.info or {}).get("selection") or {}
    dropped = int(selection.get("dropped_rows", 0) or 0)
    if dropped:
        line = (
            f"{PROG}: note: fitted {len(fit.runs)} of {n_metric_rows} {fit.metric!r} rows; "
            f"{dropped} left out ({selection.get('reason', 'selection')})"
        )
        if fit.model.part("checkpoints") is None:
            line += ("; a model with a checkpoints part fits every checkpoint (e.g. --model "
                     "checkpoints)")
        _out(line, "")
        _err(line)


def _summary_lines(fit, hdi: float) -> list[str]:
    from .result import OUTLIER_DROP_NATS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict is printed by _verdict
        table = fit.summary(hdi_prob=hdi)
    formats = {c: ".0f" for c in table.columns if c.startswith("ess")}
    formats["r_hat"] = ".3f"
    lines = [f"Posterior ({hdi:.0%} HDI):", _table(table, formats, index=True)]
    outliers = pd.DataFrame(table.attrs.get("outliers", []))
    if len(outliers):
        lines += ["", f"Outlying rows (leave-one-out log density over {OUTLIER_DROP_NATS:g} nats "
                      "below the typical row's; check them):",
                  _table(outliers, {"params": ".3g", "tokens": ".3g", "value": ".4f",
                                    "drop_nats": ".1f"})]
    return lines


def _prediction_table(preds: pd.DataFrame) -> str:
    shown = preds.copy()
    if "extrapolation" in shown:
        shown["extrapolation"] = [f"{v:.2g}x" if v < 10 else f"{v:,.0f}x"
                                  for v in shown["extrapolation"]]
    formats = {"params": ".3g", "tokens": ".3g"}
    for col in ("mean", "median", "lower", "upper", "truth"):
        formats[col] = ".4f"
    return _table(shown, formats)


def _write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False)
    return p


def _write_report(fit, path: Path, targets: pd.DataFrame | None, title: str | None,
                  hdi: float = 0.9) -> Path:
    from .report import write_report  # imported lazily: pulls in the plotting stack

    return Path(write_report(fit, path, targets=targets, title=title, hdi_prob=hdi))


# --------------------------------------------------------------------------- commands
def _cmd_models(args: argparse.Namespace) -> int:
    from .model import available_models, load_model

    if args.name is None:
        presets = available_models()
        width = max(len(n) for n in presets)
        _out("Model presets (bayescale fit RUNS --model NAME; 'bayescale models NAME' shows one in "
             "full):", "")
        _out(*[f"  {name:<{width}}  {text}" for name, text in presets.items()])
        return EXIT_OK
    model = load_model(args.name)
    _out(str(model), "", "Priors (parameter ~ prior: provenance):")
    provenance = model.provenance
    for name, prior in model.priors.items():
        kwargs = ", ".join(f"{k}={v:g}" for k, v in prior.parameters.items())
        _out(*textwrap.wrap(f"{name} ~ {prior.distribution}({kwargs}): {provenance.get(name, '')}",
                            width=100, initial_indent="  ", subsequent_indent="      "))
    if model.sampler:
        _out("", "Sampler defaults: " + ", ".join(f"{k}={v}" for k, v in model.sampler.items()))
    return EXIT_OK


def _cmd_fit(args: argparse.Namespace) -> int:
    from .fitting import fit as fit_model
    from .model import Model, load_model
    from .sampling import check_sampler

    # fails before any work; fit checks the cutoff
    check_sampler(args.sampler, args.method, args.mass_matrix or "diag",
                  precision=args.precision or "float64")
    model: str | Model = "auto" if args.model == "auto" else load_model(args.model)
    runs = _read_runs_csv(args.runs, drop_invalid=args.drop_invalid)
    _out(f"Read {len(runs)} rows ({runs['run'].nunique()} runs) from {args.runs}; fitting "
         + ("the model the ladder chooses (--model auto)" if model == "auto"
            else f"model {cast(Model, model).name!r}") + " ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        fit = fit_model(
            runs,
            model,
            metric=args.metric,
            sampler=args.sampler,
            method=args.method,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            target_accept=args.target_accept,
            mass_matrix=args.mass_matrix,
            low_rank_cutoff=args.low_rank_cutoff,
            precision=args.precision,
            random_seed=args.seed,
            progressbar=_progress(args),
            retry=args.retry,
            strict=args.strict,
        )
    out = Path(args.out).expanduser()
    summary = _summary_lines(fit, args.hdi)  # first: it computes the log-likelihood, saved too
    fit.save(out)
    _out(f"Saved the fit to {out}", "")
    _selection_note(fit, int((runs["metric"] == args.metric).sum()))
    _out(*_describe(fit, str(out)), "")
    _out(*summary)
    _verdict(fit, in_summary=True)
    return EXIT_OK


def _cmd_summary(args: argparse.Namespace) -> int:
    fit = _load(args.fit)
    _out(*_describe(fit, args.fit), "")
    _out(*_summary_lines(fit, args.hdi))
    _verdict(fit, in_summary=True)
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    given = args.params is not None or args.tokens is not None
    if args.targets and given:
        raise CLIError("give either --targets or --params/--tokens, not both")
    if args.targets:
        if args.family:
            raise CLIError("--family labels --params/--tokens targets; put a family column in the "
                           "--targets CSV instead")
        targets = _read_targets_csv(args.targets)
    else:
        targets = targets_from_flags(args)
    fit = _load(args.fit)
    _verdict(fit, in_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        preds = fit.predict(targets, hdi_prob=args.hdi, kind=args.kind)
    _out(f"Posterior predictive {fit.metric} ({args.kind}, {args.hdi:.0%} HDI) from {args.fit}:")
    _out(_prediction_table(preds))
    if args.out:
        _out(f"Wrote {_write_csv(preds, args.out)}")
    return EXIT_OK


def targets_from_flags(args: argparse.Namespace) -> pd.DataFrame:
    """Targets from ``--params``/``--tokens`` (paired up; one value repeats) and ``--family``."""
    if args.params and args.tokens:
        n, d = len(args.params), len(args.tokens)
        if n != d and 1 not in (n, d):
            raise CLIError(f"--params has {n} values and --tokens {d}: give the same number, or "
                           "one of either")
        size = max(n, d)
        targets = pd.DataFrame(
            {
                "params": args.params * (size if n == 1 else 1),
                "tokens": args.tokens * (size if d == 1 else 1),
            }
        )
        if getattr(args, "family", None):
            targets["family"] = args.family
        return targets
    if args.params is not None or args.tokens is not None:
        raise CLIError("give both --params and --tokens (or a --targets CSV)")
    raise CLIError("give the targets: --params N --tokens D, or --targets TARGETS.csv")


def _cmd_allocate(args: argparse.Namespace) -> int:
    fit = _load(args.fit)
    _verdict(fit, in_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        table = fit.optimal_allocation(args.compute, hdi_prob=args.hdi, family=args.family)
    which = ""
    if fit.model.part("family_pooling") is not None:
        which = f", family {args.family or fit.families[0]}"
    _out(f"Compute-optimal allocation under C = 6 N D ({args.hdi:.0%} HDI{which}) from {args.fit}:")
    _out("  quantity: params = N* (parameters), tokens = D*, loss = L(N*, D*)")
    _out(_table(table, {"compute": ".3g"}))
    if args.out:
        _out(f"Wrote {_write_csv(table, args.out)}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    targets = _read_targets_csv(args.targets) if args.targets else None
    fit = _load(args.fit)
    _verdict(fit, in_summary=False)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        path = _write_report(fit, out, targets, args.title, args.hdi)
    _out(f"Wrote the report to {path}")
    return EXIT_OK


def _demo_ladder(seed: int):
    """The demo's simulated ladder and its truth (see ``DEMO_*``)."""
    from .schedules import Schedule
    from .simulate import Task, simulate_ladder

    return simulate_ladder(seed=seed, families=list(DEMO_FAMILIES), seeds=2, checkpoints=6,
                           sizes=DEMO_SIZES, token_multipliers=(20.0,), schedule=Schedule("cosine"),
                           family_spread=0.05, seed_spread=0.005, ar1=0.5,
                           tasks=[Task(**DEMO_TASK)])


def _demo_targets(truth) -> pd.DataFrame:
    """Loss and accuracy of each family at the demo's target scales, with the true values."""
    rows = []
    task = truth.tasks[0]
    for family in DEMO_FAMILIES:
        for params, tokens in DEMO_TARGET_SCALES:
            loss = float(truth.loss(params, tokens, family))
            rows.append({"params": params, "tokens": tokens, "family": family, "metric": "loss",
                         "truth": loss})
            rows.append({"params": params, "tokens": tokens, "family": family,
                         "metric": f"acc:{task.name}",
                         "truth": float(task.accuracy(loss, E=truth.families[family]["E"]))})
    return pd.DataFrame(rows)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .fitting import fit as fit_model

    draws, tune, chains = ((QUICK["draws"], QUICK["tune"], QUICK["chains"]) if args.quick
                           else (args.draws, args.tune, args.chains))
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    runs, truth = _demo_ladder(args.seed)
    runs_path = _write_csv(runs, out / "runs.csv")
    pop = truth.population
    n_loss = int((runs["metric"] == "loss").sum())
    _out(
        f"Simulated a ladder (seed {args.seed}): {runs['run'].nunique()} runs of "
        f"{len(DEMO_FAMILIES)} families ({', '.join(DEMO_FAMILIES)}), 2 seeds each, {n_loss} loss "
        f"checkpoints under a cosine schedule and {len(runs) - n_loss} accuracy rows of task "
        f"{DEMO_TASK['name']!r}, from the population law L = {pop['E']:g} + {pop['A']:g} "
        f"N^-{pop['alpha']:g} + {pop['B']:g} D^-{pop['beta']:g}",
        f"Fitting the {DEMO_MODEL!r} preset with nutpie: {chains} chains x {draws} draws ({tune} "
        "tune)"
        + (" [--quick: a smoke test, expect the convergence check to fail]" if args.quick else "")
        + " ...",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        fit = fit_model(
            runs, DEMO_MODEL, sampler="nutpie", draws=draws, tune=tune, chains=chains,
            random_seed=args.seed, progressbar=_progress(args),
            retry=False,  # one attempt, to keep to 3 minutes; the summary gives the verdict
        )  # fmt: skip
    fit_path = out / "fit.nc"
    fit.save(fit_path)

    targets = _demo_targets(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        warnings.filterwarnings("ignore", message=r"predict: .* beyond the ladder")  # intended here
        preds = fit.predict(targets.drop(columns="truth"), hdi_prob=0.9)
    preds["truth"] = targets["truth"].to_numpy()
    preds["truth_in_band"] = (preds["lower"] <= preds["truth"]) & (preds["truth"] <= preds["upper"])
    preds_path = _write_csv(preds, out / "predictions.csv")

    figures_dir, report_path, missing = out / "figures", out / "report.html", []
    loss_targets = (targets[targets["metric"] == "loss"].drop(columns=["truth", "metric"])
                    .reset_index(drop=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        warnings.filterwarnings("ignore", message=r".* beyond the ladder")
        try:
            from .plotting import save_figures
        except ImportError as err:
            missing.append(f"figures skipped ({_one_line(err)})")
        else:
            save_figures(fit, figures_dir, targets=loss_targets)
        try:
            _write_report(fit, report_path, loss_targets,
                          "bayescale demo: a simulated ladder with a known law")
        except ImportError as err:
            if ("bayescale.report" not in str(err)
                    and getattr(err, "name", "") != "bayescale.report"):
                raise
            missing.append(f"report skipped ({_one_line(err)})")

    _out("", *_describe(fit, str(fit_path)), "")
    _out(*_summary_lines(fit, 0.9))
    _verdict(fit, in_summary=True)
    _out("", "Predictions beyond the ladder (a new run's observed value, 90% HDI), with the true "
             "values:")
    _out(_prediction_table(preds))
    _out("", f"Wrote (in {time.perf_counter() - started:.0f} s):")
    _out(f"  runs table    {runs_path}")
    _out(f"  fit           {fit_path}")
    _out(f"  predictions   {preds_path}")
    if figures_dir.is_dir():
        _out(f"  figures       {figures_dir}/")
    if report_path.is_file():
        _out(f"  report        {report_path}   <- open in a browser")
    for line in missing:
        _err(f"{PROG}: warning: {line}")
    return EXIT_OK


def _convergence_warning() -> type[Warning]:
    from .diagnostics import ConvergenceWarning

    return ConvergenceWarning


# --------------------------------------------------------------------------- warnings
def _install_warning_printer(debug: bool) -> Callable[[], None]:
    """Show library warnings as one ``bayescale: warning: ...`` line each (once per message).

    Deprecation and future warnings of the libraries below are hidden unless ``--debug``.
    Returns a function restoring the previous state.
    """
    seen: set[str] = set()
    old_show = warnings.showwarning
    old_filters = warnings.filters[:]

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        _err(f"{PROG}: warning: {text}")

    warnings.showwarning = show
    warnings.simplefilter("default")
    if not debug:
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")

    def restore() -> None:
        warnings.showwarning = old_show
        filters = cast("list[Any]", warnings.filters)  # a list; typeshed says Sequence
        filters[:] = old_filters

    return restore


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``bayescale`` command with ``argv`` (default ``sys.argv[1:]``); return its status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        if isinstance(exc.code, int):
            return exc.code
        return EXIT_OK if exc.code is None else EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        _err(f"{PROG}: error: choose a command; see '{PROG} --help'")
        return EXIT_USAGE

    debug = bool(getattr(args, "debug", False))
    restore = _install_warning_printer(debug)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `bayescale summary fit.nc | head`: the reader left, not an error
        _silence_stdout()
        return EXIT_OK
    except Exception as err:  # one readable line instead of a traceback (unless --debug)
        if debug:
            raise
        from .diagnostics import ConvergenceError

        if isinstance(err, ConvergenceError):
            _err(f"{PROG}: error: {_one_line(err)}")
            return EXIT_NOT_CONVERGED
        user_error = isinstance(err, (CLIError, ValueError, ImportError, OSError))
        message = _one_line(err)
        if not user_error:
            message = (f"internal error {type(err).__name__}: {message} (rerun with --debug for "
                       "the traceback)")
        _err(f"{PROG}: error: {message}")
        return EXIT_USAGE if user_error else EXIT_INTERNAL
    finally:
        restore()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
