"""The command line's epistemic-uncertainty commands (registered by :mod:`bayescale.cli`).

``uncertainty`` (where a band comes from), ``uncertainty-scaling`` (how it shrinks as the
ladder grows), ``suggest`` (which run to train next) and ``compare-families`` (which family
wins at the target).  Kept apart from :mod:`bayescale.cli`, which owns the parser's
conventions, the fit commands and the output helpers these reuse.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from .cli import (
    EXIT_OK,
    CLIError,
    _convergence_warning,
    _formatter,
    _load,
    _number,
    _out,
    _positive_int,
    _probability,
    _read_runs_csv,
    _read_targets_csv,
    _table,
    _verdict,
    _wrap,
    _write_csv,
    targets_from_flags,
)


def _target_flags(p: argparse.ArgumentParser, several: bool = True) -> None:
    nargs = "+" if several else None
    p.add_argument("--params", type=_number, nargs=nargs, metavar="N",
                   help="target model size(s), parameters")
    p.add_argument("--tokens", type=_number, nargs=nargs, metavar="D",
                   help="target training tokens")


def _single_target(args: argparse.Namespace) -> dict[str, Any]:
    if args.params is None or args.tokens is None:
        raise CLIError("give the target: --params N --tokens D")
    return {"params": args.params, "tokens": args.tokens}


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the four commands to the ``bayescale`` parser's subparsers ``sub``."""
    # uncertainty ----------------------------------------------------------------------
    p = sub.add_parser(
        "uncertainty", parents=[common], formatter_class=_formatter,
        help="where a target's band comes from: its variance split by source",
        description=_wrap(
            "Split the predictive variance at each target by source (law of total variance): the "
            "law's parameters (epistemic), a new family, a new seed, drift, benchmark items, "
            "noise. With --path, follow targets along a compute path instead."),
        epilog=("examples:\n"
                "  bayescale uncertainty fit.nc --params 7e9 --tokens 1.4e11 --family c4\n"
                "  bayescale uncertainty fit.nc --targets targets.csv --out parts.csv\n"
                "  bayescale uncertainty fit.nc --path --tokens-per-param 20 --plot path.png"),
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    _target_flags(p)
    p.add_argument("--family", help="family of the --params/--tokens targets")
    p.add_argument("--targets", metavar="TARGETS.csv", help="CSV of targets")
    p.add_argument("--path", action="store_true",
                   help="the parts along a compute path from the ladder to 1000x beyond it")
    p.add_argument("--tokens-per-param", default="20", metavar="R|optimal",
                   help="with --path: tokens per parameter, or 'optimal' (default: %(default)s)")
    p.add_argument("--hdi", type=_probability, metavar="P",
                   help="also each source's variance interval over the posterior")
    p.add_argument("--out", metavar="PARTS.csv", help="also write the table to this CSV")
    p.add_argument("--plot", metavar="FIGURE.png", help="also draw the figure to this file")
    p.set_defaults(handler=_cmd_uncertainty)

    # uncertainty-scaling ---------------------------------------------------------------
    p = sub.add_parser(
        "uncertainty-scaling", parents=[common], formatter_class=_formatter,
        help="how the band at a target shrinks as the ladder grows (nested refits)",
        description=_wrap(
            "Refit the ladder on nested subsets (smallest sizes first, or more seeds, or more "
            "checkpoints), record the width of the law's band at the target, and fit "
            "width ∝ C^-kappa with an interval for kappa."),
        epilog=("example:\n  bayescale uncertainty-scaling runs.csv --params 7e9 --tokens 1.4e11 "
                "--by size --plot scaling.png"),
    )
    p.add_argument("runs", metavar="RUNS.csv", help="runs table")
    _target_flags(p, several=False)
    p.add_argument("--family", help="family of the target")
    p.add_argument("--by", choices=("size", "seeds", "checkpoints"), default="size",
                   help="how the ladder grows (default: %(default)s)")
    p.add_argument("--model", default="auto", metavar="NAME|FILE.toml",
                   help="the model of every refit (default: %(default)s)")
    p.add_argument("--draws", type=_positive_int, metavar="N", help="draws per chain")
    p.add_argument("--tune", type=_positive_int, metavar="N", help="tuning steps per chain")
    p.add_argument("--chains", type=_positive_int, metavar="N", help="chains")
    p.add_argument("--hdi", type=_probability, default=0.9, metavar="P",
                   help="band mass (default: %(default)s)")
    p.add_argument("--out", metavar="SCALING.csv", help="also write the table to this CSV")
    p.add_argument("--plot", metavar="FIGURE.png", help="also draw the figure to this file")
    p.set_defaults(handler=_cmd_uncertainty_scaling)

    # suggest ---------------------------------------------------------------------------
    p = sub.add_parser(
        "suggest", parents=[common], formatter_class=_formatter,
        help="which candidate run would shrink the target's band most per FLOP",
        description=_wrap(
            "Rank candidate runs (a CSV with params, tokens and optionally family, seeds, "
            "checkpoints) by the expected reduction of the target's predictive variance per "
            "FLOP (preposterior analysis by importance reweighting of the posterior)."),
        epilog=("example:\n  bayescale suggest fit.nc --candidates candidates.csv --params 7e9 "
                "--tokens 1.4e11"),
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    p.add_argument("--candidates", required=True, metavar="CANDIDATES.csv",
                   help="candidate runs: params, tokens[, family, seeds, checkpoints]")
    _target_flags(p, several=False)
    p.add_argument("--family", help="family of the target")
    p.add_argument("--out", metavar="RANKING.csv", help="also write the table to this CSV")
    p.set_defaults(handler=_cmd_suggest)

    # compare-families ------------------------------------------------------------------
    p = sub.add_parser(
        "compare-families", parents=[common], formatter_class=_formatter,
        help="probability that each family (data mix) wins at the target, and its regret",
        description=_wrap(
            "For a fit that pools families: the posterior probability that each family reaches "
            "the best value of the metric at the target scale, and the expected regret of "
            "choosing it."),
        epilog=("example:\n  bayescale compare-families fit.nc --params 1.4e9 --tokens 2.8e10"),
    )
    p.add_argument("fit", metavar="FIT.nc", help="a fit written by 'bayescale fit'")
    _target_flags(p, several=False)
    p.add_argument("--families", nargs="+", metavar="NAME",
                   help="families to compare (default: every fitted one)")
    p.add_argument("--metric", default="loss",
                   help="loss, acc:<task>, acc:avg or err:<task> (default: %(default)s)")
    p.add_argument("--kind", choices=("mean", "observation"), default="mean",
                   help="mean: each family's expected run; observation: one new run each "
                        "(default: %(default)s)")
    p.add_argument("--out", metavar="FAMILIES.csv", help="also write the table to this CSV")
    p.set_defaults(handler=_cmd_compare_families)


def _save_figure(fig, path: str) -> None:
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    _out(f"Wrote {target}")


def _quietly(func, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=_convergence_warning())
        return func(*args, **kwargs)


def _cmd_uncertainty(args: argparse.Namespace) -> int:
    if args.path and (args.targets or args.params or args.tokens):
        raise CLIError("--path follows its own targets: drop --targets/--params/--tokens")
    if not args.path and args.targets and (args.params or args.tokens):
        raise CLIError("give either --targets or --params/--tokens, not both")
    ratio: float | str = args.tokens_per_param
    if ratio != "optimal":
        try:
            ratio = _number(str(ratio))
        except argparse.ArgumentTypeError as err:
            raise CLIError(f"--tokens-per-param: {err}") from None
    targets = None
    if not args.path:
        targets = _read_targets_csv(args.targets) if args.targets else targets_from_flags(args)
    fit = _load(args.fit)
    _verdict(fit, in_summary=False)
    if args.path:
        table = _quietly(fit.uncertainty_path, tokens_per_param=ratio, family=args.family)
        _out(f"Variance parts of {fit.metric} along the path ({args.tokens_per_param} tokens per "
             f"parameter); the ladder's largest compute is {table.attrs['ladder_compute']:.3g} "
             "FLOP:")
        crossover = table.attrs.get("crossover_compute")
        shown = table.drop(columns=["metric"])
    else:
        table = _quietly(fit.uncertainty, targets, hdi_prob=args.hdi)
        _out(f"Variance parts of {fit.metric} at the targets (law of total variance; units "
             "squared):")
        crossover = None
        shown = table
    formats = {c: ".3g" for c in shown.columns}
    formats["epistemic_share"] = ".2f"
    _out(_table(shown, formats))
    if crossover is not None:
        _out(f"The law's (epistemic) part is the largest from {crossover:.3g} FLOP on.")
    if args.out:
        _out(f"Wrote {_write_csv(table, args.out)}")
    if args.plot:
        from .plotting import plot_uncertainty_path, plot_variance_parts

        fig = (plot_uncertainty_path(fit, tokens_per_param=ratio) if args.path
               else plot_variance_parts(fit, targets))
        _save_figure(fig, args.plot)
    return EXIT_OK


def _cmd_uncertainty_scaling(args: argparse.Namespace) -> int:
    from .uncertainty_scaling import uncertainty_scaling

    target = _single_target(args)
    if args.family:
        target["family"] = args.family
    runs = _read_runs_csv(args.runs)
    settings = {k: getattr(args, k) for k in ("draws", "tune", "chains")
                if getattr(args, k) is not None}
    result = uncertainty_scaling(runs, target, args.model, by=args.by, hdi_prob=args.hdi,
                                 progressbar=True, **settings)
    _out("", f"Width of the law's {args.hdi:.0%} band at the target as the ladder grows "
             f"(by {args.by}):")
    _out(_table(result.table, {"ladder_compute": ".3g", "median": ".4f", "lower": ".4f",
                               "upper": ".4f", "width": ".4g", "relative_width": ".3g"}))
    k = result.kappa
    _out(f"width ∝ C^-kappa: kappa = {k['median']:.3f} [{k['lower']:.3f}, {k['upper']:.3f}] "
         f"({args.hdi:.0%} interval)")
    if not result.table["converged"].all():
        _out("WARNING: some refits did not pass the convergence checks (column 'converged').")
    if args.out:
        _out(f"Wrote {_write_csv(result.table, args.out)}")
    if args.plot:
        _save_figure(result.plot(), args.plot)
    return EXIT_OK


def _cmd_suggest(args: argparse.Namespace) -> int:
    import pandas as pd

    from .advisor import suggest_runs

    target = _single_target(args)
    if args.family:
        target["family"] = args.family
    try:
        candidates = pd.read_csv(Path(args.candidates).expanduser())
    except FileNotFoundError:
        raise CLIError(f"candidates file not found: {args.candidates}") from None
    fit = _load(args.fit)
    table = _quietly(suggest_runs, fit, candidates, target)
    _verdict(fit, in_summary=False)
    _out("Candidate runs ranked by the expected reduction of the target's predictive variance "
         "per FLOP:")
    _out(_table(table, {c: ".3g" for c in table.columns if c != "rank"}))
    if args.out:
        _out(f"Wrote {_write_csv(table, args.out)}")
    return EXIT_OK


def _cmd_compare_families(args: argparse.Namespace) -> int:
    from .decisions import compare_families

    target = _single_target(args)
    fit = _load(args.fit)
    table = _quietly(compare_families, fit, target, args.families, metric=args.metric,
                     kind=args.kind)
    _verdict(fit, in_summary=False)
    _out(f"Which family reaches the best {args.metric} at the target ({args.kind}):")
    _out(_table(table, {c: ".4g" for c in table.columns}))
    if args.out:
        _out(f"Wrote {_write_csv(table, args.out)}")
    return EXIT_OK
