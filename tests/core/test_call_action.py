"""The drop-in `call_action`: the SDK's arguments and answers, plus the pre-check on stops."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import events
from qianfan.errors import APIError, QianfanError, RequestError
from qianfan.resources.console.utils import call_action as sdk_call_action
from qianfan.resources.typing import QfResponse

from core.support import APIS, FAIL_CLOSED, MANUAL_CASES, ApiSpec, Client, Flavour
from evalctl import (
    APICallError,
    AuthenticationError,
    HTTPStatusError,
    InvalidTaskIdError,
    ManualEvaluationError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    TaskNotFoundError,
)
from evalctl.emulator import Emulator, pointed_at


def test_returns_the_same_response_as_the_sdk(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """A QfResponse with the SDK's code, body and headers; the body is the server's, untouched."""
    task_id = emulator.add_task(eval_mode="rule,model")
    params = api.params(task_id)

    ours = client.detail_action(task_id)
    theirs = sdk_call_action(api.detail_route, api.detail_action, params)

    assert type(theirs) is type(ours)
    assert (theirs.code, theirs.body.keys(), theirs.body["result"].keys()) == (
        ours.code,
        ours.body.keys(),
        ours.body["result"].keys(),
    )
    log_id_key = "log_id" if api.name == "v1" else "requestId"
    assert api.is_log_id(ours.body[log_id_key])
    assert ours.headers["Content-Type"] == "application/json"
    assert {"request_latency", "total_latency"} <= ours.statistic.keys()
    # The request is reported as the SDK does, but its Authorization value is masked.
    assert ours.request is not None
    assert "bce-auth-v1/" not in str(ours.request.headers)


def test_a_non_stop_route_is_sent_as_given_without_a_pre_check(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """Reading the detail of a manual task is fine: only stops are guarded."""
    task_id = emulator.add_task(eval_mode="manual")

    reply = client.detail_action(task_id)

    assert reply.code == 200
    assert len(emulator.requests) == 1


def test_a_stop_of_a_running_automatic_task_is_sent_after_the_pre_check(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The stop route: one detail read, then the caller's stop, whose answer is returned."""
    task_id = emulator.add_task(state=api.running_states[0])

    reply = client.stop_action(task_id)

    expected = {"result": True, "errorMessage": ""} if api.name == "v1" else {}
    assert (reply.code, reply.body["result"]) == (200, expected)
    assert [(r.is_stop, r.body) for r in emulator.requests] == [
        (False, api.params(task_id)),
        (True, api.params(task_id)),
    ]
    assert [e["purpose"] for e in events(logs, "qianfan.request")] == ["detail", "stop"]


DROP_IN_SAMPLE = {"modes missing", "cyrillic look-alike", "state unknown", "another task"}


# The pre-check is the one cancel_eval_task uses (test_cancel runs every case);
# here a sample shows the drop-in goes through it.
@pytest.mark.parametrize(("modes", "which", "reported"), MANUAL_CASES[1::2])
def test_refuses_to_send_a_stop_for_a_manual_task(
    client: Client, api: ApiSpec, emulator: Emulator, modes: str, which: str, reported: set[str]
) -> None:
    """The drop-in stop is guarded like cancel_eval_task: ManualEvaluationError, zero stops."""
    task_id = emulator.add_task(eval_mode=modes, state=api.state(which))

    with pytest.raises(ManualEvaluationError) as caught:
        client.stop_action(task_id)

    assert (caught.value.task_id, caught.value.eval_modes) == (task_id, frozenset(reported))
    assert emulator.stop_requests() == []


@pytest.mark.parametrize(
    "overrides",
    [pytest.param(case, id=name) for name, case in FAIL_CLOSED if name in DROP_IN_SAMPLE],
)
def test_fails_closed_before_a_stop_it_cannot_decide_on(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    overrides: Callable[[ApiSpec], dict[str, Any]],
) -> None:
    """The drop-in stop fails closed on an unclear detail: PrecheckError, zero stops."""
    task_id = emulator.add_task(state=api.running_states[0], **overrides(api))

    with pytest.raises(PrecheckError):
        client.stop_action(task_id)

    assert emulator.stop_requests() == []


