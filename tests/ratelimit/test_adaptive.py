"""The adaptive limiter on its own, on a hand-driven clock: every wait and every rate is exact.

It learns the server's limit from throttles (what the server accepted over
the last second), stays just under it, mirrors the server's sliding window,
probes upwards along a cubic curve, and pauses the whole batch for a
Retry-After only when several throttles say the account is saturated.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
from helpers import events

from evalctl import cancel_eval_tasks
from evalctl._core._limits import (
    COOLDOWN_S,
    DECREASE_FACTOR,
    DOUBLING_S,
    HEADROOM,
    MAX_PROBE,
    MIN_RATE,
    PAUSE_EVENT,
    PROBE_SCALE,
    RATE_EVENT,
    SLOW_START_QPS,
    AdaptiveRateLimiter,
    probe,
)
from evalctl.emulator import Emulator
from evalctl.testing import set_testing

#: Rates measured by counting answers over a second may be one request off.
ONE_REQUEST = 1.0


class HandClock:
    """A clock that moves only when slept on or told to; `on_sleep` runs after each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def send(limiter: AdaptiveRateLimiter, clock: HandClock, count: int, *, ok: bool = True) -> None:
    """`count` requests through the limiter, each answered at once."""
    for _ in range(count):
        limiter.acquire(clock)
        limiter.feedback(throttled=not ok)


def refused(limiter: AdaptiveRateLimiter, count: int = 2) -> None:
    """`count` throttled answers in a row (two confirm an unknown limit)."""
    for _ in range(count):
        limiter.feedback(throttled=True)


def learned_at_fifty(clock: HandClock, qps: float = 200) -> AdaptiveRateLimiter:
    """A limiter told `qps` that has just learned a limit of 50 (50 accepted, then refused)."""
    limiter = AdaptiveRateLimiter(qps, clock)
    send(limiter, clock, 50)
    refused(limiter)
    assert limiter.limit == 50
    return limiter


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


def test_without_qps_the_rate_starts_slow_and_doubles() -> None:
    """qps=None: a slow start at SLOW_START_QPS, twice as fast every DOUBLING_S."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(None, clock)
    send(limiter, clock, 1)
    at_start = limiter.rate

    clock.advance(2 * DOUBLING_S)

    assert pytest.approx(SLOW_START_QPS) == at_start
    assert pytest.approx(4 * SLOW_START_QPS) == limiter.rate
    assert limiter.limit is None


def test_two_throttles_in_a_row_teach_the_limit_the_server_accepted(
    logs: list[dict[str, Any]],
) -> None:
    """Unknown limit: 30 accepted answers, then two refusals: the limit is 30, the rate under it."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(None, clock)
    send(limiter, clock, 30)
    before = limiter.rate
    assert before is not None

    refused(limiter)

    assert limiter.limit == 30
    assert pytest.approx(30 * (1 - HEADROOM)) == limiter.rate
    assert [
        {
            "event": RATE_EVENT,
            "log_level": "warning",
            "qps_before": round(before, 2),
            "qps": 28.5,
            "limit": 30.0,
        }
    ] == events(logs, RATE_EVENT)


def test_a_lone_throttle_among_accepted_answers_teaches_nothing() -> None:
    """A random throttle is followed by accepted answers; a crossed limit refuses everything."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(None, clock)
    send(limiter, clock, 30)

    for ok in (False, True, False, True, False, True):
        limiter.feedback(throttled=not ok)

    assert (limiter.limit, limiter.decreases, limiter.throttles) == (None, 0, 3)


def test_a_qps_set_too_high_converges_to_the_server_limit() -> None:
    """qps 200 against a limit of 50: the limit is learned at the first refusals."""
    clock = HandClock()

    limiter = learned_at_fifty(clock)

    assert pytest.approx(50 * (1 - HEADROOM)) == limiter.rate


def test_after_learning_requests_wait_until_the_servers_window_has_room() -> None:
    """The window mirror: at most `rate` sends in any second; the burst already sent waits out."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(200, clock)
    start = clock.now
    send(limiter, clock, 50)  # slots start + 0.005 k, k = 0..49
    refused(limiter)  # limit 50, rate 47.5: room for 47 a second
    clock.sleeps.clear()

    send(limiter, clock, 3)

    # The 48th-last send (k = 3) must leave the window first; then the bucket
    # paces (at 47.5 a second, and a little more as the estimate probes upwards).
    assert [
        pytest.approx(start + 0.015 + 1.0 - (start + 0.245)),
        pytest.approx(1 / 47.5, rel=0.01),
        pytest.approx(1 / 47.5, rel=0.01),
    ] == clock.sleeps


