"""Speed benchmark on the Chinchilla data (Epoch's extraction, 245 runs).

Measures, side by side in one run, each stage in its own fresh Python process:

(a) ``bayescale.fit(..., sampler="nutpie")``, 4 chains x 1000 draws after 1000 tuning
    steps: wall time of the first fit in a fresh process (includes compiling the model)
    and of a second fit in the same process (warm), max R-hat and min bulk ESS over
    E, A, B, alpha, beta, divergences, ESS per second, 90% HDIs;
(b) the same with ``sampler="pymc"`` (PyMC's own NUTS);
(c) an Epoch-style bootstrapped fit (Besiroglu et al. 2024): BFGS on the Huber loss
    (delta 1e-3) of the log-space residuals of the log-sum-exp parameterisation
    ``ln L = LSE(a - alpha ln N, b - beta ln D, e)``, best of a grid of initialisations,
    on the full data and on 200 bootstrap resamples (5 outliers excluded as Epoch did);
    wall time and 90% percentile intervals.

Prints a table, the ratios (nutpie ESS/s over pymc ESS/s; nutpie wall over bootstrap
wall) and PASS/FAIL for the speed target: nutpie 4x1000 total wall <= 30 s (cold, fit
call including compilation), max R-hat <= 1.01, bulk ESS >= 400, no divergences, and
Epoch's alpha, beta, E inside the 90% intervals.  Writes JSON to ``benchmarks/out/``.

It also reports how much CPU other processes used during each stage (from
``/proc/stat``), since timings on a shared machine are only as good as its quiet.

Run::

    python benchmarks/chinchilla_speed.py                 # the full benchmark, ~3-4 min on 2 cores
    python benchmarks/chinchilla_speed.py --skip-pymc     # nutpie and bootstrap only
    python benchmarks/chinchilla_speed.py --draws 200 --tune 200 --chains 2 --bootstrap 20  # quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PARAMETERS = ["E", "A", "B", "alpha", "beta"]
CHECKED = ["alpha", "beta", "E"]  # Epoch's values of these must lie in the 90% intervals
HDI_PROB = 0.9
#: Besiroglu et al. (2024), Approach-3 refit.
EPOCH_2024 = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
N_OUTLIERS = 5

TARGET_WALL_S = 30.0
TARGET_RHAT = 1.01
TARGET_ESS = 400

# Initialisations of (a, b, e, alpha, beta) for each least-squares fit: a 2^5 corner grid
# inside Hoffmann et al.'s grid (a, b in 0..25, e in -1..1, alpha, beta in 0..2).
GRIDS = {
    "small": {"a": (5.0, 15.0), "b": (5.0, 15.0), "e": (-0.5, 0.5), "alpha": (0.5, 1.0),
              "beta": (0.5, 1.0)},
    "tiny": {"a": (5.0, 15.0), "b": (5.0, 15.0), "e": (0.5,), "alpha": (0.5,), "beta": (0.5, 1.0)},
}


# ============================================================================ measurement helpers
def _busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_for_quiet(max_wait_s: float, threshold: float = 0.1,
                   window_s: float = 5.0) -> float | None:
    """Wait until other processes use under ``threshold`` of the machine over ``window_s``.

    Waits at most ``max_wait_s``; returns the last measured busy share (None without /proc).
    """
    ncpu = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = _busy_cpu_seconds()
        if b0 is None:
            return None
        time.sleep(window_s)
        share = (_busy_cpu_seconds() - b0) / (window_s * ncpu)
        if share < threshold or time.monotonic() >= deadline:
            return share
        print(f"  machine {100 * share:.0f}% busy; waiting for it to quieten ...", flush=True)


def _own_cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_stage(name: str, worker_args: list[str]) -> dict:
    """Run one stage in a fresh Python process; return its JSON result plus interference."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker_args, "--result",
               str(result_file)]
        busy0, child0, load0 = _busy_cpu_seconds(), _children_cpu_seconds(), os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        busy1, child1 = _busy_cpu_seconds(), _children_cpu_seconds()
        if proc.returncode != 0:
            raise RuntimeError(f"stage {name} failed (exit {proc.returncode}):\n"
                               f"{proc.stderr[-4000:]}")
        result = json.loads(result_file.read_text())
    own = child1 - child0
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - own)
    ncpu = os.cpu_count() or 1
    result["process"] = {
        "wall_s": wall,
        "cpu_s": own,
        "other_processes_cpu_s": other,
        "other_processes_share": None if other is None else other / (wall * ncpu),
        "loadavg_1min_before": load0,
    }
    return result


