"""Tasks and the rules of stopping them: what the cloud allows, refuses, and when."""

from __future__ import annotations

import re
import time

import pytest
from qianfan.errors import RequestError
from qianfan.resources.console.utils import call_action

from evalctl._base import _api
from evalctl.emulator import Emulator, pointed_at


def cancel(task_id: str) -> dict[str, object]:
    body = call_action(_api.V1_CANCEL_ROUTE, "", {"id": task_id}).body
    result: dict[str, object] = body["result"]
    return result


def state_v1(task_id: str) -> str:
    state: str = call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id}).body["result"]["state"]
    return state


def test_stop_moves_doing_to_stopping_then_stopped() -> None:
    """Stopping lasts stop_delay_s, then reads Stopped — through the API and the snapshot."""
    with Emulator(stop_delay_s=0.3) as emulator, pointed_at(emulator):
        task_id = emulator.add_task()

        cancel(task_id)
        right_after = (state_v1(task_id), emulator.task(task_id).state)
        time.sleep(0.35)
        later = (state_v1(task_id), emulator.task(task_id).state)

    assert (right_after, later) == (("Stopping", "Stopping"), ("Stopped", "Stopped"))


def test_zero_stop_delay_reads_stopped_at_once() -> None:
    """stop_delay_s=0: the next read already says Stopped."""
    with Emulator(stop_delay_s=0) as emulator, pointed_at(emulator):
        task_id = emulator.add_task(state="Pending")
        cancel(task_id)

        assert state_v1(task_id) == "Stopped"


@pytest.mark.parametrize(
    ("eval_mode", "state"),
    [
        ("rule,manual", "Doing"),
        ("manual", "Pending"),
        ("model,manual,rule", "Doing"),
        (" Manual ", "Doing"),
        ("rule", "DoingWithManualBegin"),
        ("rule", "DoingWithMetricsCalculating"),
        ("rule,manual", "Stopped"),
    ],
)
def test_manual_tasks_are_refused_and_keep_their_state(
    qianfan_emulator: Emulator, eval_mode: str, state: str
) -> None:
    """Manual mode (or a manual state) refuses the stop; the request is still counted."""
    task_id = qianfan_emulator.add_task(eval_mode=eval_mode, state=state)

    result = cancel(task_id)

    assert result == {"result": False, "errorMessage": _api.REFUSE_MANUAL_MESSAGE}
    snapshot = qianfan_emulator.task(task_id)
    assert (state, 1) == (snapshot.state, snapshot.stop_requests)


def test_v2_refuses_manual_tasks_with_invalid_operation(qianfan_emulator: Emulator) -> None:
    """v2 refusal is HTTP 400 InvalidOperation with the refusal message."""
    task_id = qianfan_emulator.add_task(eval_mode="rule,manual", state="Running")

    with pytest.raises(RequestError) as caught:
        call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})

    assert caught.value.status_code == 400
    assert _api.V2_INVALID_OPERATION_CODE in str(caught.value)
    assert qianfan_emulator.task(task_id).state == "Doing"


@pytest.mark.parametrize("state", ["Done", "PartlyDone", "Fail", "Failed", "Successed"])
def test_finished_tasks_are_refused_as_not_running(qianfan_emulator: Emulator, state: str) -> None:
    """A finished task answers result false with the not-running message (v1) / 400 (v2)."""
    task_id = qianfan_emulator.add_task(state=state)
    before = qianfan_emulator.task(task_id).state

    result = cancel(task_id)
    with pytest.raises(RequestError) as caught:
        call_action(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})

    assert result == {"result": False, "errorMessage": _api.REFUSE_FINISHED_MESSAGE}
    assert caught.value.status_code == 400
    assert qianfan_emulator.task(task_id).state == before