def test_throttles_right_after_a_decrease_are_ignored() -> None:
    """Throttles within a second of a decrease are echoes of the old rate: one decrease only."""
    clock = HandClock()
    limiter = learned_at_fifty(clock)

    clock.advance(COOLDOWN_S - 0.01)
    refused(limiter, 10)

    assert (limiter.decreases, limiter.throttles, limiter.limit) == (1, 12, 50)


def test_a_known_limit_comes_down_to_what_the_server_accepted() -> None:
    """Sent at the learned rate for two seconds, then refused: the limit is what was accepted."""
    clock = HandClock()
    limiter = learned_at_fifty(clock)
    until = clock.now + 2.0
    accepted_times: list[float] = []
    while clock.now < until:
        send(limiter, clock, 1)
        accepted_times.append(clock.now)
    last_second = [t for t in accepted_times if t > clock.now - 1.0]

    limiter.feedback(throttled=True)

    assert limiter.decreases == 2
    assert pytest.approx(len(last_second), abs=ONE_REQUEST) == limiter.limit


def test_one_decrease_is_at_most_thirty_percent() -> None:
    """Refused after a quiet spell (nothing accepted lately): down by x0.7, no more."""
    clock = HandClock()
    limiter = learned_at_fifty(clock)
    clock.advance(1.5)
    estimate = probe(50, 50, 1.5)

    limiter.feedback(throttled=True)

    assert pytest.approx(estimate * DECREASE_FACTOR) == limiter.limit


def test_the_estimate_probes_upwards_along_the_cubic_curve_up_to_qps() -> None:
    """After learning: barely above the limit at first, faster later, never above qps."""
    clock = HandClock()
    limiter = learned_at_fifty(clock, qps=80)

    clock.advance(2.0)
    after_two = limiter.rate
    clock.advance(30.0)

    assert pytest.approx(50 * (1 + PROBE_SCALE * 8) * (1 - HEADROOM)) == after_two
    assert limiter.rate == 80


def test_after_a_decrease_the_curve_regains_the_peak_quickly_then_flattens() -> None:
    """CUBIC: from the decreased value back to the peak in regain seconds, flat around it."""
    peak, low = 50.0, 35.0
    regain_s = ((peak - low) / (PROBE_SCALE * peak)) ** (1 / 3)

    curve = [probe(low, peak, t) for t in (0.0, regain_s / 2, regain_s, regain_s + 1, 1e6)]

    assert curve[0] == low
    assert peak - curve[1] < (peak - low) / 4  # most of the way back in half the time
    assert pytest.approx(peak) == curve[2]
    assert peak < curve[3] < peak * 1.01
    assert curve[4] == peak * MAX_PROBE


def test_the_rate_never_goes_below_the_floor() -> None:
    """However long the server throttles, at least MIN_RATE requests per second go out."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)
    for _ in range(30):
        clock.advance(COOLDOWN_S + 0.1)
        refused(limiter)

    assert (limiter.limit, limiter.rate) == (MIN_RATE, MIN_RATE)


def test_a_retry_after_pauses_only_the_request_it_answers() -> None:
    """One 429 with Retry-After among accepted answers: the next request waits only its turn."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)
    send(limiter, clock, 5)
    clock.sleeps.clear()

    limiter.feedback(throttled=True, retry_after=5.0)
    send(limiter, clock, 1)

    assert [pytest.approx(0.1)] == clock.sleeps
    assert (limiter.pauses, limiter.decreases) == (0, 0)