# ========================================================================== (a), (b): Bayesian fits
def _posterior_metrics(fit, wall: float) -> dict:
    import arviz as az

    post = fit.idata.posterior[PARAMETERS]
    rhat = az.rhat(post)
    ess_bulk = az.ess(post, method="bulk")
    ess_tail = az.ess(post, method="tail")
    hdi = az.hdi(post, hdi_prob=HDI_PROB)
    stats = fit.idata.sample_stats
    div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    min_ess = float(ess_bulk.to_array().min())
    intervals = {k: [float(v) for v in hdi[k].to_numpy()] for k in PARAMETERS}
    diag = fit.diagnostics()
    return {
        "wall_s": wall,
        "inference_s": fit.info.get("fit_seconds"),
        "sampling_time_s": fit.idata.posterior.attrs.get("sampling_time"),
        "max_rhat": float(rhat.to_array().max()),
        "min_ess_bulk": min_ess,
        "min_ess_tail": float(ess_tail.to_array().min()),
        "ess_bulk": {k: float(ess_bulk[k]) for k in PARAMETERS},
        "rhat": {k: float(rhat[k]) for k in PARAMETERS},
        "divergences": div,
        "ess_per_s": min_ess / wall,
        "median": {k: float(post[k].median()) for k in PARAMETERS},
        "hdi90": intervals,
        "epoch_in_hdi90": {k: intervals[k][0] <= EPOCH_2024[k] <= intervals[k][1]
                           for k in PARAMETERS},
        "package_verdict": diag.message(),
    }


def worker_bayes(sampler: str, draws: int, tune: int, chains: int, repeat: int, seed: int) -> dict:
    """Stages (a), (b): ``repeat`` fits with ``sampler``; timings and posterior metrics."""
    import warnings

    t0 = time.perf_counter()
    import bayescale
    from bayescale.datasets import load_chinchilla

    import_s = time.perf_counter() - t0
    runs = load_chinchilla()
    fits = []
    for i in range(repeat):
        cpu0 = _own_cpu_seconds()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bayescale.fit(
                runs,
                "chinchilla",
                sampler=sampler,
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=seed + i,
                progressbar=False,
            )
        wall = time.perf_counter() - start
        metrics = _posterior_metrics(fit, wall)
        cpu = _own_cpu_seconds() - cpu0
        metrics.update(random_seed=seed + i, cpu_s=cpu, ess_per_cpu_s=metrics["min_ess_bulk"] / cpu)
        fits.append(metrics)
    return {"sampler": sampler, "n_runs": len(runs), "import_s": import_s, "fits": fits}


# ============================================================================ (c): bootstrap
def _huber_lse(p: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray, ln_l: np.ndarray, delta: float):
    """Huber loss (over delta) of LSE(a - alpha ln N, b - beta ln D, e) - ln L, and its gradient."""
    a, b, e, alpha, beta = p
    t = np.stack([a - alpha * ln_n, b - beta * ln_d, np.full_like(ln_n, e)])
    top = t.max(axis=0)
    ex = np.exp(t - top)
    total = ex.sum(axis=0)
    r = top + np.log(total) - ln_l
    small = np.abs(r) <= delta
    f = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum() / delta
    g = np.where(small, r, delta * np.sign(r)) / delta
    gw = g * ex / total
    grad = np.array([gw[0].sum(), gw[1].sum(), gw[2].sum(), -(gw[0] * ln_n).sum(),
                     -(gw[1] * ln_d).sum()])
    return f, grad


def _grid(name: str) -> list[np.ndarray]:
    g = GRIDS[name]
    return [np.array(x, dtype=float)
            for x in itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])]


def fit_huber(ln_n, ln_d, ln_l, starts, delta: float = 1e-3) -> np.ndarray:
    """Best BFGS minimum over ``starts``; returns (E, A, B, alpha, beta)."""
    from scipy.optimize import minimize

    best = None
    for x0 in starts:
        res = minimize(_huber_lse, x0, args=(ln_n, ln_d, ln_l, delta), jac=True, method="BFGS")
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = best.x
    return np.array([np.exp(e), np.exp(a), np.exp(b), alpha, beta])


def _bootstrap_chunk(args) -> np.ndarray:
    ln_n, ln_d, ln_l, index_rows, grid = args
    starts = _grid(grid)
    return np.array([fit_huber(ln_n[idx], ln_d[idx], ln_l[idx], starts) for idx in index_rows])


