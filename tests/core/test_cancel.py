"""cancel_eval_task / acancel_eval_task against the emulator, for v1 and v2.

Every test runs for sync and async, v1 and v2 (see conftest). "Zero stops"
is always checked at the emulator, which records every request it received,
including the ones a fault swallowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import events

from core.support import (
    FAIL_CLOSED,
    MANUAL_CASES,
    V1,
    V2,
    ApiSpec,
    Client,
    Flavour,
    request_log_ids,
)
from evalctl import (
    CancelRejectedError,
    CancelResult,
    EvalctlError,
    InvalidResponseError,
    InvalidTaskIdError,
    ManualEvaluationError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    TaskNotFoundError,
    TransportError,
    WaitTimeoutError,
)
from evalctl._base import _api
from evalctl._base._defaults import WAIT_POLL_INITIAL_S
from evalctl.emulator import Emulator, pointed_at
from evalctl.testing import VirtualClock

# --- stopping a task --------------------------------------------------------------


@pytest.mark.parametrize("modes", ["rule", " Rule , MODEL "])
def test_stops_a_running_automatic_task_with_one_stop_request(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]], modes: str
) -> None:
    """A running task without manual evaluation is stopped: one detail read, one stop."""
    for state in api.running_states:
        task_id = emulator.add_task(eval_mode=modes, state=state)
        logs.clear()

        result = client.cancel(task_id)

        log_ids = tuple(request_log_ids(logs))
        assert CancelResult(task_id, "cancelled", state, _api.V1_STOPPING, log_ids, 2) == result
        assert len(log_ids) == 2
        assert all(api.is_log_id(log_id) for log_id in log_ids)
        assert [api.params(task_id)] == [r.body for r in emulator.stop_requests(task_id)]
        assert emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)


def test_log_ids_are_every_server_log_id_in_order(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """`log_ids` lists the id of every answer, failed ones included, in the order received."""
    task_id = emulator.add_task()
    emulator.inject("http_503", route=api.detail_fault_route)
    emulator.inject("code_18", route=api.stop_fault_route)

    result = client.cancel(task_id)

    assert result.attempts == 4
    assert 4 == len(result.log_ids) == len(set(result.log_ids))
    assert request_log_ids(logs) == list(result.log_ids)
    assert [r.fault for r in emulator.requests] == ["http_503", None, "code_18", None]


def test_accepts_a_deprecated_integer_id_on_v1_with_a_warning(
    client: Client, emulator: Emulator
) -> None:
    """v1 still takes the old integer ids, with a DeprecationWarning; v2 refuses them unsent."""
    emulator.add_task("ame-first1")  # evaluationId 1

    if client.api.name == "v1":
        with pytest.warns(DeprecationWarning, match="deprecated"):
            result = client.cancel(1)
        assert (result.outcome, len(emulator.stop_requests())) == ("cancelled", 1)
    else:
        with pytest.raises(InvalidTaskIdError):
            client.cancel(1)
        assert emulator.requests == []


@pytest.mark.parametrize(
    "task_id",
    ["", "ame-аbc", None, -3],  # the full grid is in test_units
)
def test_refuses_a_malformed_id_before_any_request(
    client: Client, emulator: Emulator, task_id: object
) -> None:
    """A malformed id raises InvalidTaskIdError (a ValueError) and nothing is sent."""
    with pytest.raises(InvalidTaskIdError) as caught:
        client.cancel(task_id)

    assert isinstance(caught.value, ValueError)
    assert task_id == caught.value.task_id
    assert emulator.requests == []


# --- the manual-mode pre-check ----------------------------------------------------


@pytest.mark.parametrize(("modes", "which", "reported"), MANUAL_CASES)
def test_refuses_a_task_with_manual_evaluation_and_sends_no_stop(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    modes: str,
    which: str,
    reported: set[str],
) -> None:
    """Manual in the modes, or a manual state: ManualEvaluationError, zero stop requests."""
    state = api.state(which)
    task_id = emulator.add_task(eval_mode=modes, state=state)

    with pytest.raises(ManualEvaluationError) as caught:
        client.cancel(task_id)

    error = caught.value
    assert (task_id, frozenset(reported), state) == (error.task_id, error.eval_modes, error.state)
    assert request_log_ids(logs) == [error.log_id]
    assert emulator.stop_requests() == []
    assert (error.exit_code, error.kind) == (3, "manual_evaluation")


def test_dry_run_of_a_manual_task_still_refuses(client: Client, emulator: Emulator) -> None:
    """The pre-check runs on a dry run too, with the same verdict."""
    task_id = emulator.add_task(eval_mode="rule,manual")

    with pytest.raises(ManualEvaluationError):
        client.cancel(task_id, dry_run=True)

    assert emulator.stop_requests() == []


@pytest.mark.parametrize(
    "overrides", [case for _, case in FAIL_CLOSED], ids=[name for name, _ in FAIL_CLOSED]
)
def test_fails_closed_on_a_detail_it_cannot_decide_on(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    overrides: Callable[[ApiSpec], dict[str, Any]],
) -> None:
    """An unclear detail raises PrecheckError and sends no stop, though the task is stoppable."""
    task_id = emulator.add_task(eval_mode="rule", state=api.running_states[0], **overrides(api))

    with pytest.raises(PrecheckError) as caught:
        client.cancel(task_id)

    error = caught.value
    assert (task_id, 7) == (error.task_id, error.exit_code)
    assert error.reason
    assert request_log_ids(logs) == [error.log_id]
    assert emulator.stop_requests() == []


@pytest.mark.parametrize("fault", ["missing_fields", "not_json"])
def test_fails_closed_when_the_detail_answer_is_broken(
    client: Client, api: ApiSpec, emulator: Emulator, fault: str
) -> None:
    """A detail without its important fields, or not JSON at all: PrecheckError, no stop."""
    task_id = emulator.add_task()
    emulator.inject(fault, route=api.detail_fault_route)

    with pytest.raises(PrecheckError) as caught:
        client.cancel(task_id)

    assert task_id == caught.value.task_id
    assert len(emulator.requests) == 1  # not retried: the answer was not transient
    assert emulator.stop_requests() == []


def test_v1_fails_closed_when_the_standard_conf_is_not_an_object(
    flavour: Flavour, emulator: Emulator
) -> None:
    """v1: an `evalStandardConf` that is not an object says nothing about the modes."""
    task_id = emulator.add_task(detail_overrides={"evalStandardConf": "rule"})

    with pytest.raises(PrecheckError):
        Client(flavour, V1).cancel(task_id)

    assert emulator.stop_requests() == []


@pytest.mark.parametrize(
    "describe_overrides",
    [{"evalType": None}, {"evalType": "hybrid"}, {"evalType": 1}, {"evalType": "аuto"}],
    ids=["missing", "unknown", "a number", "cyrillic look-alike"],
)
def test_v2_fails_closed_on_an_eval_type_it_does_not_know(
    flavour: Flavour, emulator: Emulator, describe_overrides: dict[str, Any]
) -> None:
    """v2: `evalType` must be exactly manual or auto, else no stop."""
    task_id = emulator.add_task(state="Running", describe_overrides=describe_overrides)

    with pytest.raises(PrecheckError):
        Client(flavour, V2).cancel(task_id)

    assert emulator.stop_requests() == []


def test_v2_refuses_a_manual_eval_type_even_when_the_modes_say_otherwise(
    flavour: Flavour, emulator: Emulator
) -> None:
    """v2: any manual signal wins: evalType manual with evalMode rule is refused."""
    task_id = emulator.add_task(describe_overrides={"evalType": "manual", "evalMode": "rule"})

    with pytest.raises(ManualEvaluationError):
        Client(flavour, V2).cancel(task_id)

    assert emulator.stop_requests() == []


# --- tasks that need no stop ------------------------------------------------------


def test_a_stopping_or_stopped_task_is_already_stopped(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """Stopping/Stopped: outcome already_stopped, state unchanged, no stop sent."""
    for state in api.stopping_states:
        task_id = emulator.add_task(state=state)

        result = client.cancel(task_id)

        assert ("already_stopped", state, state, 1, 1) == (
            result.outcome,
            result.state_before,
            result.state_after,
            result.attempts,
            len(result.log_ids),
        )
    assert emulator.stop_requests() == []


def test_a_finished_task_is_not_running(client: Client, api: ApiSpec, emulator: Emulator) -> None:
    """Done/PartlyDone/Fail/Failed (v2 Successed/Failed): not_running, nothing sent."""
    for state in api.finished_states:
        task_id = emulator.add_task(state=state)

        result = client.cancel(task_id)

        assert ("not_running", state, state, 1) == (
            result.outcome,
            result.state_before,
            result.state_after,
            result.attempts,
        )
    assert emulator.stop_requests() == []


def test_dry_run_runs_the_pre_check_and_sends_no_stop(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """dry_run: the pre-check passes, outcome dry_run, the task keeps running."""
    state = api.running_states[0]
    task_id = emulator.add_task(state=state)

    result = client.cancel(task_id, dry_run=True)

    log_ids = tuple(request_log_ids(logs))
    assert CancelResult(task_id, "dry_run", state, state, log_ids, 1) == result
    assert emulator.stop_requests() == []
    assert _api.V2_TO_V1_STATE.get(state, state) == emulator.task(task_id).state


def test_an_unknown_task_is_not_found(
    client: Client, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The server does not know the id: TaskNotFoundError with its log id, no stop."""
    with pytest.raises(TaskNotFoundError) as caught:
        client.cancel("ame-nosuchtask")

    error = caught.value
    assert (error.task_id, error.exit_code) == ("ame-nosuchtask", 4)
    assert request_log_ids(logs) == [error.log_id]
    assert emulator.stop_requests() == []


