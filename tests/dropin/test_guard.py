"""`evalctl.guard()`: the SDK's own stop paths get evalctl's pre-check, retries and logging.

Driven through the SDK's public functions (never evalctl's), over real HTTP
to the emulator: `Model.stop_evaluation_task`, `call_action` (positional and
by keyword, as the SDK's CLI calls it, and imported before the guard).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Any

import pytest
from qianfan.resources import Model
from qianfan.resources.console import model as sdk_model
from qianfan.resources.console import utils as sdk_utils

# Bound before any guard, the way a project imports it at its top.
from qianfan.resources.console.utils import (
    async_console_api_request,
    call_action,
    console_api_request,
)
from qianfan.resources.requestor import console_requestor as sdk_requestor
from qianfan.resources.typing import QfRequest, QfResponse

import evalctl
from evalctl._base import _api
from evalctl._base._errors import UnsafeRequestError
from evalctl._client import _sdkguard
from evalctl.emulator import Emulator

#: The SDK's own objects, kept in a dict: guard() rebinds module globals bound
#: to the original function (this module's `call_action` above), not containers.
SDK = {
    "call_action": sdk_utils.call_action,
    "stop": sdk_model.Model.__dict__["stop_evaluation_task"],
    "signer": sdk_requestor.iam_sign,
}

V1_STOP = (_api.V1_CANCEL_ROUTE, "")
V2_STOP = (_api.V2_ROUTE, _api.V2_STOP_ACTION)


@pytest.fixture(autouse=True)
def unguarded() -> Iterator[None]:
    """Each test starts and ends unguarded, whatever it did."""
    evalctl.unguard()
    yield
    evalctl.unguard()


def stops(emulator: Emulator, task_id: str) -> int:
    return len(emulator.stop_requests(task_id))


def test_the_typed_stop_refuses_a_manual_task_and_sends_no_stop(emulator: Emulator) -> None:
    """`Model.stop_evaluation_task` on a manual task: ManualEvaluationError, zero stops."""
    task_id = emulator.add_task(eval_mode="rule,manual")
    evalctl.guard()

    with pytest.raises(evalctl.ManualEvaluationError) as caught:
        Model.stop_evaluation_task(task_id)

    assert caught.value.task_id == task_id
    assert stops(emulator, task_id) == 0
    assert [r.route for r in emulator.requests] == [_api.V1_DETAIL_ROUTE]


def test_the_typed_stop_stops_an_automatic_task_exactly_once(
    emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The SDK's return type and body, one stop, and evalctl's events with the log ids."""
    task_id = emulator.add_task(state=_api.V1_DOING)
    evalctl.guard()

    resp = Model.stop_evaluation_task(task_id)

    assert isinstance(resp, QfResponse)
    assert resp.body["result"] == {"result": True, "errorMessage": ""}
    assert stops(emulator, task_id) == 1
    assert emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)
    events = [(e["event"], e.get("purpose"), e.get("log_id")) for e in logs]
    assert events == [
        ("qianfan.request", "detail", events[0][2]),
        ("evalctl.precheck", None, events[0][2]),
        ("qianfan.request", "stop", resp.body["log_id"]),
    ]


