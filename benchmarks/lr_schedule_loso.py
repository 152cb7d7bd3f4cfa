"""Leave one schedule out: variants of the ``multi_power`` preset scored on its training curves.

The model for Luo et al.'s learning-rate schedules (``case_studies/lr_schedules.py``) may
be chosen only from the three curves it is fitted to (``cosine_24000``,
``constant_24000``, ``wsdcon_9`` of every size), never from the four curves it predicts.
This script holds out one training schedule at a time (all three sizes), fits each variant
to the other two at its posterior mode (``method="map"``, 10-20 s per fold on 2 cores),
predicts every row of the held-out curves as new runs, and prints the mean relative error
of each (fold, size) and their mean and worst per variant.  The variant with the lowest
mean is the one to ship.

Variants: the preset; the preset without AR(1) residuals (independent Student-t rows);
the preset with a wide prior of the drop's saturation power (``beta_drop`` LogNormal(-0.5,
0.8) instead of (-0.9, 0.4)); the two changes together; and the preset with a normal
instead of a Student-t likelihood.

Run::

    python benchmarks/lr_schedule_loso.py                 # every variant, ~3 min on 2 cores
    python benchmarks/lr_schedule_loso.py preset iid      # some of them
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "case_studies"))

WIDE_BETA_DROP = {"beta_drop": {"dist": "LogNormal", "kwargs": {"mu": -0.5, "sigma": 0.8},
                                "provenance": "a wide alternative (benchmark)"}}


def variants() -> dict:
    """The candidate models by name."""
    import bayescale
    from bayescale.parts.noise import Noise

    preset = bayescale.load_model("multi_power")
    iid = preset.with_parts(drop=("ar1_residuals",))
    return {"preset": preset, "iid": iid, "beta_wide": preset.with_priors(WIDE_BETA_DROP),
            "iid_beta_wide": iid.with_priors(WIDE_BETA_DROP),
            "normal": preset.with_parts(Noise(likelihood="normal"))}


def held_out_errors(model, train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per (held-out schedule, size): the mean relative error of the posterior mode's forecast."""
    from lr_schedules import TARGET_COLUMNS  # the case study's planned-run columns

    import bayescale
    from bayescale.datasets import LUO_TRAIN_SCHEDULES

    rows = []
    for schedule in LUO_TRAIN_SCHEDULES:
        fitted = train[train["lr_schedule"] != schedule].reset_index(drop=True)
        held = train[train["lr_schedule"] == schedule].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bayescale.fit(fitted, model, method="map", random_seed=seed, progressbar=False)
            median = fit.predict(held[TARGET_COLUMNS])["median"].to_numpy()
        error = np.abs(median / held["value"].to_numpy() - 1)
        for size, mre in pd.Series(error).groupby(held["size"].to_numpy()).mean().items():
            rows.append({"held_out": schedule, "size": size, "mre": mre})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """Score the named variants (default: all) and print the table; status 0."""
    names = list(variants())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"variants to score (default: all of {', '.join(names)})")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default $BAYESCALE_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(names))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {names}")
    from _common import require_data

    from bayescale.datasets import LUO_TRAIN_SCHEDULES, load_lr_schedules

    runs = load_lr_schedules(require_data("lr_schedules", args.data))
    train = runs[runs["lr_schedule"].isin(LUO_TRAIN_SCHEDULES)].reset_index(drop=True)
    models = variants()
    summary = []
    for name in args.variants or names:
        start = time.perf_counter()
        table = held_out_errors(models[name], train, args.seed)
        grid = table.pivot(index="held_out", columns="size", values="mre")
        grid = grid[list(pd.unique(train["size"]))]  # the sizes in the table's order
        print(f"{name}:\n" + grid.map(lambda v: f"{100 * v:.3f}%").to_string(), flush=True)
        summary.append({"variant": name, "mean_mre": table["mre"].mean(),
                        "worst_mre": table["mre"].max(),
                        "seconds": time.perf_counter() - start})
    print(pd.DataFrame(summary).to_string(index=False,
                                          formatters={"mean_mre": "{:.3%}".format,
                                                      "worst_mre": "{:.3%}".format,
                                                      "seconds": "{:.0f}".format}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
