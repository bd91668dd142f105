"""The shared limiter against a real redis-server: one schedule and one learned limit for all.

Redis keeps the time (its `TIME`), so these run on the real clock; each
test takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import Any

import pytest
import redis
from helpers import events

from evalctl import ConfigurationError
from evalctl._base._config import Clock, get_clock
from evalctl._core._limits import HEADROOM, PAUSE_EVENT, AdaptiveRateLimiter
from evalctl._core._sharedlimit import (
    FALLBACK_EVENT,
    RateLimitUnavailableError,
    RateLimitUnreachableError,
    SharedRateLimiter,
    default_key,
    make_limiter,
    shown_url,
)

from .conftest import closed_port

ENDPOINT = "http://127.0.0.1:8080"
AK = "shared-test-ak-Q2w9Zr"


class RealClock:
    """The real clock, with every sleep recorded."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def shared(url: str, qps: float | None, key: str = "test", **options: Any) -> SharedRateLimiter:
    limiter = make_limiter(qps, get_clock(), url=url, key=key, ak=AK, **options)
    assert isinstance(limiter, SharedRateLimiter)
    return limiter


def slots(*limiters: SharedRateLimiter) -> list[float]:
    """One reservation from each limiter in turn: the Redis times of the slots (no sleeping)."""
    taken = []
    for limiter in limiters:
        reserved = limiter._reserve_slot()
        assert reserved is not None
        taken.append(float(reserved[2]))
    return taken


def test_two_limiters_on_one_key_share_one_schedule(redis_url: str) -> None:
    """Reservations from two limiters (two processes' worth) interleave 1/qps apart."""
    first, second = shared(redis_url, 20), shared(redis_url, 20)

    taken = slots(first, second, first, second, first, second)

    gaps = [later - earlier for earlier, later in itertools.pairwise(taken)]
    assert [pytest.approx(1 / 20)] * 5 == gaps


def test_the_async_acquire_shares_the_same_schedule(redis_url: str) -> None:
    """`aacquire` (Redis called in a thread) takes its turns in the same schedule."""
    first, second = shared(redis_url, 20), shared(redis_url, 20)
    clock = RealClock()

    async def four() -> None:
        for _ in range(2):
            await first.aacquire(clock)
            await second.aacquire(clock)

    started = time.monotonic()
    asyncio.run(four())

    # At least the shared schedule's spacing (a loaded machine only adds to it).
    assert time.monotonic() - started >= 3 / 20 - 0.01


def test_other_keys_have_their_own_schedule(redis_url: str) -> None:
    """A limiter on another key does not wait for this one's reservations."""
    busy, other = shared(redis_url, 10, key="busy"), shared(redis_url, 10, key="other")
    clock = RealClock()
    busy.acquire(clock)

    other.acquire(clock)

    assert clock.sleeps == []


def test_a_limit_learned_by_one_process_holds_for_all(redis_url: str) -> None:
    """One limiter's answers teach the limit; the other reads it (and its rate) from Redis."""
    teacher, learner = shared(redis_url, None), shared(redis_url, None)
    for _ in range(12):
        teacher.feedback(throttled=False)

    teacher.feedback(throttled=True)
    learner.feedback(throttled=True)

    assert learner.state()["limit"] == 12
    assert learner.state()["epoch"] == 1


def test_a_lone_throttle_teaches_nothing(redis_url: str) -> None:
    """A random throttle followed by an accepted answer is not taken for a crossed limit."""
    limiter = shared(redis_url, None)
    for throttled in (False, False, False, True, False, True, False):
        limiter.feedback(throttled=throttled)

    assert "limit" not in limiter.state()


def test_after_learning_the_shared_rate_is_just_under_the_limit(redis_url: str) -> None:
    """Paced at (1 - HEADROOM) x the learned limit, across limiters."""
    first, second = shared(redis_url, None), shared(redis_url, None)
    for _ in range(10):
        first.feedback(throttled=False)
    first.feedback(throttled=True)
    first.feedback(throttled=True)  # limit 10: 9.5 a second

    taken = slots(first, second, first)

    gaps = [later - earlier for earlier, later in itertools.pairwise(taken)]
    assert [pytest.approx(1 / (10 * (1 - HEADROOM)))] * 2 == gaps


def test_several_retry_afters_pause_every_process(
    redis_url: str, logs: list[dict[str, Any]]
) -> None:
    """Three 429s with Retry-After in a second, from two limiters: both wait the pause out."""
    first, second = shared(redis_url, 50), shared(redis_url, 50)
    first.feedback(throttled=False)
    first.feedback(throttled=True, retry_after=0.3)
    second.feedback(throttled=True, retry_after=0.3)
    first.feedback(throttled=True, retry_after=0.3)
    clock = RealClock()

    second.acquire(clock)

    assert [pytest.approx(0.3, abs=0.05)] == clock.sleeps
    assert [pytest.approx(0.3)] == [event["pause_s"] for event in events(logs, PAUSE_EVENT)]


def test_a_redis_clock_that_went_back_is_not_waited_for(redis_url: str) -> None:
    """Times kept from an hour ahead (the server's clock stepped back): forgotten, not waited."""
    limiter = shared(redis_url, 10)
    clock = RealClock()
    limiter.acquire(clock)
    ahead = time.time() + 3600
    client = redis.Redis.from_url(redis_url)
    client.hset("{test}:state", mapping={"tat": ahead, "seen": ahead, "pause": ahead})

    reserved = limiter._reserve_slot()  # the wait itself, not an hour of sleep if it failed

    assert reserved is not None
    assert reserved[0] <= 0


