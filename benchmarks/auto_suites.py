"""``bayescale.fit(runs)`` with no model named, on the visible suites of issue #17's acceptance.

Each suite fits the training rows with the package defaults (``model="auto"``: candidates
backtested inside the training ladder, the winner refitted with its discrepancy term) and
scores the 90% observation bands at the held-out targets, which the choice never sees:

``gadre``
    Gadre et al.'s C4 validation loss, models <= 0.41B fitted, the six 1.4B models predicted.
``gadre_average``
    The same runs with the 46-task average accuracy as one metric (``acc:avg``, built as
    ``case_studies/gadre_overtrain.py`` builds it), fitted jointly with the loss (``model=
    "auto"`` adds the downstream part, its link chosen by a second backtest); the six 1.4B
    averages predicted, scored in accuracy points (absolute, not relative, error).
``chinchilla``
    Besiroglu et al.'s Chinchilla points, the top 20% of compute (params x tokens) predicted
    from the rest.
``pythia``
    Pythia's LAMBADA ln-perplexity, both families, runs <= 1.4B at every checkpoint fitted,
    the two 2.8B final losses predicted.
``pythia_truncated``
    The same runs seen up to step 33,000, each run's own final loss predicted.

Each suite prints one row: the model chosen, its discrepancy scale, the median absolute
error and the median 90% band width (relative to the truth; for ``gadre_average`` in
accuracy, so 0.0132 is 1.32 points), how many targets the bands cover, and whether the
final fit converged.

Run (data under ``$BAYESCALE_DATA`` or ``../shared/data``)::

    python benchmarks/auto_suites.py gadre chinchilla pythia pythia_truncated   # ~20 minutes
    python benchmarks/auto_suites.py gadre_average                             # ~15 minutes
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale
from bayescale.datasets import find_data_dir, load_chinchilla, load_gadre, load_pythia

SUITES = ("gadre", "gadre_average", "chinchilla", "pythia", "pythia_truncated")
#: Suites whose targets are accuracies, scored by absolute error (points) instead of relative.
ACCURACY_SUITES = ("gadre_average",)
PYTHIA_FIT_SIZES = ("70m", "160m", "410m", "1b", "1.4b")
TRUNCATE_STEP = 33_000


def split(suite: str, data: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training rows, targets, truth values) of one suite."""
    if suite == "gadre":
        runs = load_gadre(data / "gadre_overtrain", param_count="total", loss="c4_val",
                          tasks=None)
        test = runs[runs["params"] > 1e9].reset_index(drop=True)
        return (runs[runs["params"] <= 0.42e9].reset_index(drop=True),
                test[["params", "tokens", "family"]], test)
    if suite == "gadre_average":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "case_studies"))
        from gadre_overtrain import average_rows, load  # the case study's acc:avg rows

        runs, tasks = load(data, small=False)
        table = pd.concat([runs[runs["metric"] == "loss"], average_rows(runs, tasks)],
                          ignore_index=True)
        test = table[(table["params"] > 1e9)
                     & (table["metric"] == "acc:avg")].reset_index(drop=True)
        return (table[table["params"] <= 0.42e9].reset_index(drop=True),
                test[["params", "tokens", "family", "metric"]], test)
    if suite == "chinchilla":
        runs = load_chinchilla(data)
        runs = runs[runs["metric"] == "loss"].reset_index(drop=True)
        compute = runs["params"] * runs["tokens"]
        above = compute > compute.quantile(0.8)
        test = runs[above].reset_index(drop=True)
        return runs[~above].reset_index(drop=True), test[["params", "tokens"]], test
    runs = load_pythia(data, tasks=None)
    loss = runs[runs["metric"] == "loss"]
    last = loss.loc[loss.groupby("run")["tokens"].idxmax()]
    fit_rows = runs[runs["size"].isin(PYTHIA_FIT_SIZES)].reset_index(drop=True)
    columns = ["params", "total_tokens", "family"]
    if suite == "pythia":
        test = last[last["size"] == "2.8b"].reset_index(drop=True)
        targets = test[columns].assign(tokens=test["total_tokens"])
        return fit_rows, targets, test
    test = last[last["size"].isin(PYTHIA_FIT_SIZES)].reset_index(drop=True)
    targets = test[[*columns, "run"]].assign(tokens=test["total_tokens"])
    return fit_rows[fit_rows["step"] <= TRUNCATE_STEP].reset_index(drop=True), targets, test


def score(suite: str, data: Path) -> dict:
    """Fit one suite with the defaults and score its targets (one summary row)."""
    train, targets, test = split(suite, data)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(train, progressbar=True)
        pred = fit.predict(targets, hdi_prob=0.9)
    y = test["value"].to_numpy(dtype=float)
    scale = 1.0 if suite in ACCURACY_SUITES else y  # accuracy: absolute error
    err = (pred["median"].to_numpy() - y) / scale
    width = (pred["upper"] - pred["lower"]).to_numpy() / scale
    covered = (pred["lower"].to_numpy() <= y) & (y <= pred["upper"].to_numpy())
    part = fit.model.part("discrepancy")
    print(fit.model_choice.message() if fit.model_choice else "(no choice)", flush=True)
    return {"suite": suite, "chosen": fit.model.name,
            "scale": part.scale if part is not None else 0.0,
            "targets": len(y), "median_abs_error": float(np.median(np.abs(err))),
            "covered": int(covered.sum()), "median_width": float(np.median(width)),
            "width_over_error": float(np.median(width / np.abs(err))),
            "converged": bool(fit.diagnostics().passed),
            "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    """Score the suites named on the command line; print one row each; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", choices=SUITES, default=list(SUITES))
    parser.add_argument("--data", type=Path, default=None,
                        help="folder holding the data sets (default $BAYESCALE_DATA or "
                             "../shared/data)")
    args = parser.parse_args(argv)
    data = args.data or find_data_dir("pythia")
    if data is None:
        raise SystemExit("error: no data folder ($BAYESCALE_DATA or ../shared/data)")
    rows = [score(suite, Path(data)) for suite in args.suites]
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