def worker_bootstrap(n_boot: int, grid: str, keep_outliers: bool, workers: int, seed: int) -> dict:
    """Stage (c): the Huber point fit and its percentile bootstrap; timings, intervals."""
    t0 = time.perf_counter()
    import pandas as pd

    from bayescale.datasets import load_chinchilla

    import_s = time.perf_counter() - t0
    runs = load_chinchilla(exclude_outliers=not keep_outliers)
    ln_n = np.log(runs["params"].to_numpy())
    ln_d = np.log(runs["tokens"].to_numpy())
    ln_l = np.log(runs["value"].to_numpy())
    cpu0 = _own_cpu_seconds()
    start = time.perf_counter()
    point = fit_huber(ln_n, ln_d, ln_l, _grid(grid))
    point_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(ln_l), size=(n_boot, len(ln_l)))
    chunks = [c for c in np.array_split(index, max(1, workers) * 4) if len(c)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_bootstrap_chunk, [(ln_n, ln_d, ln_l, c, grid) for c in chunks]))
    else:
        parts = [_bootstrap_chunk((ln_n, ln_d, ln_l, c, grid)) for c in chunks]
    boot = np.concatenate(parts)
    wall = time.perf_counter() - start
    cpu = _own_cpu_seconds() - cpu0
    lo, hi = np.quantile(boot, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=0)
    intervals = {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(PARAMETERS)}
    return {
        "method": "BFGS on Huber(delta=1e-3) of log-space LSE residuals, percentile bootstrap",
        "n_runs": len(runs),
        "outliers_excluded": not keep_outliers,
        "n_bootstrap": n_boot,
        "grid": grid,
        "starts_per_fit": len(_grid(grid)),
        "workers": workers,
        "import_s": import_s,
        "point_fit_s": point_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "point": {k: float(point[i]) for i, k in enumerate(PARAMETERS)},
        "median": {k: float(np.median(boot[:, i])) for i, k in enumerate(PARAMETERS)},
        "interval90": intervals,
        "epoch_in_interval90": {k: intervals[k][0] <= EPOCH_2024[k] <= intervals[k][1]
                                for k in PARAMETERS},
        "failed_fits": int((~np.isfinite(boot).all(axis=1)).sum()),
        "pandas": pd.__version__,
    }


# ============================================================================ report
def _verdicts(nutpie_cold: dict) -> list[tuple[str, bool, str]]:
    m = nutpie_cold
    checks = [
        (f"total wall <= {TARGET_WALL_S:.0f} s (cold, incl. compilation)",
         m["wall_s"] <= TARGET_WALL_S, f"{m['wall_s']:.1f} s"),
        (f"max R-hat <= {TARGET_RHAT}", m["max_rhat"] <= TARGET_RHAT, f"{m['max_rhat']:.4f}"),
        (f"min bulk ESS >= {TARGET_ESS}", m["min_ess_bulk"] >= TARGET_ESS,
         f"{m['min_ess_bulk']:.0f}"),
        ("no divergences", m["divergences"] == 0, f"{m['divergences']}"),
    ]
    for k in CHECKED:
        lo, hi = m["hdi90"][k]
        checks.append(
            (f"Epoch's {k} = {EPOCH_2024[k]} in 90% HDI", m["epoch_in_hdi90"][k],
             f"[{lo:.4g}, {hi:.4g}]")
        )
    return checks


def _row(label: str, m: dict, proc: dict) -> str:
    share = proc.get("other_processes_share")
    other = "n/a" if share is None else f"{100 * share:.0f}%"
    return (
        f"{label:<22} {m['wall_s']:>8.1f} {m['cpu_s']:>7.1f} {m['max_rhat']:>8.4f} "
        f"{m['min_ess_bulk']:>8.0f} {m['divergences']:>5d} {m['ess_per_s']:>8.1f} "
        f"{m['hdi90']['alpha'][0]:>7.4f}-{m['hdi90']['alpha'][1]:<7.4f} "
        f"{m['hdi90']['beta'][0]:>7.4f}-{m['hdi90']['beta'][1]:<7.4f} "
        f"{m['hdi90']['E'][0]:>6.3f}-{m['hdi90']['E'][1]:<6.3f} {other:>6}"
    )


