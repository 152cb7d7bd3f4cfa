"""Rolling-origin backtests of the package's final-loss laws on three real ladders.

For each visible real suite this runs :func:`bayescale.backtest` (``holdout=
"largest"``: fold k holds out the (k+1)-th largest model size, or the next few sizes when
one holds fewer than a tenth of the runs, and fits the smaller ones)
with the package's final-loss laws as candidates (``chinchilla``, ``kaplan``, ``compute``
and ``gadre``: ``bayescale.model_choice.FINAL_LOSS_LAWS``), each as the package default
builds it for the table (:func:`bayescale.model.auto_model`: plus family pooling when the
table has several families, plus run effects when a configuration has several seeds), and
prints per suite
and model the mean log score, the pooled 50% and 90% coverage and the median ratio of the
90% band's width to the absolute error.

Suites (data under ``$BAYESCALE_DATA`` or ``../shared/data``; ``--data`` overrides):

``chinchilla``
    Besiroglu et al.'s reconstruction of Hoffmann et al.'s 245 runs
    (``bayescale.datasets.load_chinchilla``).  Almost every run has its own model size, so
    a fold holds out the next few sizes down: 25 runs or more.
``gadre``
    Gadre et al.'s C4 validation losses of the three data mixes, models of at most 0.41B
    parameters only (``load_gadre``; 4 sizes).  The 1.4B models, the Gadre case study's
    targets, are dropped before anything else: no fold sees or scores them.
``pythia``
    Final LAMBADA ln-perplexities of the Pythia runs of at most 1.4B parameters, both
    families (``load_pythia``; 5 sizes, one token budget).

Run::

    python benchmarks/backtest.py                # 3 folds per suite (2 for gadre), 1000 draws
    python benchmarks/backtest.py --small        # smoke run: 1 fold, 100 draws, 2 chains
    python benchmarks/backtest.py --suites gadre --folds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from bayescale.backtesting import backtest
from bayescale.datasets import find_data_dir, load_chinchilla, load_gadre, load_pythia
from bayescale.model import Model, auto_model
from bayescale.model_choice import FINAL_LOSS_LAWS
from bayescale.runs import UnitWarning, read_runs

LAWS = FINAL_LOSS_LAWS
SUITES = ("chinchilla", "gadre", "pythia")
#: Largest Gadre model fitted (0.41B), as in case_studies/gadre_overtrain.py.
GADRE_MAX_PARAMS = 0.42e9
#: Largest Pythia model used (1.4B; the 2.8B runs are the case study's targets).
PYTHIA_MAX_PARAMS = 1.5e9
#: Folds of the full run per suite (gadre has 4 sizes <= 0.41B: at most 2 folds).
FULL_FOLDS = {"chinchilla": 3, "gadre": 2, "pythia": 3}
SMALL_SAMPLER = {"draws": 100, "tune": 100, "chains": 2}
FOLDER = {"chinchilla": "chinchilla_epoch", "gadre": "gadre_overtrain", "pythia": "pythia"}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument("--laws", nargs="+", default=list(LAWS),
                        help=f"final-loss presets to compare (default {' '.join(LAWS)})")
    parser.add_argument("--folds", type=int, default=None,
                        help="folds per suite (default: 3, gadre 2; --small: 1)")
    parser.add_argument("--small", action="store_true",
                        help="smoke run: 1 fold, 100 draws and 100 tuning steps, 2 chains")
    parser.add_argument("--draws", type=int, default=None, help="default: the model's (1000)")
    parser.add_argument("--tune", type=int, default=None, help="default: the model's (1000)")
    parser.add_argument("--chains", type=int, default=None, help="default: the model's (4)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default: $BAYESCALE_DATA, else ../shared/data)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the per-model scores and the rows here")
    return parser.parse_args(argv)


def load_suite(name: str, data: Path | None) -> pd.DataFrame:
    """The runs table of one suite (see the module docstring)."""
    sub = FOLDER[name]
    root = data if data is not None else find_data_dir(sub)
    if root is None or not (Path(root) / sub).is_dir():
        where = root or "$BAYESCALE_DATA or ../shared/data"
        raise SystemExit(f"error: no {sub}/ folder in {where}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "chinchilla":
            return load_chinchilla(Path(root))
        if name == "gadre":
            runs = load_gadre(Path(root) / sub, param_count="total", loss="c4_val", tasks=None)
            return runs[runs["params"] <= GADRE_MAX_PARAMS].reset_index(drop=True)
        runs = load_pythia(Path(root), param_count="total", tasks=None)
        return runs[runs["params"] <= PYTHIA_MAX_PARAMS].reset_index(drop=True)


def candidates(runs: pd.DataFrame, laws) -> list[Model]:
    """Each law's preset as the package default extends it for ``runs`` (see auto_model)."""
    table = read_runs(runs)
    return [auto_model(table[table["metric"] == "loss"], law) for law in laws]


def main(argv=None) -> int:
    """Backtest every suite, print the summaries; exit status 0."""
    args = parse_args(argv)
    settings = dict(SMALL_SAMPLER) if args.small else {}
    settings.update({k: v for k, v in (("draws", args.draws), ("tune", args.tune),
                                       ("chains", args.chains)) if v is not None})
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    summaries, all_rows = [], []
    start = time.perf_counter()
    for suite in args.suites:
        runs = load_suite(suite, args.data)
        folds = args.folds or (1 if args.small else FULL_FOLDS[suite])
        models = candidates(runs, args.laws)
        print(f"=== {suite}: {runs['run'].nunique()} runs, {runs['params'].nunique()} sizes, "
              f"{folds} fold(s); candidates {[m.name for m in models]}; "
              f"sampler {settings or '(model defaults)'}", flush=True)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # the loaders' tables trip read_runs' unit checks (Pythia's first checkpoints,
            # Chinchilla's token counts); the data are as the case studies read them
            warnings.simplefilter("ignore", UnitWarning)
            result = backtest(runs, models, folds=folds, random_seed=args.seed, **settings)
        scores = result.scores.assign(suite=suite, law=result.scores["model"].str.split().str[0])
        rows = result.rows.assign(suite=suite)
        print(scores[["model", "mean_log_score", "median_abs_rel_error", "coverage_50",
                      "coverage_90", "median_width_90", "median_width_ratio", "n",
                      "all_converged"]].round(3).to_string(index=False))
        print(f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
        summaries.append(scores)
        all_rows.append(rows)
    table = pd.concat(summaries, ignore_index=True)
    print("=== pooled 90% coverage and median width/|error| ratio, per suite and model")
    print(table.pivot(index="suite", columns="law", values="coverage_90").round(3)
          .to_string())
    print(table.pivot(index="suite", columns="law", values="median_width_ratio").round(2)
          .to_string())
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "scores": table.to_dict(orient="records"),
            "rows": pd.concat(all_rows, ignore_index=True).to_dict(orient="records"),
            "settings": {"small": args.small, **settings, "seed": args.seed},
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
