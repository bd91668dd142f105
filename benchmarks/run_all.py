"""Run every benchmark in turn, then print all their figures together (`make bench`).

A benchmark script that does not exist is skipped with a line saying so.
`--quick` is passed through. The exit code is 1 when a script failed (a
missed target is not a failure: it prints MISS and exits 0).

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent

#: In the order of the issue's figures; the emulator first, so readers know
#: its throughput before the figures that depend on it.
SCRIPTS: Final = (
    "bench_emulator.py",
    "bench_overhead.py",
    "bench_cancel.py",
    "bench_batch.py",
    "bench_list.py",
    "bench_startup.py",
    "bench_memory.py",
    "bench_redact.py",
)

#: A figure line: a ratio (evalctl against its baseline), or a throughput.
FIGURE: Final = re.compile(r" ratio \d| req/s$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    args = parser.parse_args()
    figures: list[str] = []
    failed: list[str] = []
    for script in SCRIPTS:
        path = HERE / script
        if not path.exists():
            print(f"# {script}: not present, skipped", flush=True)
            continue
        argv = [sys.executable, str(path), *(["--quick"] if args.quick else [])]
        started = time.perf_counter()
        # Output streams through as it comes; only the figures are kept for the summary.
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
                if FIGURE.search(line.rstrip("\n")) and not line.startswith("#"):
                    figures.append(line.rstrip("\n"))
        elapsed = time.perf_counter() - started
        if child.returncode != 0:
            failed.append(script)
            print(f"# {script}: FAILED with exit code {child.returncode}", flush=True)
        print(f"# {script}: {elapsed:.1f} s", flush=True)
    print("\n# all figures")
    for line in figures:
        print(line)
    missed = sum(line.endswith("MISS") for line in figures)
    print(f"# {len(figures)} figures, {missed} missed targets, {len(failed)} scripts failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
