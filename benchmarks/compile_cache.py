"""Compilation in a fresh process: PyTensor's on-disk numba cache, hit or missed.

Each measurement is a new Python process that builds one preset's model on a small simulated
ladder and compiles it for nutpie (:func:`bayescale.nutpie_compile.compile_pymc_model`, the
step every ``fit`` takes once per model structure and process).  All processes share one
fresh PyTensor compile directory, so the figures do not depend on what an earlier session
left there:

``first``
    Nothing cached yet: everything compiles.
``cached``
    A second process: the log-density and nutpie's callbacks come from the cache.
``nutpie cached``
    A third process compiling with ``nutpie.compile_pymc_model``: the log-density comes from
    the cache, nutpie's own callbacks compile (what every process paid before
    :mod:`bayescale.nutpie_compile`).
``upstream mode``
    A fourth process with PyTensor's own ``"NUMBA"`` mode (``local_fill_to_alloc`` kept), so
    the graph's cache key changes from process to process and the cache misses (what every
    process paid before :mod:`bayescale.numba_cache`).

Run::

    python benchmarks/compile_cache.py                     # the Pythia and checkpoint presets
    python benchmarks/compile_cache.py --presets chinchilla
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = """
import contextlib, json, time, warnings
warnings.simplefilter("ignore")
import nutpie
import bayescale
from bayescale import sampling
from bayescale.fitting import prepare
from bayescale.nutpie_compile import compile_pymc_model

if {upstream!r}:
    sampling.cacheable_numba_mode = contextlib.nullcontext
preset = {preset!r}
kwargs = dict(checkpoints=12, seeds=2) if preset != "chinchilla" else {{}}
runs, _ = bayescale.simulate_ladder(seed=3, **kwargs)
runs["schedule"] = "cosine"
model = prepare(runs, preset).build()
start = time.perf_counter()
with sampling.cacheable_numba_mode():
    (nutpie.compile_pymc_model if {with_nutpie!r} else compile_pymc_model)(model)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def compile_seconds(preset: str, compiledir: str, upstream: bool = False,
                    with_nutpie: bool = False) -> float:
    """Seconds compiling ``preset`` for nutpie takes in a new process."""
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
    script = SCRIPT.format(preset=preset, upstream=upstream, with_nutpie=with_nutpie)
    out = subprocess.run([sys.executable, "-c", script],
                         capture_output=True, text=True, env=env, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main(argv=None) -> int:
    """Print one row per preset: first, cached, nutpie-cached and upstream-mode seconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["pythia_lambada", "checkpoints"])
    args = parser.parse_args(argv)
    print(f"{'preset':<16} {'first s':>8} {'cached s':>9} {'nutpie cached s':>16} "
          f"{'upstream mode s':>16} {'nutpie cached / cached':>23}")
    with tempfile.TemporaryDirectory(prefix="bayescale-compiledir-") as compiledir:
        for preset in args.presets:
            first = compile_seconds(preset, compiledir)
            cached = compile_seconds(preset, compiledir)
            with_nutpie = compile_seconds(preset, compiledir, with_nutpie=True)
            upstream = compile_seconds(preset, compiledir, upstream=True)
            print(f"{preset:<16} {first:8.1f} {cached:9.1f} {with_nutpie:16.1f} "
                  f"{upstream:16.1f} {with_nutpie / cached:23.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