def test_several_retry_afters_in_a_second_pause_the_whole_batch(
    logs: list[dict[str, Any]],
) -> None:
    """Three 429s with Retry-After in a second, a quarter of the answers: everyone waits it out."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)
    send(limiter, clock, 5)
    clock.sleeps.clear()

    for _ in range(3):
        limiter.feedback(throttled=True, retry_after=5.0)
    send(limiter, clock, 1)

    assert [pytest.approx(5.0)] == clock.sleeps
    assert limiter.pauses == 1
    assert [event["pause_s"] for event in events(logs, PAUSE_EVENT)] == [5.0]


def test_a_few_retry_afters_among_many_answers_do_not_pause() -> None:
    """Three 429s among twenty accepted answers say little about the account: no pause."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(40, clock)
    send(limiter, clock, 20)
    clock.sleeps.clear()

    for _ in range(3):
        limiter.feedback(throttled=True, retry_after=5.0)
    send(limiter, clock, 1)

    assert [pytest.approx(1 / 40)] == clock.sleeps
    assert limiter.pauses == 0


def test_a_slot_reserved_before_a_decrease_is_given_up() -> None:
    """A request waiting for its slot when the limit is learned reserves again at the new rate."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(100, clock)
    send(limiter, clock, 20)
    clock.sleeps.clear()
    clock.on_sleep = lambda: refused(limiter)  # the limit (20) is learned during the wait

    limiter.acquire(clock)

    assert limiter.decreases == 1
    assert len(clock.sleeps) == 2
    # The second wait is for the server's window: 19 a second, 21 sent in the last 0.2 s.
    assert clock.sleeps[1] > 0.5


def test_a_request_that_wakes_up_late_takes_a_new_turn() -> None:
    """Woken 0.1 s after its slot (a stalled process): the slot is freed and a new one taken."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(2, clock)
    send(limiter, clock, 1)
    clock.on_sleep = lambda: clock.advance(0.1)

    limiter.acquire(clock)  # slot at +0.5 s, woken at +0.6 s

    assert limiter.late == 1
    # The new turn is the bucket's next one (+1.0 s), not the missed one.
    assert [pytest.approx(0.5), pytest.approx(0.4)] == clock.sleeps


def test_the_async_acquire_waits_on_the_clock_too() -> None:
    """`aacquire` sleeps through `clock.asleep` with the same spacing."""
    clock = HandClock()
    limiter = AdaptiveRateLimiter(10, clock)

    async def three() -> None:
        for _ in range(3):
            await limiter.aacquire(clock)

    asyncio.run(three())

    assert [pytest.approx(0.1)] * 2 == clock.sleeps


def test_a_limit_handed_over_is_used_from_the_start() -> None:
    """`limit=` (a shared limiter falling back) starts at the known limit, without a slow start."""
    clock = HandClock()

    limiter = AdaptiveRateLimiter(None, clock, limit=80)

    assert (limiter.limit, limiter.rate) == (80, pytest.approx(80 * (1 - HEADROOM)))


def test_the_batch_hands_each_429s_retry_after_to_the_limiter(
    emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """Over HTTP: three 429s with `Retry-After: 0.3` answer the first requests: all pause."""
    ids = [emulator.add_task() for _ in range(3)]
    emulator.inject("http_429", times=3, retry_after=0.3)

    # Real time: the virtual clock would put each retry's wait between the answers.
    with set_testing(False):
        result = cancel_eval_tasks(ids, concurrency=3)

    assert result.counts == {"cancelled": 3}
    assert [event["pause_s"] for event in events(logs, PAUSE_EVENT)] == [0.3]


def test_the_curves_stay_finite_numbers_however_long_a_batch_runs() -> None:
    """No OverflowError after hours (2.0 ** t and the probe's cube overflow a float)."""
    from evalctl._core._limits import SLOW_START_MAX_QPS, probe, slow_start

    assert slow_start(13 * 60.0) == math.inf  # 2.0 ** 1040 would raise
    assert slow_start(1e12) == math.inf
    assert slow_start(0.0) < SLOW_START_MAX_QPS
    assert probe(50.0, 60.0, 1e300) == 120.0  # the cap: twice the peak