def test_the_typed_stop_is_retried_by_evalctl_with_the_sdks_keywords(
    emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A 503 on the stop route is retried; the SDK's retry keywords are accepted."""
    task_id = emulator.add_task()
    emulator.inject("http_503", route=_api.V1_CANCEL_ROUTE)
    evalctl.guard()

    resp = Model.stop_evaluation_task(task_id, retry_count=3, request_timeout=5)

    assert resp.body["result"]["result"] is True
    outcomes = [e["outcome"] for e in logs if e.get("purpose") == "stop"]
    assert outcomes == ["retry", "ok"]
    assert [r.status for r in emulator.stop_requests(task_id)] == [503, 200]


@pytest.mark.parametrize("route_action", [V1_STOP, V2_STOP], ids=["v1", "v2"])
def test_call_action_refuses_a_manual_stop_however_it_is_called(
    emulator: Emulator, route_action: tuple[str, str]
) -> None:
    """Positionally, by keyword (as `qianfan api raw.console` does), and through an early import."""
    route, action = route_action
    id_field = "id" if route == _api.V1_CANCEL_ROUTE else "taskId"
    task_id = emulator.add_task(eval_mode="manual")
    evalctl.guard()

    with pytest.raises(evalctl.ManualEvaluationError):
        sdk_utils.call_action(route, action, {id_field: task_id})
    with pytest.raises(evalctl.ManualEvaluationError):
        sdk_utils.call_action(base_url_route=route, action=action, params={id_field: task_id})
    with pytest.raises(evalctl.ManualEvaluationError):
        call_action(route, action, {id_field: task_id})  # imported before guard()

    assert stops(emulator, task_id) == 0


def test_call_action_stops_an_automatic_v2_task_once(emulator: Emulator) -> None:
    """v2 StopEvalTask through the SDK's call_action: the server's body, one stop."""
    task_id = emulator.add_task(state=_api.V2_RUNNING)
    evalctl.guard()

    resp = sdk_utils.call_action(_api.V2_ROUTE, _api.V2_STOP_ACTION, {"taskId": task_id})

    assert isinstance(resp, QfResponse)
    assert resp.body["result"] == {}
    assert stops(emulator, task_id) == 1


def test_other_calls_go_to_the_sdk_untouched(
    emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A detail read through the guarded call_action is the SDK's own: no evalctl events."""
    task_id = emulator.add_task()
    evalctl.guard()

    resp = sdk_utils.call_action(_api.V2_ROUTE, _api.V2_DESCRIBE_ACTION, {"taskId": task_id})

    assert resp.body["result"]["taskId"] == task_id
    assert logs == []
    assert [r.action for r in emulator.requests] == [_api.V2_DESCRIBE_ACTION]


def test_guard_is_idempotent_and_unguard_restores_every_binding() -> None:
    """Twice guarded is once guarded; unguard puts the SDK's own objects back everywhere."""
    evalctl.guard()
    guarded_call_action = sdk_utils.call_action
    evalctl.guard()

    assert sdk_utils.call_action is guarded_call_action
    assert sdk_utils.call_action is not SDK["call_action"]
    assert call_action is guarded_call_action  # this module's early import, rebound
    assert sdk_model.Model.__dict__["stop_evaluation_task"] is not SDK["stop"]
    assert sdk_requestor.iam_sign is not SDK["signer"]
    assert _sdkguard.is_guarded()

    evalctl.unguard()
    evalctl.unguard()

    assert sdk_utils.call_action is SDK["call_action"]
    assert call_action is SDK["call_action"]
    assert sdk_model.Model.__dict__["stop_evaluation_task"] is SDK["stop"]
    assert sdk_requestor.iam_sign is SDK["signer"]
    assert not _sdkguard.is_guarded()


def test_guard_as_a_context_manager_restores_the_state_before_it(emulator: Emulator) -> None:
    """`with guard():` unguards on exit, but leaves an earlier guard() in force."""
    task_id = emulator.add_task(eval_mode="manual")

    with evalctl.guard():
        assert _sdkguard.is_guarded()
        with pytest.raises(evalctl.ManualEvaluationError):
            Model.stop_evaluation_task(task_id)
    assert not _sdkguard.is_guarded()

    evalctl.guard()
    with evalctl.guard():
        pass
    assert _sdkguard.is_guarded()
    assert stops(emulator, task_id) == 0


def test_unguarded_the_sdk_sends_the_stop_the_guard_would_have_refused(
    emulator: Emulator,
) -> None:
    """The control: without the guard the SDK sends a manual task's stop (the cloud refuses it)."""
    task_id = emulator.add_task(eval_mode="rule,manual")

    resp = Model.stop_evaluation_task(task_id)

    assert resp.body["result"]["result"] is False
    assert stops(emulator, task_id) == 1


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), (" 1 ", True), ("0", False), ("", False), ("yes", False)]
)
def test_the_environment_switch_is_exactly_one(value: str, expected: bool) -> None:
    """``EVALCTL_GUARD=1`` guards; anything else does not."""
    assert _sdkguard.guard_from_environment({"EVALCTL_GUARD": value}) is expected
    assert _sdkguard.is_guarded() is expected


def test_guard_on_top_of_the_drop_in_swap_neither_recurses_nor_loses_the_swap(
    emulator: Emulator,
) -> None:
    """README swap, then guard(): stops still pre-checked; unguard leaves the swap in place."""
    manual = emulator.add_task(eval_mode="rule,manual")
    automatic = emulator.add_task()
    sdk_utils.call_action = evalctl.call_action  # the README's drop-in swap
    try:
        evalctl.guard()
        with pytest.raises(evalctl.ManualEvaluationError):
            sdk_utils.call_action(*V1_STOP, {"id": manual})
        resp = sdk_utils.call_action(*V1_STOP, {"id": automatic})
        evalctl.unguard()

        assert resp.body["result"]["result"] is True
        assert sdk_utils.call_action is evalctl.call_action
        assert [r.task_id for r in emulator.stop_requests()] == [automatic]
    finally:
        sdk_utils.call_action = SDK["call_action"]