# --- the stop route's own answers -------------------------------------------------

#: Details that pass our pre-check although the cloud will refuse the stop.
REFUSALS: list[tuple[str, str, str, Callable[[ApiSpec], dict[str, Any]], str]] = [
    (
        "finished",
        "rule",
        _api.V1_DONE,
        lambda api: api.overrides(state=api.running_states[0]),
        _api.REFUSE_FINISHED_MESSAGE,
    ),
    (
        "manual behind a stale detail",
        "rule,manual",
        _api.V1_DOING,
        lambda api: api.automatic_detail(),
        _api.REFUSE_MANUAL_MESSAGE,
    ),
]


@pytest.mark.parametrize(
    ("modes", "stored_state", "overrides", "message"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_a_refused_stop_raises_cancel_rejected_with_the_server_message(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    modes: str,
    stored_state: str,
    overrides: Callable[[ApiSpec], dict[str, Any]],
    message: str,
) -> None:
    """v1 `result.result` false / v2 HTTP 400: CancelRejectedError, not retried."""
    task_id = emulator.add_task(eval_mode=modes, state=stored_state, **overrides(api))

    with pytest.raises(CancelRejectedError) as caught:
        client.cancel(task_id)

    error = caught.value
    code = None if api.name == "v1" else _api.V2_INVALID_OPERATION_CODE
    assert (task_id, code, message, 6) == (
        error.task_id,
        error.error_code,
        error.error_message,
        error.exit_code,
    )
    assert request_log_ids(logs)[-1] == error.log_id
    assert len(emulator.stop_requests()) == 1


def test_a_stop_that_timed_out_but_was_applied_is_verified_not_resent(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    clock: VirtualClock,
) -> None:
    """The stop timed out after the server applied it: a detail read shows it, no second stop."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    result = client.cancel(task_id, retry=RetryPolicy(attempt_timeout=0.25))

    assert (
        result.outcome,
        result.state_after,
        result.attempts,
    ) == ("cancelled", _api.V1_STOPPED, 3)
    assert len(emulator.stop_requests()) == 1
    assert [(e["purpose"], e["outcome"]) for e in events(logs, "qianfan.request")] == [
        ("detail", "ok"),
        ("stop", "error"),
        ("detail", "ok"),
    ]
    verified = events(logs, "evalctl.stop_verified")
    assert [(task_id, _api.V1_STOPPED)] == [(e["task_id"], e["state"]) for e in verified]
    assert clock.sleeps == []  # the verification read follows at once


def test_a_stop_lost_to_a_reset_is_verified_then_sent_once_more(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    clock: VirtualClock,
) -> None:
    """A reset stop was not applied: the detail still shows running, so it is resent once."""
    running = api.running_states[0]
    task_id = emulator.add_task(state=running)
    emulator.inject("reset", route=api.stop_fault_route)

    result = client.cancel(task_id)

    assert (
        result.outcome,
        result.state_after,
        result.attempts,
    ) == ("cancelled", _api.V1_STOPPING, 4)
    assert [r.fault for r in emulator.stop_requests()] == ["reset", None]
    assert [(e["purpose"], e["attempt"]) for e in events(logs, "qianfan.request")] == [
        ("detail", 1),
        ("stop", 1),
        ("detail", 1),
        ("stop", 2),
    ]
    assert [running] == [e["state"] for e in events(logs, "evalctl.stop_verified")]
    assert len(clock.sleeps) == 1


def test_stops_lost_again_and_again_are_resent_at_most_max_attempts_times(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """Every stop reset: each resend follows a detail read; max_attempts stops at most."""
    task_id = emulator.add_task()
    emulator.inject("reset", times=10, route=api.stop_fault_route)

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(task_id, retry=RetryPolicy(max_attempts=3))

    assert 3 == len(emulator.stop_requests()) == caught.value.attempts
    assert isinstance(caught.value.last_error, TransportError)
    routes = [r.is_stop for r in emulator.requests]
    assert routes == [False, True, False, True, False, True, False]


@pytest.mark.parametrize("fault", ["missing_fields", "not_json"])
def test_a_stop_answered_with_garbage_is_checked_not_blindly_resent(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]], fault: str
) -> None:
    """A garbled 2xx stop answer is verified by a detail read, and not resent.

    It may have been applied, hence the read; the task still runs, and garbage
    is not transient, so the cancel fails instead of sending the stop again.
    """
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject(fault, route=api.stop_fault_route)

    with pytest.raises(InvalidResponseError):
        client.cancel(task_id)

    assert [r.is_stop for r in emulator.requests] == [False, True, False]
    verified = events(logs, "evalctl.stop_verified")
    assert [api.running_states[0]] == [e["state"] for e in verified]


def test_a_transient_error_on_the_stop_is_retried_without_a_detail_read(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """A 503 or code 18 on the stop was not applied: it is simply sent again."""
    task_id = emulator.add_task()
    emulator.inject("http_503", route=api.stop_fault_route)
    emulator.inject("code_18", route=api.stop_fault_route)

    result = client.cancel(task_id)

    assert (result.outcome, result.attempts) == ("cancelled", 4)
    assert [r.is_stop for r in emulator.requests] == [False, True, True, True]


# --- waiting ---------------------------------------------------------------------


def test_wait_polls_the_detail_until_stopped(
    client: Client, api: ApiSpec, emulator: Emulator, clock: VirtualClock
) -> None:
    """wait=True: after the stop is accepted, the detail is read until it says Stopped."""
    task_id = emulator.add_task(state=api.running_states[0])

    result = client.cancel(task_id, wait=True)

    assert (
        result.outcome,
        result.state_after,
        result.attempts,
        len(result.log_ids),
    ) == ("cancelled", _api.V1_STOPPED, 3, 3)
    assert clock.sleeps == [WAIT_POLL_INITIAL_S]
    assert len(emulator.stop_requests()) == 1


def test_wait_keeps_polling_while_the_task_is_stopping(client: Client, api: ApiSpec) -> None:
    """A task that takes a (real) moment to settle is polled until it reads Stopped."""
    with Emulator(stop_delay_s=0.05) as emulator, pointed_at(emulator):
        task_id = emulator.add_task(state=api.running_states[0])

        result = client.cancel(task_id, wait=True)

        assert (result.outcome, result.state_after) == ("cancelled", _api.V1_STOPPED)
        assert len(emulator.requests) == result.attempts >= 3
        assert len(emulator.stop_requests()) == 1


def test_wait_timeout_raises_with_the_result_so_far(
    client: Client, api: ApiSpec, clock: VirtualClock
) -> None:
    """A task still Stopping after wait_timeout: WaitTimeoutError carrying the CancelResult."""
    with Emulator(stop_delay_s=3600) as emulator, pointed_at(emulator):
        task_id = emulator.add_task(state=api.running_states[0])

        with pytest.raises(WaitTimeoutError) as caught:
            client.cancel(task_id, wait=True, wait_timeout=5)

        error = caught.value
        result = error.result
        assert (task_id, "cancelled", _api.V1_STOPPING, 5) == (
            result.task_id,
            result.outcome,
            result.state_after,
            error.timeout,
        )
        assert len(emulator.requests) == result.attempts == len(result.log_ids)
        assert len(emulator.stop_requests()) == 1
        assert clock.sleeps[:2] == [1.0, 1.5]  # growing pauses...
        assert sum(clock.sleeps) <= 5.0  # ...that never overshoot the timeout
        assert isinstance(error, EvalctlError)
