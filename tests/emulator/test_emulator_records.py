"""What the emulator remembers about each request — and what it never keeps."""

from __future__ import annotations

import pytest
import requests
from qianfan.errors import RequestError
from qianfan.resources.console.utils import call_action

from evalctl._base import _api
from evalctl.emulator import Emulator, RecordedRequest


def test_records_describe_each_request_in_arrival_order(qianfan_emulator: Emulator) -> None:
    """Route, action, parsed body, validity, status, fault, time and task id per request."""
    task_id = qianfan_emulator.add_task()
    qianfan_emulator.inject("http_503", route="/v2/eval?Action=StopEvalTask")

    call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id})
    with pytest.raises(RequestError):
        call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})
    call_action(_api.V1_DETAIL_ROUTE, "", {"evaluationId": 1})

    first, second, third = qianfan_emulator.requests
    assert first == RecordedRequest(
        route=_api.V1_DETAIL_ROUTE,
        action="",
        body={"id": task_id},
        signature_valid=True,
        status=200,
        fault=None,
        time=first.time,
        task_id=task_id,
    )
    assert (_api.V2_ROUTE, "StopEvalTask", 503, "http_503", task_id) == (
        second.route,
        second.action,
        second.status,
        second.fault,
        second.task_id,
    )
    assert third.task_id == "1"
    assert first.time < second.time < third.time


def test_requests_to_filters_by_route_and_action(qianfan_emulator: Emulator) -> None:
    """`/v2/eval?Action=X` is shorthand for route + action."""
    task_id = qianfan_emulator.add_task()
    call_action(_api.V2_ROUTE, "DescribeEvalTask", {"taskId": task_id})
    call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})
    call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id})

    v2_all = qianfan_emulator.requests_to(_api.V2_ROUTE)
    describes = qianfan_emulator.requests_to("/v2/eval?Action=DescribeEvalTask")
    same = qianfan_emulator.requests_to(_api.V2_ROUTE, action="DescribeEvalTask")

    assert (len(v2_all), len(describes)) == (2, 1)
    assert describes == same
    with pytest.raises(ValueError, match="names action"):
        qianfan_emulator.requests_to("/v2/eval?Action=StopEvalTask", action="DescribeEvalTask")


def test_stop_requests_count_every_attempt_per_task(qianfan_emulator: Emulator) -> None:
    """v1 cancels and v2 stops, faulted ones included, filtered by task."""
    one = qianfan_emulator.add_task()
    other = qianfan_emulator.add_task()
    qianfan_emulator.inject("http_500", route=_api.V1_CANCEL_ROUTE)

    with pytest.raises(RequestError):
        call_action(_api.V1_CANCEL_ROUTE, "", {"id": one})
    call_action(_api.V1_CANCEL_ROUTE, "", {"id": one})
    call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": other})
    call_action(_api.V1_DETAIL_ROUTE, "", {"id": one})

    assert [record.status for record in qianfan_emulator.stop_requests(one)] == [500, 200]
    assert len(qianfan_emulator.stop_requests()) == 3
    assert qianfan_emulator.task(one).stop_requests == 1  # only the one that reached it


def test_bodies_that_are_not_json_are_recorded_as_none(qianfan_emulator: Emulator) -> None:
    """The record keeps parsed JSON only."""
    requests.post(qianfan_emulator.base_url + _api.V1_DETAIL_ROUTE, data=b"{oops", timeout=5)

    (record,) = qianfan_emulator.requests
    assert (
        record.body,
        record.task_id,
        record.signature_valid,
        record.status,
    ) == (None, None, False, 401)


def test_records_hold_no_header_values(qianfan_emulator: Emulator) -> None:
    """Neither the Authorization value nor the keys end up in records."""
    task_id = qianfan_emulator.add_task()
    call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id})

    text = repr(qianfan_emulator.requests)

    assert "bce-auth-v1" not in text
    assert qianfan_emulator.ak not in text
    assert qianfan_emulator.sk not in text


def test_clear_requests_keeps_tasks(qianfan_emulator: Emulator) -> None:
    """clear_requests forgets records only."""
    task_id = qianfan_emulator.add_task()
    call_action(_api.V1_CANCEL_ROUTE, "", {"id": task_id})

    qianfan_emulator.clear_requests()

    assert qianfan_emulator.requests == []
    assert qianfan_emulator.task(task_id).stop_requests == 1


def test_requests_is_a_snapshot(qianfan_emulator: Emulator) -> None:
    """Mutating the returned list changes nothing inside the emulator."""
    call_action(_api.V1_DETAIL_ROUTE, "", {"id": qianfan_emulator.add_task()})

    qianfan_emulator.requests.clear()

    assert len(qianfan_emulator.requests) == 1
