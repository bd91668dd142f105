"""The operations, written once as generators of effects (see `_runner`).

`describe`, `cancel` and `call_action` decide everything here: which request
comes next, what an answer means, which error to raise. They never do I/O
themselves, so the sync and async APIs run the very same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from qianfan.resources.typing import QfResponse

from evalctl import _api, _logging
from evalctl._config import WAIT_POLL_FACTOR, WAIT_POLL_INITIAL_S, WAIT_POLL_MAX_S
from evalctl._errors import (
    APICallError,
    AuthenticationError,
    CancelRejectedError,
    ConfigurationError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    PrecheckError,
    RetryExhaustedError,
    ServerError,
    TaskNotFoundError,
    WaitTimeoutError,
)
from evalctl._generations import Generation, is_not_found, parse_detail, stop_generation
from evalctl._ids import TaskId, validate_task_id
from evalctl._model import CancelResult, EvalTask, Outcome
from evalctl._precheck import Verdict, decide
from evalctl._retry import backoff, is_transient
from evalctl._runner import AmbiguousFailure, Call, Operation, Pause, Session
from evalctl._stopguard import Clearance
from evalctl._transport import Failure, log_id_of


def describe(generation: Generation, task_id: TaskId, session: Session) -> Operation[EvalTask]:
    """Read and parse the task detail."""
    call = Call(
        generation.detail_route,
        generation.detail_action,
        generation.body(task_id),
        "detail",
        str(task_id),
    )
    try:
        reply: QfResponse = yield call
    except EvalctlError as error:
        raise _detail_error(error, task_id) from error
    body = reply.body
    log_id = log_id_of(body, session.redactor)
    return parse_detail(generation, body, task_id, log_id, session.redactor)


def cancel(
    generation: Generation,
    task_id: TaskId,
    session: Session,
    *,
    dry_run: bool,
    wait: bool,
    wait_timeout: float,
) -> Operation[CancelResult]:
    """Pre-check, then stop unless the pre-check says otherwise; optionally wait."""
    task = yield from describe(generation, task_id, session)
    verdict = decide(task)
    outcome: Outcome
    state_after = task.state
    if verdict is Verdict.ALREADY_STOPPED:
        outcome = "already_stopped"
    elif verdict is Verdict.NOT_RUNNING:
        outcome = "not_running"
    elif dry_run:
        outcome = "dry_run"
    else:
        outcome, state_after = yield from _stop(generation, task_id, session)
    result = CancelResult(
        task_id=str(task_id),
        outcome=outcome,
        state_before=task.state,
        state_after=state_after,
        log_ids=tuple(session.log_ids),
        attempts=session.attempts,
    )
    if wait and outcome == "cancelled" and state_after not in _FINAL_STATES:
        try:
            state_after = yield from _wait_stopped(
                generation, task_id, session, wait_timeout, result
            )
        except WaitTimeoutError:
            raise
        except EvalctlError as error:
            # The stop went through; a failed poll must not hide that.
            polled = replace(result, log_ids=tuple(session.log_ids), attempts=session.attempts)
            raise WaitTimeoutError(polled, wait_timeout, cause=error) from error
        result = replace(
            result,
            state_after=state_after,
            log_ids=tuple(session.log_ids),
            attempts=session.attempts,
        )
    _logging.cancel_event(
        task_id=result.task_id,
        outcome=result.outcome,
        log_id=result.log_ids[-1] if result.log_ids else None,
        state_before=result.state_before,
        state_after=result.state_after,
        attempts=result.attempts,
    )
    return result


def call_action(
    route: str, action: str, params: Mapping[str, Any], session: Session
) -> Operation[QfResponse]:
    """The drop-in `call_action`: any console call, with the pre-check before a stop.

    Every stop request is preceded by a fresh pre-check read, resends after an
    ambiguous failure included. Apart from refusing manual or undecidable
    tasks, the caller's request is sent as given and its answer returned as is.
    """
    generation = stop_generation(route, action)
    if generation is None:
        reply: QfResponse = yield Call(route, action, params, "call")
        return reply
    task_id = validate_task_id(params.get(generation.id_field), generation.name)
    spent = 0
    while True:
        task = yield from describe(generation, task_id, session)
        decide(task)
        clearance = Clearance(generation, task_id)
        call = Call(route, action, params, "stop", str(task_id), True, spent, clearance)
        try:
            reply = yield call
        except AmbiguousFailure as ambiguous:
            spent += ambiguous.attempts
            yield from _before_resend(ambiguous, spent, session)
            continue
        return reply


def _stop(
    generation: Generation, task_id: TaskId, session: Session
) -> Operation[tuple[Outcome, str | None]]:
    """Send the stop; after an ambiguous failure, look before sending it again."""
    spent = 0
    while True:
        call = Call(
            generation.stop_route,
            generation.stop_action,
            generation.body(task_id),
            "stop",
            str(task_id),
            surface_ambiguous=True,
            attempt_offset=spent,
            # Issued after `decide` allowed the stop: in `cancel` before the
            # first pass, after the fresh read below before any resend.
            clearance=Clearance(generation, task_id),
        )
        try:
            reply: QfResponse = yield call
        except AmbiguousFailure as failed:
            spent += failed.attempts
            ambiguous = failed
        except EvalctlError as error:
            raise _stop_error(error, task_id) from error
        else:
            log_id = log_id_of(reply.body, session.redactor)
            try:
                accepted, message = generation.read_stop(reply.body)
            except InvalidResponseError as error:
                # A 2xx answer without the expected fields: it may have been applied.
                spent += 1
                failure = Failure("malformed", error.reason, log_id=log_id, maybe_applied=True)
                ambiguous = AmbiguousFailure(failure, 1)
            else:
                if not accepted:
                    reason = session.redactor(message)  # server text, like any error message
                    raise CancelRejectedError(str(task_id), None, reason, log_id)
                return "cancelled", _api.V1_STOPPING
        task = yield from describe(generation, task_id, session)
        verdict = decide(task)
        _logging.event(
            "info",
            _logging.VERIFY_EVENT,
            task_id=str(task_id),
            state=task.state,
            after=ambiguous.failure.message,
            log_id=task.log_id,
        )
        if verdict is Verdict.ALREADY_STOPPED:
            return "cancelled", task.state
        if verdict is Verdict.NOT_RUNNING:
            return "not_running", task.state
        yield from _before_resend(ambiguous, spent, session)


def _before_resend(ambiguous: AmbiguousFailure, spent: int, session: Session) -> Operation[None]:
    """Give up, or pause as a retry would, before a stop is sent again."""
    policy = session.policy
    if not is_transient(ambiguous.failure, policy):
        raise ambiguous.error
    if spent >= policy.max_attempts:
        raise RetryExhaustedError(spent, ambiguous.error, session.log_ids) from ambiguous.error
    if session.budget is not None and not session.budget.withdraw(ambiguous.failure):
        raise RetryExhaustedError(spent, ambiguous.error, session.log_ids, why="budget")
    wait = backoff(policy, spent, None)
    if session.clock.monotonic() + wait >= session.deadline:
        raise RetryExhaustedError(spent, ambiguous.error, session.log_ids, why="deadline")
    yield Pause(wait)


def _wait_stopped(
    generation: Generation,
    task_id: TaskId,
    session: Session,
    timeout: float,
    result: CancelResult,
) -> Operation[str | None]:
    """Poll the detail with growing pauses until Stopped (or finished), or time out."""
    clock = session.clock
    end = clock.monotonic() + timeout
    session.extend_deadline(end)
    pause = WAIT_POLL_INITIAL_S
    state = result.state_after
    while True:
        yield Pause(max(0.0, min(pause, end - clock.monotonic())))
        pause = min(pause * WAIT_POLL_FACTOR, WAIT_POLL_MAX_S)
        task = yield from describe(generation, task_id, session)
        state = task.state
        if state in _FINAL_STATES:
            return state
        if clock.monotonic() >= end:
            raise WaitTimeoutError(
                replace(
                    result,
                    state_after=state,
                    log_ids=tuple(session.log_ids),
                    attempts=session.attempts,
                ),
                timeout,
            )


_FINAL_STATES = frozenset({_api.V1_STOPPED}) | _api.FINISHED_STATES


def _detail_error(error: EvalctlError, task_id: TaskId) -> EvalctlError:
    """What a failed detail read means for the pre-check."""
    if is_not_found(error):
        return TaskNotFoundError(str(task_id), getattr(error, "log_id", None))
    if isinstance(error, AuthenticationError | RetryExhaustedError | ConfigurationError):
        return error
    if isinstance(error, ServerError | InvalidResponseError):
        return PrecheckError(
            str(task_id), f"the detail could not be read ({error})", getattr(error, "log_id", None)
        )
    return error


def _stop_error(error: EvalctlError, task_id: TaskId) -> EvalctlError:
    """What a failed stop means."""
    if is_not_found(error):
        return TaskNotFoundError(str(task_id), getattr(error, "log_id", None))
    if isinstance(error, AuthenticationError):
        return error
    if isinstance(error, APICallError | HTTPStatusError):
        return CancelRejectedError(
            str(task_id), error.error_code, error.error_message, error.log_id
        )
    return error


def check_wait_timeout(value: object) -> float:
    """`wait_timeout` as seconds.

    Raises:
        ConfigurationError: not a finite number >= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"wait_timeout must be a number of seconds >= 0, got {value!r}")
    return float(value)
