"""GPU benchmark: nutpie on the CPU cores against numpyro on the GPU, float64 and float32.

A simulated checkpoint ladder of 5 families x 20 runs (5 sizes x 2 token multipliers x 2
seeds) x 100 checkpoints = 10,000 loss rows, fitted with the ``checkpoints`` preset (family
pooling, run offsets, schedule term, AR(1) residuals) by

(a) ``nutpie``: nutpie on the CPU cores (one chain per core);
(b) ``numpyro float64``: numpyro on the GPU, all chains in one device program
    (``chain_method="vectorized"``, recorded in ``idata.posterior.attrs``);
(c) ``numpyro float32``: the same with ``precision="float32"``.

It prints, side by side: wall time, min bulk ESS and max R-hat over the diagnosed
parameters, divergences, bulk ESS per second and that ESS/s as a ratio to nutpie's.  Writes
JSON to ``benchmarks/out/gpu.json``.  Without a GPU visible to JAX it prints "no GPU
visible to JAX" and exits 0 (``--quick`` instead runs a tiny ladder on the CPU, to check
the script itself).

Time cap: the whole run stays under 8 minutes (``--budget``, default 450 s for everything
after the ladder is simulated).  Each backend gets an equal share of what is left when it
starts.  It first runs a pilot fit (``--pilot`` tuning steps + as many draws) and takes its
seconds per iteration without compilation (nutpie compiles in a 5 + 5 fit before the pilot
and caches the model for the process; for numpyro, JAX reports its compile seconds, which
the main fit pays again because PyMC rebuilds the JAX function for every fit).  The main
fit then takes ``tune = draws = n``, the largest ``n`` (at most ``--draws``, default 1000)
whose predicted wall fits in the rest of the share.  The prediction is conservative: the
pilot is early warmup, whose long trajectories cost more per iteration than later steps.
A backend whose share leaves fewer than ``--pilot`` draws reports its pilot fit instead
(marked ``pilot``); then only the pilots bound the run's length.

Wall times: nutpie's main fit reuses its compiled model, so its wall is sampling,
log-likelihood and diagnostics; numpyro's includes JAX's compilation.  ``compile s`` is
nutpie's compiling fit, or the seconds JAX reported compiling during numpyro's pilot;
``pilot s`` the pilot fit's wall (for nutpie after compiling, for numpyro with it).

Run::

    python benchmarks/gpu.py            # on a machine with a GPU and `pip install ".[gpu]"`
    python benchmarks/gpu.py --quick    # tiny ladder on the CPU: checks the script, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: (name, sampler, precision) of the three backends, in the order they run.
BACKENDS = (("nutpie", "nutpie", "float64"), ("numpyro float64", "numpyro", "float64"),
            ("numpyro float32", "numpyro", "float32"))


@dataclass
class Result:
    """One backend's fit: settings, wall seconds and convergence figures."""

    backend: str
    device: str
    chain_method: str
    tune: int
    draws: int
    compile_s: float
    pilot_s: float
    wall_s: float
    min_ess_bulk: float
    max_rhat: float
    divergences: int
    from_pilot: bool

    @property
    def ess_per_s(self) -> float:
        """Min bulk ESS per wall second."""
        return self.min_ess_bulk / self.wall_s


def parse_args(argv=None):
    """The command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tiny ladder on whatever JAX sees (CPU here): checks the script")
    parser.add_argument("--draws", type=int, default=None,
                        help="most tuning steps and draws per chain (default 1000; --quick 200)")
    parser.add_argument("--pilot", type=int, default=None,
                        help="tuning steps and draws of each pilot fit (default 100; --quick 30)")
    parser.add_argument("--chains", type=int, default=None, help="default 4; --quick 2")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all fits (default 450; --quick 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    quick = args.quick
    args.draws = args.draws or (200 if quick else 1000)
    args.pilot = args.pilot or (30 if quick else 100)
    args.budget = args.budget or (150.0 if quick else 450.0)
    args.chains = args.chains or (2 if quick else 4)
    return args


def simulate(quick: bool, seed: int):
    """The ladder: 10,000 rows (5 families x 20 runs x 100 checkpoints); --quick: 120 rows."""
    import bayescale

    if quick:
        return bayescale.simulate_ladder(seed, families=2, sizes=(2e7, 1.2e8, 7e8),
                                         token_multipliers=(10.0, 40.0), checkpoints=10,
                                         family_spread=0.05, seed_spread=0.01, ar1=0.5)[0]
    return bayescale.simulate_ladder(seed, families=5, sizes=(2e7, 5e7, 1.2e8, 3e8, 7e8),
                                     token_multipliers=(10.0, 40.0), seeds=2, checkpoints=100,
                                     family_spread=0.05, seed_spread=0.01, ar1=0.5)[0]


def gpu_devices() -> list[Any]:
    """JAX's GPU devices ([] without JAX or without a GPU)."""
    try:
        import jax
    except ImportError:
        return []
    try:
        return [d for d in jax.devices() if d.platform == "gpu"]
    except RuntimeError:  # no backend could start
        return []


def draws_within(cap_s: float, iteration_s: float, pilot: int, most: int) -> int:
    """Tuning steps = draws per chain (n) whose 2 n iterations fit in ``cap_s``; 0 if < pilot.

    >>> draws_within(100.0, iteration_s=0.1, pilot=100, most=1000)
    500
    >>> draws_within(10.0, iteration_s=0.1, pilot=100, most=1000)
    0
    """
    n = min(most, int(cap_s / (2 * iteration_s)))
    return n if n >= pilot else 0


