"""The emulator answers every console route with the cloud's shapes, through the real SDK."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from qianfan.errors import APIError, RequestError
from qianfan.resources.console.utils import call_action
from qianfan.resources.requestor.console_requestor import ConsoleAPIRequestor
from qianfan.resources.typing import QfRequest, QfResponse, RetryConfig

from evalctl._base import _api
from evalctl.emulator import Emulator, Fault, pointed_at

DETAIL = _api.V1_DETAIL_ROUTE
CANCEL = _api.V1_CANCEL_ROUTE
CREATE = _api.V1_CREATE_ROUTE


def v1(route: str, body: dict[str, Any]) -> QfResponse:
    return call_action(route, "", body)


def v2(action: str, body: dict[str, Any]) -> QfResponse:
    return call_action(_api.V2_ROUTE, action, body)


@pytest.fixture
def qianfan_emulator(qianfan_emulator: Emulator) -> Emulator:
    """The plugin's emulator, with stops that stay `Stopping` (no race with a busy machine)."""
    qianfan_emulator.set_stop_delay(600)
    return qianfan_emulator


def test_v1_detail_has_the_documented_fields(qianfan_emulator: Emulator) -> None:
    """v1 detail carries the task, its modes and a fresh digit log_id."""
    task_id = qianfan_emulator.add_task("ame-abc123", "rule", "Doing", name="nightly")

    body = v1(DETAIL, {"id": task_id}).body

    assert re.fullmatch(r"\d+", body["log_id"])
    result = body["result"]
    assert {
        "evaluationId",
        "evaluationIdStr",
        "name",
        "description",
        "state",
        "evalUnits",
        "datasetId",
        "datasetName",
        "evalStandardConf",
        "computeResourceConf",
        "createTime",
        "modifyTime",
    } <= result.keys()
    assert (task_id, "nightly", "Doing") == (
        result["evaluationIdStr"],
        result["name"],
        result["state"],
    )
    assert result["evaluationId"] == 1
    assert result["evalStandardConf"]["evalMode"] == "rule"
    assert "appAk" not in result["evalStandardConf"]


def test_every_v1_answer_has_a_fresh_log_id(qianfan_emulator: Emulator) -> None:
    """log ids never repeat."""
    task_id = qianfan_emulator.add_task()

    log_ids = {v1(DETAIL, {"id": task_id}).body["log_id"] for _ in range(5)}

    assert len(log_ids) == 5


def test_model_mode_tasks_carry_the_configured_app_secrets() -> None:
    """Tasks with the model mode serve appAk/appSk, which are per-emulator fakes."""
    with Emulator(app_ak="my-app-ak", app_sk="my-app-sk") as emulator, pointed_at(emulator):
        task_id = emulator.add_task(eval_mode="rule,model")

        v1_conf = v1(DETAIL, {"id": task_id}).body["result"]["evalStandardConf"]
        v2_conf = v2("DescribeEvalTask", {"taskId": task_id}).body["result"]["evalStandardConf"]

    assert (v1_conf["appAk"], v1_conf["appSk"]) == ("my-app-ak", "my-app-sk")
    assert (v2_conf["appAk"], v2_conf["appSk"]) == ("my-app-ak", "my-app-sk")
    assert "appId" in v1_conf


def test_v1_detail_accepts_the_deprecated_integer_id(qianfan_emulator: Emulator) -> None:
    """Both `{"id": 2}` and `{"evaluationId": 2}` find the second task."""
    qianfan_emulator.add_task("ame-first")
    second = qianfan_emulator.add_task("ame-second")

    by_id = v1(DETAIL, {"id": 2}).body["result"]["evaluationIdStr"]
    by_evaluation_id = v1(DETAIL, {"evaluationId": 2}).body["result"]["evaluationIdStr"]

    assert (second, second) == (by_id, by_evaluation_id)


@pytest.mark.parametrize("route", [DETAIL, CANCEL])
def test_v1_unknown_id_is_the_not_found_envelope(qianfan_emulator: Emulator, route: str) -> None:
    """An unknown id answers HTTP 200 with the not-found code and message."""
    with pytest.raises(APIError) as caught:
        v1(route, {"id": "ame-nosuchtask"})

    assert caught.value.error_code == _api.V1_NOT_FOUND_CODE
    assert caught.value.error_msg == f"{_api.NOT_FOUND_MESSAGE}: ame-nosuchtask"
    assert re.fullmatch(r"\d+", caught.value.req_id)


