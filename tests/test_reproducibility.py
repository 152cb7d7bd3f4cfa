"""The same data, model and seed give bit-identical posteriors in separate processes."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: Fits each preset on its small SBC design (benchmarks/sbc.py) and prints one digest of
#: every posterior array per preset.
SCRIPT = """# {tag}
import hashlib, json, sys, warnings
import numpy as np
sys.path.insert(0, {benchmarks!r})
warnings.simplefilter("ignore")
import bayescale
from sbc import preset_design

out = {{}}
for preset in {presets!r}:
    fit = bayescale.fit(preset_design(preset), preset, draws={draws}, tune={tune}, chains=2,
                        random_seed=7, sampler={sampler!r}, progressbar=False, retry=False,
                        mass_matrix=None if {sampler!r} == "nutpie" else "diag")
    digest = hashlib.sha256()
    for name in sorted(fit.idata["posterior"].data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(fit.idata["posterior"][name].to_numpy()).tobytes())
    out[preset] = digest.hexdigest()
print(json.dumps(out))
"""


def _digests_of_two_processes(presets, draws, tune, sampler="nutpie", timeout=900.0,
                              tag="") -> list[dict[str, str]]:
    """Run SCRIPT in two processes, one after the other, with different hash seeds (so that
    anything ordered by a set of strings comes out in another order).

    One after the other: the second loads what the first compiled from PyTensor's cache (a
    graph that came out differently would not be found there and compile anew), so the pair
    costs little more than one process.  Each process leads its own process group; whatever
    happens (a time-out included), the groups are killed before this returns, so no sampler
    (nor PyMC's chain processes) outlives the test.  ``tag`` is written into the processes'
    command line; ``timeout`` bounds each process."""
    code = SCRIPT.format(benchmarks=str(BENCHMARKS), presets=list(presets), draws=draws, tune=tune,
                         sampler=sampler, tag=tag)
    procs: list[subprocess.Popen] = []
    results = []
    try:
        for seed in (1, 2):
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True,
                                    env={**os.environ, "PYTHONHASHSEED": str(seed)})
            procs.append(proc)
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):  # the group has already exited
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return results


def test_two_processes_give_identical_draws_small():
    """Default tier: the Gadre average model (a loss law and a downstream link) on a small
    simulated ladder, 2 x (60 + 60) draws; the first process compiles it, the second loads it
    from the cache (under fast-math arithmetic, which :mod:`bayescale.numba_cache` turns off,
    the two sample this model differently).  The slow tier adds the Pythia checkpoint model
    (the most parts) and the Gadre per-task model."""
    first, second = _digests_of_two_processes(["gadre_average"], draws=60, tune=60)
    assert first == second


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc")
def test_a_timed_out_comparison_leaves_no_process_behind():
    """A comparison that runs out of time raises, and neither process is left running."""
    tag = f"bayescale-test-{uuid.uuid4().hex}"
    with pytest.raises(subprocess.TimeoutExpired):
        _digests_of_two_processes(["chinchilla"], draws=10, tune=10, timeout=0.5, tag=tag)
    assert _processes_with(tag) == []


def _processes_with(text: str) -> list[int]:
    """Ids of the live processes whose command line contains ``text`` (Linux ``/proc``)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # the process exited while being read
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_two_processes_give_identical_draws(sampler):
    """Slow tier: the same two models, 2 x (500 + 500) draws, with nutpie and PyMC's NUTS."""
    first, second = _digests_of_two_processes(["gadre_tasks", "pythia_lambada"], draws=500,
                                              tune=500, sampler=sampler)
    assert first == second