def test_the_default_key_names_the_endpoint_and_hashes_the_access_key() -> None:
    """One account, one key; the access key itself is never in it."""
    key = default_key(ENDPOINT, AK)

    assert key.startswith("evalctl:rate:127.0.0.1:8080:")
    assert AK not in key
    assert key == default_key(ENDPOINT, AK)
    assert key != default_key(ENDPOINT, AK + "x")
    assert key != default_key("https://qianfan.baidubce.com", AK)


def test_the_url_is_shown_without_its_password() -> None:
    """User, password and query (which may carry a password) never appear."""
    shown = shown_url("redis://user:s3cret-pw@10.0.0.5:6380/2?password=other-pw")

    assert shown == "redis://10.0.0.5:6380/2"


def test_unreachable_at_start_is_a_clear_error_without_the_password() -> None:
    """Nothing listening: exit code 2, the URL shown, the password not."""
    url = f"redis://:hunter2-pw@127.0.0.1:{closed_port()}/0"

    with pytest.raises(RateLimitUnreachableError) as raised:
        make_limiter(None, get_clock(), url=url, ak=AK)

    error = raised.value
    assert error.exit_code == 2
    assert "unreachable" in error.message
    assert "127.0.0.1" in error.message
    assert "hunter2" not in f"{error.message} {error!r}"
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_no_frame_of_the_unreachable_error_holds_the_access_key() -> None:
    """The traceback's frames (what a crash reporter would dump) never hold the access key."""
    url = f"redis://127.0.0.1:{closed_port()}/0"

    with pytest.raises(RateLimitUnreachableError) as raised:
        make_limiter(None, get_clock(), url=url, ak=AK)

    tb = raised.value.__traceback__
    held = []
    while tb is not None:
        held.extend(repr(value) for value in tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    assert held
    assert not [text for text in held if AK in text]


def test_unreachable_at_start_with_fallback_warns_and_limits_locally(
    logs: list[dict[str, Any]],
) -> None:
    """fallback="local": a warning, and the per-process limiter."""
    url = f"redis://127.0.0.1:{closed_port()}/0"

    limiter = make_limiter(30, get_clock(), url=url, ak=AK, fallback="local")

    assert isinstance(limiter, AdaptiveRateLimiter)
    assert limiter.rate == 30
    [event] = events(logs, FALLBACK_EVENT)
    assert event["url"] == url


def test_the_url_can_come_from_the_environment(redis_url: str) -> None:
    """EVALCTL_RATE_LIMIT_URL does what rate_limit_url= does."""
    limiter = make_limiter(
        None, get_clock(), ak=AK, environ={"EVALCTL_RATE_LIMIT_URL": redis_url}
    )

    assert isinstance(limiter, SharedRateLimiter)
    assert limiter.key == default_key(_endpoint(), AK)


def _endpoint() -> str:
    from qianfan import get_config

    return str(get_config().CONSOLE_API_BASE_URL)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://127.0.0.1:6379/0"}, "cannot be used"),
        ({"url": "redis://127.0.0.1:1/0", "key": "has space"}, "rate limit key"),
        ({"url": "redis://127.0.0.1:1/0", "key": ""}, "rate limit key"),
        ({"url": "redis://127.0.0.1:1/0", "fallback": "ignore"}, "fallback"),
        ({"key": "alone"}, "needs a rate limit URL"),
    ],
)
def test_bad_settings_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    """A URL redis-py cannot use, a bad key or fallback: exit code 2, before any connection."""
    with pytest.raises(ConfigurationError, match=message) as raised:
        make_limiter(None, get_clock(), ak=AK, environ={}, **options)

    assert raised.value.exit_code == 2


def test_without_redis_py_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extra is optional: a URL without redis-py installed names the extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)

    with pytest.raises(ConfigurationError, match=r"pip install 'evalctl\[redis\]'"):
        make_limiter(None, get_clock(), url="redis://127.0.0.1:6379/0", ak=AK)


def test_a_failure_mid_batch_fails_the_request_and_never_the_answer(own_redis: Any) -> None:
    """Redis gone: feedback for an answer already received does not raise; the next acquire does."""
    limiter = shared(own_redis.url, 50)
    clock: Clock = RealClock()
    limiter.acquire(clock)
    own_redis.stop()

    limiter.feedback(throttled=False)  # the answer is not lost
    with pytest.raises(RateLimitUnavailableError, match="the request was not sent") as raised:
        limiter.acquire(clock)

    assert raised.value.kind == "transport"  # --resume tries the task again


def test_a_failure_mid_batch_with_fallback_goes_on_locally(
    own_redis: Any, logs: list[dict[str, Any]]
) -> None:
    """fallback="local": one warning, then the per-process limiter for the rest of the batch."""
    limiter = shared(own_redis.url, 50, fallback="local")
    clock = RealClock()
    limiter.acquire(clock)
    own_redis.stop()

    for _ in range(3):
        limiter.acquire(clock)
        limiter.feedback(throttled=False)

    assert limiter.local is not None
    assert len(events(logs, FALLBACK_EVENT)) == 1
