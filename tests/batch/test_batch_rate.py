"""The batch's request rate as the server sees it, in real time.

Testing mode's virtual clock makes rate-limit waits free, so these tests
switch to the real clock (`set_testing(False)`) and keep their batches small:
a few seconds each.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import pytest

from evalctl._batch._run import cancel_eval_tasks
from evalctl._core._limits import BURST_S
from evalctl.emulator import Emulator, pointed_at
from evalctl.testing import set_testing

QPS_LIMIT_FAULT = "qps_limit"


@pytest.fixture
def real_time() -> Iterator[None]:
    """Rate-limit waits (and retry backoff) take real time in this test."""
    with set_testing(False):
        yield


def busiest_second(times: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    times = sorted(times)
    return max(bisect.bisect_left(times, start + 1.0) - i for i, start in enumerate(times))


@pytest.mark.usefixtures("real_time")
def test_a_batch_below_the_server_limit_keeps_to_its_qps() -> None:
    """qps 80 under a limit of 100: no throttle, no failure, never over 80 a second."""
    qps = 80
    with (
        Emulator(qps_limit=100, latency_s=0.02, stop_delay_s=0.0) as emulator,
        pointed_at(emulator),
    ):
        ids = [emulator.add_task() for _ in range(100)]

        result = cancel_eval_tasks(ids, qps=qps, concurrency=4)

        received = emulator.requests
    assert (result.counts, result.exit_code) == ({"cancelled": 100}, 0)
    assert [r for r in received if r.fault] == []
    assert len(received) == result.requests == 200
    burst = max(1, qps * BURST_S)
    # Arrival times are taken by the server's threads, which share two busy
    # cores with everything else: a stall bunches arrivals a little.
    jitter = 0.1 * qps
    assert busiest_second([r.time for r in received]) <= qps + burst + jitter
    # The limiter, not the server, set the pace.
    span = received[-1].time - received[0].time
    assert span >= (len(received) - burst - 1) / qps


@pytest.mark.usefixtures("real_time")
def test_a_batch_above_the_server_limit_slows_down_to_it() -> None:
    """qps 90 against a limit of 30: throttled at first, then the rate settles under the limit."""
    limit = 30
    with (
        Emulator(qps_limit=limit, latency_s=0.02, stop_delay_s=0.0) as emulator,
        pointed_at(emulator),
    ):
        ids = [emulator.add_task() for _ in range(80)]

        result = cancel_eval_tasks(ids, qps=90, concurrency=4, dry_run=True)

        received = emulator.requests
    throttled = [r for r in received if r.fault == QPS_LIMIT_FAULT]
    assert result.counts.get("dry_run", 0) >= 78  # zero or very few failures
    # Without slowing down, two requests in three would be refused.
    assert len(throttled) <= 0.25 * len(received)
    end = received[-1].time
    last_two_seconds = [r for r in received if r.time > end - 2.0]
    assert len(last_two_seconds) <= 2 * limit * 1.2
    # Settled: a client that had not slowed down would see two in three refused
    # here too; a third leaves room for a scheduler hiccup on a busy machine.
    assert len([r for r in last_two_seconds if r.fault]) <= len(last_two_seconds) / 3
