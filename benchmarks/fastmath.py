"""Draws of a freshly compiled model against one loaded from the cache, with and without fast-math.

Each preset is fitted on its small SBC design (``benchmarks/sbc.py``) in two new Python
processes that share one fresh PyTensor compile directory: the first compiles the model,
the second loads its log-density from the cache.  Both print a digest of every posterior
array and the seconds of a second fit in the same process (sampling only, the model already
compiled).  The pair runs twice: with the arithmetic :mod:`bayescale.numba_cache` compiles
with (``COMPILE_FLAGS``, no fast-math) and with PyTensor's default fast-math flags.

Run::

    python benchmarks/fastmath.py                                   # four presets, ~12 min
    python benchmarks/fastmath.py --presets gadre_average --draws 200

Prints one row per preset and setting: whether the two processes' draws are identical, and
the sampling seconds of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent

SCRIPT = """
import hashlib, json, sys, time, warnings
import numpy as np
sys.path.insert(0, {benchmarks!r})
warnings.simplefilter("ignore")
import bayescale
import bayescale.numba_cache
from sbc import preset_design

if {fastmath!r}:
    bayescale.numba_cache.COMPILE_FLAGS = {{"numba__fastmath": True}}
out = {{}}
for preset in {presets!r}:
    runs = preset_design(preset)
    settings = dict(draws={draws}, tune={draws}, chains=2, random_seed=7, progressbar=False,
                    retry=False)
    fit = bayescale.fit(runs, preset, **settings)
    start = time.perf_counter()
    bayescale.fit(runs, preset, **settings)
    digest = hashlib.sha256()
    for name in sorted(fit.idata["posterior"].data_vars):
        digest.update(np.ascontiguousarray(fit.idata["posterior"][name].to_numpy()).tobytes())
    out[preset] = {{"digest": digest.hexdigest(), "seconds": time.perf_counter() - start}}
print(json.dumps(out))
"""


def two_processes(presets: list[str], draws: int, fastmath: bool) -> list[dict]:
    """Results of SCRIPT in two processes, one after the other, in a fresh compile directory."""
    code = SCRIPT.format(benchmarks=str(BENCHMARKS), presets=presets, draws=draws,
                         fastmath=fastmath)
    with tempfile.TemporaryDirectory() as compiledir:
        env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
        results = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=env, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    """Print the comparison table (markdown) for the presets asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+",
                        default=["downstream", "checkpoints", "gadre_average", "pythia_lambada"])
    parser.add_argument("--draws", type=int, default=100, help="tuning and kept draws per chain")
    args = parser.parse_args()
    print("| preset | compiled with | fresh = cached draws | sampling s (fresh / cached) |")
    print("|---|---|---|---|")
    for fastmath in (False, True):
        fresh, cached = two_processes(args.presets, args.draws, fastmath)
        for preset in args.presets:
            same = fresh[preset]["digest"] == cached[preset]["digest"]
            label = "fast-math (PyTensor's default)" if fastmath else "IEEE (bayescale)"
            print(f"| `{preset}` | {label} | {'yes' if same else '**no**'} | "
                  f"{fresh[preset]['seconds']:.1f} / {cached[preset]['seconds']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