@pytest.mark.parametrize("body", [{}, {"id": True}, {"id": ""}, {"id": ["ame-x"]}])
def test_v1_malformed_id_is_invalid_param(qianfan_emulator: Emulator, body: Any) -> None:
    """A missing or ill-typed id answers code 336003."""
    with pytest.raises(APIError) as caught:
        v1(DETAIL, body)

    assert caught.value.error_code == _api.CODE_INVALID_PARAM


def test_v1_cancel_of_a_running_task_succeeds(qianfan_emulator: Emulator) -> None:
    """Cancel answers result true and moves the task to Stopping."""
    task_id = qianfan_emulator.add_task()

    body = v1(CANCEL, {"id": task_id}).body

    assert body["result"] == {"result": True, "errorMessage": ""}
    assert re.fullmatch(r"\d+", body["log_id"])
    assert qianfan_emulator.task(task_id).state == "Stopping"


def test_v1_create_makes_a_running_task(qianfan_emulator: Emulator) -> None:
    """Create answers evalId/evalIdStr and the new task is Doing with the given mode."""
    qianfan_emulator.add_task()
    body = v1(CREATE, {"name": "fresh", "evalStandardConf": {"evalMode": "rule,manual"}}).body

    created = body["result"]
    assert re.fullmatch(r"ame-[a-z0-9]{12}", created["evalIdStr"])
    assert created["evalId"] == 2
    snapshot = qianfan_emulator.task(created["evalIdStr"])
    assert (
        snapshot.name,
        snapshot.eval_mode,
        snapshot.state,
    ) == ("fresh", "rule,manual", "Doing")


@pytest.mark.parametrize(
    "body",
    [
        {"evalStandardConf": {"evalMode": "rule"}},
        {"name": "x"},
        {"name": "x", "evalStandardConf": 1},
    ],
)
def test_v1_create_without_name_or_mode_is_invalid_param(
    qianfan_emulator: Emulator, body: dict[str, Any]
) -> None:
    """Create insists on `name` and `evalStandardConf.evalMode`."""
    with pytest.raises(APIError) as caught:
        v1(CREATE, body)

    assert caught.value.error_code == _api.CODE_INVALID_PARAM
    assert qianfan_emulator.tasks() == []


@pytest.mark.parametrize(
    ("eval_mode", "eval_type"),
    [
        ("rule", "auto"),
        ("rule,model", "auto"),
        ("manual", "manual"),
        ("model,manual,rule", "manual"),
    ],
)
def test_v2_describe_maps_modes_and_state(
    qianfan_emulator: Emulator, eval_mode: str, eval_type: str
) -> None:
    """DescribeEvalTask: evalType from the modes, the v2 state name, a uuid requestId."""
    task_id = qianfan_emulator.add_task(eval_mode=eval_mode, state="Pending", name="n")

    body = v2("DescribeEvalTask", {"taskId": task_id}).body

    assert re.fullmatch(r"[0-9a-f-]{36}", body["requestId"])
    result = body["result"]
    assert (task_id, "n", eval_type, "Queued", eval_mode) == (
        result["taskId"],
        result["taskName"],
        result["evalType"],
        result["state"],
        result["evalMode"],
    )
    assert "createTime" in result


def test_v2_stop_of_a_running_task_succeeds(qianfan_emulator: Emulator) -> None:
    """StopEvalTask answers an empty result and moves the task to Stopping."""
    task_id = qianfan_emulator.add_task(state="Running")

    body = v2("StopEvalTask", {"taskId": task_id}).body

    assert body["result"] == {}
    assert qianfan_emulator.task(task_id).state == "Stopping"