def test_unguard_leaves_a_later_replacement_by_the_application(emulator: Emulator) -> None:
    """A `stop_evaluation_task` the application set after guard() is not overwritten."""

    def own(cls: type, eval_id: str, **kwargs: Any) -> str:
        return f"own {eval_id}"

    evalctl.guard()
    sdk_model.Model.stop_evaluation_task = classmethod(own)  # type: ignore[assignment]
    try:
        evalctl.unguard()
        assert Model.stop_evaluation_task("ame-x") == "own ame-x"
    finally:
        sdk_model.Model.stop_evaluation_task = SDK["stop"]  # type: ignore[method-assign]
    assert emulator.requests == []


def test_a_route_that_is_not_a_string_is_refused_before_anything_is_sent(
    emulator: Emulator,
) -> None:
    """What cannot be classified fails closed in evalctl rather than reaching the SDK."""
    evalctl.guard()

    with pytest.raises(evalctl.ConfigurationError):
        sdk_utils.call_action(b"/wenxinworkshop/modelrepo/eval/cancel", "", {"id": "ame-x"})

    assert emulator.requests == []


# --- the backstop: stops that went past the patched paths are refused at the signer --


@console_api_request
def own_stop(task_id: str, **kwargs: Any) -> QfRequest:
    """A project's own stop, built the way the SDK builds its console calls."""
    req = QfRequest(method="POST", url=_api.V1_CANCEL_ROUTE)
    req.json_body = {"id": task_id}
    return req


@async_console_api_request
async def own_async_stop(task_id: str, **kwargs: Any) -> QfRequest:
    """The same, with the SDK's async decorator (v2)."""
    req = QfRequest(method="POST", url=_api.V2_ROUTE, query={"Action": _api.V2_STOP_ACTION})
    req.json_body = {"taskId": task_id}
    return req


def test_a_stop_past_the_patched_paths_is_refused_before_it_is_sent(emulator: Emulator) -> None:
    """An early `partial` of call_action and a project's decorated stop: refused, zero requests."""
    task_id = emulator.add_task()
    early = functools.partial(SDK["call_action"], _api.V2_ROUTE, _api.V2_STOP_ACTION)
    evalctl.guard()

    with pytest.raises(UnsafeRequestError, match="past its pre-check") as caught:
        early({"taskId": task_id})
    with pytest.raises(UnsafeRequestError):
        own_stop(task_id)
    with pytest.raises(UnsafeRequestError):
        asyncio.run(own_async_stop(task_id))

    assert caught.value.task_id == task_id
    assert emulator.requests == []


def test_the_backstop_lets_other_sdk_requests_and_its_unguarded_self_through(
    emulator: Emulator,
) -> None:
    """A detail read through an early partial is signed and sent; unguarded, the own stop goes."""
    task_id = emulator.add_task()
    detail = functools.partial(SDK["call_action"], _api.V2_ROUTE, _api.V2_DESCRIBE_ACTION)

    with evalctl.guard():
        assert detail({"taskId": task_id}).body["result"]["taskId"] == task_id
    own_stop(task_id)

    assert [(r.action, r.is_stop) for r in emulator.requests] == [
        (_api.V2_DESCRIBE_ACTION, False),
        ("", True),
    ]


@console_api_request
def own_spelled_stop(task_id: str, **kwargs: Any) -> QfRequest:
    """A v2 stop with its Action spelled into the URL instead of the query dict."""
    req = QfRequest(method="POST", url=f"{_api.V2_ROUTE}?Action={_api.V2_STOP_ACTION}")
    req.json_body = {"taskId": task_id}
    return req


def test_the_backstop_reads_an_action_spelled_into_the_url(emulator: Emulator) -> None:
    """`/v2/eval?Action=StopEvalTask` in the URL itself is a stop too: refused, nothing sent."""
    task_id = emulator.add_task()
    evalctl.guard()

    with pytest.raises(UnsafeRequestError):
        own_spelled_stop(task_id)

    assert emulator.requests == []
