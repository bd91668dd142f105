"""Retries against the emulator: what is retried, how often, how long, and what surfaces.

Waits run on the virtual clock (`clock.sleeps` records them); only the
`slow` fault costs real time, its attempt timeout, kept small.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tenacity
from helpers import events
from qianfan.errors import APIError, QianfanError, RequestError

from core.support import ApiSpec, Client, request_log_ids
from evalctl import (
    APICallError,
    AuthenticationError,
    HTTPStatusError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    TransportError,
)
from evalctl.emulator import Emulator
from evalctl.testing import VirtualClock

TRANSIENT_FAULTS = [
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "code_2",
    "code_4",
    "code_18",
    "code_336100",
    "code_500000",
    "reset",
]

#: Nothing is transient under this policy: every fault is permanent.
NOTHING_TRANSIENT = RetryPolicy(
    transient_http_statuses=frozenset(), transient_error_codes=frozenset()
)


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
def test_recovers_from_each_transient_fault_on_the_detail(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    clock: VirtualClock,
    fault: str,
) -> None:
    """Two transient failures of the detail read are retried; attempts count every request."""
    task_id = emulator.add_task()
    emulator.inject(fault, times=2, route=api.detail_fault_route)

    result = client.cancel(task_id)

    assert (result.outcome, result.attempts) == ("cancelled", 4)
    assert [r.fault for r in emulator.requests] == [fault, fault, None, None]
    assert [e["outcome"] for e in events(logs, "qianfan.request")] == [
        "retry",
        "retry",
        "ok",
        "ok",
    ]
    assert len(clock.sleeps) == 2
    assert len(emulator.stop_requests()) == 1


def test_recovers_from_a_detail_answer_slower_than_the_attempt_timeout(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A detail read that times out is retried (reads are safe to repeat)."""
    task_id = emulator.add_task()
    emulator.inject("slow", route=api.detail_fault_route, delay_s=2.0)

    result = client.cancel(task_id, retry=RetryPolicy(attempt_timeout=0.2))

    assert (result.outcome, result.attempts) == ("cancelled", 3)
    first = events(logs, "qianfan.request")[0]
    assert (first["outcome"], first["log_id"], first["http_status"]) == ("retry", None, None)


def test_no_attempt_outlives_the_deadline(client: Client, api: ApiSpec, emulator: Emulator) -> None:
    """The attempt timeout is cut to what is left of the deadline."""
    task_id = emulator.add_task()
    emulator.inject("slow", route=api.detail_fault_route, delay_s=2.0)
    started = time.monotonic()

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(task_id, retry=RetryPolicy(deadline=0.2))

    assert time.monotonic() - started < 1.5
    assert (caught.value.attempts, caught.value.why) == (1, "deadline")
    assert isinstance(caught.value.last_error, TransportError)
    assert emulator.stop_requests() == []


@pytest.mark.parametrize(
    ("fault", "error_type", "code"),
    [("http_503", HTTPStatusError, "ServiceUnavailable"), ("code_18", APICallError, 18)],
)
def test_a_fault_made_permanent_by_the_policy_fails_on_the_first_attempt(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    fault: str,
    error_type: type[Exception],
    code: object,
) -> None:
    """Transient statuses and codes are configurable; outside them, no retry."""
    task_id = emulator.add_task()
    emulator.inject(fault, route=api.detail_fault_route)

    with pytest.raises(error_type) as raw:
        client.detail_action(task_id, retry=NOTHING_TRANSIENT)
    assert code == raw.value.error_code  # type: ignore[attr-defined]

    emulator.inject(fault, route=api.detail_fault_route)
    with pytest.raises(PrecheckError):
        client.cancel(task_id, retry=NOTHING_TRANSIENT)

    assert len(emulator.requests) == 2
    assert emulator.stop_requests() == []


