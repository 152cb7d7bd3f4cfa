"""Which data mix wins at 1.4B? Family decisions on Gadre et al.'s three mixes.

Gadre et al. (2024) trained the same ladder of models on three data mixes (families
``c4``, ``redpajama``, ``refinedweb``).  This fits the C4 validation loss of every model up
to 0.41B parameters (the models the Gadre case study fits, ``case_studies/gadre_overtrain.py``)
with the package default, ``bayescale.fit(runs)``, which on a final-loss table with several
families is the ``chinchilla`` preset plus family pooling (``bayescale.model.auto_model``;
the script checks that the model pools families), then asks
:func:`bayescale.decisions.compare_families` which mix has the lowest C4 loss at the
parameters and tokens of each of the 1.4B models in the data (``open_lm_1b``: 3.5x the
parameters of the largest fitted model; 0.4x to 12x its compute, since the 1.4B x1 model
trained on fewer tokens than the 0.41B x32 ones), and prints that next to the realised order
of the 1.4B runs, with the probability of each pairwise order (``families=[a, b]``).

Nothing is tuned on the 1.4B values: the model, the sampler settings and the targets are
fixed before they are read, and they are read only for the "realised" column.  Each 1.4B
configuration was trained once per mix that has it: at 1x tokens per 20 params all three
mixes have a run, so the realised order of the three is known; at x4 (c4), x16
(refinedweb) and x32 (redpajama) only one mix has a run, so only its loss is shown.

``kind="mean"`` compares the mixes' laws (the expected run: "which mix is better");
``kind="observation"`` one new run of each (seed scatter and measurement noise included),
the closer match to a single realised run each.  The C4 validation loss favours the c4 mix,
which is trained on the same distribution.

Run::

    python benchmarks/gadre_families.py                        # package default sampler
    python benchmarks/gadre_families.py --draws 300 --tune 300 --chains 2   # quick look

The data folder is ``$BAYESCALE_DATA`` or ``../shared/data`` (``--data`` overrides).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

import bayescale
from bayescale.datasets import find_data_dir, load_gadre
from bayescale.decisions import compare_families

SUB = "gadre_overtrain"
#: Largest fitted model: 0.41B parameters (as the Gadre case study).
MAX_FIT_PARAMS = 0.42e9
TARGET_ARCH = "open_lm_1b"
KINDS = ("mean", "observation")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options: data folder, sampler settings (default: the model's), JSON out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder holding gadre_overtrain/ (default: $BAYESCALE_DATA, "
                             "else ../shared/data)")
    parser.add_argument("--draws", type=int, default=None, help="default: the model's (1000)")
    parser.add_argument("--tune", type=int, default=None, help="default: the model's (1000)")
    parser.add_argument("--chains", type=int, default=None, help="default: the model's (4)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables here")
    return parser.parse_args(argv)


def load_runs(data: Path | None) -> pd.DataFrame:
    """The C4 validation loss of every Gadre model (final checkpoint, one row per model)."""
    root = data if data is not None else find_data_dir(SUB)
    if root is None or not (Path(root) / SUB).is_dir():
        where = root or "$BAYESCALE_DATA or ../shared/data"
        raise SystemExit(f"error: no {SUB}/ folder in {where}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_gadre(Path(root) / SUB, param_count="total", loss="c4_val", tasks=None)


def targets_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The distinct (params, tokens) of the 1.4B models, with their token multiplier."""
    big = runs[runs["arch"] == TARGET_ARCH]
    return (big[["params", "tokens", "multiplier"]].drop_duplicates()
            .sort_values("multiplier").reset_index(drop=True))


def realised(runs: pd.DataFrame, target: pd.Series) -> str:
    """The 1.4B runs at ``target``, lowest C4 loss first: ``c4 2.657 < refinedweb 2.763``."""
    rows = runs[(runs["arch"] == TARGET_ARCH) & (runs["params"] == target["params"])
                & (runs["tokens"] == target["tokens"])].sort_values("value")
    text = " < ".join(f"{r.family} {r.value:.3f}" for r in rows.itertuples())
    return text + ("" if len(rows) > 1 else " (only this mix has a run here)")


def main(argv=None) -> int:
    """Fit, compare the mixes at every 1.4B target, print; exit status 0."""
    args = parse_args(argv)
    runs = load_runs(args.data)
    train = runs[runs["params"] <= MAX_FIT_PARAMS].reset_index(drop=True)
    targets = targets_of(runs)
    settings = {k: v for k, v in (("draws", args.draws), ("tune", args.tune),
                                  ("chains", args.chains)) if v is not None}
    print(f"fitting {len(train)} models (<= 0.41B; {train['family'].value_counts().to_dict()}) "
          f"with bayescale.fit(runs) {settings or '(model defaults)'}", flush=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(train, random_seed=args.seed, progressbar=False, **settings)
    wall = time.perf_counter() - start
    if fit.model.part("family_pooling") is None:
        raise SystemExit(f"error: the default model {fit.model.name!r} does not pool families")
    print(f"model {fit.model.name!r}: {wall:.0f} s; {fit.diagnostics().message()}\n")
    out = []
    pd.set_option("display.width", 160)
    for target in targets.itertuples(index=False):
        point = {"params": target.params, "tokens": target.tokens}
        beyond = compare_families(fit, point).attrs["extrapolation"]
        print(f"=== 1.4B x{target.multiplier:g}: N = {target.params:.3g}, "
              f"D = {target.tokens:.3g} (compute {beyond:.2g}x the largest fitted model)")
        for kind in KINDS:
            table = compare_families(fit, point, kind=kind)
            print(f"kind={kind}:")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            out += [dict(row, multiplier=target.multiplier, kind=kind)
                    for row in table.to_dict("records")]
        pairs = []
        for a, b in itertools.combinations(fit.families, 2):
            p_a = compare_families(fit, point, [a, b]).set_index("family").loc[a, "p_best"]
            pairs.append(f"P({a} < {b}) = {p_a:.3f}")
        print("pairwise, kind=mean: " + "; ".join(pairs))
        print(f"realised: {realised(runs, pd.Series(point))}\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": fit.model.name, "fit_seconds": wall,
                                         "diagnostics": fit.diagnostics().message(),
                                         "rows": out}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
