"""`evalctl.list_eval_tasks` / `alist_eval_tasks`: lazy paging over real HTTP to the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import pytest

import evalctl
from evalctl._base import _api
from evalctl.emulator import Emulator, pointed_at
from evalctl.testing import VirtualClock, set_testing

LIST_ROUTE = f"{_api.V2_ROUTE}?Action=DescribeEvalTasks"


def list_requests(emulator: Emulator) -> list[Any]:
    return emulator.requests_to(LIST_ROUTE)


def seed(emulator: Emulator, count: int, **options: Any) -> list[str]:
    return [emulator.add_task(name=f"nightly-{n:03d}", **options) for n in range(count)]


def test_pages_lazily_across_faults_injected_mid_listing(emulator: Emulator) -> None:
    """Faults between pages are retried; every task comes once, in order; pages only on demand."""
    created = seed(emulator, 23)
    tasks = evalctl.list_eval_tasks(page_size=5)

    first = [next(tasks) for _ in range(5)]
    assert len(list_requests(emulator)) == 1  # one page asked for, no more

    for fault in ("http_503", "code_18", "reset", "http_429"):
        emulator.inject(fault, route=LIST_ROUTE)
    rest = list(tasks)

    assert created == [task.task_id for task in first + rest]
    records = list_requests(emulator)
    assert [record.fault for record in records] == [
        None,
        "http_503",
        "code_18",
        "reset",
        "http_429",
        None,
        None,
        None,
        None,
    ]
    # The retried page asked for the same marker: no page skipped, none repeated.
    markers = [record.body.get("marker") for record in records]
    assert markers == [None, *[created[5]] * 5, created[10], created[15], created[20]]
    assert {record.body["maxKeys"] for record in records} == {5}


def test_yields_frozen_records_with_the_listed_fields(emulator: Emulator) -> None:
    """A `ListedTask` carries id, name, type and the v2 state, and is immutable."""
    task_id = emulator.add_task(name="nightly-x", state="Pending")

    (task,) = evalctl.list_eval_tasks()

    assert task == evalctl.ListedTask(task_id, "nightly-x", "auto", "Queued")
    with pytest.raises(AttributeError):
        task.state = "Stopped"  # type: ignore[misc]


def test_name_is_an_exact_case_sensitive_glob(emulator: Emulator) -> None:
    """`name` must match the whole name, case counting; ?, * and [] work as in a shell."""
    wanted = [
        emulator.add_task(name="nightly-2026-11-01"),
        emulator.add_task(name="nightly-2026-11-30"),
    ]
    emulator.add_task(name="Nightly-2026-11-02")  # case differs
    emulator.add_task(name="old-nightly-2026-11-03")  # not anchored at the start
    emulator.add_task(name="nightly-2026-12-01")
    emulator.add_task(name="nightly-2026-11")  # too short for the pattern

    by_glob = [t.task_id for t in evalctl.list_eval_tasks(name="nightly-2026-11-*")]
    by_class = [t.task_id for t in evalctl.list_eval_tasks(name="nightly-2026-11-[03]?")]

    assert (wanted, wanted) == (by_glob, by_class)


def test_states_are_applied_client_side(emulator: Emulator) -> None:
    """The server gets no state filter; `states` (any case) keeps only those states."""
    running = emulator.add_task(state="Doing")
    queued = emulator.add_task(state="Pending")
    emulator.add_task(state="Stopped")
    emulator.add_task(state="Done")

    got = [t.task_id for t in evalctl.list_eval_tasks(states=["running", "Queued"])]
    single = [t.task_id for t in evalctl.list_eval_tasks(states="Running")]

    assert ([running, queued], [running]) == (got, single)
    assert all(set(r.body) == {"evalType", "maxKeys"} for r in list_requests(emulator))


def test_key_filter_goes_to_the_server(emulator: Emulator) -> None:
    """`key_filter` is the server's keyFilter (fuzzy on the name)."""
    nightly = emulator.add_task(name="nightly-1")
    emulator.add_task(name="weekly-1")

    got = [t.task_id for t in evalctl.list_eval_tasks(key_filter="NIGHT")]

    assert [nightly] == got
    assert [r.body for r in list_requests(emulator)] == [
        {"evalType": "auto", "maxKeys": 100, "keyFilter": "NIGHT"}
    ]


def test_all_lists_automatic_then_manual_tasks(emulator: Emulator) -> None:
    """eval_type="all" walks the auto list, then the manual list (each paged)."""
    auto = [emulator.add_task(eval_mode="rule") for _ in range(3)]
    manual = [emulator.add_task(eval_mode="rule,manual") for _ in range(3)]

    got = list(evalctl.list_eval_tasks(eval_type="all", page_size=2))

    assert auto + manual == [t.task_id for t in got]
    assert [t.eval_type for t in got] == ["auto"] * 3 + ["manual"] * 3
    assert [r.body["evalType"] for r in list_requests(emulator)] == [
        "auto",
        "auto",
        "manual",
        "manual",
    ]
    assert [t.eval_type for t in evalctl.list_eval_tasks(eval_type="manual")][:1] == ["manual"]


