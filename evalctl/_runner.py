"""Running operations: the attempt loop and the sync/async drivers.

Operations (`_operations`) are generators that yield effects — `Call` (send
this request, with retries) and `Pause` — and receive the results. They hold
every decision. The two drivers here only differ in how they send and sleep,
so the sync and async APIs cannot drift apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from qianfan.resources.typing import QfResponse
from tenacity import AsyncRetrying, RetryCallState, Retrying

from evalctl import _logging
from evalctl._config import Clock, RetryPolicy
from evalctl._credentials import Credentials
from evalctl._errors import EvalctlError, RetryExhaustedError
from evalctl._redact import Redactor
from evalctl._retry import GiveUp, RetryBudget, Stop, Wait, is_throttle, retry_predicate
from evalctl._stopguard import Clearance
from evalctl._transport import AttemptFailed, Failure, Wire, asend, log_id_of, send

T = TypeVar("T")


class RateLimiter(Protocol):
    """A client-side limit shared by many operations (the batch's token bucket)."""

    def acquire(self, clock: Clock) -> None:
        """Block until a request may be sent."""
        ...

    async def aacquire(self, clock: Clock) -> None:
        """Wait until a request may be sent."""
        ...

    def feedback(self, throttled: bool) -> None:
        """Learn from one answer: throttled (429, codes 4/18) or not."""
        ...


@dataclass(frozen=True)
class Call:
    """Effect: send this request, retrying transient failures.

    Attributes:
        purpose: "detail", "stop" or "call" — for log events.
        surface_ambiguous: Do not resend after a failure that may have been
            applied (a stop): raise `AmbiguousFailure` to the operation instead.
        attempt_offset: Attempts already spent on this request by the
            operation (resends after an ambiguous failure share the budget).
        clearance: For a stop: the pre-check's clearance for this task.
    """

    route: str
    action: str
    params: Mapping[str, Any]
    purpose: str
    task_id: str | None = None
    surface_ambiguous: bool = False
    attempt_offset: int = 0
    clearance: Clearance | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Pause:
    """Effect: wait this many seconds (on the operation's clock)."""

    seconds: float


Effect = Call | Pause
Operation = Generator[Effect, Any, T]


class AmbiguousFailure(Exception):
    """Internal: a `surface_ambiguous` call failed in a way that may have been applied."""

    def __init__(self, failure: Failure, attempts: int) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.attempts = attempts
        self.error = failure.to_error()


@dataclass(eq=False)
class Session:
    """Everything one operation's requests share.

    Not shared between operations, except `limiter` and `budget`, which are
    thread-safe and belong to a batch.
    """

    policy: RetryPolicy
    clock: Clock
    credentials: Credentials = field(repr=False)
    wire: Wire = field(repr=False)
    redactor: Redactor = field(repr=False)
    deadline: float
    attempt_timeout: float
    limiter: RateLimiter | None = None
    budget: RetryBudget | None = None
    log_ids: list[str] = field(default_factory=list)
    attempts: int = 0
    host: str | None = None

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def extend_deadline(self, until: float) -> None:
        self.deadline = max(self.deadline, until)


class _CallState:
    """Bookkeeping of one `Call` across its attempts."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.attempt = call.attempt_offset
        self.started = 0.0
        self.give_up = GiveUp()
        self.sent_with_clearance = False

    def clearance(self) -> Clearance | None:
        """The clearance for this attempt.

        A stop is retried within one `Call` only after a failure that was
        certainly not applied (`surface_ambiguous`): the pre-check's verdict
        still stands, so such a retry gets a fresh clearance for the same
        task. An ambiguous failure goes back to the operation instead.
        """
        given = self.call.clearance
        if given is None:
            return None
        if not self.sent_with_clearance:
            self.sent_with_clearance = True
            return given
        return Clearance(given.generation, given.task_id)


# --- one attempt ----------------------------------------------------------------


def _begin(state: _CallState, session: Session) -> float:
    """Count the attempt; return its timeout. Raises when the deadline has passed."""
    remaining = session.remaining()
    if remaining <= 0:
        raise RetryExhaustedError(session.attempts, None, session.log_ids, why="deadline")
    state.attempt += 1
    session.attempts += 1
    state.started = time.perf_counter()
    return min(session.attempt_timeout, remaining)


def _succeeded(state: _CallState, session: Session, reply: QfResponse) -> None:
    log_id = log_id_of(reply.body, session.redactor)
    if log_id:
        session.log_ids.append(log_id)
    if session.limiter is not None:
        session.limiter.feedback(throttled=False)
    if session.budget is not None:
        session.budget.refund()
    _attempt_event(state, "ok", log_id=log_id, http_status=reply.code, error_code=None)


def _failed(state: _CallState, session: Session, failed: AttemptFailed) -> None:
    failure = failed.failure
    if failure.log_id:
        session.log_ids.append(failure.log_id)
    if session.limiter is not None:
        session.limiter.feedback(throttled=is_throttle(failure))
    failed.duration_ms = (time.perf_counter() - state.started) * 1000
    failed.attempt = state.attempt


def _attempt_event(
    state: _CallState,
    outcome: _logging.RequestOutcome,
    *,
    log_id: str | None,
    http_status: int | None,
    error_code: int | str | None,
    attempt: int | None = None,
    duration_ms: float | None = None,
    **extra: Any,
) -> None:
    call = state.call
    _logging.request_event(
        route=call.route,
        action=call.action,
        attempt=attempt if attempt is not None else state.attempt,
        outcome=outcome,
        log_id=log_id,
        http_status=http_status,
        error_code=error_code,
        duration_ms=duration_ms
        if duration_ms is not None
        else (time.perf_counter() - state.started) * 1000,
        task_id=call.task_id,
        purpose=call.purpose,
        **extra,
    )


def _failure_event(
    state: _CallState, failed: AttemptFailed, outcome: _logging.RequestOutcome, **extra: Any
) -> None:
    failure = failed.failure
    _attempt_event(
        state,
        outcome,
        log_id=failure.log_id,
        http_status=failure.http_status,
        error_code=failure.error_code,
        attempt=failed.attempt,
        duration_ms=failed.duration_ms,
        error=failure.message,
        **extra,
    )


def _sync_attempt(state: _CallState, session: Session) -> QfResponse:
    # The limiter first: its wait must not eat into this attempt's timeout.
    if session.limiter is not None:
        session.limiter.acquire(session.clock)
    timeout = _begin(state, session)
    call = state.call
    try:
        reply = send(
            session.wire,
            call.route,
            call.action,
            call.params,
            session.credentials,
            state.clearance(),
            timeout,
            session.redactor,
            host=session.host,
        ).to_qf_response()
    except AttemptFailed as failed:
        _failed(state, session, failed)
        raise
    _succeeded(state, session, reply)
    return reply


async def _async_attempt(state: _CallState, session: Session) -> QfResponse:
    # The limiter first: its wait must not eat into this attempt's timeout.
    if session.limiter is not None:
        await session.limiter.aacquire(session.clock)
    timeout = _begin(state, session)
    call = state.call
    try:
        sent = await asend(
            session.wire,
            call.route,
            call.action,
            call.params,
            session.credentials,
            state.clearance(),
            timeout,
            session.redactor,
            host=session.host,
        )
        reply = sent.to_qf_response()
    except AttemptFailed as failed:
        _failed(state, session, failed)
        raise
    _succeeded(state, session, reply)
    return reply


# --- the retry loop -----------------------------------------------------------


def _retry_settings(state: _CallState, session: Session) -> dict[str, Any]:
    """Tenacity settings shared by `Retrying` and `AsyncRetrying`."""
    policy = session.policy
    call = state.call

    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, AttemptFailed):
            _failure_event(state, exc, "retry", wait_s=round(retry_state.upcoming_sleep, 3))

    def exhausted(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        last: EvalctlError | None = None
        if isinstance(exc, AttemptFailed):
            _failure_event(state, exc, "error", gave_up=state.give_up.why)
            last = exc.failure.to_error()
        raise RetryExhaustedError(
            state.attempt, last, session.log_ids, why=state.give_up.why
        ) from last

    return {
        "retry": retry_predicate(policy, call.surface_ambiguous),
        "wait": Wait(policy, call.attempt_offset),
        "stop": Stop(
            policy,
            call.attempt_offset,
            lambda: session.deadline,
            session.clock,
            session.budget,
            state.give_up,
        ),
        "before_sleep": before_sleep,
        "retry_error_callback": exhausted,
        "reraise": True,
    }


def _final_error(state: _CallState, failed: AttemptFailed) -> Exception:
    """The error for a failure that is not retried."""
    _failure_event(state, failed, "error")
    if state.call.surface_ambiguous and failed.failure.maybe_applied:
        return AmbiguousFailure(failed.failure, state.attempt - state.call.attempt_offset)
    return failed.failure.to_error()


def perform(call: Call, session: Session) -> QfResponse:
    """Send `call` with retries (sync)."""
    state = _CallState(call)
    retrying = Retrying(sleep=session.clock.sleep, **_retry_settings(state, session))
    try:
        return retrying(_sync_attempt, state, session)
    except AttemptFailed as failed:
        raise _final_error(state, failed) from None


async def aperform(call: Call, session: Session) -> QfResponse:
    """Send `call` with retries (async)."""
    state = _CallState(call)
    retrying = AsyncRetrying(sleep=session.clock.asleep, **_retry_settings(state, session))
    try:
        return await retrying(_async_attempt, state, session)
    except AttemptFailed as failed:
        raise _final_error(state, failed) from None


# --- the drivers ----------------------------------------------------------------

# What an operation may receive thrown back at it: our errors and ambiguity.
_FLOW_ERRORS = (EvalctlError, AmbiguousFailure)


def run(operation: Operation[T], session: Session) -> T:
    """Drive `operation` to its result, sending and sleeping synchronously."""
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = operation.throw(error) if error else operation.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            try:
                if isinstance(effect, Pause):
                    session.clock.sleep(effect.seconds)
                else:
                    reply = perform(effect, session)
            except _FLOW_ERRORS as exc:
                error = exc
    finally:
        operation.close()


async def arun(operation: Operation[T], session: Session) -> T:
    """Drive `operation` to its result, sending and sleeping asynchronously.

    If the awaiting task is cancelled, nothing more is sent; an
    `evalctl.interrupted` event says what was in flight.
    """
    reply: Any = None
    error: BaseException | None = None
    effect: Effect | None = None
    # Any stop sent so far, not only one in flight: a stop accepted (or lost
    # ambiguously) before a later detail read was interrupted still went out.
    stop_sent = False
    task_id: str | None = None
    try:
        while True:
            try:
                effect = operation.throw(error) if error else operation.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            try:
                if isinstance(effect, Pause):
                    await session.clock.asleep(effect.seconds)
                else:
                    stop_sent = stop_sent or effect.purpose == "stop"
                    task_id = effect.task_id or task_id
                    reply = await aperform(effect, session)
            except _FLOW_ERRORS as exc:
                error = exc
    except asyncio.CancelledError:
        call = effect if isinstance(effect, Call) else None
        _logging.event(
            "warning",
            _logging.INTERRUPTED_EVENT,
            task_id=task_id,
            in_flight=call.purpose if call else None,
            stop_maybe_sent=stop_sent,
            attempts=session.attempts,
            log_ids=list(session.log_ids),
        )
        raise
    finally:
        operation.close()
