"""The emulator's DescribeEvalTasks in the documented shape, through the real SDK over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from qianfan.errors import APIError, RequestError
from qianfan.resources.console.utils import call_action
from qianfan.resources.typing import QfResponse

from evalctl._base import _api
from evalctl.emulator import Emulator

LIST = "DescribeEvalTasks"
LIST_ROUTE = f"{_api.V2_ROUTE}?Action={LIST}"


def describe_tasks(body: dict[str, Any]) -> QfResponse:
    return call_action(_api.V2_ROUTE, LIST, body)


def all_pages(body: dict[str, Any]) -> tuple[list[str], int]:
    """Every task id the list gives for `body`, following nextMarker; and the page count."""
    seen: list[str] = []
    pages = 0
    marker = None
    while True:
        asked = dict(body, **({"marker": marker} if marker else {}))
        result = describe_tasks(asked).body["result"]
        seen.extend(item["taskId"] for item in result["evalTaskList"])
        pages += 1
        if not result["pageInfo"]["isTruncated"]:
            return seen, pages
        marker = result["pageInfo"]["nextMarker"]


def test_a_page_has_the_documented_shape(emulator: Emulator) -> None:
    """result.evalTaskList[] with taskId/taskName/evalType/state, and result.pageInfo."""
    first = emulator.add_task("ame-first1", "rule", "Doing", name="nightly-a")
    second = emulator.add_task("ame-second1", "model", "Done", name="nightly-b")
    emulator.add_task("ame-third1", "rule", "Doing", name="nightly-c")

    body = describe_tasks({"evalType": "auto", "maxKeys": 2}).body

    assert isinstance(body["requestId"], str)
    assert body["requestId"]
    items = body["result"]["evalTaskList"]
    assert [
        (first, "nightly-a", "auto", "Running"),
        (second, "nightly-b", "auto", "Successed"),
    ] == [(i["taskId"], i["taskName"], i["evalType"], i["state"]) for i in items]
    assert body["result"]["pageInfo"] == {
        "marker": "",
        "maxKeys": 2,
        "isTruncated": True,
        "nextMarker": "ame-third1",
    }
    assert "SECRET" not in repr(body)  # a model task's app keys never reach the list


def test_paging_by_marker_visits_every_task_once_in_creation_order(emulator: Emulator) -> None:
    """nextMarker is the next page's first task; the last page is not truncated."""
    created = [emulator.add_task(f"ame-task{n:02d}") for n in range(7)]

    assert (created, 3) == all_pages({"evalType": "auto", "maxKeys": 3})


def test_page_reverse_lists_newest_first(emulator: Emulator) -> None:
    """pageReverse walks the same tasks the other way."""
    created = [emulator.add_task(f"ame-task{n:02d}") for n in range(5)]

    assert (created[::-1], 3) == all_pages({"evalType": "auto", "maxKeys": 2, "pageReverse": True})


def test_default_page_size_is_ten(emulator: Emulator) -> None:
    """Without maxKeys a page holds 10 tasks, as documented."""
    for n in range(12):
        emulator.add_task(f"ame-task{n:02d}")

    result = describe_tasks({"evalType": "auto"}).body["result"]

    assert (
        len(result["evalTaskList"]),
        result["pageInfo"]["maxKeys"],
        result["pageInfo"]["isTruncated"],
    ) == (10, 10, True)


def test_eval_type_selects_automatic_or_manual_tasks(emulator: Emulator) -> None:
    """evalType auto lists the tasks without manual mode; manual those with it."""
    auto = emulator.add_task(eval_mode="rule,model")
    manual = emulator.add_task(eval_mode="rule,manual")

    assert ([auto], 1) == all_pages({"evalType": "auto"})
    assert ([manual], 1) == all_pages({"evalType": "manual"})


def test_key_filter_is_fuzzy_on_name_and_id_and_exact_on_model_version(
    emulator: Emulator,
) -> None:
    """keyFilter: a fragment of the name (any case) or id; the whole model version id."""
    nightly = emulator.add_task("ame-aaa111", name="Nightly-2026-11-30")
    weekly = emulator.add_task("ame-bbb222", name="weekly-run")

    assert [nightly] == all_pages({"evalType": "auto", "keyFilter": "nightly"})[0]
    assert [weekly] == all_pages({"evalType": "auto", "keyFilter": "bbb2"})[0]
    # The second task's model version is amv-emulator0002 (see the v1 detail).
    assert [weekly] == all_pages({"evalType": "auto", "keyFilter": "amv-emulator0002"})[0]
    assert all_pages({"evalType": "auto", "keyFilter": "amv-emulator000"})[0] == []


