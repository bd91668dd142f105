"""describe_eval_task / adescribe_eval_task: the detail as an `EvalTask`, for v1 and v2."""

from __future__ import annotations

from typing import Any

import pytest

from core.support import ApiSpec, Client, request_log_ids
from evalctl import (
    EvalTask,
    InvalidTaskIdError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    TaskNotFoundError,
)
from evalctl.emulator import Emulator
from evalctl.emulator._defaults import DEFAULT_APP_AK, DEFAULT_APP_SK


@pytest.mark.parametrize(
    ("stored", "modes", "manual"),
    [
        ("rule", {"rule"}, False),
        ("rule, Model", {"rule", "model"}, False),
        ("model,manual,rule", {"model", "manual", "rule"}, True),
        (" MANUAL ", {"manual"}, True),
    ],
)
def test_reads_state_modes_and_manual(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    stored: str,
    modes: set[str],
    manual: bool,
) -> None:
    """Modes are trimmed and lower-cased; `includes_manual` says whether manual is among them."""
    state = api.running_states[0]
    task_id = emulator.add_task(eval_mode=stored, state=state, name="nightly")

    task = client.describe(task_id)

    assert EvalTask(task_id, "nightly", state, frozenset(modes), manual) == task
    assert request_log_ids(logs) == [task.log_id]
    assert api.is_log_id(task.log_id)
    assert emulator.stop_requests() == []


def test_a_manual_state_means_manual_whatever_the_modes(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """DoingWithManualBegin / DoingWithMetricsCalculating (v2 RunningWith...) include manual."""
    for state in api.manual_states:
        task = client.describe(emulator.add_task(eval_mode="rule", state=state))

        assert (task.state, task.eval_modes, task.includes_manual) == (
            state,
            frozenset({"rule"}),
            True,
        )


def test_never_carries_the_judge_app_credentials(client: Client, emulator: Emulator) -> None:
    """A `model` task's detail holds appAk/appSk; the EvalTask holds neither, even in its repr."""
    task = client.describe(emulator.add_task(eval_mode="rule,model"))

    shown = repr(task) + str(vars(task))
    assert DEFAULT_APP_AK not in shown
    assert DEFAULT_APP_SK not in shown


def test_an_unknown_task_is_not_found(
    client: Client, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """TaskNotFoundError carries the id and the server's log id, for both generations."""
    with pytest.raises(TaskNotFoundError) as caught:
        client.describe("ame-nosuchtask")

    assert (caught.value.task_id, caught.value.log_id) == (
        "ame-nosuchtask",
        request_log_ids(logs)[0],
    )


def test_an_unreadable_detail_is_a_precheck_error(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """A detail that is not JSON cannot be described."""
    task_id = emulator.add_task()
    emulator.inject("not_json", route=api.detail_fault_route)

    with pytest.raises(PrecheckError):
        client.describe(task_id)


def test_retries_a_transient_failure(client: Client, api: ApiSpec, emulator: Emulator) -> None:
    """Reads are retried like every request; exhaustion surfaces as RetryExhaustedError."""
    task_id = emulator.add_task()
    emulator.inject("http_502", route=api.detail_fault_route)
    assert client.describe(task_id).task_id == task_id

    emulator.inject("code_336100", times=2, route=api.detail_fault_route)
    with pytest.raises(RetryExhaustedError):
        client.describe(task_id, retry=RetryPolicy(max_attempts=2))
    assert len(emulator.requests) == 4


def test_a_malformed_id_is_refused_unsent(client: Client, emulator: Emulator) -> None:
    """Ids are validated before any request, as for cancel."""
    with pytest.raises(InvalidTaskIdError):
        client.describe("ame-not valid")

    assert emulator.requests == []
