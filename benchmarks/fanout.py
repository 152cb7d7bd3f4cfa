"""Benchmark: ``bayescale.fanout.fit_many`` on a 2-worker LocalCluster against a plain loop.

Eight independent fits (``--fits``) of simulated ladders of the default shape
(``bayescale.simulate_ladder(seed=i)``, 20 runs) with the ``chinchilla`` model, 4 chains x
(1000 tuning + 1000 draws) by default, are run in one invocation:

(a) ``loop``: ``bayescale.fit`` one after another in this process (each fit samples its
    chains on all cores, nutpie's default ``cores=min(chains, cpus)``; the first fit
    compiles the model, the others reuse it);
(b) ``fit_many``: the same jobs (same seeds) on a ``LocalCluster`` of ``--workers`` worker
    processes with one thread each, ``cores_per_fit=1``; its wall time includes starting
    and closing the cluster and one compilation per worker;
(c) ``fit_many(..., processes=False)``: the same, the workers threads of this process,
    which compile the model once between them (the in-process cache is emptied first).

Prints the wall times, the ratios loop / fit_many (above 1: the fan-out is faster), whether
the stages gave identical posteriors (same seeds), and the share of the machine's CPU that
other processes used during each stage (from ``/proc/stat``): on a shared machine the
timings are only as good as its quiet.  Writes JSON to ``benchmarks/out/fanout.json``.

Where the speed-up comes from: sampling is already parallel in a loop (chains on threads),
but everything around it (building the model, log-likelihoods, diagnostics, ArviZ
conversion) runs on one core, and 4 chains on 2 cores leave a core idle while the last
chain finishes; two worker processes keep both cores busy throughout.

Run::

    python benchmarks/fanout.py                                   # 8 fits, 4 x (1000 + 1000)
    python benchmarks/fanout.py --draws 300 --tune 300 --fits 4   # quick check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import bayescale
from bayescale.fanout import FitJob, fit_many
from bayescale.sampling import _NUTPIE_CACHE
from bayescale.versions import versions

HERE = Path(__file__).resolve().parent


def _busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Stage:
    """Wall time, own CPU time and the other processes' share of the machine over a block."""

    def __enter__(self):
        self.busy0, self.own0 = _busy_cpu_seconds(), _own_cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.own = _own_cpu_seconds() - self.own0
        busy1 = _busy_cpu_seconds()
        ncpu = os.cpu_count() or 1
        self.other = (None if busy1 is None or self.busy0 is None
                      else max(0.0, (busy1 - self.busy0 - self.own) / (self.wall * ncpu)))
        return False


def main(argv=None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    ladders = [bayescale.simulate_ladder(seed=i)[0] for i in range(args.fits)]
    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    print(f"{args.fits} fits of simulated ladders ({len(ladders[0])} runs each), 'chinchilla', "
          f"{args.chains} chains x ({args.tune} + {args.draws}); {os.cpu_count()} CPUs",
          flush=True)

    loop_fits = []
    with Stage() as loop, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, runs in enumerate(ladders):
            t0 = time.perf_counter()
            loop_fits.append(bayescale.fit(runs, "chinchilla", **settings, random_seed=i,
                                           progressbar=False))
            print(f"  loop fit {i}: {time.perf_counter() - t0:.1f} s", flush=True)

    jobs = [FitJob(runs, "chinchilla", {**settings, "random_seed": i}, label=f"seed{i}")
            for i, runs in enumerate(ladders)]
    stages: dict[str, tuple[Stage, Any]] = {}
    for name, processes in (("processes", True), ("threads", False)):
        _NUTPIE_CACHE.clear()  # each stage compiles for itself, as a fresh worker would
        with Stage() as stage, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fit_many(jobs, n_workers=args.workers, threads_per_worker=1, cores_per_fit=1,
                           processes=processes, returns="fit", progressbar=True)
        print(out.table()[["label", "ok", "seconds", "worker", "converged"]].to_string(
            index=False))
        stages[name] = (stage, out)

    def identical(out) -> bool:
        return out.ok and all(np.array_equal(out.results[f"seed{i}"].posterior_draws("alpha"),
                                             fit.posterior_draws("alpha"))
                              for i, fit in enumerate(loop_fits))

    def other(stage: Stage) -> str:
        return "n/a" if stage.other is None else f"{100 * stage.other:.0f}%"

    print()
    print(f"{'stage':<20} {'wall s':>8} {'own CPU s':>10} {'other%':>7} {'loop / this':>12}")
    print(f"{'loop':<20} {loop.wall:>8.1f} {loop.own:>10.1f} {other(loop):>7} {1:>12.2f}")
    for name, (stage, _) in stages.items():
        print(f"{'fit_many ' + name:<20} {stage.wall:>8.1f} {stage.own:>10.1f} "
              f"{other(stage):>7} {loop.wall / stage.wall:>12.2f}")
    for name, (_, out) in stages.items():
        print(f"fit_many {name}: identical posteriors to the loop (same seeds): "
              f"{identical(out)}; failed jobs: {len(out.failures)}")
    print("loop / this above 1: the fan-out is faster. other% is the CPU share other "
          "processes took during the stage: timings on a busy machine are noisy")

    record = {
        "fits": args.fits, "draws": args.draws, "tune": args.tune, "chains": args.chains,
        "workers": args.workers, "cpus": os.cpu_count(), "machine": platform.platform(),
        "loop": {"wall_s": loop.wall, "own_cpu_s": loop.own, "other_share": loop.other},
        **{f"fit_many_{name}": {"wall_s": stage.wall, "own_cpu_s": stage.own,
                                "other_share": stage.other,
                                "job_seconds": out.table()["seconds"].tolist(),
                                "ratio_loop_over_this": loop.wall / stage.wall,
                                "identical_posteriors": bool(identical(out))}
           for name, (stage, out) in stages.items()},
        "versions": versions(),
    }
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "fanout.json").write_text(json.dumps(record, indent=2, default=str))
    return 0 if all(out.ok for _, out in stages.values()) else 1

if __name__ == "__main__":
    raise SystemExit(main())