def test_a_stop_naming_no_valid_task_is_refused_unsent(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """The stop's body must name a well-formed id; otherwise nothing at all is sent."""
    for params in ({}, {api.id_field: ""}, {api.id_field: "ame-аbc"}, {api.id_field: None}):
        with pytest.raises(InvalidTaskIdError):
            client.call_action(api.stop_route, api.stop_action, params)

    assert emulator.requests == []


def test_a_stop_of_an_unknown_task_is_not_found(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """The pre-check read says the task does not exist: TaskNotFoundError, zero stops."""
    with pytest.raises(TaskNotFoundError):
        client.stop_action("ame-nosuchtask")

    assert emulator.stop_requests() == []


STOP_SPELLINGS = [
    ("/wenxinworkshop/modelrepo/eval/cancel/", ""),
    ("//wenxinworkshop/modelrepo//eval/cancel", ""),
    ("/WenxinWorkshop/ModelRepo/Eval/Cancel", "anything"),
    ("/v2/eval", "stopevaltask"),
    ("/v2/eval/", " StopEvalTask "),
    ("/v2/eval?Action=StopEvalTask", ""),
    ("/V2/Eval", "STOPEVALTASK"),
]


@pytest.mark.parametrize(("route", "action"), STOP_SPELLINGS)
def test_a_stop_spelled_differently_is_still_guarded(
    flavour: Flavour, emulator: Emulator, route: str, action: str
) -> None:
    """Slashes, case or an Action in the query do not side-step the pre-check."""
    api = APIS["v2" if "v2" in route.lower() else "v1"]
    task_id = emulator.add_task(eval_mode="rule,manual")

    with pytest.raises(ManualEvaluationError):
        Client(flavour, api).call_action(route, action, api.params(task_id))

    assert [r.is_stop for r in emulator.requests] == [False]


def test_a_stop_that_timed_out_is_looked_at_and_not_sent_again_once_stopping(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """An ambiguous drop-in stop, then a detail read showing it stopping: no second stop.

    The caller gets the route's success shape, synthesized by evalctl and
    marked as such, carrying the verification read's log id.
    """
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    reply = client.stop_action(task_id, retry=RetryPolicy(attempt_timeout=0.25))

    assert reply.code == 200
    assert [r.is_stop for r in emulator.requests] == [False, True, False]
    assert [(e["purpose"], e["outcome"]) for e in events(logs, "qianfan.request")] == [
        ("detail", "ok"),
        ("stop", "error"),
        ("detail", "ok"),
    ]
    verified = events(logs, "evalctl.stop_verified")
    assert [e["state"] for e in verified] == [emulator.task(task_id).state]
    assert reply.body["evalctl"] == {
        "synthesized": True,
        "reason": "stop_verified",
        "state": verified[0]["state"],
    }
    log_id_key = "log_id" if api.name == "v1" else "requestId"
    assert reply.body[log_id_key] == verified[0]["log_id"]
    assert reply.headers["X-Evalctl-Synthesized"] == "stop_verified"
    assert isinstance(reply.body["result"], dict)


def test_a_stop_lost_before_the_server_saw_it_is_sent_again_after_a_fresh_read(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A reset drop-in stop, the task still running: a fresh pre-check read, then the stop again."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("reset", route=api.stop_fault_route)

    reply = client.stop_action(task_id)

    assert reply.code == 200
    assert "evalctl" not in reply.body
    assert [r.is_stop for r in emulator.requests] == [False, True, False, True]
    assert [(e["purpose"], e["outcome"]) for e in events(logs, "qianfan.request")] == [
        ("detail", "ok"),
        ("stop", "error"),
        ("detail", "ok"),
        ("stop", "ok"),
    ]


def test_per_call_keys_are_used_for_signing(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """`ak=`/`sk=` per call sign the request, whatever the process config holds."""
    task_id = emulator.add_task()
    wrong = SimpleNamespace(base_url=emulator.base_url, ak="wrong-ak", sk="wrong-sk")

    with pointed_at(wrong):
        with pytest.raises(AuthenticationError):
            client.detail_action(task_id)
        reply = client.stop_action(task_id, ak=emulator.ak, sk=emulator.sk)
        result = client.cancel(emulator.add_task(), ak=emulator.ak, sk=emulator.sk)

    assert reply.code == 200
    assert result.outcome == "cancelled"
    assert [r.signature_valid for r in emulator.requests] == [False, True, True, True, True]


def test_the_sdk_itself_rejects_per_call_keys(api: ApiSpec, emulator: Emulator) -> None:
    """Documents the SDK bug evalctl works around: its call_action(ak=, sk=) raises TypeError.

    Its decorator strips the keys from a copy of kwargs, then calls a function
    that takes no **kwargs. If this starts passing, the SDK was fixed.
    """
    task_id = emulator.add_task()

    with pytest.raises(TypeError, match="'ak'"):
        sdk_call_action(  # type: ignore[call-arg]  # its signature agrees: no ak/sk
            api.detail_route, api.detail_action, api.params(task_id), ak=emulator.ak, sk=emulator.sk
        )


def test_errors_are_the_sdk_error_types(client: Client, api: ApiSpec, emulator: Emulator) -> None:
    """APICallError is a qianfan APIError, HTTPStatusError a RequestError, all QianfanErrors."""
    task_id = emulator.add_task()
    emulator.inject("code_18", route=api.detail_fault_route)
    emulator.inject("http_503", route=api.detail_fault_route)
    permanent = RetryPolicy(transient_http_statuses=frozenset(), transient_error_codes=frozenset())

    with pytest.raises(APIError) as envelope:
        client.detail_action(task_id, retry=permanent)
    with pytest.raises(RequestError) as http:
        client.detail_action(task_id, retry=permanent)

    assert isinstance(envelope.value, APICallError)
    assert (envelope.value.error_code, envelope.value.req_id) == (18, envelope.value.log_id)
    assert envelope.value.error_msg
    assert isinstance(http.value, HTTPStatusError)
    assert http.value.status_code == 503


def test_except_qianfan_error_catches_every_failure(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """Existing `except QianfanError` clauses keep working after the swap."""
    manual = emulator.add_task(eval_mode="manual")
    flaky = emulator.add_task()

    def exhausted() -> QfResponse:
        emulator.inject("http_503", times=3, route=api.detail_fault_route)
        return client.detail_action(flaky, retry_count=3)

    failing: list[Callable[[], QfResponse]] = [
        lambda: client.stop_action(manual),
        lambda: client.stop_action("ame-nosuchtask"),
        lambda: client.stop_action(""),
        exhausted,
        lambda: client.detail_action(flaky, ak="nobody", sk="nothing"),
        lambda: client.call_action(api.detail_route, api.detail_action, {}),
    ]
    caught = []

    for call in failing:
        try:
            call()
        except QianfanError as error:
            caught.append(type(error))

    assert caught == [
        ManualEvaluationError,
        TaskNotFoundError,
        InvalidTaskIdError,
        RetryExhaustedError,
        AuthenticationError,
        APICallError if api.name == "v1" else HTTPStatusError,
    ]
    assert emulator.stop_requests() == []


@pytest.mark.parametrize("which", ["stopping", "finished"])
def test_a_stop_of_a_task_that_is_not_running_is_answered_without_sending_it(
    client: Client, api: ApiSpec, emulator: Emulator, which: str
) -> None:
    """Stopping/Stopped: a synthesized success; finished: the server's refusal, synthesized.

    Nothing reaches the stop route: a stop goes out only after a pre-check
    that said "stop".
    """
    state = api.stopping_states[0] if which == "stopping" else api.finished_states[0]
    task_id = emulator.add_task(state=state)
    reason = "already_stopped" if which == "stopping" else "not_running"

    if which == "finished" and api.name == "v2":
        with pytest.raises(HTTPStatusError) as caught:
            client.stop_action(task_id)
        assert (caught.value.status_code, caught.value.error_code) == (400, "InvalidOperation")
        assert "sent no stop" in str(caught.value)
    else:
        reply = client.stop_action(task_id)
        assert (reply.code, reply.headers["X-Evalctl-Synthesized"]) == (200, reason)
        assert reply.body["evalctl"] == {"synthesized": True, "reason": reason, "state": state}
        if api.name == "v1":
            assert reply.body["result"]["result"] is (which == "stopping")
    assert [r.is_stop for r in emulator.requests] == [False]


def test_the_stop_sent_is_built_from_the_validated_id(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """The stop's body is evalctl's own copy naming the checked id, not the caller's object."""
    task_id = emulator.add_task(eval_mode="rule")
    params = api.params(task_id)

    reply = client.call_action(api.stop_route, api.stop_action, params)

    assert reply.code == 200
    assert [(r.route, r.action, r.body) for r in emulator.stop_requests()] == [
        (api.stop_route, api.stop_action, {api.id_field: task_id})
    ]
    assert reply.request is not None
    assert reply.request.json_body == {api.id_field: task_id}
    assert reply.request.json_body is not params
