"""The emulator routes and records by the gateway's reading of the request target.

Requests here go out through `http.client`, which sends the target verbatim
(`requests` and `aiohttp` would normalise it first), signed over the path as
sent, as a client that spells the route its own way would.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import parse_qsl

import pytest
from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]
from baidubce.utils import get_canonical_time  # type: ignore[import-untyped]

from evalctl._base import _api
from evalctl.emulator import Emulator
from evalctl.emulator._gateway import is_stop, read_target


def post(emulator: Emulator, target: str, body: dict[str, Any], *, signed: bool = True) -> int:
    """POST `body` to `target` exactly as written; the HTTP status."""
    path, _, query = target.partition("?")
    host = f"{emulator.host}:{emulator.port}"
    headers = {"Content-Type": "application/json", "Host": host}
    if signed:
        now = time.time()
        headers["x-bce-date"] = get_canonical_time(now).decode()
        headers["Authorization"] = sign(
            BceCredentials(emulator.ak, emulator.sk),
            b"POST",
            path.encode(),
            {k.encode(): v for k, v in headers.items()},
            {k.encode(): v for k, v in parse_qsl(query, keep_blank_values=True)},
            timestamp=now,
            expiration_in_seconds=300,
            headers_to_sign={k.lower().encode() for k in headers},
        ).decode()
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=5)
    try:
        connection.request("POST", target, json.dumps(body).encode(), headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("target", "route", "action"),
    [
        ("/wenxinworkshop/modelrepo/eval/cancel?Action=", _api.V1_CANCEL_ROUTE, ""),
        ("/wenxinworkshop/modelrepo/eval/./cancel", _api.V1_CANCEL_ROUTE, ""),
        ("/wenxinworkshop/modelrepo/eval/x/../cancel", _api.V1_CANCEL_ROUTE, ""),
        ("/wenxinworkshop/modelrepo/eval/%63ancel", _api.V1_CANCEL_ROUTE, ""),
        ("//wenxinworkshop//modelrepo/eval/cancel/", _api.V1_CANCEL_ROUTE, ""),
        ("/wenxinworkshop/modelrepo/eval/cancel;jsessionid=1", _api.V1_CANCEL_ROUTE, ""),
        ("/wenxinworkshop/modelrepo/eval/cancel#x", _api.V1_CANCEL_ROUTE, ""),
        ("/v2/eval?Action=Stop%45valTask", _api.V2_ROUTE, _api.V2_STOP_ACTION),
        ("/v2/./eval/?Action=StopEvalTask", _api.V2_ROUTE, _api.V2_STOP_ACTION),
        ("/V2/Eval?Action=DescribeEvalTask", "/V2/Eval", _api.V2_DESCRIBE_ACTION),
        ("/v2/eval?action=StopEvalTask", _api.V2_ROUTE, ""),
    ],
)
def test_the_gateway_reading_of_a_target(target: str, route: str, action: str) -> None:
    """Escapes decoded, dot/empty segments resolved, `;` parameters dropped, case kept."""
    view = read_target(target)

    assert (view.route, view.action) == (route, action)


@pytest.mark.parametrize(
    ("target", "stop"),
    [
        ("/wenxinworkshop/modelrepo/eval/Cancel", True),
        ("/V2/EVAL?Action=StopEvalTask", True),
        ("/v2/eval?action=stopevaltask", True),
        ("/v2/eval?Action=DescribeEvalTask&ACTION=StopEvalTask", True),
        ("/v2/eval?Action=DescribeEvalTask", False),
        ("/wenxinworkshop/modelrepo/eval/detail", False),
        ("/wenxinworkshop/modelrepo/eval/cancelled", False),
    ],
)
def test_is_stop_sees_any_case_of_the_route_and_any_action(target: str, stop: bool) -> None:
    """What some gateway might route to a stop counts as one."""
    view = read_target(target)
    assert is_stop(view.route, (view.action, *view.actions)) is stop


@pytest.mark.parametrize(
    ("target", "task_key"),
    [
        ("/wenxinworkshop/modelrepo/eval/./cancel", "id"),
        ("/wenxinworkshop/modelrepo/eval/%63ancel?Action=", "id"),
        ("/wenxinworkshop//modelrepo/eval/cancel/", "id"),
        ("//wenxinworkshop/modelrepo/eval/cancel", "id"),  # http.server's path drops a "/"
        ("/v2/eval/?Action=Stop%45valTask", "taskId"),
    ],
)
def test_a_stop_spelt_another_way_is_served_recorded_and_counted_as_a_stop(
    qianfan_emulator: Emulator, target: str, task_key: str
) -> None:
    """A signed stop with a re-spelt route stops the task, as a real gateway would."""
    task_id = qianfan_emulator.add_task()

    status = post(qianfan_emulator, target, {task_key: task_id})

    (record,) = qianfan_emulator.requests
    assert (status, record.signature_valid, record.is_stop) == (200, True, True)
    assert record.target == target
    assert record.route in (_api.V1_CANCEL_ROUTE, _api.V2_ROUTE)
    assert qianfan_emulator.stop_requests(task_id) == [record]
    assert qianfan_emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)


def test_an_unsigned_stop_in_another_case_is_still_recorded_as_a_stop(
    qianfan_emulator: Emulator,
) -> None:
    """Refused at authentication, never applied, but visible to a test as a stop."""
    task_id = qianfan_emulator.add_task()

    status = post(
        qianfan_emulator, "/V2/eval?action=stopEvalTask", {"taskId": task_id}, signed=False
    )

    (record,) = qianfan_emulator.stop_requests()
    assert (status, record.signature_valid, record.task_id) == (401, False, task_id)
    assert qianfan_emulator.task(task_id).state == _api.V1_DOING
