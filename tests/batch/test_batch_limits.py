"""The batch's shared limits on their own: the adaptive token bucket and the retry budget.

These run on a hand-driven clock, so every wait and every rate is exact.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from helpers import events

from evalctl import ConfigurationError
from evalctl._limits import (
    BUDGET_EVENT,
    COOLDOWN_S,
    CUBIC_SCALE,
    DECREASE_FACTOR,
    MIN_RATE,
    RATE_EVENT,
    RETRY_BUDGET,
    RETRY_COST,
    AdaptiveRateLimiter,
    RetryBudget,
    check_qps,
    retry_cost,
)
from evalctl._transport import Failure

HTTP_503 = Failure("http", "Service Unavailable", http_status=503)
HTTP_429 = Failure("http", "Too Many Requests", http_status=429)
CODE_18 = Failure("envelope", "QPS limit reached", error_code=18)
TIMEOUT = Failure("timeout", "timed out", maybe_applied=True)
#: Rates are measured by counting requests in the last second; the boundary
#: may fall either side of one of them.
ONE_REQUEST = 1.0


class HandClock:
    """A clock that moves only when slept on or told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def send(limiter: AdaptiveRateLimiter, clock: HandClock, count: int, *, ok: bool = True) -> None:
    """`count` requests through the limiter, each answered at once."""
    for _ in range(count):
        limiter.acquire(clock)
        limiter.feedback(throttled=not ok)