#: JAX's monitoring events that time compilation (lowering to MLIR, then XLA); not nested.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class CompileSeconds:
    """A JAX monitoring listener: the seconds spent compiling while it is registered."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration_secs: float, **kwargs: Any) -> None:
        """Add ``duration_secs`` when ``event`` is a compilation step."""
        if event in COMPILE_EVENTS:
            self.seconds += duration_secs


@contextmanager
def jax_compile_seconds(active: bool):
    """A :class:`CompileSeconds` listening to JAX inside (left at 0 unless ``active``)."""
    timer = CompileSeconds()
    if not active:
        yield timer
        return
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(timer)
    try:
        yield timer
    finally:
        jax.monitoring.unregister_event_duration_listener(timer)


def fit_once(runs, sampler: str, precision: str, n: int, chains: int, seed: int):
    """``bayescale.fit`` with ``n`` tuning steps and ``n`` draws; returns (fit, wall s)."""
    import bayescale

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, "checkpoints", sampler=sampler, precision=precision, draws=n,
                            tune=n, chains=chains, random_seed=seed, progressbar=False,
                            retry=False)
    return fit, time.perf_counter() - start


def run_backend(runs, name: str, sampler: str, precision: str, share_s: float,
                args) -> Result:
    """The pilot fit, then the main fit sized to the rest of ``share_s`` seconds."""
    start = time.perf_counter()
    compile_s = 0.0
    if sampler == "nutpie":  # compile once; the pilot and main fit reuse the compiled model
        compile_s = fit_once(runs, sampler, precision, 5, args.chains, args.seed)[1]
    with jax_compile_seconds(active=sampler != "nutpie") as compiling:
        fit, pilot_s = fit_once(runs, sampler, precision, args.pilot, args.chains, args.seed)
    recompile_s = compiling.seconds  # numpyro's main fit compiles again; nutpie's does not
    iteration_s = max(pilot_s - recompile_s, 1e-3) / (2 * args.pilot)
    left_s = share_s - (time.perf_counter() - start) - recompile_s
    n = draws_within(left_s, iteration_s, args.pilot, args.draws)
    wall_s = pilot_s
    if n:
        fit, wall_s = fit_once(runs, sampler, precision, n, args.chains, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's note on short chains, for a pilot's figures
        d = fit.diagnostics()
    if sampler == "nutpie":
        device = f"CPU x{min(args.chains, os.cpu_count() or 1)}"
    else:
        import jax

        device = jax.devices()[0].device_kind
    return Result(backend=name, device=device,
                  chain_method=str(fit.idata.posterior.attrs.get("chain_method", "threads")),
                  tune=n or args.pilot, draws=n or args.pilot,
                  compile_s=compile_s or recompile_s, pilot_s=pilot_s, wall_s=wall_s,
                  min_ess_bulk=float(d.min_ess_bulk), max_rhat=float(d.max_rhat),
                  divergences=int(d.divergences), from_pilot=not n)


def print_table(results: list[Result]) -> None:
    """The side-by-side table; ESS/s ratios against the first (nutpie) row."""
    base = results[0].ess_per_s
    print(f"{'backend':<17}{'device':<16}{'chains':<12}{'tune+draws':>13}{'compile s':>10}"
          f"{'pilot s':>9}{'wall s':>8}{'bulk ESS':>10}{'max R-hat':>11}{'div':>5}{'ESS/s':>8}"
          f"{'vs nutpie':>11}")
    for r in results:
        its = f"{r.tune}+{r.draws}" + (" pilot" if r.from_pilot else "")
        print(f"{r.backend:<17}{r.device[:15]:<16}{r.chain_method:<12}{its:>13}"
              f"{r.compile_s:>10.1f}{r.pilot_s:>9.1f}{r.wall_s:>8.1f}{r.min_ess_bulk:>10.0f}"
              f"{r.max_rhat:>11.3f}{r.divergences:>5d}{r.ess_per_s:>8.2f}"
              f"{r.ess_per_s / base:>10.2f}x")


def main(argv=None) -> int:
    """Fit with each backend inside the time budget, print and save the table; exit 0."""
    args = parse_args(argv)
    if not args.quick and not gpu_devices():
        print("no GPU visible to JAX")
        return 0
    runs = simulate(args.quick, args.seed)
    n_rows = int((runs["metric"] == "loss").sum())
    print(f"{'quick CPU smoke run: ' if args.quick else ''}{n_rows} loss rows, "
          f"{runs['run'].nunique()} runs, 'checkpoints' preset, {args.chains} chains, "
          f"at most {args.draws}+{args.draws} per chain, budget {args.budget:.0f} s", flush=True)
    deadline = time.perf_counter() + args.budget
    results = []
    for i, (name, sampler, precision) in enumerate(BACKENDS):
        share_s = (deadline - time.perf_counter()) / (len(BACKENDS) - i)
        results.append(run_backend(runs, name, sampler, precision, share_s, args))
        print(f"  {name}: {results[-1].wall_s:.1f} s", flush=True)
    print_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("gpu_quick.json" if args.quick else "gpu.json")
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                "loss_rows": n_rows,
                                "results": [asdict(r) | {"ess_per_s": r.ess_per_s}
                                            for r in results]}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
