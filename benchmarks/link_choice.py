"""Whether the ladder chooses the downstream link its tasks were simulated with (#17, item 4).

Each replicate simulates a final-loss ladder (``bayescale.simulate_ladder``, 5 sizes x 4
token multipliers) with one task whose accuracy is a sigmoid either in the loss or in
``ln(L - E)`` (slope and midpoint drawn per replicate, so accuracy moves over the ladder), and
runs :func:`bayescale.model_choice.choose_link` for the ``chinchilla`` loss model: the
candidate links fitted without the largest sizes and scored on their held-out accuracies.
The script counts how often the chosen candidate has the simulated scale (and the sigmoid).

Run::

    python benchmarks/link_choice.py                          # 10 replicates per scale
    python benchmarks/link_choice.py --links sigmoid          # the two sigmoid candidates only
    python benchmarks/link_choice.py --replicates 2           # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale import model_choice
from bayescale.model import load_model
from bayescale.runs import read_runs
from bayescale.simulate import Task

#: Task parameters per simulated scale: slope range and midpoint range (on the link's scale).
TASKS = {"loss": ((2.0, 5.0), (2.8, 3.2)), "log_reducible": ((1.5, 3.0), (-0.3, 0.3))}


def parse_args(argv=None) -> argparse.Namespace:
    """The command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=10, help="replicates per scale")
    parser.add_argument("--links", choices=("all", "sigmoid"), default="all",
                        help="the default candidates, or the sigmoid in each scale only")
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def replicate(scale: str, r: int, args: argparse.Namespace) -> dict:
    """Simulate one ladder with a task on ``scale`` and choose its link; one summary row."""
    rng = np.random.default_rng([args.seed, r, len(scale)])
    (s_lo, s_hi), (m_lo, m_hi) = TASKS[scale]
    task = Task("task", slope=float(rng.uniform(s_lo, s_hi)),
                midpoint=float(rng.uniform(m_lo, m_hi)), scale=scale)
    runs, _ = bayescale.simulate_ladder(seed=1000 * args.seed + r, tasks=[task])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model_choice.choose_link(read_runs(runs), load_model("chinchilla"),
                                       draws=args.draws, tune=args.tune, chains=args.chains,
                                       random_seed=r, progressbar=False)
    if out is None:
        raise RuntimeError("choose_link compared nothing: the ladder should allow two folds")
    link, scores, _ = out
    return {"truth_scale": scale, "replicate": r, "slope": task.slope,
            "midpoint": task.midpoint, "chosen_link": link["link"],
            "chosen_scale": link["scale"], "scale_right": link["scale"] == scale,
            "exact": link == {"link": "sigmoid", "scale": scale},
            "best_by_score": str(scores.sort_values("mean_log_score").iloc[-1]["model"]),
            "best_advantage": float(scores["advantage"].max()),
            "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    """Run the replicates of both scales; print each and the counts; exit status 0."""
    args = parse_args(argv)
    if args.links == "sigmoid":
        model_choice.LINK_CANDIDATES = (("sigmoid", "loss"), ("sigmoid", "log_reducible"))
    rows = []
    for scale in TASKS:
        for r in range(args.replicates):
            rows.append(replicate(scale, r, args))
            print(pd.DataFrame([rows[-1]]).to_string(index=False, header=len(rows) == 1),
                  flush=True)
    table = pd.DataFrame(rows)
    counts = table.groupby("truth_scale")[["scale_right", "exact"]].sum()
    print(f"\ncandidates: {model_choice.LINK_CANDIDATES}")
    print(f"right scale / exact link, of {args.replicates} per simulated scale:")
    print(counts.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