def test_limit_stops_asking_for_pages(emulator: Emulator) -> None:
    """`limit` ends the listing after that many matches: no further page is requested."""
    created = seed(emulator, 12)

    got = [t.task_id for t in evalctl.list_eval_tasks(limit=6, page_size=5)]

    assert created[:6] == got
    assert len(list_requests(emulator)) == 2


def test_a_list_that_names_manual_in_its_mode_is_listed_as_manual(emulator: Emulator) -> None:
    """An item whose evalType says auto but whose evalMode names manual counts as manual."""
    task_id = emulator.add_task(eval_mode="rule,Manual", list_overrides={"evalType": "auto"})

    (task,) = evalctl.list_eval_tasks()

    assert (task_id, "manual") == (task.task_id, task.eval_type)


class FrozenClock(VirtualClock):
    """A virtual clock on which only sleeps move time: real time spent on HTTP does not count."""

    def monotonic(self) -> float:
        return 1000.0 + sum(max(seconds, 0.0) for seconds in self.sleeps)


def test_the_rate_limit_spaces_the_pages(emulator: Emulator) -> None:
    """With qps=4, each of 5 pages but the first waits a quarter second (on the clock)."""
    seed(emulator, 10)
    frozen = FrozenClock()

    with set_testing(True, clock=frozen):
        assert len(list(evalctl.list_eval_tasks(page_size=2, qps=4))) == 10

    assert frozen.sleeps == pytest.approx([0.25] * 4)
    assert len(list_requests(emulator)) == 5


def test_no_qps_means_no_client_side_wait(emulator: Emulator, clock: VirtualClock) -> None:
    """Without qps the pages go out back to back."""
    seed(emulator, 10)

    assert len(list(evalctl.list_eval_tasks(page_size=2))) == 10

    assert clock.sleeps == []


def test_the_async_twin_gives_the_same_tasks(emulator: Emulator) -> None:
    """`alist_eval_tasks` is an async generator over the same pages, faults retried."""
    seed(emulator, 7, eval_mode="rule")
    seed(emulator, 2, eval_mode="manual")
    expected = list(evalctl.list_eval_tasks(eval_type="all", page_size=3))
    emulator.clear_requests()
    emulator.inject("http_500", route=LIST_ROUTE)

    async def collect() -> list[evalctl.ListedTask]:
        return [task async for task in evalctl.alist_eval_tasks(eval_type="all", page_size=3)]

    got = asyncio.run(collect())

    assert expected == got
    assert [r.fault for r in list_requests(emulator)] == ["http_500", None, None, None, None]


def test_explicit_keys_are_used_without_the_environment() -> None:
    """`ak`/`sk` sign the pages (the emulator verifies them)."""
    with Emulator(ak="list-ak-123", sk="list-sk-456") as emulator, pointed_at(emulator):
        task_id = emulator.add_task()
        saved = os.environ.pop("QIANFAN_SECRET_KEY")
        try:
            got = [t.task_id for t in evalctl.list_eval_tasks(ak="list-ak-123", sk="list-sk-456")]
        finally:
            os.environ["QIANFAN_SECRET_KEY"] = saved

    assert [task_id] == got
    assert all(r.signature_valid for r in emulator.requests)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eval_type": "both"}, "eval_type must be one of auto, manual, all"),
        ({"eval_type": None}, "eval_type must be one of"),
        ({"name": ""}, "name is empty"),
        ({"name": 3}, "name must be a string"),
        ({"name": "a\x1b[2J"}, "name has control characters"),
        ({"key_filter": "x" * 257}, "key_filter is longer than 256"),
        ({"states": ["Running", "Sleeping"]}, "unknown state 'Sleeping'"),
        ({"states": []}, "states is empty"),
        ({"states": [1]}, "states must be strings"),
        ({"limit": 0}, "limit must be >= 1"),
        ({"limit": True}, "limit must be an integer"),
        ({"page_size": 101}, "page_size must be from 1 to 100"),
        ({"page_size": 0}, "page_size must be from 1 to 100"),
        ({"qps": 0}, "qps must be a finite number > 0"),
        ({"retry": {"max_attempts": 2}}, "retry must be a RetryPolicy"),
        ({"sk": 123}, "sk must be a string"),
        ({"ak": "key\n"}, "ak contains a line break"),
    ],
)
def test_bad_arguments_fail_at_the_call_and_send_nothing(
    emulator: Emulator, options: dict[str, Any], message: str
) -> None:
    """Every argument is checked when the listing is made, before any page is asked for."""
    emulator.add_task()

    with pytest.raises(evalctl.ConfigurationError, match="^" + re.escape(message)):
        evalctl.list_eval_tasks(**options)
    with pytest.raises(evalctl.ConfigurationError):
        evalctl.alist_eval_tasks(**options)

    assert emulator.requests == []


