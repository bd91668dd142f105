"""Listing: `list_eval_tasks` wall time against the floor the server's QPS limit sets.

An emulator in its own process, with a QPS limit of 50, holds 10,000
automatic tasks; the listing pages through all of them, 100 per page (the
API's largest page), so 100 pages. Pages are sequential (each needs the
previous page's marker), so the floor is pages ÷ 50 qps = 2 s, and the ratio
wall ÷ floor says how close the listing runs to the limit. Target: ≤ 1.15,
every task listed once, nothing throttled.

The client runs at `qps=48`, just under the server's limit: the server
counts a sliding second, so a client at exactly the limit is throttled by
any jitter in arrival times (and a throttled page waits out a retry
backoff). The async twin (`alist_eval_tasks`) is measured the same way, for
information.

    python benchmarks/bench_list.py [--quick] [--n N]
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import _common

TARGET: Final = 1.15
N: Final = 10_000
QUICK_N: Final = 500
PAGE_SIZE: Final = 100
SERVER_QPS_LIMIT: Final = 50
CLIENT_QPS: Final = 48.0


@dataclass(frozen=True)
class Run:
    """One listing: how long, how many tasks and pages, how many throttled."""

    wall: float
    tasks: int
    pages: int
    throttled: int


def main() -> None:
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="tasks to list")
    _common.prepare("production")
    pages = -(-args.n // PAGE_SIZE)
    _common.header(
        "bench_list",
        f"list_eval_tasks of {args.n} tasks ({pages} pages of {PAGE_SIZE}) at qps"
        f" {CLIENT_QPS:g}, emulator in a child process with qps_limit {SERVER_QPS_LIMIT};"
        f" logging: {_common.LOGGING_MODES['production']}",
    )

    import evalctl
    from evalctl._base._config import set_clock
    from evalctl.emulator import pointed_at

    set_clock(None)  # real time, whatever EVALCTL_TESTING says
    remote = _common.RemoteEmulator(qps_limit=SERVER_QPS_LIMIT)
    with remote as emulator, pointed_at(emulator):
        emulator.fresh("list", args.n, names="nightly")

        def listing() -> int:
            tasks = evalctl.list_eval_tasks(page_size=PAGE_SIZE, qps=CLIENT_QPS)
            return len({task.task_id for task in tasks})

        async def alisting() -> int:
            tasks = evalctl.alist_eval_tasks(page_size=PAGE_SIZE, qps=CLIENT_QPS)
            return len({task.task_id async for task in tasks})

        def timed(fn: Any) -> Run:
            emulator.restart_window()
            time.sleep(1.0)  # let the previous run's second slide out of the window
            started = time.perf_counter()
            listed = fn()
            wall = time.perf_counter() - started
            requests, throttled = emulator.counts()
            return Run(wall, listed, requests, throttled)

        # Warm: the first call imports the request machinery and opens the connection.
        list(evalctl.list_eval_tasks(limit=1))
        sync_run = timed(listing)
        async_run = timed(lambda: asyncio.run(alisting()))

    figure("list_eval_tasks paging", args.n, sync_run, target=TARGET)
    figure("alist_eval_tasks paging", args.n, async_run, target=None)


def figure(name: str, expected: int, run: Run, *, target: float | None) -> None:
    """``<name> (details): wall X s, floor Y s, ratio Z (target ≤ T) OK|MISS``.

    The floor is pages ÷ the server's qps. A listing that lost or repeated a
    task, or was throttled, misses its target whatever the ratio.
    """
    pages = -(-expected // PAGE_SIZE)
    floor = pages / SERVER_QPS_LIMIT
    ratio = run.wall / floor
    complete = run.tasks == expected and run.throttled == 0
    details = (
        f"{run.tasks} of {expected} tasks, {run.pages} requests for {pages} pages,"
        f" {run.throttled} throttled"
    )
    if target is None:
        tail = "(info)"
    else:
        verdict = _common.verdict(ratio <= target and complete)
        tail = f"(target ≤ {target:g}, every task once, 0 throttled) {verdict}"
    print(
        f"{name} ({details}): wall {run.wall:.3f} s, floor {floor:.3f} s, ratio {ratio:.3f} {tail}",
        flush=True,
    )


if __name__ == "__main__":
    main()
