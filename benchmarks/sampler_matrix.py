r"""ESS per second and peak memory of each sampler on three ladders (issue #19, item 4).

Each cell (ladder x sampler) runs in its own fresh Python process, so that its peak
resident memory (``ru_maxrss`` of the child) and its wall time (compilation included) are
its own.  The cells of one ladder run one after another, side by side in one run of this
script, with the same draws, tuning steps, chains and seed:

* ladders: ``chinchilla`` (the 245 Chinchilla points, preset ``chinchilla``), ``pythia``
  (Pythia's LAMBADA checkpoints of both families up to 1.4B, the case study's preset
  ``pythia_lambada``), ``sim10k`` (a simulated ladder of 5 families x 20 runs x 100
  checkpoints = 10,000 rows, preset ``checkpoints``);
* samplers: ``nutpie`` (the package's default, the preset as it is, its own mass matrix),
  ``nutpie_latent`` and ``nutpie_marginal`` (the preset without and with the
  :class:`~bayescale.parts.MarginalRuns` part: run offsets, slopes, drift and AR(1) sampled
  as latents or integrated out; ``pythia_lambada`` has it, ``checkpoints`` not), ``pymc``
  (PyMC's NUTS) and ``numpyro`` (JAX on the CPU), both with the diagonal mass matrix;
  ``nutpie_t_pooling`` and ``pymc_t_pooling``: the preset with
  ``FamilyPooling(prior="student_t")`` (the families' spread integrated out, no funnel),
  nutpie with the low-rank mass matrix, PyMC with its diagonal one (ladders whose preset
  pools families); ``nutpie_retry``: ``bayescale.fit(runs, preset)`` as a user calls it,
  with its automatic retry (the other cells have none), which on a failed first attempt
  refits with a part's remedy when one is offered.  The table labels each cell with the
  form it fitted.

Reported per cell: wall seconds, max R-hat, min bulk ESS over the model's parameters,
divergences, ESS per second, peak resident memory (MiB: the cell's process plus its largest
child process, where PyMC samples its chains), and the ratio of nutpie's ESS/s to each
other sampler's.  A cell that runs past ``--timeout`` seconds is reported as such.

Run::

    python benchmarks/sampler_matrix.py              # chinchilla and pythia, 4 x (1000 + 1000)
    python benchmarks/sampler_matrix.py --ladders sim10k --timeout 1200
    python benchmarks/sampler_matrix.py --ladders sim10k \
        --samplers nutpie nutpie_t_pooling pymc_t_pooling
    python benchmarks/sampler_matrix.py --draws 100 --tune 100 --chains 2 --ladders chinchilla

Results: ``benchmarks/out/sampler_matrix.json``; figures in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LADDERS = ("chinchilla", "pythia", "sim10k")
SAMPLERS = ("nutpie", "nutpie_latent", "nutpie_marginal", "pymc", "numpyro", "nutpie_t_pooling",
            "pymc_t_pooling", "nutpie_retry")
#: Suffix of the cells that fit the preset with funnel-free family pooling (see ``worker``).
T_POOLING = "_t_pooling"
#: Pythia sizes the case study fits (scenario 1).
PYTHIA_FIT_SIZES = ("70m", "160m", "410m", "1b", "1.4b")


def ladder(name: str):
    """(runs table, preset name) of one ladder."""
    if name == "chinchilla":
        from bayescale.datasets import load_chinchilla

        return load_chinchilla(), "chinchilla"
    if name == "pythia":
        from bayescale.datasets import load_pythia

        runs = load_pythia(tasks=None)
        return runs[runs["size"].isin(PYTHIA_FIT_SIZES)].reset_index(drop=True), "pythia_lambada"
    if name == "sim10k":
        import bayescale

        runs, _ = bayescale.simulate_ladder(
            seed=0, families=5, sizes=(2e7, 5e7, 1.2e8, 3e8, 7e8),
            token_multipliers=(10.0, 20.0, 40.0, 80.0), checkpoints=100, family_spread=0.03,
            ar1=0.5)
        return runs, "checkpoints"
    raise ValueError(f"unknown ladder {name!r}; choose from {LADDERS}")


def worker(name: str, sampler: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    """One cell, in this (fresh) process: fit and measure."""
    import warnings

    import bayescale
    from bayescale.model import load_model
    from bayescale.parts import FamilyPooling, MarginalRuns

    runs, preset = ladder(name)
    model = load_model(preset)
    t_pooling = sampler.endswith(T_POOLING)
    if t_pooling:
        if model.part("family_pooling") is None:
            raise SystemExit(f"{sampler}: the {preset!r} preset of ladder {name!r} pools no "
                             "families")
        model, sampler = (model.with_parts(FamilyPooling(prior="student_t")),
                          sampler.removesuffix(T_POOLING))
    retry = sampler == "nutpie_retry"
    if retry:
        sampler = "nutpie"
    if sampler == "nutpie_marginal":
        model, sampler = model.with_parts(MarginalRuns()), "nutpie"
    elif sampler == "nutpie_latent":
        model, sampler = model.with_parts(drop=("marginal_runs",)), "nutpie"
    mass = {} if sampler == "nutpie" else {"mass_matrix": "diag"}
    if t_pooling and sampler == "nutpie":
        mass = {"mass_matrix": "low_rank"}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, model, sampler=sampler, draws=draws, tune=tune,
                            chains=chains, random_seed=seed, progressbar=False, retry=retry,
                            **mass)
    wall = time.perf_counter() - start
    d = fit.diagnostics()
    # peak resident memory (KiB on Linux) of this process and of its largest child process
    # (PyMC's NUTS samples its chains in child processes)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    form = "marginal" if model.part("marginal_runs") is not None else "latent"
    label = f"nutpie ({form})" if sampler == "nutpie" else sampler
    if t_pooling:
        label += f", student_t pooling, {fit.sampler_config.mass_matrix} mass matrix"
    if retry:
        label += (", one retry as " + fit.info["retry"].get("model", "the same model")
                  if "retry" in fit.info else ", no retry needed")
    return {"ladder": name, "sampler": label, "model": model.name, "rows": len(fit.runs),
            "peak_mib": own + child, "peak_own_mib": own, "peak_child_mib": child,
            "wall_s": wall, "max_rhat": float(d.max_rhat), "min_ess_bulk": float(d.min_ess_bulk),
            "divergences": int(d.divergences), "ess_per_s": float(d.min_ess_bulk) / wall,
            "verdict": d.message()}


def run_cell(name: str, sampler: str, args) -> dict:
    """Run :func:`worker` in a fresh process (or say that it timed out or failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, sampler,
               "--draws", str(args.draws), "--tune", str(args.tune), "--chains",
               str(args.chains), "--seed", str(args.seed), "--result", str(out)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {"ladder": name, "sampler": sampler, "timed_out": True,
                    "wall_s": time.perf_counter() - start}
        if proc.returncode != 0:
            return {"ladder": name, "sampler": sampler, "failed": proc.stderr[-2000:],
                    "wall_s": time.perf_counter() - start}
        return json.loads(out.read_text())


def table(cells: list[dict]) -> str:
    """Markdown table of the cells, with the first nutpie cell's ESS/s ratio to each of its ladder.

    The first nutpie cell of a ladder is the preset as it is (``--samplers`` lists it first).
    """
    nutpie: dict[str, float | None] = {}
    for c in cells:
        if str(c["sampler"]).startswith("nutpie"):
            nutpie.setdefault(c["ladder"], c.get("ess_per_s"))
    lines = ["| ladder | rows | sampler | wall s | max R-hat | min bulk ESS | div | ESS/s | "
             "nutpie ESS/s ÷ this | peak MiB (own + largest child) |", "|---" * 10 + "|"]
    for c in cells:
        if "ess_per_s" not in c:
            why = "timed out" if c.get("timed_out") else "failed"
            lines.append(f"| {c['ladder']} | | {c['sampler']} | {c['wall_s']:.0f} ({why}) "
                         "| | | | | | |")
            continue
        ref = nutpie.get(c["ladder"])
        ratio = f"{ref / c['ess_per_s']:.2f}" if ref and c["ess_per_s"] > 0 else ""
        lines.append(f"| {c['ladder']} | {c['rows']} | {c['sampler']} | {c['wall_s']:.0f} | "
                     f"{c['max_rhat']:.3f} | {c['min_ess_bulk']:.0f} | {c['divergences']} | "
                     f"{c['ess_per_s']:.2f} | {ratio} | {c['peak_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the matrix (or, with ``--worker``, one cell) and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ladders", nargs="+", choices=LADDERS, default=["chinchilla", "pythia"])
    p.add_argument("--samplers", nargs="+", choices=SAMPLERS,
                   default=["nutpie", "nutpie_latent", "pymc", "numpyro"])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per cell")
    p.add_argument("--worker", nargs=2, metavar=("LADDER", "SAMPLER"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        cell = worker(*args.worker, args.draws, args.tune, args.chains, args.seed)
        Path(args.result).write_text(json.dumps(cell))
        return 0
    cells = []
    for name in args.ladders:
        for sampler in args.samplers:
            print(f"{name} / {sampler} ...", flush=True)
            cells.append(run_cell(name, sampler, args))
            print(table(cells[-1:]).splitlines()[-1], flush=True)
    print(f"\n{args.chains} chains x ({args.tune} tune + {args.draws} draws), seed {args.seed}; "
          "wall includes compiling\n")
    print(table(cells))
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "sampler_matrix.json").write_text(json.dumps(
        {"settings": vars(args), "cells": cells}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