def report(results: dict) -> None:
    """Print the table of the stages and the verdict of each target."""
    cfg = results["config"]
    print(
        f"\nChinchilla speed benchmark: {results['stages']['nutpie']['n_runs']} runs, "
        f"{cfg['chains']} chains x "
        f"{cfg['draws']} draws ({cfg['tune']} tuning), {results['machine']['cpu_count']} CPUs"
    )
    header = (
        f"{'':<22} {'wall s':>8} {'CPU s':>7} {'R-hat':>8} {'bulkESS':>8} {'div':>5} {'ESS/s':>8} "
        f"{'alpha 90%':^15} {'beta 90%':^15} {'E 90%':^13} {'other%':>6}"
    )
    print(header)
    print("-" * len(header))
    for sampler in ("nutpie", "pymc"):
        stage = results["stages"].get(sampler)
        if not stage:
            continue
        for i, m in enumerate(stage["fits"]):
            label = f"{sampler} {'cold' if i == 0 else 'warm'} (seed {m['random_seed']})"
            print(_row(label, m, stage["process"]))
    b = results["stages"]["bootstrap"]
    share = b["process"].get("other_processes_share")
    iv = b["interval90"]
    print(
        f"{'bootstrap ' + str(b['n_bootstrap']) + 'x' + str(b['starts_per_fit']):<22} "
        f"{b['wall_s']:>8.1f} {b['cpu_s']:>7.1f} "
        f"{'':>8} {'':>8} {'':>5} {'':>8} {iv['alpha'][0]:>7.4f}-{iv['alpha'][1]:<7.4f} "
        f"{iv['beta'][0]:>7.4f}-{iv['beta'][1]:<7.4f} {iv['E'][0]:>6.3f}-{iv['E'][1]:<6.3f} "
        f"{'n/a' if share is None else f'{100 * share:.0f}%':>6}"
    )
    print(
        f"  (other% = CPU used by other processes during the stage, share of the machine; "
        f"bootstrap: {b['n_runs']} "
        f"runs{' (Epoch outliers excluded)' if b['outliers_excluded'] else ''}, {b['workers']} "
        f"worker(s), point fit E={b['point']['E']:.3f} A={b['point']['A']:.1f} "
        f"B={b['point']['B']:.1f} alpha={b['point']['alpha']:.4f} beta={b['point']['beta']:.4f})"
    )
    for name, stage in results["stages"].items():
        if "import_s" in stage:
            print(f"  {name}: fresh process wall {stage['process']['wall_s']:.1f} s, of which "
                  f"imports {stage['import_s']:.1f} s")

    r = results["ratios"]
    print("\nRatios")
    if r.get("ess_per_s_nutpie_over_pymc_cold") is not None:
        print(f"  nutpie ESS/s / pymc ESS/s: {r['ess_per_s_nutpie_over_pymc_cold']:.2f} (cold)",
              end="")
        if r.get("ess_per_s_nutpie_over_pymc_warm") is not None:
            print(f", {r['ess_per_s_nutpie_over_pymc_warm']:.2f} (warm)", end="")
        print()
        print(
            f"  nutpie ESS/CPU-s / pymc ESS/CPU-s: {r['ess_per_cpu_s_nutpie_over_pymc_cold']:.2f} "
            "(cold)"
            + (f", {r['ess_per_cpu_s_nutpie_over_pymc_warm']:.2f} (warm)"
               if "ess_per_cpu_s_nutpie_over_pymc_warm" in r else "")
            + "  (CPU time is less sensitive to other load than wall time)"
        )
    print(f"  nutpie wall / bootstrap wall: {r['wall_nutpie_cold_over_bootstrap']:.2f} (cold)",
          end="")
    if r.get("wall_nutpie_warm_over_bootstrap") is not None:
        print(f", {r['wall_nutpie_warm_over_bootstrap']:.2f} (warm)", end="")
    print()
    print(
        "  Epoch's values in the bootstrap 90% intervals: "
        + ", ".join(f"{k} {'yes' if b['epoch_in_interval90'][k] else 'NO'}" for k in CHECKED)
    )

    print("\nTarget (nutpie, cold run)")
    for label, ok, value in results["verdicts"]:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value}")
    print(f"  overall: {'PASS' if results['passed'] else 'FAIL'}")
    noisy = [
        f"{n} ({100 * s['process']['other_processes_share']:.0f}%)"
        for n, s in results["stages"].items()
        if (s["process"].get("other_processes_share") or 0) > 0.1
    ]
    if noisy:
        print(f"  NOTE: other processes used >10% of the machine during: {', '.join(noisy)}; "
              "timings are inflated")


