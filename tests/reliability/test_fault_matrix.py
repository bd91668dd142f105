"""The fault matrix: every emulator fault × {detail read, stop} × {transient, permanent} × {v1, v2}.

Each row runs `cancel_eval_task` against the emulator with one fault kind
injected on one route, either for fewer requests than the policy's attempts
("transient": `MAX_ATTEMPTS - 1` times) or for more than it will ever send
("permanent"). The expectations come from the small tables below, written
from the fault semantics (see `evalctl.emulator.Fault` and the README), not
from the library's code:

* retried: HTTP 429/500/502/503/504 and error codes 2, 4, 18, 336100, 500000
  are transient and never applied; a stop failing with them is plainly resent.
* reset: transient; the connection dies before any answer, so a stop may or
  may not have been applied — evalctl reads the detail, sees the task still
  running, and only then sends the stop again.
* slow: transient; the stop *is* applied but the client times out — evalctl
  reads the detail, sees it stopped, and reports `cancelled` after one stop.
* not_json / missing_fields: not transient. On the detail the pre-check fails
  closed (PrecheckError); on the stop the answer is ambiguous, so evalctl
  reads the detail (still running) and gives up with InvalidResponseError
  rather than resend blindly.

Every row asserts the outcome or the error type, the exact number of requests
per route, the number of backoff waits, that the waits fit in the policy's
deadline, and that the emulator's task ended in the state the result claims.
A second table checks that a permanent fault under a tight deadline ends on
the deadline, with the exact (jitter-free) waits.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from core.support import APIS, ApiSpec

import evalctl
from evalctl import (
    APICallError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    TransportError,
)
from evalctl.emulator import Emulator, Fault
from evalctl.testing import VirtualClock

MAX_ATTEMPTS = 3
TRANSIENT_TIMES = MAX_ATTEMPTS - 1
PERMANENT_TIMES = 50
#: `slow` rows: the client gives up after this, the emulator holds far longer.
#: Every request of the row gets this timeout, so it leaves room for a loaded machine.
SLOW_ATTEMPT_TIMEOUT_S = 0.3
SLOW_HOLD_S = 3.0

RETRIED_HTTP = ("http_429", "http_500", "http_502", "http_503", "http_504")
RETRIED_CODES = ("code_2", "code_4", "code_18", "code_336100", "code_500000")
GARBLED = ("not_json", "missing_fields")

#: The error a transient fault leaves in `RetryExhaustedError.last_error`.
LAST_ERROR: dict[str, type[EvalctlError]] = {
    **dict.fromkeys(RETRIED_HTTP, HTTPStatusError),
    **dict.fromkeys(RETRIED_CODES, APICallError),
    "reset": TransportError,
    "slow": TransportError,
}

CANCELLED = "cancelled"
M = MAX_ATTEMPTS


@dataclass(frozen=True)
class Expect:
    """What one row must end in.

    Attributes:
        ending: The outcome (a string) or the error type raised.
        details: Requests the detail route received.
        stops: Requests the stop route received.
        waits: Backoff pauses taken (virtual clock sleeps).
        applied: Whether the emulator's task ends stopped.
    """

    ending: str | type[EvalctlError]
    details: int
    stops: int
    waits: int
    applied: bool


# (where, persistence) → expectation, per class of fault. M = max attempts.
RETRIED = {
    ("detail", "transient"): Expect(CANCELLED, details=M, stops=1, waits=M - 1, applied=True),
    ("detail", "permanent"): Expect(RetryExhaustedError, M, 0, M - 1, applied=False),
    ("stop", "transient"): Expect(CANCELLED, details=1, stops=M, waits=M - 1, applied=True),
    ("stop", "permanent"): Expect(RetryExhaustedError, 1, M, M - 1, applied=False),
}
RESET = {
    **RETRIED,
    # Each lost stop is followed by a detail read before it is resent.
    ("stop", "transient"): Expect(
        CANCELLED, details=1 + (M - 1), stops=M, waits=M - 1, applied=True
    ),
    ("stop", "permanent"): Expect(RetryExhaustedError, 1 + M, M, M - 1, applied=False),
}
SLOW = {
    **RETRIED,
    # The first stop is applied; the detail read after the timeout shows it.
    ("stop", "transient"): Expect(CANCELLED, details=2, stops=1, waits=0, applied=True),
    ("stop", "permanent"): Expect(CANCELLED, details=2, stops=1, waits=0, applied=True),
}
UNREADABLE = {
    ("detail", "transient"): Expect(PrecheckError, details=1, stops=0, waits=0, applied=False),
    ("detail", "permanent"): Expect(PrecheckError, details=1, stops=0, waits=0, applied=False),
    ("stop", "transient"): Expect(InvalidResponseError, details=2, stops=1, waits=0, applied=False),
    ("stop", "permanent"): Expect(InvalidResponseError, details=2, stops=1, waits=0, applied=False),
}
TABLE: dict[str, dict[tuple[str, str], Expect]] = {
    **dict.fromkeys(RETRIED_HTTP + RETRIED_CODES, RETRIED),
    "reset": RESET,
    "slow": SLOW,
    **dict.fromkeys(GARBLED, UNREADABLE),
}

ROWS = [
    pytest.param(api, fault, where, persistence, id=f"{api}-{fault}-{where}-{persistence}")
    for api in ("v1", "v2")
    for fault in TABLE
    for where in ("detail", "stop")
    for persistence in ("transient", "permanent")
]


def test_the_table_covers_every_fault_kind_of_the_emulator() -> None:
    """A fault kind added to the emulator must get its rows here."""
    assert {fault.value for fault in Fault} == set(TABLE)
    assert len(Fault) * 2 * 2 * 2 == len(ROWS)


def _route(api: ApiSpec, where: str) -> str:
    return api.detail_fault_route if where == "detail" else api.stop_fault_route


@pytest.mark.parametrize(("api_name", "fault", "where", "persistence"), ROWS)
def test_fault_matrix_row(
    api_name: str,
    fault: str,
    where: str,
    persistence: str,
    emu: Emulator,
    clock: VirtualClock,
) -> None:
    """One fault on one route ends exactly as the table says, within the deadline."""
    api = APIS[api_name]
    expect = TABLE[fault][(where, persistence)]
    slow = fault == "slow"
    policy = RetryPolicy(
        max_attempts=MAX_ATTEMPTS,
        attempt_timeout=SLOW_ATTEMPT_TIMEOUT_S if slow else RetryPolicy().attempt_timeout,
    )
    task_id = emu.add_task(eval_mode="rule,model")
    times = TRANSIENT_TIMES if persistence == "transient" else PERMANENT_TIMES
    emu.inject(fault, times=times, route=_route(api, where), delay_s=SLOW_HOLD_S if slow else None)

    error: EvalctlError | None = None
    result: evalctl.CancelResult | None = None
    try:
        result = evalctl.cancel_eval_task(task_id, api=api.name, retry=policy)
    except EvalctlError as raised:
        error = raised

    details = len(emu.requests_to(api.detail_fault_route))
    stops = len(emu.stop_requests(task_id))
    if isinstance(expect.ending, str):
        assert error is None, f"expected {expect.ending}, got {error!r}"
        assert result is not None
        assert expect.ending == result.outcome
        assert details + stops == result.attempts
    else:
        assert isinstance(error, expect.ending), f"expected {expect.ending.__name__}: {error!r}"
        if isinstance(error, RetryExhaustedError):
            assert isinstance(error.last_error, LAST_ERROR[fault])
            assert error.attempts == MAX_ATTEMPTS
    assert (expect.details, expect.stops) == (details, stops)
    assert expect.waits == len(clock.sleeps)
    assert sum(clock.sleeps) <= policy.deadline
    # The result never disagrees with the server about what was done.
    assert ("Stopped" if expect.applied else "Doing") == emu.task(task_id).state


# --- a tight deadline ends a permanent fault on time -----------------------------------

DEADLINE_S = 5.0
#: Jitter off: waits 0.5, 1, 2 (cumulative 3.5 s); the next one (4 s) would end past 5 s.
PLAIN_WAITS = [0.5, 1.0, 2.0]
#: HTTP 429 carries `Retry-After: 1`, a floor under each wait.
RETRY_AFTER_WAITS = [1.0, 1.0, 2.0]

DEADLINE_ROWS = [
    pytest.param(fault, where, id=f"{fault}-{where}")
    for fault in (*RETRIED_HTTP, *RETRIED_CODES, "reset")
    for where in ("detail", "stop")
]


@pytest.mark.parametrize(("fault", "where"), DEADLINE_ROWS)
def test_a_permanent_fault_gives_up_at_the_deadline_not_after(
    fault: str, where: str, emu: Emulator, clock: VirtualClock
) -> None:
    """With attempts to spare, the deadline ends the retries; no wait runs past it."""
    api = APIS["v1"]
    policy = RetryPolicy(max_attempts=100, deadline=DEADLINE_S, jitter=False)
    task_id = emu.add_task()
    emu.inject(fault, times=PERMANENT_TIMES, route=_route(api, where))

    with pytest.raises(RetryExhaustedError) as raised:
        evalctl.cancel_eval_task(task_id, retry=policy)

    assert raised.value.why == "deadline"
    assert (RETRY_AFTER_WAITS if fault == "http_429" else PLAIN_WAITS) == clock.sleeps
    assert sum(clock.sleeps) <= DEADLINE_S
    attempts = len(PLAIN_WAITS) + 1
    failing = emu.requests_to(_route(api, where))
    assert attempts == len(failing)
    if where == "stop" and fault == "reset":
        # Every lost stop is looked at before anything else happens.
        assert 1 + attempts == len(emu.requests_to(api.detail_fault_route))
    assert emu.task(task_id).state == "Doing"