def _page(items: list[Any] | None, info: dict[str, Any] | None) -> bytes:
    result: dict[str, Any] = {}
    if items is not None:
        result["evalTaskList"] = items
    if info is not None:
        result["pageInfo"] = info
    return json.dumps({"requestId": "req-123", "result": result}).encode()


_ITEM = {"taskId": "ame-one1", "taskName": "n", "evalType": "auto", "state": "Running"}
_LAST = {"marker": "", "maxKeys": 100, "isTruncated": False, "nextMarker": ""}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_page(None, _LAST), "has no evalTaskList"),
        (_page([_ITEM], None), "has no pageInfo"),
        (json.dumps({"requestId": "req-123"}).encode(), "has no result object"),
        (_page([_ITEM], {**_LAST, "isTruncated": "no"}), "isTruncated is not a boolean"),
        (_page([_ITEM], {**_LAST, "isTruncated": True}), "gives no nextMarker"),
        (_page([{**_ITEM, "taskId": ""}], _LAST), "item 0 has no taskId"),
        (_page([{**_ITEM, "state": None}], _LAST), "item 0 has no state"),
        (_page([_ITEM, "ame-two2"], _LAST), "item 1 is not an object"),
    ],
    ids=[
        "no list",
        "no pageInfo",
        "no result",
        "isTruncated str",
        "truncated without nextMarker",
        "empty taskId",
        "no state",
        "item not an object",
    ],
)
def test_a_malformed_page_fails_closed(emulator: Emulator, body: bytes, message: str) -> None:
    """A page without the documented shape is an error naming it, never a silent end."""
    emulator.serve_raw(body, route=LIST_ROUTE)

    with pytest.raises(evalctl.InvalidResponseError, match=re.escape(message)) as caught:
        list(evalctl.list_eval_tasks())

    assert "DescribeEvalTasks (auto) page 1" in str(caught.value)


def test_missing_fields_mid_listing_fails_closed(emulator: Emulator) -> None:
    """A later page that lost its fields ends the listing with an error, after the good pages."""
    seed(emulator, 6)
    tasks = evalctl.list_eval_tasks(page_size=3)
    first_page = [next(tasks) for _ in range(3)]
    emulator.inject("missing_fields", route=LIST_ROUTE)

    with pytest.raises(evalctl.InvalidResponseError, match="page 2 has no evalTaskList"):
        list(tasks)

    assert len(first_page) == 3


def test_a_marker_loop_is_an_error(emulator: Emulator) -> None:
    """A server that keeps answering the same nextMarker cannot make the listing run forever."""
    looping = _page([_ITEM], {**_LAST, "isTruncated": True, "nextMarker": "ame-one1"})
    emulator.serve_raw(looping, route=LIST_ROUTE, times=3)

    with pytest.raises(evalctl.InvalidResponseError, match="repeats an earlier nextMarker"):
        list(evalctl.list_eval_tasks())

    assert len(list_requests(emulator)) == 2


def test_a_task_repeated_across_pages_is_yielded_once(emulator: Emulator) -> None:
    """Tasks moving between pages while listing are not listed twice."""
    first = _page([_ITEM], {**_LAST, "isTruncated": True, "nextMarker": "ame-two2"})
    second = _page([_ITEM, {**_ITEM, "taskId": "ame-two2"}], _LAST)
    emulator.serve_raw(first, route=LIST_ROUTE)
    emulator.serve_raw(second, route=LIST_ROUTE)

    assert [t.task_id for t in evalctl.list_eval_tasks()] == ["ame-one1", "ame-two2"]


def test_retries_exhausted_surface_as_the_public_error(emulator: Emulator) -> None:
    """A page that keeps failing ends the listing with RetryExhaustedError (exit code 5)."""
    emulator.add_task()
    emulator.inject("http_503", times=50, route=LIST_ROUTE)

    with pytest.raises(evalctl.RetryExhaustedError):
        list(evalctl.list_eval_tasks(retry=evalctl.RetryPolicy(max_attempts=3)))

    assert len(list_requests(emulator)) == 3


def test_a_paused_listing_holds_no_bare_key() -> None:
    """The generator's frame (what a debugger or a crash reporter shows) masks explicit keys."""
    with Emulator(ak="list-ak-frame1", sk="list-sk-frame2") as emulator, pointed_at(emulator):
        emulator.add_task()
        emulator.add_task()
        tasks = evalctl.list_eval_tasks(ak="list-ak-frame1", sk="list-sk-frame2", page_size=1)
        next(tasks)

        frame = tasks.gi_frame  # type: ignore[attr-defined]
        shown = repr(frame.f_locals) + repr(vars(frame.f_locals["query"]))
        tasks.close()

    assert "list-sk-frame2" not in shown
    assert "list-ak-frame1" not in shown
    assert "_Keys(***)" in shown
