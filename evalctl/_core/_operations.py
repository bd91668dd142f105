"""The operations, written once as generators of effects (see `_runner`).

`request` holds every rule of one request: which failures are retried
(`_retry.is_transient`), the policy's attempts and deadline, the batch's
retry budget, `Retry-After` and backoff, and — for a stop — what happens
after a failure that may have been applied: a fresh detail read, a fresh
verdict and a fresh clearance before anything is sent again. `describe`,
`cancel` and `call_action` build on it; the drivers only send and sleep, so
the sync and async APIs run the very same code.

`RetryExhaustedError.attempts` always means one thing: the requests sent for
the request that gave up (a stop's resends included, the reads in between not).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, Literal, TypeVar

from qianfan.resources.typing import QfResponse

from evalctl._base import _api, _logging
from evalctl._base._defaults import WAIT_POLL_FACTOR, WAIT_POLL_INITIAL_S, WAIT_POLL_MAX_S
from evalctl._base._errors import (
    CancelRejectedError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    PrecheckError,
    RetryExhaustedError,
    StopUnconfirmedError,
    TaskNotFoundError,
    WaitTimeoutError,
)
from evalctl._base._ids import TaskId, validate_task_id
from evalctl._base._model import CancelResult, EvalTask, Outcome
from evalctl._core._failures import Purpose, error_for, plain_error
from evalctl._core._retry import backoff, is_throttle, is_transient
from evalctl._core._runner import Operation, Pause, Send, Session, Throttle
from evalctl._safety._generations import Generation, parse_detail, stop_generation
from evalctl._safety._precheck import Verdict, decide
from evalctl._safety._stopguard import Clearance, check_stop_body
from evalctl._wire._transport import Failure, Reply

T = TypeVar("T")

#: How a drop-in stop answer that evalctl made up (nothing was sent) is marked.
SYNTHESIZED_HEADER: Final = "X-Evalctl-Synthesized"
SYNTHESIZED_KEY: Final = "evalctl"

_FINAL_STATES: Final = frozenset({_api.V1_STOPPED}) | _api.FINISHED_STATES


@dataclass(frozen=True)
class Request:
    """One request as the operations see it (before any attempt).

    Attributes:
        purpose: "detail", "stop" or "call" — for log events.
        errors: Which public errors a failure maps to (`_failures`); the
            drop-in's stop keeps the SDK's error types ("call").
    """

    purpose: Purpose
    route: str
    action: str
    body: Mapping[str, Any]
    task_id: str | None = None
    errors: Purpose | None = None


#: For a stop: given the failure that may have been applied (or None when it
#: was not), return a new clearance for the next send, or the request's result.
Reclear = Callable[[Failure | None], Operation[Clearance | T]]
GiveUp = Literal["attempts", "deadline", "budget"]


def request(
    session: Session,
    req: Request,
    read: Callable[[Reply], T],
    *,
    clearance: Clearance | None = None,
    reclear: Reclear[T] | None = None,
    verify_final: bool = True,
) -> Operation[T]:
    """Send `req` until it is answered or a rule says stop; return `read(reply)`.

    After a failed attempt, in this order: a failure that may have been
    applied is verified first (`reclear`, stops only; it may end the request);
    a failure that is not transient raises its public error; then the
    request gives up when no attempt is left, when the wait would end past
    the deadline, or when the batch's budget cannot pay for the retry;
    otherwise it waits (backoff, at least `Retry-After`) and tries again. A
    `read` raising `InvalidResponseError` counts as an answer that may have
    been applied. `verify_final=False`: verify only before a resend, not
    after a failure that is not retried (the drop-in then raises the
    server's answer as the SDK would; the cancel verifies to report the outcome).

    Raises:
        RetryExhaustedError: attempts, deadline or budget (`why`).
        EvalctlError: the failure's public error (`_failures.error_for`).
    """
    policy = session.policy
    route_key = f"{req.route}?Action={req.action}" if req.action else req.route
    attempt = 0
    last: EvalctlError | None = None
    while True:
        yield Throttle()  # before the timeout is set: the limiter's wait is not the attempt's
        timeout = min(policy.attempt_timeout, session.remaining())
        if timeout <= 0:
            raise RetryExhaustedError(attempt, last, session.log_ids, why="deadline")
        attempt += 1
        session.attempts += 1
        started = time.perf_counter()
        send = Send(req.route, req.action, req.body, timeout, clearance, req.purpose, req.task_id)
        clearance = None  # used: a resend needs a new one
        # The reply goes straight to `_answer`: never kept in this frame.
        answer = _answer(session, req, attempt, started, read, route_key, (yield send))
        if not isinstance(answer, _Failed):
            return answer.value
        failure = answer.failure
        last = plain_error(failure)
        transient = is_transient(failure, policy)
        verified = failure.maybe_applied and reclear is not None and (transient or verify_final)
        if verified:
            _attempt_event(req, attempt, started, failure, "error")
            assert reclear is not None
            renewed = yield from reclear(failure)
            if not isinstance(renewed, Clearance):
                return renewed
            clearance = renewed
        if not transient:
            if not verified:
                _attempt_event(req, attempt, started, failure, "error")
            raise error_for(failure, req.errors or req.purpose, req.task_id)
        wait = backoff(policy, attempt, failure.retry_after)
        why = _give_up(session, attempt, wait, failure, route_key)
        if why is not None:
            if not verified:
                _attempt_event(req, attempt, started, failure, "error", gave_up=why)
            raise RetryExhaustedError(attempt, last, session.log_ids, why=why)
        if not verified:
            _attempt_event(req, attempt, started, failure, "retry", wait_s=round(wait, 3))
            if reclear is not None:  # not applied: the verdict stands, decided again
                renewed = yield from reclear(None)
                if not isinstance(renewed, Clearance):
                    return renewed
                clearance = renewed
        yield Pause(wait)


def _give_up(
    session: Session, attempt: int, wait: float, failure: Failure, route_key: str
) -> GiveUp | None:
    if attempt >= session.policy.max_attempts:
        return "attempts"
    # A wait ending past the deadline stops now instead of sleeping into it.
    if session.clock.monotonic() + wait >= session.deadline:
        return "deadline"
    if session.budget is not None and not session.budget.withdraw(failure, route_key):
        return "budget"
    return None


@dataclass(frozen=True)
class _Answered(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    failure: Failure


def _answer(
    session: Session,
    req: Request,
    attempt: int,
    started: float,
    read: Callable[[Reply], T],
    route_key: str,
    answer: Reply | Failure,
) -> _Answered[T] | _Failed:
    """Account for one attempt's answer; read a reply (a bad one becomes a failure)."""
    log_id = answer.log_id
    if log_id:
        session.log_ids.append(log_id)
    throttled = isinstance(answer, Failure) and is_throttle(answer)
    if session.limiter is not None:
        retry_after = answer.retry_after if isinstance(answer, Failure) and throttled else None
        session.limiter.feedback(throttled=throttled, retry_after=retry_after)
    if isinstance(answer, Failure):
        return _Failed(answer)
    if session.budget is not None:
        session.budget.refund(route_key)
    _logging.request_event(
        route=req.route,
        action=req.action,
        attempt=attempt,
        outcome="ok",
        log_id=log_id,
        http_status=answer.status,
        error_code=None,
        duration_ms=(time.perf_counter() - started) * 1000,
        task_id=req.task_id,
        purpose=req.purpose,
    )
    try:
        return _Answered(read(answer))
    except InvalidResponseError as error:
        # A 2xx answer without the expected fields: it may have been applied.
        return _Failed(
            Failure(
                "malformed",
                error.reason,
                http_status=answer.status,
                log_id=log_id,
                maybe_applied=True,
            )
        )


def _attempt_event(
    req: Request,
    attempt: int,
    started: float,
    failure: Failure,
    outcome: _logging.RequestOutcome,
    **extra: Any,
) -> None:
    _logging.request_event(
        route=req.route,
        action=req.action,
        attempt=attempt,
        outcome=outcome,
        log_id=failure.log_id,
        http_status=failure.http_status,
        error_code=failure.error_code,
        duration_ms=(time.perf_counter() - started) * 1000,
        task_id=req.task_id,
        purpose=req.purpose,
        error=failure.message,
        **extra,
    )


# --- the operations ---------------------------------------------------------------


def describe(generation: Generation, task_id: TaskId, session: Session) -> Operation[EvalTask]:
    """Read and parse the task detail (its app secrets dropped as it is read)."""
    req = Request(
        "detail",
        generation.detail_route,
        generation.detail_action,
        generation.body(task_id),
        str(task_id),
    )

    def read(reply: Reply) -> EvalTask:
        return parse_detail(
            generation,
            reply.body,
            task_id,
            reply.log_id,
            session.redactor,
            duplicate_keys=reply.duplicate_keys,  # a key twice: ambiguous, fail closed
        )

    return (yield from request(session, req, read))


def cancel(generation: Generation, task_id: TaskId, session: Session) -> Operation[CancelResult]:
    """Pre-check, then stop unless the pre-check says otherwise; optionally wait.

    Errors raised after the pre-check read carry `.state`: the state it read.
    """
    options = session.options
    task = yield from describe(generation, task_id, session)
    try:
        verdict = decide(task)
        outcome: Outcome
        state_after = task.state
        if verdict is Verdict.ALREADY_STOPPED:
            outcome = "already_stopped"
        elif verdict is Verdict.NOT_RUNNING:
            outcome = "not_running"
        else:
            if session.cleared is not None:
                session.cleared(task)
            if options.dry_run:
                outcome = "dry_run"
            else:
                first = Clearance(generation, task_id)  # right after decide() said STOP
                outcome, state_after = yield from _stop(generation, task, session, first)
        result = _result(session, str(task_id), task.state, outcome, state_after)
        # A task found Stopping is waited for like one just stopped: wait means Stopped.
        waits = outcome in ("cancelled", "already_stopped")
        if options.wait and waits and state_after not in _FINAL_STATES:
            result = yield from _wait_stopped(generation, task_id, session, result)
    except EvalctlError as error:
        if error.state is None:
            error.state = task.state
        raise
    _logging.cancel_event(
        task_id=result.task_id,
        outcome=result.outcome,
        log_id=result.log_ids[-1] if result.log_ids else None,
        state_before=result.state_before,
        state_after=result.state_after,
        attempts=result.attempts,
    )
    return result


def _result(
    session: Session,
    task_id: str,
    state_before: str | None,
    outcome: Outcome,
    state_after: str | None,
) -> CancelResult:
    return CancelResult(
        task_id=task_id,  # as sent
        outcome=outcome,
        state_before=state_before,
        state_after=state_after,
        log_ids=tuple(session.log_ids),
        attempts=session.attempts,
    )


@dataclass(frozen=True)
class _StopAnswer:
    """What the stop route said: accepted or not (with its redacted reason)."""

    accepted: bool
    reason: str
    log_id: str | None


_Stopped = tuple[Outcome, str | None]


def _stop(
    generation: Generation, task: EvalTask, session: Session, clearance: Clearance
) -> Operation[_Stopped]:
    """Send the stop; before any resend a fresh verdict, after a read if it may have worked."""
    task_id = clearance.task_id
    req = Request(
        "stop",
        generation.stop_route,
        generation.stop_action,
        generation.body(task_id),
        str(task_id),
    )
    redactor = session.redactor

    def read(reply: Reply) -> _StopAnswer | _Stopped:
        accepted, message = generation.read_stop(reply.body)
        return _StopAnswer(accepted, redactor(message), reply.log_id)  # server text: redacted

    latest = task

    def reclear(failure: Failure | None) -> Operation[Clearance | _StopAnswer | _Stopped]:
        nonlocal latest
        latest, verdict = yield from _decide_again(generation, task_id, latest, session, failure)
        if verdict is Verdict.STOP:
            return Clearance(generation, task_id)
        # Stopping/Stopped after our lost stop: ours went through.
        return ("cancelled" if verdict is Verdict.ALREADY_STOPPED else "not_running"), latest.state

    ended = yield from request(session, req, read, clearance=clearance, reclear=reclear)
    if not isinstance(ended, _StopAnswer):
        return ended
    if not ended.accepted:
        raise CancelRejectedError(str(task_id), None, ended.reason, ended.log_id)
    return "cancelled", _api.V1_STOPPING


def _decide_again(
    generation: Generation,
    task_id: TaskId,
    latest: EvalTask,
    session: Session,
    failure: Failure | None,
) -> Operation[tuple[EvalTask, Verdict]]:
    """The verdict before a stop is sent again, on a fresh read if it may have been applied.

    `failure` None: the last stop was certainly not applied; the task read
    last is decided again (a clearance follows only a verdict).
    """
    if failure is None:
        return latest, decide(latest)
    return (yield from _verify(generation, task_id, latest, session, failure))


def _verify(
    generation: Generation,
    task_id: TaskId,
    before: EvalTask,
    session: Session,
    failure: Failure,
) -> Operation[tuple[EvalTask, Verdict]]:
    """Read the detail and decide again after a stop that may have been applied.

    Raises:
        StopUnconfirmedError: the read failed or could not be understood; a
            stop may have been sent (`__cause__` says why it is unconfirmed).
        ManualEvaluationError, TaskNotFoundError: what the read showed.
    """
    try:
        seen = yield from describe(generation, task_id, session)
    except TaskNotFoundError:
        raise
    except EvalctlError as error:
        raise _unconfirmed(task_id, before, session, failure, error) from error
    try:
        verdict = decide(seen)
    except PrecheckError as error:
        raise _unconfirmed(task_id, before, session, failure, error) from error
    _logging.event(
        "info",
        _logging.VERIFY_EVENT,
        task_id=str(task_id),
        state=seen.state,
        after=failure.message,
        log_id=seen.log_id,
    )
    return seen, verdict


def _unconfirmed(
    task_id: TaskId, before: EvalTask, session: Session, failure: Failure, error: EvalctlError
) -> StopUnconfirmedError:
    return StopUnconfirmedError(
        str(task_id),
        f"the stop failed ({failure.message}) and the detail read after it failed: {error}",
        session.log_ids,
        state=before.state,
    )


def _wait_stopped(
    generation: Generation, task_id: TaskId, session: Session, result: CancelResult
) -> Operation[CancelResult]:
    """Poll the detail with growing pauses until Stopped (or finished), or time out."""
    timeout = session.options.wait_timeout
    clock = session.clock
    end = clock.monotonic() + timeout
    session.extend_deadline(end)
    pause = WAIT_POLL_INITIAL_S
    state = result.state_after
    try:
        while True:
            yield Pause(max(0.0, min(pause, end - clock.monotonic())))
            pause = min(pause * WAIT_POLL_FACTOR, WAIT_POLL_MAX_S)
            state = (yield from describe(generation, task_id, session)).state
            if state in _FINAL_STATES or clock.monotonic() >= end:
                break
    except EvalctlError as error:
        # The stop went through; a failed poll must not hide that.
        raise WaitTimeoutError(_polled(session, result, state), timeout, cause=error) from error
    polled = _polled(session, result, state)
    if state not in _FINAL_STATES:
        raise WaitTimeoutError(polled, timeout)
    return polled


def _polled(session: Session, result: CancelResult, state: str | None) -> CancelResult:
    return replace(
        result, state_after=state, log_ids=tuple(session.log_ids), attempts=session.attempts
    )


def call_action(
    route: str, action: str, params: Mapping[str, Any], session: Session
) -> Operation[QfResponse]:
    """The drop-in `call_action`: any console call, with the pre-check before a stop.

    A stop is sent on the caller's route with a body built from the
    validated id; the caller's `params` are read once, for that id. Every
    stop request follows a STOP verdict for this task in this operation;
    after an ambiguous failure a fresh detail read comes first. A task that
    is not running (Stopping/Stopped, or finished) gets no stop: the answer
    is synthesized (`unsent_stop_answer`).
    """
    generation = stop_generation(route, action)
    if generation is None:
        return (yield from request(session, Request("call", route, action, params), _response))
    body = dict(params)  # the caller's object is read once, here
    task_id = validate_task_id(body.get(generation.id_field), generation.name)
    check_stop_body(generation, body)  # exactly the id field, nothing else
    task = yield from describe(generation, task_id, session)
    if decide(task) is not Verdict.STOP:  # refuses manual and undecided tasks
        return unsent_stop_answer(generation, task, "precheck")
    first = Clearance(generation, task_id)  # right after decide() said STOP
    # The caller's route as given: the send boundary refuses a spelling that is
    # not exactly the stop route, rather than guess what it meant.
    req = Request("stop", route, action, generation.body(task_id), str(task_id), "call")
    latest = task

    def reclear(failure: Failure | None) -> Operation[Clearance | QfResponse]:
        nonlocal latest
        latest, verdict = yield from _decide_again(generation, task_id, latest, session, failure)
        if verdict is Verdict.STOP:
            return Clearance(generation, task_id)
        return unsent_stop_answer(generation, latest, "verification")

    return (
        yield from request(
            session, req, _response, clearance=first, reclear=reclear, verify_final=False
        )
    )


def unsent_stop_answer(generation: Generation, task: EvalTask, after: str) -> QfResponse:
    """The drop-in's answer to a stop it did not send: the task was not running.

    What the server answers such a stop, in the route's shape, marked as
    evalctl's: an ``evalctl`` key (``synthesized: true``, ``reason``,
    ``state`` seen) and the `X-Evalctl-Synthesized` header (the reason);
    `log_id`/`requestId` is the detail read's that showed it. Stopping or
    Stopped (``reason`` ``stop_verified`` after a lost stop of ours, else
    ``already_stopped``): a success, v1 ``{"result": {"result": true}}``, v2
    ``{"result": {}}``. Finished (``not_running``): v1 ``{"result": {"result":
    false, "errorMessage": ...}}``; v2 raises `HTTPStatusError` 400
    ``InvalidOperation``, as the server does.

    Args:
        after: "precheck" (nothing was sent) or "verification" (after a lost stop).

    Raises:
        HTTPStatusError: v2, the task has finished.
    """
    stopping = task.state in _api.STOPPED_STATES
    if stopping:
        reason = "stop_verified" if after == "verification" else "already_stopped"
    else:
        reason = "not_running"
    message = "" if stopping else _api.REFUSE_FINISHED_MESSAGE
    if generation.name == "v2" and not stopping:
        raise HTTPStatusError(
            400,
            _api.V2_INVALID_OPERATION_CODE,
            f"{message} (state {task.state}; evalctl sent no stop)",
            task.log_id,
        )
    marker = {"synthesized": True, "reason": reason, "state": task.state}
    body: dict[str, Any]
    if generation.name == "v1":
        body = {"log_id": task.log_id, "result": {"result": stopping, "errorMessage": message}}
    else:
        body = {"requestId": task.log_id, "result": {}}
    body[SYNTHESIZED_KEY] = marker
    return QfResponse(
        code=200,
        headers={"Content-Type": "application/json", SYNTHESIZED_HEADER: reason},
        body=body,
    )


def _response(reply: Reply) -> QfResponse:
    return reply.to_qf_response()
