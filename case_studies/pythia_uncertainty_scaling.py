"""Case study: how the band at Pythia's 2.8B target shrinks as the ladder grows.

Data: the LAMBADA loss of Pythia's runs (both families, every checkpoint), as in
``pythia_checkpoints.py``.  The ladder is refitted on nested subsets, smallest sizes first
(70M + 160M, then up to 410M, 1B and 1.4B), with the ``pythia_lambada`` preset, and the
width of the law's 90% band (``kind="mean"``: parameters only) at the final step of a 2.8B
Pile run is recorded against the ladder's training compute; ``width ∝ C^-kappa`` is fitted
to the steps (:func:`bayescale.uncertainty_scaling`).  Only the target's size and token
count are used: no 2.8B loss is read, so nothing here is tuned on it.

Choices and how they were made: the model is the preset the Pythia case study ships
(``models/pythia_lambada.toml``; how its parts were chosen is written there and in
``pythia_checkpoints.py``); the sampler settings are the package's defaults for the preset
(2 chains to halve the time of four refits).  Outputs: ``uncertainty_scaling.csv`` (one row
per refit), ``uncertainty_scaling.png`` and ``uncertainty_scaling.json`` (kappa and its
interval).

Run::

    python case_studies/pythia_uncertainty_scaling.py            # 4 refits
    python case_studies/pythia_uncertainty_scaling.py --small    # smoke run: <= 410M, tiny draws
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, require_data, write_json

MODEL = "pythia_lambada"
FIT_SIZES = ("70m", "160m", "410m", "1b", "1.4b")
SMALL_FIT_SIZES = ("70m", "160m", "410m")
TARGET_SIZE = "2.8b"
TARGET_FAMILY = "pile"
FULL_SAMPLER = {"draws": 1000, "tune": 1000, "chains": 2}
SMALL_SAMPLER = {"draws": 100, "tune": 100, "chains": 2, "retry": False}


def main(argv=None) -> int:
    """Refit on nested subsets, print the table, write CSV, figure and JSON; exit status 0."""
    parser = base_parser(__doc__.split("\n\n")[0], "case_studies/out/pythia_uncertainty_scaling")
    args = parser.parse_args(argv)
    import bayescale
    from bayescale.datasets import load_pythia

    start = time.perf_counter()
    root = require_data("pythia", args.data)
    runs = load_pythia(root, tasks=None)
    sizes = SMALL_FIT_SIZES if args.small else FIT_SIZES
    ladder = runs[runs["size"].isin(sizes)].reset_index(drop=True)
    params = float(runs.loc[runs["size"] == TARGET_SIZE, "params"].iloc[0])
    total = float(ladder["total_tokens"].iloc[0])
    target = {"params": params, "tokens": total, "total_tokens": total, "family": TARGET_FAMILY}
    settings = dict(SMALL_SAMPLER if args.small else FULL_SAMPLER)
    print(f"Pythia LAMBADA loss: nested refits of {ladder['run'].nunique()} runs "
          f"({', '.join(sizes)}), model {MODEL!r}, target: {TARGET_SIZE} {TARGET_FAMILY} at "
          f"{total:.3g} tokens" + ("  [--small smoke run]" if args.small else ""))
    result = bayescale.uncertainty_scaling(ladder, target, MODEL, by="size",
                                           random_seed=args.seed,
                                           progressbar=True, **settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "uncertainty_scaling.csv", index=False)
    result.plot().savefig(out / "uncertainty_scaling.png")
    k = result.kappa
    write_json(out / "uncertainty_scaling.json",
               {"kappa": k, "target": target, "model": MODEL, "sizes": list(sizes),
                "sampler": settings, "seconds": time.perf_counter() - start})
    print(result.table.to_string(index=False))
    print(f"width ∝ C^-kappa: kappa = {k['median']:.3f} [{k['lower']:.3f}, {k['upper']:.3f}] "
          "(90% interval)")
    print(f"Wrote {out}/uncertainty_scaling.csv, .png, .json in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
