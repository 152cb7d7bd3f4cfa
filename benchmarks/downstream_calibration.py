"""Coverage of joint loss + task-accuracy fits on simulated ladders (issue #4, acceptance 1).

Each replicate draws its own tasks (midpoints spread over the ladder's losses, slopes 2-6
per nat, chance 0/0.25/0.5, 100-10,000 items; see ``simulated_calibration.DownstreamDesign``),
fits the loss and every task's accuracy jointly on 0.02B-0.7B runs, and scores the 90%
observation bands of every task's accuracy at the held-out 1.5B and 3B runs.  Prints one line
per replicate, the pooled coverage, and how band width scales with the number of items.

    python benchmarks/downstream_calibration.py --replicates 20
    python benchmarks/downstream_calibration.py --replicates 5 --link exp
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from simulated_calibration import DownstreamDesign, downstream_replicate, summarise_downstream

OUT = Path(__file__).parent / "out"


def describe(out: dict) -> str:
    """One line per replicate, for logs."""
    marks = "".join("+" if v else "-" for v in out["heldout_covered"])
    return (f"seed {out['seed']:>3} {out['seconds']:5.1f}s rhat {out['max_rhat']:.3f} ess "
            f"{out['min_ess_bulk']:5.0f} div {out['divergences']:>3} | tasks {marks} | mean "
            f"{sum(out['heldout_mean_covered'])}/{len(out['heldout_mean_covered'])} | err:avg "
            f"{sum(out['err_avg_covered'])}/{len(out['err_avg_covered'])}")


def main() -> None:
    """Run the downstream replicates, print the coverage summary and write a JSON file."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicates", type=int, default=10)
    p.add_argument("--first", type=int, default=0, help="first simulation seed")
    p.add_argument("--link", choices=("sigmoid", "exp", "gompertz"), default="sigmoid")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    design = DownstreamDesign()
    print(design, flush=True)
    reps, start = [], time.perf_counter()
    for seed in range(args.first, args.first + args.replicates):
        out = downstream_replicate(seed, design, link=args.link, draws=args.draws, tune=args.tune)
        print(describe(out), flush=True)
        reps.append(out)
    summary = summarise_downstream(reps)
    print(", ".join(f"{k} {v:.3f}" for k, v in summary.items()), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    OUT.mkdir(exist_ok=True)
    tag = "_" + args.tag if args.tag else ""
    path = OUT / f"downstream_calibration{tag}_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"design": asdict(design), "args": vars(args),
                                "summary": summary.to_dict(),
                                "replicates": reps}, indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
