"""Flakiness check: run the default test tier under several sampler seeds and compare verdicts.

The default tier's seeds are fixed (the ones written in the tests).  A test whose verdict
depends on them is a test that another machine's floating point can flip, so this script
reruns the tier with every sampler seed shifted (``pytest --seed-offset K``, see
``tests/conftest.py``) and reports each test whose outcome is not the same under every
offset, and each test that fails under all of them.

Usage (from the repository root; about three times the default tier's time)::

    python benchmarks/flakiness.py                    # offsets 1 2 3, the whole default tier
    python benchmarks/flakiness.py --offsets 1 2 3 -- tests/test_drift.py -n 2

Arguments after ``--`` go to pytest.  Writes one JUnit XML file per offset and a CSV of
verdicts (one row per test, one column per offset) to ``--out``
(default ``benchmarks/out/flakiness``).  Exit status 0 when every test has the same verdict
under every offset and none failed, else 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def verdicts(junit: Path) -> dict[str, str]:
    """``{test id: passed | failed | error | skipped}`` from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            out[name] = "failed"
        elif "error" in kinds:
            out[name] = "error"
        elif "skipped" in kinds:
            out[name] = "skipped"
        else:
            out[name] = "passed"
    return out


def main(argv=None) -> int:
    """Run the tier under each offset; 1 if a verdict depends on the seed or is never a pass."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offsets", type=int, nargs="+", default=[1, 2, 3],
                        help="sampler seed offsets to run the tier under (default 1 2 3)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "flakiness")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    table = {}
    for offset in args.offsets:
        junit = args.out / f"junit_offset{offset}.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--seed-offset={offset}",
               f"--junitxml={junit}", *args.pytest_args]
        print(f"[flakiness] offset {offset}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        print(f"[flakiness] offset {offset}: pytest exit status {rc}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        if not junit.is_file():
            print(f"[flakiness] offset {offset}: no JUnit report written", flush=True)
            return 1
        table[f"offset {offset}"] = verdicts(junit)

    frame = pd.DataFrame(table).fillna("not run").sort_index()
    frame.index.name = "test"
    frame.to_csv(args.out / "verdicts.csv")
    ran = frame[(frame != "skipped").any(axis=1)]
    differs = ran[ran.nunique(axis=1) > 1]
    always_bad = ran[ran.isin(["failed", "error"]).all(axis=1)]
    print(f"\n[flakiness] {len(ran)} tests run under offsets {args.offsets}; "
          f"{len(differs)} with a verdict that depends on the seed; {len(always_bad)} failing "
          "under every seed")
    for title, part in (("verdict depends on the seed", differs),
                        ("fails under every seed", always_bad)):
        if len(part):
            print(f"\n{title}:")
            print(part.to_string())
    counts = {col: frame[col].value_counts().to_dict() for col in frame.columns}
    for col, count in counts.items():
        print(f"[flakiness] {col}: " + ", ".join(f"{n} {k}" for k, n in sorted(count.items())))
    return 0 if differs.empty and always_bad.empty else 1


if __name__ == "__main__":
    sys.exit(main())