def test_an_invalid_parameter_fails_at_once(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """A malformed request (v1 code 336003, v2 HTTP 400) is not retried."""
    params = {"id": True} if api.name == "v1" else {"taskId": ""}

    with pytest.raises((APICallError, HTTPStatusError)) as caught:
        client.call_action(api.detail_route, api.detail_action, params)

    error = caught.value
    if api.name == "v1":
        assert isinstance(error, APIError)
        assert (error.error_code, error.http_status) == (336003, None)
    else:
        assert isinstance(error, RequestError)
        assert (error.status_code, error.error_code) == (400, "InvalidParameter")
    assert len(emulator.requests) == 1


def test_an_authentication_failure_fails_at_once(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """Wrong keys (HTTP 401/403) are never retried: AuthenticationError, one request."""
    task_id = emulator.add_task()

    with pytest.raises(AuthenticationError) as caught:
        client.cancel(task_id, ak=emulator.ak, sk="not-the-secret-key")

    error = caught.value
    assert error.status_code in (401, 403)
    assert request_log_ids(logs) == [error.log_id]
    assert [r.signature_valid for r in emulator.requests] == [False]


@pytest.mark.parametrize(
    ("fault", "last_error_type"),
    [("http_503", HTTPStatusError), ("code_18", APICallError), ("reset", TransportError)],
)
def test_exhaustion_raises_retry_exhausted_with_the_last_error(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    fault: str,
    last_error_type: type[Exception],
) -> None:
    """After max_attempts transient failures: RetryExhaustedError, never tenacity's RetryError."""
    task_id = emulator.add_task()
    emulator.inject(fault, times=10, route=api.detail_fault_route)

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(task_id, retry=RetryPolicy(max_attempts=3))

    error = caught.value
    assert (error.attempts, error.why, error.exit_code) == (3, "attempts", 5)
    assert len(emulator.requests) == 3
    assert isinstance(error.last_error, last_error_type)
    assert not isinstance(error, tenacity.RetryError)
    assert not isinstance(error.last_error, tenacity.RetryError)
    assert isinstance(error, QianfanError)
    assert request_log_ids(logs) == list(error.log_ids)
    assert len(error.log_ids) == (0 if fault == "reset" else 3)
    assert [e["outcome"] for e in events(logs, "qianfan.request")] == ["retry", "retry", "error"]
    assert emulator.stop_requests() == []


def test_gives_up_when_the_next_wait_would_pass_the_deadline(
    client: Client, api: ApiSpec, emulator: Emulator, clock: VirtualClock
) -> None:
    """No attempt starts after the deadline: with 10 s waits and 25 s, three attempts."""
    task_id = emulator.add_task()
    emulator.inject("http_503", times=50, route=api.detail_fault_route)
    policy = RetryPolicy(max_attempts=50, initial_wait=10, max_wait=10, jitter=False, deadline=25)

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(task_id, retry=policy)

    assert (caught.value.attempts, caught.value.why) == (3, "deadline")
    assert clock.sleeps == [10.0, 10.0]
    assert sum(clock.sleeps) < policy.deadline
    assert len(emulator.requests) == 3


def test_backoff_grows_exponentially_with_full_jitter(
    client: Client, api: ApiSpec, emulator: Emulator, clock: VirtualClock
) -> None:
    """The n-th wait lies in [0, initial_wait * 2**(n-1)], capped at max_wait."""
    task_id = emulator.add_task()
    emulator.inject("http_503", times=5, route=api.detail_fault_route)
    policy = RetryPolicy(max_attempts=6, initial_wait=0.5, max_wait=3.0)

    client.cancel(task_id, retry=policy)

    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(clock.sleeps) == len(ceilings)
    assert all(0 <= wait <= top for wait, top in zip(clock.sleeps, ceilings, strict=True))


def test_plain_exponential_backoff_without_jitter(
    client: Client, api: ApiSpec, emulator: Emulator, clock: VirtualClock
) -> None:
    """jitter=False: the waits are exactly initial_wait * 2**(n-1), capped."""
    task_id = emulator.add_task()
    emulator.inject("code_336100", times=4, route=api.detail_fault_route)

    client.cancel(task_id, retry=RetryPolicy(initial_wait=1, max_wait=5, jitter=False))

    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("retry_after", "max_wait", "expected"),
    [(3, 20.0, 3.0), (100, 5.0, 5.0), (0, 20.0, None)],
    ids=["honoured", "capped at max_wait", "zero adds nothing"],
)
def test_retry_after_is_a_floor_capped_at_max_wait(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    clock: VirtualClock,
    retry_after: int,
    max_wait: float,
    expected: float | None,
) -> None:
    """HTTP 429 with Retry-After: wait at least that long (not beyond max_wait)."""
    task_id = emulator.add_task()
    emulator.inject("http_429", route=api.detail_fault_route, retry_after=retry_after)

    result = client.cancel(task_id, retry=RetryPolicy(initial_wait=0.01, max_wait=max_wait))

    assert result.outcome == "cancelled"
    assert len(clock.sleeps) == 1
    if expected is None:
        assert clock.sleeps[0] <= 0.01
    else:
        assert clock.sleeps == [expected]


def test_retry_after_as_an_http_date(
    client: Client, api: ApiSpec, emulator: Emulator, clock: VirtualClock
) -> None:
    """Retry-After may be an HTTP date: the wait runs until then."""
    task_id = emulator.add_task()
    when = datetime.now(UTC) + timedelta(seconds=30)
    emulator.inject(
        "http_429",
        route=api.detail_fault_route,
        retry_after=email.utils.format_datetime(when, True),
    )

    client.cancel(task_id, retry=RetryPolicy(initial_wait=0.01, max_wait=60))

    assert len(clock.sleeps) == 1
    assert 27.0 <= clock.sleeps[0] <= 30.5


def test_retry_count_and_request_timeout_of_the_sdk_are_honoured(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """The SDK's `retry_count` caps the attempts; `request_timeout` bounds each one."""
    task_id = emulator.add_task()
    emulator.inject("http_503", times=5, route=api.detail_fault_route)

    with pytest.raises(RetryExhaustedError) as caught:
        client.detail_action(task_id, retry_count=3)
    assert (caught.value.attempts, len(emulator.requests)) == (3, 3)

    emulator.reset()
    task_id = emulator.add_task()
    emulator.inject("slow", route=api.detail_fault_route, delay_s=2.0)
    started = time.monotonic()
    with pytest.raises(RetryExhaustedError) as timed_out:
        client.detail_action(task_id, retry_count=1, request_timeout=0.2)
    assert time.monotonic() - started < 1.5
    last = timed_out.value.last_error
    assert isinstance(last, TransportError)
    assert last.timeout


def test_the_default_policy_takes_its_limits_from_the_environment(
    client: Client, api: ApiSpec, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without retry=, EVALCTL_MAX_ATTEMPTS applies to every request of the operation."""
    monkeypatch.setenv("EVALCTL_MAX_ATTEMPTS", "2")
    task_id = emulator.add_task()
    emulator.inject("http_500", times=5, route=api.detail_fault_route)

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(task_id)

    assert (caught.value.attempts, len(emulator.requests)) == (2, 2)
