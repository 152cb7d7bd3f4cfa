"""Coverage far beyond the ladder when the law itself is wrong there (issue #17, acceptance 1).

Each replicate simulates a final-loss ladder (``bayescale.simulate_ladder``: 5 sizes x 4
token multipliers, or its first ``--sizes`` sizes) whose truth is Chinchilla's law bent by a
model discrepancy that starts inside the ladder:
``ln L_true = ln L_law + tau w max(0, ln(C / C_mid))`` with ``C = N D``, ``C_mid`` the
ladder's median compute and ``w ~ Normal(0, 1)`` drawn per replicate (so the
law's error keeps growing linearly in ln compute, in a direction the replicate does not
reveal beyond its larger runs).  ``bayescale.fit(runs)`` with its defaults (``model="auto"``:
candidates backtested inside the ladder, a discrepancy scale estimated from the held-out
larger sizes) then predicts the law at 10x and 100x the ladder's largest compute (N and D
scaled together), and the script counts how often the true value lies inside the 90% band
of ``kind="mean"`` (the law, which is what the truth above is), with and without the
discrepancy term (the same posterior read with ``scale=0``).

Run::

    python benchmarks/discrepancy_calibration.py                 # 20 replicates, ~20 minutes
    python benchmarks/discrepancy_calibration.py --replicates 4  # smoke run
    python benchmarks/discrepancy_calibration.py --sizes 4       # a ladder of 4 sizes
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale.parts import Discrepancy

FACTORS = (10.0, 100.0)


def parse_args(argv=None) -> argparse.Namespace:
    """The command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--tau", type=float, default=0.01,
                        help="true discrepancy, ln loss per e-fold of compute (default 0.01)")
    parser.add_argument("--noise", type=float, default=0.005, help="ln-loss noise sd")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, default=5, choices=(3, 4, 5),
                        help="model sizes of the ladder: the first 3, 4 or all 5 of "
                             "simulate_ladder's (default 5)")
    return parser.parse_args(argv)


def bent(values, compute, c_mid: float, tau: float, w: float) -> np.ndarray:
    """``values x exp(tau w max(0, ln(compute / c_mid)))``."""
    return np.asarray(values) * np.exp(tau * w * np.maximum(np.log(np.asarray(compute) / c_mid),
                                                            0.0))


def replicate(r: int, args) -> list[dict]:
    """One simulated ladder, fitted with the defaults: a row per target factor and model."""
    rng = np.random.default_rng([args.seed, r])
    sizes = inspect.signature(bayescale.simulate_ladder).parameters["sizes"].default
    runs, truth = bayescale.simulate_ladder(seed=1000 + r, noise=args.noise,
                                            sizes=sizes[:args.sizes])
    compute = (runs["params"] * runs["tokens"]).to_numpy()
    c_mid = float(np.median(compute))
    w = float(rng.standard_normal())
    runs["value"] = bent(runs["value"], compute, c_mid, args.tau, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, draws=args.draws, tune=args.tune, chains=args.chains,
                            random_seed=r, progressbar=False)
    plain = dataclasses.replace(fit, model=fit.model.with_parts(Discrepancy(scale=0.0)),
                                _diagnostics=None)
    big = runs.loc[np.argmax(compute)]
    out = []
    for factor in FACTORS:
        n, d = big["params"] * np.sqrt(factor), big["tokens"] * np.sqrt(factor)
        true = float(bent(truth.loss(n, d), n * d, c_mid, args.tau, w))
        for label, which in (("auto", fit), ("no discrepancy", plain)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                band = which.predict({"params": n, "tokens": d}, hdi_prob=0.9, kind="mean").iloc[0]
            out.append({"replicate": r, "w": w, "factor": factor, "model": label,
                        "chosen": fit.model.name, "folds": fit.model_choice.folds,
                        "converged": bool(fit.diagnostics().passed),
                        "scale": (fit.model.part("discrepancy").scale
                                  if fit.model.part("discrepancy") is not None else 0.0),
                        "covered": band["lower"] <= true <= band["upper"],
                        "rel_error": band["median"] / true - 1,
                        "width": (band["upper"] - band["lower"]) / true})
    return out


def main(argv=None) -> int:
    """Run the replicates, print the coverage table; exit status 0."""
    args = parse_args(argv)
    start = time.perf_counter()
    rows = []
    for r in range(args.replicates):
        t0 = time.perf_counter()
        rows += replicate(r, args)
        last = rows[-4:]
        print(f"replicate {r}: {last[0]['chosen']} ({last[0]['folds']} folds), scale "
              f"{last[0]['scale']:.4f}, w "
              f"{last[0]['w']:+.2f}; covered at 10x/100x: "
              f"{[row['covered'] for row in last if row['model'] == 'auto']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    summary = (table.groupby(["model", "factor"])
               .agg(coverage=("covered", "mean"), median_abs_error=("rel_error",
                                                                     lambda e: e.abs().median()),
                    median_width=("width", "median"), n=("covered", "size"))
               .reset_index())
    pd.set_option("display.width", 160)
    print(f"\ntau {args.tau}, noise {args.noise}, {args.replicates} replicates, {args.sizes} "
          f"sizes, {args.chains} x ({args.tune} + {args.draws}); "
          f"{time.perf_counter() - start:.0f} s")
    print(summary.round(3).to_string(index=False))
    print(f"chosen: {table.drop_duplicates('replicate')['chosen'].value_counts().to_dict()}; "
          f"all converged: {table.drop_duplicates('replicate')['converged'].mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
