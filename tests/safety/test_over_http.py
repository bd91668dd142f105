"""Each class of issue 12 over real HTTP, sync and async, v1 and v2.

Every test looks at what the emulator *received* on a stop route, judged by
its gateway reading (`RecordedRequest.is_stop`), not at what evalctl says it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from core.support import ApiSpec, Client, Flavour

import evalctl
from evalctl._base import _api
from evalctl._base._errors import (
    EvalctlError,
    InvalidTaskIdError,
    ManualEvaluationError,
    PrecheckError,
    UnsafeRequestError,
)
from evalctl.emulator import Emulator
from safety.stops import answer_detail, detail_text, named_ids, stops

ONE_ATTEMPT = evalctl.RetryPolicy(max_attempts=1)


# --- the checked body is the sent body ------------------------------------------------------


def test_a_caller_changing_its_params_during_the_check_cannot_redirect_the_stop(
    client: Client, api: ApiSpec, emu: Emulator
) -> None:
    """The dict names a manual task once the detail is read: no stop names anything else."""
    checked = emu.add_task(eval_mode="rule", state=api.running_states[0])
    manual = emu.add_task(eval_mode="rule,manual", state=api.running_states[0])
    params: dict[str, Any] = api.params(checked)

    def switch() -> None:
        params[api.id_field] = manual

    answer_detail(emu, api, detail_text(api, checked), then=switch, times=1)
    # Refusing the changed body (UnsafeRequestError) is as safe as sending the checked one.
    with contextlib.suppress(UnsafeRequestError):
        client.call_action(api.stop_route, api.stop_action, params, retry=ONE_ATTEMPT)

    assert [stop.body for stop in stops(emu)] in ([], [{api.id_field: checked}])
    assert (emu.task(manual).stop_requests, emu.task(manual).state) == (0, _api.V1_DOING)


def test_concurrent_async_calls_sharing_one_dict_stop_only_what_each_checked(
    api: ApiSpec, emu: Emulator
) -> None:
    """Two `acall_action` with one dict, changed between them: no stop names the manual task."""
    checked = emu.add_task(eval_mode="rule", state=api.running_states[0])
    manual = emu.add_task(eval_mode="manual", state=api.running_states[0])
    emu.set_latency(0.05)

    async def both() -> list[Any]:
        params = api.params(checked)
        first = asyncio.ensure_future(
            evalctl.acall_action(api.stop_route, api.stop_action, params, retry=ONE_ATTEMPT)
        )
        await asyncio.sleep(0.02)  # the first is waiting for its detail
        params[api.id_field] = manual
        second = evalctl.acall_action(api.stop_route, api.stop_action, params, retry=ONE_ATTEMPT)
        return await asyncio.gather(first, second, return_exceptions=True)

    try:
        first, second = asyncio.run(both())
    finally:
        emu.set_latency(0.0)

    assert isinstance(second, ManualEvaluationError)
    assert not isinstance(first, BaseException) or isinstance(first, UnsafeRequestError)
    assert [named_ids(stop.body) for stop in stops(emu)] in ([], [{checked}])
    assert (emu.task(manual).stop_requests, emu.task(manual).state) == (0, _api.V1_DOING)


# --- the route as sent -----------------------------------------------------------------------

#: Spellings that `requests` and `yarl` turn into the exact stop route before sending:
#: the URL as sent *is* the stop route, so the checked task is stopped, once.
NORMALISED_BY_THE_CLIENT: dict[str, list[tuple[str, str]]] = {
    "v1": [
        ("/wenxinworkshop/modelrepo/eval/./cancel", ""),
        ("/wenxinworkshop/modelrepo/eval/x/../cancel", ""),
        ("/wenxinworkshop/modelrepo/eval/%63ancel", ""),
    ],
    "v2": [
        ("/v2/./eval", _api.V2_STOP_ACTION),
        ("/v2/%65val", _api.V2_STOP_ACTION),
        ("/v2/x/../eval", _api.V2_STOP_ACTION),
    ],
}
#: Spellings no client makes exact, that a gateway may still route to the stop: refused.
REFUSED: dict[str, list[tuple[str, str]]] = {
    "v1": [
        ("/wenxinworkshop/modelrepo/eval/%2563ancel", ""),
        ("/wenxinworkshop//modelrepo/eval/cancel", ""),
        ("/wenxinworkshop/modelrepo/eval/cancel/", ""),
        ("/WenxinWorkshop/modelrepo/eval/cancel", ""),
        ("/wenxinworkshop/modelrepo/eval/cancel;x=1", ""),
        ("/wenxinworkshop/modelrepo/eval/cancel.json", ""),
    ],
    "v2": [
        ("/v2/eval", "stopevaltask"),
        ("/v2/eval", "StopEvalTask "),
        ("/v2/eval/", _api.V2_STOP_ACTION),
        ("/V2/eval", _api.V2_STOP_ACTION),
        ("/v2/eval?Action=StopEvalTask", ""),
        ("/v2/eval?Action=DescribeEvalTask", _api.V2_STOP_ACTION),
    ],
}


@pytest.mark.parametrize("index", range(6))
def test_a_stop_route_spelt_another_way_is_refused_and_nothing_reaches_the_stop(
    client: Client, api: ApiSpec, emu: Emulator, index: int
) -> None:
    """Escaped escapes, slashes, case, `;`, an Action in the route: refused, exit 2."""
    route, action = REFUSED[api.name][index]
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])

    with pytest.raises(UnsafeRequestError) as caught:
        client.call_action(route, action, api.params(task_id), retry=ONE_ATTEMPT)

    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    assert stops(emu) == []
    assert emu.task(task_id).state == _api.V1_DOING


@pytest.mark.parametrize("index", range(3))
def test_a_spelling_the_client_makes_exact_is_a_checked_stop(
    client: Client, api: ApiSpec, emu: Emulator, index: int
) -> None:
    """Dot segments and escaped letters: sent as the stop route itself, after the pre-check."""
    route, action = NORMALISED_BY_THE_CLIENT[api.name][index]
    manual = emu.add_task(eval_mode="rule,manual", state=api.running_states[0])
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])

    with pytest.raises(ManualEvaluationError):
        client.call_action(route, action, api.params(manual), retry=ONE_ATTEMPT)
    client.call_action(route, action, api.params(task_id), retry=ONE_ATTEMPT)

    (stop,) = stops(emu)
    assert (stop.body, stop.signature_valid) == ({api.id_field: task_id}, True)
    assert stop.target.partition("?")[0] == api.stop_route


def test_the_exact_stop_route_still_stops(client: Client, api: ApiSpec, emu: Emulator) -> None:
    """The control case: the documented spelling is sent, once."""
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])

    reply = client.call_action(api.stop_route, api.stop_action, api.params(task_id))

    assert reply.code == 200
    assert [named_ids(stop.body) for stop in stops(emu)] == [{task_id}]


# --- the stop body names one task ------------------------------------------------------------


def _bodies(api: ApiSpec, checked: str, other: str) -> list[dict[str, Any]]:
    second = "taskId" if api.name == "v1" else "id"
    return [
        {api.id_field: checked, second: other},
        {api.id_field: checked, "ids": [other]},
        {api.id_field: checked, "evaluationId": 7},
        {api.id_field: checked, "extra": {"taskId": other}},
        {api.id_field: [checked]},
        {api.id_field: {"id": checked}},
        {api.id_field: True},
    ]


@pytest.mark.parametrize("index", range(7))
def test_a_stop_body_with_more_than_one_id_is_refused_before_anything_reaches_the_stop(
    client: Client, api: ApiSpec, emu: Emulator, index: int
) -> None:
    """Extra keys, nested or listed ids, a bool: one clear line, exit 2, no stop."""
    checked = emu.add_task(eval_mode="rule", state=api.running_states[0])
    other = emu.add_task(eval_mode="manual", state=api.running_states[0])
    body = _bodies(api, checked, other)[index]

    with pytest.raises((UnsafeRequestError, InvalidTaskIdError)) as caught:
        client.call_action(api.stop_route, api.stop_action, body, retry=ONE_ATTEMPT)

    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    assert stops(emu) == []


# --- every manual signal, in the vocabulary of the generation that answered ------------------


def _cancel_and_drop_in(client: Client, api: ApiSpec, task_id: str) -> list[EvalctlError]:
    errors: list[EvalctlError] = []
    for call in (
        lambda: client.cancel(task_id, retry=ONE_ATTEMPT),
        lambda: client.call_action(
            api.stop_route, api.stop_action, api.params(task_id), retry=ONE_ATTEMPT
        ),
    ):
        try:
            call()
        except EvalctlError as error:
            errors.append(error)
    return errors


MANUAL_SIGNALS: dict[str, list[dict[str, Any]]] = {
    "v1": [
        {"evalStandardConf": {"evalMode": "rule", "eval_mode": "manual"}},
        {"evalMode": "manual"},
        {"evalUnits": [{"state": _api.V1_DOING_MANUAL}]},
    ],
    "v2": [
        {"evalType": "auto", "evalMode": "rule", "evalStandardConf": {"evalMode": "rule,manual"}},
        {"evalType": "auto", "evalMode": "manual"},
        {"evalType": "manual", "evalMode": "rule", "evalStandardConf": {"evalMode": "rule"}},
    ],
}


@pytest.mark.parametrize("index", range(3))
def test_manual_in_any_mode_bearing_field_refuses_over_http(
    client: Client, api: ApiSpec, emu: Emulator, index: int
) -> None:
    """The detail says rule in one place and manual in another: refused, nothing stopped."""
    overrides = api.overrides(**MANUAL_SIGNALS[api.name][index])
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0], **overrides)

    errors = _cancel_and_drop_in(client, api, task_id)

    assert [type(error) for error in errors] == [ManualEvaluationError] * 2
    assert stops(emu) == []


@pytest.mark.parametrize(
    ("api_name", "state"), [("v2", _api.V1_DOING), ("v2", _api.V1_PENDING), ("v1", _api.V2_RUNNING)]
)
def test_a_state_of_the_other_generation_fails_closed_over_http(
    flavour: Flavour, emu: Emulator, api_name: str, state: str
) -> None:
    """A v2 detail saying "Doing" (a v1 word), or v1 saying "Running": PrecheckError."""
    from core.support import APIS

    api = APIS[api_name]
    task_id = emu.add_task(eval_mode="rule", **api.overrides(state=state))

    errors = _cancel_and_drop_in(Client(flavour, api), api, task_id)

    assert [type(error) for error in errors] == [PrecheckError] * 2
    assert all(f"unknown state '{state}' for the {api_name} API" in str(e) for e in errors)
    assert stops(emu) == []


# --- the detail must be unambiguous and about the task asked for ------------------------------


def test_a_detail_with_a_key_twice_fails_closed(
    client: Client, api: ApiSpec, emu: Emulator
) -> None:
    """`"evalMode": "manual"` then `"evalMode": "rule"`: ambiguous, PrecheckError, no stop."""
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])
    text = detail_text(api, task_id).replace(
        '"evalMode": "rule"', '"evalMode": "manual", "evalMode": "rule"'
    )
    assert json.loads(text)  # parsable; only strict JSON sees the trouble
    answer_detail(emu, api, text, times=4)

    errors = _cancel_and_drop_in(client, api, task_id)

    assert [type(error) for error in errors] == [PrecheckError] * 2
    assert all("a key twice" in str(error) for error in errors)
    assert stops(emu) == []


@pytest.mark.parametrize("which", ["missing", "null", "another"])
def test_a_detail_that_does_not_name_the_task_asked_for_fails_closed(
    client: Client, api: ApiSpec, emu: Emulator, which: str
) -> None:
    """Id missing, null, or another task's: PrecheckError, nothing sent to the stop route."""
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])
    other = emu.add_task(eval_mode="rule", state=api.running_states[0])
    key = "evaluationIdStr" if api.name == "v1" else "taskId"
    value = {"missing": None, "null": None, "another": other}[which]
    text = detail_text(api, task_id, **{key: value})
    if which == "null":
        text = text.replace("}}", f', "{key}": null}}}}')
    answer_detail(emu, api, text, times=4)

    errors = _cancel_and_drop_in(client, api, task_id)

    assert [type(error) for error in errors] == [PrecheckError] * 2
    assert stops(emu) == []


# --- at most one stop reaches a task -------------------------------------------------------


def test_a_drop_in_stop_that_timed_out_is_not_sent_again_once_the_task_is_stopping(
    client: Client, api: ApiSpec, emu: Emulator
) -> None:
    """The stop was applied but its answer was lost: the re-read shows Stopping, nothing more."""
    emu.set_stop_delay(10_000)  # stays Stopping
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])
    emu.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    with contextlib.suppress(EvalctlError):  # what the caller gets is core's documented answer
        client.call_action(
            api.stop_route,
            api.stop_action,
            api.params(task_id),
            retry=evalctl.RetryPolicy(max_attempts=3, attempt_timeout=0.25),
        )

    assert [named_ids(stop.body) for stop in stops(emu)] == [{task_id}]
    assert emu.task(task_id).state == _api.V1_STOPPING
