"""CLI start-up benchmark: run ``python benchmarks/cli.py``.

Every command a user types, and every CLI-driven job, pays the CLI's start-up. This times
whole processes, interleaved in the same run: ``python -c pass`` (the interpreter alone,
the reference), ``oa-node version`` and ``oa-node --help`` (every plugin's commands
listed), and prints each median wall time and its ratio to the reference. Target: both
within 10x ``python -c pass``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 10.0


def oa_node() -> str:
    here = Path(sys.executable).with_name("oa-node")
    return str(here) if here.exists() else "oa-node"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={**os.environ, "COLUMNS": "100"})
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "oa-node version": [oa_node(), "version"],
        "oa-node --help": [oa_node(), "--help"],
    }
    for argv in cases.values():  # warm the file cache and bytecode
        timed(argv)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):  # interleaved: load changes hit every case alike
        for name, argv in cases.items():
            times[name].append(timed(argv))
    ref = statistics.median(times["python -c pass"])
    worst = 0.0
    print(f"{'command':<18} {'median':>9} {'ratio':>7}  ({args.reps} runs each)")
    for name, samples in times.items():
        med = statistics.median(samples)
        ratio = med / ref
        if name != "python -c pass":
            worst = max(worst, ratio)
        print(f"{name:<18} {med * 1000:>7.1f}ms {ratio:>6.1f}x")
    verdict = "ok" if worst <= TARGET_RATIO else "over"
    print(f"worst ratio {worst:.1f}x (target <= {TARGET_RATIO:g}x): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