@pytest.mark.parametrize(
    "body",
    [
        {"evalType": "auto", "maxKeys": 0},
        {"evalType": "auto", "maxKeys": 101},
        {"evalType": "auto", "maxKeys": "10"},
        {"evalType": "auto", "maxKeys": True},
        {},
        {"evalType": "all"},
        {"evalType": "auto", "marker": "ame-nosuchtask"},
        {"evalType": "auto", "marker": 3},
        {"evalType": "auto", "keyFilter": ["x"]},
        {"evalType": "auto", "pageReverse": "yes"},
    ],
    ids=[
        "maxKeys 0",
        "maxKeys 101",
        "maxKeys string",
        "maxKeys bool",
        "no evalType",
        "evalType all",
        "unknown marker",
        "marker int",
        "keyFilter list",
        "pageReverse string",
    ],
)
def test_bad_parameters_are_http_400_invalid_parameter(
    emulator: Emulator, body: dict[str, Any]
) -> None:
    """The v2 answer to a malformed request: HTTP 400, code InvalidParameter."""
    emulator.add_task()

    with pytest.raises(RequestError) as caught:
        describe_tasks(body)

    assert caught.value.status_code == 400
    assert '"code": "InvalidParameter"' in str(caught.value)  # it quotes the response body


def test_max_keys_of_one_hundred_is_accepted(emulator: Emulator) -> None:
    """100 is the documented maximum page size."""
    for _ in range(101):
        emulator.add_task()

    result = describe_tasks({"evalType": "auto", "maxKeys": 100}).body["result"]

    assert (len(result["evalTaskList"]), result["pageInfo"]["isTruncated"]) == (100, True)


def test_faults_narrowed_to_the_list_route_hit_only_it(emulator: Emulator) -> None:
    """`inject(..., route=/v2/eval?Action=DescribeEvalTasks)` spares the detail read."""
    task_id = emulator.add_task()
    emulator.inject("code_18", route=LIST_ROUTE)

    detail = call_action(_api.V2_ROUTE, "DescribeEvalTask", {"taskId": task_id}).body
    with pytest.raises(APIError) as caught:
        describe_tasks({"evalType": "auto"})
    after = describe_tasks({"evalType": "auto"}).body

    assert detail["result"]["taskId"] == task_id
    assert caught.value.error_code == _api.CODE_QPS_LIMIT
    assert [task_id] == [item["taskId"] for item in after["result"]["evalTaskList"]]
    assert [record.fault for record in emulator.requests] == [None, "code_18", None]


def test_missing_fields_drops_the_list_and_page_info(emulator: Emulator) -> None:
    """The `missing_fields` fault answers a result without evalTaskList or pageInfo."""
    emulator.add_task()
    emulator.inject("missing_fields", route=LIST_ROUTE)

    assert describe_tasks({"evalType": "auto"}).body["result"] == {}


def test_list_overrides_make_a_list_that_mislabels_a_task(emulator: Emulator) -> None:
    """A manual task shown as auto is listed (and filtered) as auto; its detail says manual."""
    task_id = emulator.add_task(
        eval_mode="manual", list_overrides={"evalType": "auto", "evalMode": None}
    )

    item = describe_tasks({"evalType": "auto"}).body["result"]["evalTaskList"][0]
    detail = call_action(_api.V2_ROUTE, "DescribeEvalTask", {"taskId": task_id}).body["result"]

    assert (task_id, "auto") == (item["taskId"], item["evalType"])
    assert "evalMode" not in item
    assert detail["evalType"] == "manual"
    assert all_pages({"evalType": "manual"})[0] == []


def test_the_list_sees_stops_settle(emulator: Emulator) -> None:
    """A stopped task reads Stopped in the list (stop_delay_s=0 here)."""
    task_id = emulator.add_task()
    call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})

    item = describe_tasks({"evalType": "auto"}).body["result"]["evalTaskList"][0]

    assert item["state"] == "Stopped"
