"""Coverage of hierarchical fits on simulated ladders (issue #3, acceptance 1).

Runs replicates one after another in this process (the slow test does the same with the
default design) and prints one line per replicate and the pooled coverage.

    python benchmarks/calibration.py --replicates 5                  # AR(1) fits, default design
    python benchmarks/calibration.py --replicates 5 --residuals iid
    python benchmarks/calibration.py --multipliers 10 40 --checkpoints 12 --seeds 2
    python benchmarks/calibration.py --replicates 3 --family-prior student_t half_normal  # compared

With several ``--family-prior`` values the same replicates are fitted with each, and a
table compares them (replicates converged, divergent draws, min bulk ESS, ESS per second).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
from simulated_calibration import (
    LadderDesign,
    describe,
    hierarchical_replicate,
    summarise,
)

from bayescale.parts.pooling import PRIORS as FAMILY_PRIORS

OUT = Path(__file__).parent / "out"


def sampling_table(results: dict) -> pd.DataFrame:
    """One row per (residuals, family prior): convergence, divergences and sampling speed.

    Replicates converged, divergent draws, the median of the replicates' min bulk ESS and of
    their min bulk ESS per second of fit.
    """
    rows = {}
    for key, result in results.items():
        reps = pd.DataFrame(result["replicates"])
        rows[key] = {"converged": f"{int(reps['converged'].sum())}/{len(reps)}",
                     "divergent draws": int(reps["divergences"].sum()),
                     "median min ESS": reps["min_ess_bulk"].median(),
                     "median ESS/s": (reps["min_ess_bulk"] / reps["seconds"]).median(),
                     "median s/fit": reps["seconds"].median()}
    return pd.DataFrame(rows).T


def main() -> None:
    """Run the replicates of each family prior, print the summaries and write a JSON file."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicates", type=int, default=5)
    p.add_argument("--first", type=int, default=0, help="first simulation seed")
    p.add_argument("--residuals", nargs="+", default=["ar1"])
    p.add_argument("--family-prior", nargs="+", default=["student_t"], choices=FAMILY_PRIORS,
                   help="prior(s) of the families' deviations (default: student_t)")
    p.add_argument("--mass-matrix", choices=("diag", "low_rank"),
                   help="default: hierarchical_replicate's")
    p.add_argument("--low-rank-cutoff", type=float, help="default: hierarchical_replicate's")
    p.add_argument("--sizes", type=float, nargs="+")
    p.add_argument("--multipliers", type=float, nargs="+")
    p.add_argument("--heldout-sizes", type=float, nargs="+")
    p.add_argument("--heldout-multipliers", type=float, nargs="+")
    p.add_argument("--seeds", type=int)
    p.add_argument("--checkpoints", type=int)
    p.add_argument("--draws", type=int, help="default: hierarchical_replicate's")
    p.add_argument("--tune", type=int, help="default: hierarchical_replicate's")
    p.add_argument("--target-accept", type=float, help="default: hierarchical_replicate's")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    changes = {k: v for k, v in {
        "sizes": args.sizes and tuple(args.sizes),
        "multipliers": args.multipliers and tuple(args.multipliers),
        "heldout_sizes": args.heldout_sizes and tuple(args.heldout_sizes),
        "heldout_multipliers": args.heldout_multipliers and tuple(args.heldout_multipliers),
        "seeds": args.seeds, "checkpoints": args.checkpoints}.items() if v is not None}
    design = replace(LadderDesign(), **changes)
    print(design, f"n_obs={design.n_obs}", flush=True)
    sampler = {k: v for k, v in {"draws": args.draws, "tune": args.tune,
                                 "target_accept": args.target_accept,
                                 "mass_matrix": args.mass_matrix,
                                 "low_rank_cutoff": args.low_rank_cutoff}.items()
               if v is not None}
    results, start = {}, time.perf_counter()
    for residuals in args.residuals:
        for prior in args.family_prior:
            key = residuals if len(args.family_prior) == 1 else f"{residuals}/{prior}"
            reps = []
            for seed in range(args.first, args.first + args.replicates):
                out = hierarchical_replicate(seed, design, residuals=residuals, family_prior=prior,
                                             **sampler)
                print(f"{prior:11s} " + describe(out), flush=True)
                reps.append(out)
            summary = summarise(reps)
            print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()), flush=True)
            results[key] = {"summary": summary.to_dict(), "replicates": reps}
    if len(args.family_prior) > 1:
        print(sampling_table(results).to_string())
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    OUT.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = OUT / f"calibration{'_' + args.tag if args.tag else ''}_{stamp}.json"
    path.write_text(json.dumps({"design": asdict(design), "args": vars(args), "results": results},
                               indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
