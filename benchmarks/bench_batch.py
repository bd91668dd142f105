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

    python benchmarks/bench_batch.py [--quick] [--n N]
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass
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
        f"{LATENCY_S * 1000:g} ms latency; logging: {_common.LOGGING_MODES['production']}",
    )

    from evalctl._batch import cancel_eval_tasks
    from evalctl._config import set_clock
    from evalctl.emulator import pointed_at

    set_clock(None)  # real time, whatever EVALCTL_TESTING says
    with (
        RemoteEmulator(qps_limit=SERVER_QPS_LIMIT, latency_s=LATENCY_S) as emulator,
        pointed_at(emulator),
    ):

        def batch(prefix: str, fault_kinds: tuple[str, ...] | None) -> Run:
            ids = emulator.fresh(prefix, args.n, fault_kinds)
            time.sleep(1.0)  # let the previous run's second slide out of the window
            started = time.perf_counter()
            result = cancel_eval_tasks(ids, qps=CLIENT_QPS, concurrency=CONCURRENCY)
            wall = time.perf_counter() - started
            return Run(
                wall=wall,
                requests=result.requests,
                failed=sum(count for label, count in result.counts.items() if label != "cancelled"),
                throttled=emulator.throttled(),
            )

        plain = batch("plain", None)
        faulty = batch("faulty", RETRYABLE_FAULTS)
        throttling = batch("throttling", RETRYABLE_FAULTS + THROTTLE_FAULTS)

    figure("batch no faults", args.n, plain, target=TARGET)
    figure("batch 10% transient faults", args.n, faulty, target=TARGET)
    figure("batch 10% faults with throttles", args.n, throttling, target=None)
    figure("batch no faults vs the server limit", args.n, plain, target=None, qps=SERVER_QPS_LIMIT)


_THROTTLED: Final = frozenset({"qps_limit", "http_429", "code_18"})


class RemoteEmulator:
    """An emulator in its own process, as the real console is: the client's
    threads and the server's never share an interpreter lock, so arrival
    times at the server's QPS window are not skewed by the client's work."""

    def __init__(self, **settings: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end, settings), daemon=True)
        self.base_url = self.ak = self.sk = ""

    def __enter__(self) -> RemoteEmulator:
        self._process.start()
        self.base_url, self.ak, self.sk = self._conn.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._conn.send(("close",))
        self._process.join(10)

    def fresh(self, prefix: str, count: int, fault_kinds: tuple[str, ...] | None) -> list[str]:
        """Forget everything, seed `count` running tasks, set the random faults."""
        self._conn.send(("fresh", prefix, count, fault_kinds))
        ids: list[str] = self._conn.recv()
        return ids

    def throttled(self) -> int:
        """Requests refused by the QPS limit or given a throttle fault."""
        self._conn.send(("throttled",))
        count: int = self._conn.recv()
        return count


def _serve(conn: Any, settings: dict[str, Any]) -> None:
    """The emulator process: answers the benchmark's commands until told to close."""
    _common.prepare("production")
    from evalctl.emulator import Emulator

    with Emulator(stop_delay_s=0.0, **settings) as emulator:
        conn.send((emulator.base_url, emulator.ak, emulator.sk))
        while True:
            command, *rest = conn.recv()
            if command == "close":
                return
            if command == "fresh":
                prefix, count, fault_kinds = rest
                emulator.reset()
                emulator.set_qps_limit(settings["qps_limit"])  # a fresh sliding window
                ids = [emulator.add_task(f"ame-{prefix}{index:06d}") for index in range(count)]
                emulator.set_fault_rate(
                    FAULT_RATE if fault_kinds else 0.0, kinds=fault_kinds, seed=FAULT_SEED
                )
                conn.send(ids)
            elif command == "throttled":
                conn.send(sum(1 for record in emulator.requests if record.fault in _THROTTLED))


def figure(
    name: str, tasks: int, run: Run, *, target: float | None, qps: float = CLIENT_QPS
) -> None:
    """``<name> (details): wall X s, floor Y s, ratio Z (target ≤ T) OK|MISS``.

    The floor is requests ÷ qps. A run with a failed task misses its target
    whatever the ratio.
    """
    floor = run.requests / qps
    ratio = run.wall / floor
    details = (
        f"{tasks} tasks, {run.requests} requests at {qps:g} qps, {run.failed} failed, "
        f"{run.throttled} throttled"
    )
    if target is None:
        tail = "(info)"
    else:
        tail = (
            f"(target ≤ {target:g}, 0 failed) {_common.verdict(ratio <= target and not run.failed)}"
        )
    print(
        f"{name} ({details}): wall {run.wall:.3f} s, floor {floor:.3f} s, ratio {ratio:.3f} {tail}",
        flush=True,
    )


if __name__ == "__main__":
    main()