def main(argv=None) -> int:
    """Run each stage in a fresh process (or, with ``--worker``, one stage); exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2,
                        help="fits per sampler process: 1 cold + (repeat-1) warm")
    parser.add_argument("--bootstrap", type=int, default=200,
                        help="bootstrap resamples (default 200)")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="small",
                        help="initialisations per least-squares fit")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes for the bootstrap")
    parser.add_argument("--keep-outliers", action="store_true",
                        help="bootstrap all 245 runs (Epoch dropped 5)")
    parser.add_argument("--skip-pymc", action="store_true")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each stage, wait up to SECONDS for other processes to use <10%% of the "
        "machine",
    )
    parser.add_argument("--out", type=Path, default=HERE / "out")
    # internal: one stage in a fresh process
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind = args.worker[0]
        if kind == "bootstrap":
            out = worker_bootstrap(args.bootstrap, args.grid, args.keep_outliers, args.workers,
                                   args.seed)
        else:
            out = worker_bayes(kind, args.draws, args.tune, args.chains, args.repeat, args.seed)
        args.result.write_text(json.dumps(out))
        return 0

    sys.path.insert(0, str(REPO_ROOT))
    from bayescale.datasets import find_data_dir

    if find_data_dir("chinchilla_epoch") is None:
        raise SystemExit("error: Chinchilla data not found: set $BAYESCALE_DATA or put it in "
                         "../shared/data/chinchilla_epoch")
    common = ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
    common += ["--seed", str(args.seed), "--repeat", str(args.repeat)]
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    boot_args = ["bootstrap", "--bootstrap", str(args.bootstrap), "--grid", args.grid, "--workers",
                 str(args.workers)]
    boot_args += ["--seed", str(args.seed)] + (["--keep-outliers"] if args.keep_outliers else [])
    plan = [("nutpie", "(a) nutpie", ["nutpie", *common])]
    if not args.skip_pymc:
        plan.append(("pymc", "(b) pymc", ["pymc", *common]))
    plan.append(("bootstrap", f"(c) bootstrap ({args.bootstrap} resamples)", boot_args))
    stages = {}
    for name, label, worker_args in plan:
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        print(f"{label} ...", flush=True)
        stages[name] = run_stage(name, worker_args)

    nut = stages["nutpie"]["fits"]
    ratios = {"wall_nutpie_cold_over_bootstrap": nut[0]["wall_s"] / stages["bootstrap"]["wall_s"]}
    if len(nut) > 1:
        ratios["wall_nutpie_warm_over_bootstrap"] = nut[1]["wall_s"] / stages["bootstrap"]["wall_s"]
    if "pymc" in stages:
        pm_fits = stages["pymc"]["fits"]
        ratios["ess_per_s_nutpie_over_pymc_cold"] = nut[0]["ess_per_s"] / pm_fits[0]["ess_per_s"]
        ratios["wall_nutpie_over_pymc_cold"] = nut[0]["wall_s"] / pm_fits[0]["wall_s"]
        ratios["ess_per_cpu_s_nutpie_over_pymc_cold"] = (nut[0]["ess_per_cpu_s"]
                                                         / pm_fits[0]["ess_per_cpu_s"])
        if len(nut) > 1 and len(pm_fits) > 1:
            ratios["ess_per_s_nutpie_over_pymc_warm"] = (nut[1]["ess_per_s"]
                                                         / pm_fits[1]["ess_per_s"])
            ratios["ess_per_cpu_s_nutpie_over_pymc_warm"] = (nut[1]["ess_per_cpu_s"]
                                                             / pm_fits[1]["ess_per_cpu_s"])
    verdicts = _verdicts(nut[0])
    import bayescale.versions

    results = {
        "benchmark": "chinchilla_speed",
        "started_utc": started.isoformat(),
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "result", "out")},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": bayescale.versions.versions(),
        "stages": stages,
        "ratios": ratios,
        "targets": {"wall_s": TARGET_WALL_S, "max_rhat": TARGET_RHAT, "min_ess_bulk": TARGET_ESS},
        "verdicts": verdicts,
        "passed": all(ok for _, ok, _ in verdicts),
    }
    report(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for path in (args.out / "chinchilla_speed.json", args.out / f"chinchilla_speed_{stamp}.json"):
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nWrote {args.out / 'chinchilla_speed.json'} (and a timestamped copy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