@pytest.mark.parametrize("state", ["Stopping", "Stopped"])
def test_stopping_a_stopped_task_again_succeeds(qianfan_emulator: Emulator, state: str) -> None:
    """Stops are idempotent, as in the cloud: result true, state unchanged."""
    task_id = qianfan_emulator.add_task(state=state)

    results = [cancel(task_id), cancel(task_id)]

    assert results == [{"result": True, "errorMessage": ""}] * 2
    assert (state, 2) == (
        qianfan_emulator.task(task_id).state,
        qianfan_emulator.task(task_id).stop_requests,
    )


def test_look_alike_manual_is_stored_and_served_verbatim(qianfan_emulator: Emulator) -> None:
    """Malformed modes are kept exactly; a Cyrillic 'mаnual' is not manual to the emulator."""
    modes = ["", "rule,,", "Manual ", "mаnual"]
    ids = [qianfan_emulator.add_task(eval_mode=mode) for mode in modes]

    served = [
        call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id}).body["result"]["evalStandardConf"][
            "evalMode"
        ]
        for task_id in ids
    ]

    assert modes == served
    assert cancel(ids[3])["result"] is True


def test_add_task_generates_ids_and_sequential_integer_ids() -> None:
    """Generated ids look like the cloud's; evaluationId counts from 1, again after reset."""
    emulator = Emulator()
    first, second = emulator.add_task(), emulator.add_task()
    emulator.reset()
    third = emulator.add_task()

    assert re.fullmatch(r"ame-[a-z0-9]{12}", first)
    assert first != second
    assert [snapshot.evaluation_id for snapshot in emulator.tasks()] == [1]
    assert emulator.task(third).name == f"eval-{third}"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Running", "Doing"),
        ("Queued", "Pending"),
        ("Successed", "Done"),
        ("RunningWithManualBegin", "DoingWithManualBegin"),
        ("Failed", "Failed"),
        ("Fail", "Fail"),
        ("Stopped", "Stopped"),
        ("Paused", "Paused"),
    ],
)
def test_states_in_either_generation_are_stored_as_v1(given: str, stored: str) -> None:
    """v2 names map to v1; v1 names and unknown names are kept."""
    emulator = Emulator()

    task_id = emulator.add_task(state=given)

    assert emulator.task(task_id).state == stored


def test_duplicate_or_empty_ids_are_refused() -> None:
    """Task ids are unique and non-empty."""
    emulator = Emulator()
    emulator.add_task("ame-once")

    with pytest.raises(ValueError, match="already exists"):
        emulator.add_task("ame-once")
    with pytest.raises(ValueError, match="non-empty"):
        emulator.add_task("")


def test_stop_delay_can_change_after_construction(qianfan_emulator: Emulator) -> None:
    """set_stop_delay(0) makes the next stop read Stopped at once."""
    qianfan_emulator.set_stop_delay(0)
    task_id = qianfan_emulator.add_task()

    cancel(task_id)

    assert qianfan_emulator.task(task_id).state == "Stopped"


def test_set_state_forces_a_state_that_never_settles() -> None:
    """A forced Stopping stays Stopping even with stop_delay_s=0."""
    emulator = Emulator(stop_delay_s=0)
    task_id = emulator.add_task()

    emulator.set_state(task_id, "Stopping")
    emulator.set_state(task_id, "Stopping")

    assert emulator.task(task_id).state == "Stopping"
    with pytest.raises(KeyError):
        emulator.set_state("ame-nope", "Done")


def test_unknown_task_snapshot_is_a_key_error() -> None:
    """task() names the missing id."""
    with pytest.raises(KeyError, match="ame-missing"):
        Emulator().task("ame-missing")


def test_reset_forgets_tasks_faults_and_records(qianfan_emulator: Emulator) -> None:
    """reset() empties everything the tests added, keeps serving."""
    task_id = qianfan_emulator.add_task()
    cancel(task_id)
    qianfan_emulator.inject("http_500", times=3)

    qianfan_emulator.reset()

    assert (
        qianfan_emulator.tasks(),
        qianfan_emulator.requests,
        qianfan_emulator.faults_pending,
    ) == ([], [], 0)
