"""Mass-matrix benchmark: nutpie's diagonal against its low-rank-corrected mass matrix.

On Pythia's checkpoint ladder (the case study's model: Kaplan law, family pooling, AR(1)
residuals, random-walk drift, cosine schedule; ``case_studies/pythia_checkpoints.py``),
fits the same scenario twice in one run with the same seed, draws and tuning --
``mass_matrix="diag"`` and ``mass_matrix="low_rank"`` -- and prints, side by side, wall
time, max R-hat and min bulk/tail ESS over the diagnosed (population, family, noise)
parameters, ESS per draw and per second, and the ratios low_rank / diag.  Each fit runs in
the same process after a warm-up compilation, so the wall times compare sampling.

Run::

    python benchmarks/mass_matrix.py                      # transfer scenario, 4 x (2000 + 2000)
    python benchmarks/mass_matrix.py --scenario full --draws 1000 --tune 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "case_studies"))


def parse_args(argv=None):
    """The command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("transfer", "full"), default="transfer")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--tune", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default $BAYESCALE_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Fit with each mass matrix, print and save the comparison; exit status 0."""
    import pythia_checkpoints as pythia
    from _common import require_data

    import bayescale
    from bayescale.datasets import load_pythia

    args = parse_args(argv)
    runs = load_pythia(require_data("pythia", args.data), tasks=None)
    rows = runs[runs["size"].isin(pythia.FIT_SIZES)].reset_index(drop=True)
    if args.scenario == "transfer":
        rows = rows[(rows["family"] == "pile")
                    | rows["size"].isin(pythia.TRANSFER_DEDUPED)].reset_index(drop=True)
    common = dict(sampler="nutpie", chains=args.chains, random_seed=args.seed, progressbar=False)
    model = bayescale.load_model(pythia.MODEL)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        bayescale.fit(rows, model, draws=10, tune=10, **common)  # compile once; both fits reuse it
        for mass in ("diag", "low_rank"):
            start = time.perf_counter()
            fit = bayescale.fit(rows, model, draws=args.draws, tune=args.tune, mass_matrix=mass,
                                **common)
            wall = time.perf_counter() - start
            d = fit.diagnostics()
            n = d.n_draws
            results[mass] = {"wall_s": wall, "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk,
                             "min_ess_tail": d.min_ess_tail, "divergences": d.divergences,
                             "ess_per_draw": d.min_ess_bulk / n, "ess_per_s": d.min_ess_bulk / wall,
                             "converged": bool(d.passed)}
    print(f"Pythia {args.scenario} scenario, {args.chains} chains x ({args.tune} tune + "
          f"{args.draws} draws), seed {args.seed}")
    print(f"{'mass matrix':<12}{'wall s':>9}{'max R-hat':>11}{'bulk ESS':>10}{'tail ESS':>10}"
          f"{'div':>5}{'ESS/draw':>10}{'ESS/s':>8}  converged")
    for mass, r in results.items():
        print(f"{mass:<12}{r['wall_s']:>9.1f}{r['max_rhat']:>11.4f}{r['min_ess_bulk']:>10.0f}{r['min_ess_tail']:>10.0f}"
              f"{r['divergences']:>5d}{r['ess_per_draw']:>10.3f}{r['ess_per_s']:>8.2f}  "
              f"{r['converged']}")
    ratio = {k: results["low_rank"][k] / results["diag"][k]
             for k in ("ess_per_draw", "ess_per_s", "wall_s")}
    print(f"ratios low_rank / diag: bulk ESS per draw {ratio['ess_per_draw']:.2f}, per second "
          f"{ratio['ess_per_s']:.2f}, wall {ratio['wall_s']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"mass_matrix_{args.scenario}.json"
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                "results": results,
                                "ratios": ratio}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
