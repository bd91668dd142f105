"""Memory: peak RSS of a 100,000-id `evalctl cancel --dry-run` batch against a 1,000-id one.

The benchmark seeds an in-process emulator with every task (a dry run reads
each task's detail, so the tasks must exist), writes the ids to a file, and
runs ``evalctl cancel --dry-run --from-file ids.txt --concurrency 8`` as a
subprocess, once per size. The CLI's peak RSS comes from the kernel
(`os.wait4`), read by a fresh bare interpreter that starts the CLI (see
`_MEASURE` for why not this process). Target: growth under 50 MB.

The client-side rate limit is lifted (`--qps`, very high) so the run takes
as long as the emulator needs to answer; the elapsed times are printed too.

    python benchmarks/bench_memory.py [--quick] [--n LARGE]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import _common

TARGET_GROWTH_MB: Final = 50.0
LARGE: Final = 100_000
SMALL: Final = 1_000
QUICK_LARGE: Final = 1_000
QUICK_SMALL: Final = 100
CONCURRENCY: Final = 8
# High enough never to be what limits the run: the emulator's throughput does.
UNLIMITED_QPS: Final = "100000"
_TAIL: Final = 2000

# Run in a fresh, small interpreter that starts the CLI and reads its rusage.
# Not from this process: on Linux a child's peak RSS starts from its
# parent's memory at fork/vfork (the kernel keeps that peak across exec),
# and this process holds the emulator with every task. The bare
# interpreter's own memory (VmHWM: this mm only, unlike its ru_maxrss,
# which inherited ours) is far below the CLI's, so it cannot hide it.
_MEASURE: Final = """
import json, os, re, subprocess, sys, time
text = open("/proc/self/status").read()
own = int(re.search(r"VmHWM:\\s*(\\d+)", text).group(1))
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({
    "exit": os.waitstatus_to_exitcode(status),
    "maxrss_kb": usage.ru_maxrss,
    "wrapper_kb": own,
    "elapsed_s": time.perf_counter() - started,
}))
"""


def main() -> None:
    args = _common.arguments(
        __doc__ or "", n=LARGE, quick_n=QUICK_LARGE, n_help="ids in the large run"
    )
    large = args.n
    # 1,000 (100 with --quick), and never more than a tenth of the large run.
    small = min(QUICK_SMALL if args.quick else SMALL, max(1, large // 10))
    _common.prepare("production")
    _common.header(
        "bench_memory",
        f"peak RSS of `evalctl cancel --dry-run --from-file --concurrency {CONCURRENCY} "
        f"--qps {UNLIMITED_QPS}`, {large:,} vs {small:,} ids, in-process emulator",
    )

    with tempfile.TemporaryDirectory(prefix="evalctl-bench-") as scratch:
        folder = Path(scratch)
        ids = [f"ame-mem{index:08d}" for index in range(large)]
        with _common.emulator() as emulator:
            started = time.perf_counter()
            for task_id in ids:
                emulator.add_task(task_id)
            seeded = time.perf_counter() - started
            print(f"# seeded {large:,} tasks in {seeded:.1f} s", flush=True)
            env = dict(os.environ)
            env.update(
                {
                    "QIANFAN_CONSOLE_API_BASE_URL": emulator.base_url,
                    "QIANFAN_ACCESS_KEY": emulator.ak,
                    "QIANFAN_SECRET_KEY": emulator.sk,
                }
            )
            env.pop("EVALCTL_TESTING", None)
            measured = []
            for size in (small, large):
                emulator.clear_requests()
                measured.append(dry_run(ids[:size], folder, env))
                read = len(emulator.requests)
                if read < size:  # exit 0 but not every task read: not a dry run of them all
                    raise SystemExit(f"{size:,} ids, yet the emulator saw {read:,} requests")
            (small_kb, small_s), (large_kb, large_s) = measured

    small_mb, large_mb = small_kb / 1024, large_kb / 1024
    growth = large_mb - small_mb
    print(
        f"peak RSS dry-run {large:,} vs {small:,} ids: evalctl {large:,} ids {large_mb:.1f} MB, "
        f"{small:,} ids {small_mb:.1f} MB, ratio {large_mb / small_mb:.3f}, "
        f"growth {growth:.1f} MB (target < {TARGET_GROWTH_MB:g} MB) "
        f"{_common.verdict(growth < TARGET_GROWTH_MB)}",
        flush=True,
    )
    _common.ratio_line(
        f"dry-run elapsed ({large / large_s:,.0f} vs {small / small_s:,.0f} ids/s)",
        large_s,
        small_s,
        target=None,
        unit="s",
        ours_label=f"{large:,} ids",
        theirs_label=f"{small:,} ids",
    )


def dry_run(ids: list[str], folder: Path, env: dict[str, str]) -> tuple[int, float]:
    """Run the CLI on `ids`; return its peak RSS in KiB and the elapsed seconds."""
    id_file = folder / f"ids-{len(ids)}.txt"
    id_file.write_text("".join(f"{task_id}\n" for task_id in ids))
    argv = [
        *_common.evalctl_command(),
        "cancel",
        "--dry-run",
        "--from-file",
        str(id_file),
        "--concurrency",
        str(CONCURRENCY),
        "--qps",
        UNLIMITED_QPS,
    ]
    log_file = folder / f"stderr-{len(ids)}.txt"
    with log_file.open("wb") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"the measuring interpreter exited {done.returncode}")
    measured = json.loads(done.stdout)
    if measured["exit"] != 0:
        tail = log_file.read_bytes()[-_TAIL:].decode(errors="replace")
        raise SystemExit(f"{' '.join(argv[-9:])} exited {measured['exit']}:\n{tail}")
    if measured["maxrss_kb"] <= measured["wrapper_kb"]:
        raise SystemExit("the CLI's peak RSS is hidden by the measuring interpreter's own")
    return measured["maxrss_kb"], measured["elapsed_s"]


if __name__ == "__main__":
    main()