def test_v2_unknown_task_is_resource_not_found(qianfan_emulator: Emulator) -> None:
    """v2 answers an unknown task with HTTP 404 ResourceNotFound, for reads and stops."""
    for action in ("DescribeEvalTask", "StopEvalTask"):
        with pytest.raises(RequestError) as caught:
            v2(action, {"taskId": "ame-nosuchtask"})

        assert caught.value.status_code == _api.V2_NOT_FOUND_STATUS
        assert _api.V2_NOT_FOUND_CODE in str(caught.value)


@pytest.mark.parametrize("action", ["", "DeleteEvalTask", "describeevaltask"])
def test_v2_unknown_or_missing_action_is_http_400(qianfan_emulator: Emulator, action: str) -> None:
    """Any action the emulator does not know is HTTP 400."""
    with pytest.raises(RequestError) as caught:
        v2(action, {"taskId": "ame-x"})

    assert caught.value.status_code == 400


def test_v1_and_v2_see_the_same_task(qianfan_emulator: Emulator) -> None:
    """A stop through v1 is visible through v2 and the other way round."""
    first = qianfan_emulator.add_task()
    second = qianfan_emulator.add_task()

    v1(CANCEL, {"id": first})
    v2("StopEvalTask", {"taskId": second})

    assert v2("DescribeEvalTask", {"taskId": first}).body["result"]["state"] == "Stopping"
    assert v1(DETAIL, {"id": second}).body["result"]["state"] == "Stopping"


def test_detail_overrides_replace_and_remove_fields(qianfan_emulator: Emulator) -> None:
    """Overrides serve hostile shapes: None removes a key, other values replace it."""
    task_id = qianfan_emulator.add_task(
        detail_overrides={"evalStandardConf": None, "state": 7},
        describe_overrides={"evalType": ["auto"]},
    )

    detail = v1(DETAIL, {"id": task_id}).body["result"]
    described = v2("DescribeEvalTask", {"taskId": task_id}).body["result"]

    assert "evalStandardConf" not in detail
    assert detail["state"] == 7
    assert described["evalType"] == ["auto"]


def test_unknown_route_is_http_404(qianfan_emulator: Emulator) -> None:
    """A route the emulator does not serve answers 404 with a JSON body."""
    with pytest.raises(RequestError) as caught:
        v1("/wenxinworkshop/modelrepo/eval/delete", {"id": "ame-x"})

    assert caught.value.status_code == 404
    assert "NotFound" in str(caught.value)


def test_the_async_sdk_building_block_is_served_too(qianfan_emulator: Emulator) -> None:
    """qianfan's aiohttp path (what an async client builds on) signs and parses alike."""
    task_id = qianfan_emulator.add_task()

    async def stop_then_describe() -> tuple[Any, Any]:
        answers = []
        for route, action, body in [
            (_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id}),
            (DETAIL, "", {"id": task_id}),
        ]:
            request = QfRequest(method="POST", url=route, query={"Action": action})
            request.json_body = body
            response = await ConsoleAPIRequestor()._async_request_console_api(
                request, qianfan_emulator.ak, qianfan_emulator.sk, RetryConfig(retry_count=1)
            )
            answers.append(response.body)
        return answers[0], answers[1]

    stopped, detail = asyncio.run(stop_then_describe())

    assert stopped["result"] == {}
    assert detail["result"]["state"] == "Stopping"


def test_concurrent_clients_each_get_their_own_answer(qianfan_emulator: Emulator) -> None:
    """Many SDK clients at once: every stop lands on its task exactly once."""
    task_ids = [qianfan_emulator.add_task(f"ame-batch{n:02d}") for n in range(24)]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda task_id: v1(CANCEL, {"id": task_id}).body, task_ids))

    assert all(answer["result"]["result"] is True for answer in answers)
    assert len({answer["log_id"] for answer in answers}) == len(task_ids)
    assert {(snapshot.state, snapshot.stop_requests) for snapshot in qianfan_emulator.tasks()} == {
        ("Stopping", 1)
    }
    stopped = sorted(record.task_id or "" for record in qianfan_emulator.stop_requests())
    assert stopped == task_ids


def test_fault_kinds_match_the_contract() -> None:
    """`Fault` has exactly the fault names CONTRACT.md promises."""
    assert {fault.value for fault in Fault} == {
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
        "slow",
        "not_json",
        "missing_fields",
    }