def test_requests_are_spaced_one_over_qps_after_the_first() -> None:
    """A busy bucket lets one request through every 1/qps seconds, with no burst at the start."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(50, clock)
    start = clock.now

    send(limiter, clock, 101)

    assert pytest.approx(2.0) == clock.now - start
    assert [pytest.approx(0.02)] * 100 == clock.sleeps


def test_an_idle_bucket_saves_only_a_small_burst() -> None:
    """After idling, at most max(1, 2 % of a second's worth) requests pass without waiting."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(100, clock)
    send(limiter, clock, 1)
    clock.advance(10.0)
    clock.sleeps.clear()

    send(limiter, clock, 3)

    assert [pytest.approx(0.01)] == clock.sleeps


def overload(limiter: AdaptiveRateLimiter, clock: HandClock, qps: int) -> None:
    """A second all accepted, then a throttle, then a second where 3 answers in 4 are throttled."""
    send(limiter, clock, 2 * qps)
    send(limiter, clock, 1, ok=False)
    end = clock.now + 1.0
    while clock.now < end:
        send(limiter, clock, 1)
        send(limiter, clock, 3, ok=False)


def test_one_throttle_among_many_answers_costs_only_its_share(
    logs: list[dict[str, Any]],
) -> None:
    """A stray throttle after twenty accepted answers lowers the rate by 1/21, and is logged."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(20, clock)
    send(limiter, clock, 40)

    send(limiter, clock, 1, ok=False)

    assert pytest.approx(20 * 20 / 21, abs=ONE_REQUEST) == limiter.rate
    assert [
        {
            "event": RATE_EVENT,
            "log_level": "warning",
            "qps_before": 20.0,
            "qps": round(limiter.rate or 0, 2),
        }
    ] == (events(logs, RATE_EVENT))


def test_an_overload_brings_the_rate_down_to_what_the_server_accepted() -> None:
    """Mostly throttled for a second: the new rate is the rate the server accepted."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)

    overload(limiter, clock, 40)
    send(limiter, clock, 1, ok=False)

    accepted = 40 / 4  # one answer in four, at about 40 answers a second
    assert limiter.decreases == 2
    assert pytest.approx(accepted, abs=ONE_REQUEST) == limiter.rate


def test_a_throttle_in_the_first_second_lowers_the_rate_to_seven_tenths() -> None:
    """Before a full window the accepted count says little: botocore's x0.7 step."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)
    send(limiter, clock, 3)

    send(limiter, clock, 1, ok=False)

    assert pytest.approx(40 * DECREASE_FACTOR) == limiter.rate


def test_the_decrease_starts_from_what_the_server_accepted() -> None:
    """When the server accepted less than the rate, the new rate is based on what it accepted."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(100, clock)
    send(limiter, clock, 100)  # one second at 100/s, all accepted
    for n in range(100):  # the next second: one answer in four accepted, the rest lost
        limiter.acquire(clock)
        if n % 4 == 0:
            limiter.feedback(throttled=False)

    send(limiter, clock, 1, ok=False)

    assert pytest.approx(25 * 25 / 26, abs=ONE_REQUEST) == limiter.rate


def test_throttles_right_after_a_decrease_are_ignored() -> None:
    """Throttles within a second of a decrease are echoes of the old rate: one decrease only."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)
    send(limiter, clock, 80)
    send(limiter, clock, 1, ok=False)
    after_one = limiter.rate

    send(limiter, clock, 10, ok=False)

    assert (limiter.decreases, limiter.throttles) == (1, 11)
    assert after_one == limiter.rate


def test_the_rate_is_held_for_a_second_then_recovers_along_the_cubic_curve() -> None:
    """After a step down: held through the cool-down, then back quickly, never above qps."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)
    send(limiter, clock, 3)
    send(limiter, clock, 1, ok=False)
    regain_s = (40 * (1 - DECREASE_FACTOR) / CUBIC_SCALE) ** (1 / 3)

    def rate_after(seconds: float) -> float:
        until = clock.now + seconds
        while clock.now < until:
            send(limiter, clock, 1)
        assert limiter.rate is not None
        return limiter.rate

    held = rate_after(COOLDOWN_S - 0.05)
    one_second_later = rate_after(1.0)
    regained = rate_after(regain_s - 1.0)
    send(limiter, clock, 200)

    assert pytest.approx(28.0) == held
    assert 28.0 + 5 < one_second_later < 40.0
    assert pytest.approx(40.0, abs=ONE_REQUEST) == regained
    assert pytest.approx(40.0) == limiter.rate


def test_after_an_overload_the_rate_probes_above_the_limit_slowly() -> None:
    """The rate the server accepted is a plateau: a second after the cool-down, barely above."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)
    overload(limiter, clock, 40)
    send(limiter, clock, 1, ok=False)
    limit = limiter.rate
    assert limit is not None

    until = clock.now + COOLDOWN_S + 1.0
    while clock.now < until:
        send(limiter, clock, 1)

    assert limit < (limiter.rate or 0) < limit + ONE_REQUEST


def test_the_rate_never_goes_below_the_floor() -> None:
    """However long the server throttles, at least MIN_RATE requests per second go out."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)
    for _ in range(30):
        send(limiter, clock, 1, ok=False)
        clock.advance(1.0)

    assert limiter.rate == MIN_RATE


def test_without_qps_nothing_waits_until_the_first_throttle() -> None:
    """qps=None: no limit until a throttle turns the bucket on near the accepted rate."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(None, clock)
    for _ in range(60):
        send(limiter, clock, 1)
        clock.advance(0.01)
    assert (clock.sleeps, limiter.rate) == ([], None)

    send(limiter, clock, 1, ok=False)
    # 61 requests sent in 0.6 s: about 100 a second, times 0.7.
    assert pytest.approx(DECREASE_FACTOR * 61 / 0.6, abs=ONE_REQUEST) == limiter.rate
    send(limiter, clock, 5)

    assert len(clock.sleeps) >= 4


def test_the_async_acquire_waits_on_the_clock_too() -> None:
    """`aacquire` sleeps through `clock.asleep` with the same spacing."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)

    async def three() -> None:
        for _ in range(3):
            await limiter.aacquire(clock)

    asyncio.run(three())

    assert [pytest.approx(0.1)] * 2 == clock.sleeps


@pytest.mark.parametrize("qps", [0, -1, math.inf, math.nan, "10", True])
def test_qps_must_be_a_positive_finite_number(qps: Any) -> None:
    """A qps that cannot pace requests is a configuration error."""
    with pytest.raises(ConfigurationError, match="qps"):
        check_qps(qps)


def test_retry_costs_follow_botocore_with_cheap_throttles() -> None:
    """5 per retry, 10 after a timeout, 1 after a throttle (the limiter paces those)."""
    assert [retry_cost(f) for f in (HTTP_503, TIMEOUT, HTTP_429, CODE_18)] == [5, 10, 1, 1]


def test_the_budget_pays_for_a_hundred_retries_when_nothing_succeeds(
    logs: list[dict[str, Any]],
) -> None:
    """500 tokens at 5 per retry: the 101st retry of an outage is refused, and logged once."""
    budget = RetryBudget()

    paid = [budget.withdraw(HTTP_503) for _ in range(RETRY_BUDGET // RETRY_COST + 5)]

    assert paid == [True] * 100 + [False] * 5
    assert len(events(logs, BUDGET_EVENT)) == 1


def test_successes_refill_the_budget_up_to_its_capacity() -> None:
    """Each success refunds one token; the budget never grows past where it started."""
    budget = RetryBudget()
    budget.withdraw(HTTP_503)
    budget.withdraw(TIMEOUT)

    for _ in range(3):
        budget.refund()
    assert budget.available == RETRY_BUDGET - 15 + 3

    for _ in range(100):
        budget.refund()
    assert budget.available == RETRY_BUDGET
