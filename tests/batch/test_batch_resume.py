"""Resume by fact, intents read, every id accounted for, one task under two ids (real HTTP).

These run in testing mode (virtual clock); the emulator is real and every
request is signed by the SDK.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalctl import RetryPolicy
from evalctl._base import _api
from evalctl._base._model import EvalTask
from evalctl._batch._journal import SETTLING_ERRORS, SETTLING_OUTCOMES, read_journal, settles
from evalctl._batch._run import (
    BY_EARLIER_RUN,
    QUEUE_PER_WORKER,
    BatchProgress,
    TaskReport,
    cancel_eval_tasks,
)
from evalctl.emulator import Emulator, pointed_at


def finals(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return [r for r in records if r["record"] == "final"]


def label(record: dict[str, Any]) -> str:
    return str(record.get("outcome") or record.get("error_kind"))


class Reports(list[TaskReport]):
    def __call__(self, report: TaskReport) -> None:
        self.append(report)  # callbacks are never concurrent


@pytest.mark.parametrize(
    ("record", "settled"),
    [
        *(({"outcome": outcome}, True) for outcome in SETTLING_OUTCOMES),
        *(({"error_kind": kind}, True) for kind in SETTLING_ERRORS),
        ({"outcome": "dry_run"}, False),
        *(
            ({"error_kind": kind}, False)
            for kind in (
                "authentication",
                "precheck",
                "invalid_response",
                "retry_exhausted",
                "transport",
                "stop_unconfirmed",
                "not_started",
                "rejected",
                "server_error",
                "wait_timeout",
                "invalid_task_id",
                "error",
            )
        ),
    ],
)
def test_only_a_record_stating_a_fact_about_the_task_settles_it(
    record: dict[str, Any], settled: bool
) -> None:
    """cancelled, already_stopped, not_running, duplicate, manual, not found: settled; no other."""
    assert settled is settles({"record": "final", "task_id": "ame-x", **record})


def test_resume_after_a_refused_key_runs_every_task_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Refused keys: one task tried, the rest not started; fixed key + resume stops them all."""
    journal = tmp_path / "j.jsonl"
    ids = [emulator.add_task() for _ in range(6)]

    first = cancel_eval_tasks(ids, journal=journal, sk="not-the-secret-key", concurrency=1)
    emulator.clear_requests()
    second = cancel_eval_tasks(ids, journal=journal, resume=True, concurrency=2)

    assert (first.counts, first.exit_code) == ({"authentication": 1, "not_started": 5}, 1)
    assert (second.counts, second.skipped, second.exit_code) == ({"cancelled": 6}, 0, 0)
    assert dict.fromkeys(ids, 1) == {t: len(emulator.stop_requests(t)) for t in ids}
    assert {_api.V1_STOPPED} == {emulator.task(t).state for t in ids}
    assert set(ids) == read_journal(journal).settled


def test_resume_after_an_undecided_precheck_tries_the_task_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A detail without the fields that decide: precheck (7), nothing sent; resume cancels it."""
    journal = tmp_path / "j.jsonl"
    task = emulator.add_task()
    emulator.inject("missing_fields", route=_api.V1_DETAIL_ROUTE)

    first = cancel_eval_tasks([task], journal=journal)
    second = cancel_eval_tasks([task], journal=journal, resume=True)

    assert (first.counts, first.exit_code) == ({"precheck": 1}, 7)
    assert (second.counts, second.skipped) == ({"cancelled": 1}, 0)
    assert [label(r) for r in finals(journal)] == ["precheck", "cancelled"]
    assert len(emulator.stop_requests(task)) == 1


def test_a_stop_that_could_not_be_verified_is_stop_unconfirmed_then_resume_verifies_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Stop applied but timed out, verification read unreadable: exit 8, and the earlier stop
    is what a resumed run reports (cancelled, by the earlier run), sending no second stop."""
    journal = tmp_path / "j.jsonl"
    task = emulator.add_task()
    emulator.inject("slow", route=_api.V1_CANCEL_ROUTE, delay_s=2.0)
    policy = RetryPolicy(attempt_timeout=0.25)

    def spoil_the_verification() -> None:
        # The stop is recorded (and applied) as it arrives; the client sees it time out.
        deadline = time.monotonic() + 10
        while not emulator.stop_requests(task) and time.monotonic() < deadline:
            time.sleep(0.002)
        emulator.inject("missing_fields", route=_api.V1_DETAIL_ROUTE)

    spoiler = threading.Thread(target=spoil_the_verification)
    spoiler.start()
    reports = Reports()
    first = cancel_eval_tasks([task], journal=journal, retry=policy, on_report=reports)
    spoiler.join()
    second = cancel_eval_tasks([task], journal=journal, resume=True)

    [unconfirmed] = reports
    assert (first.counts, first.exit_code, unconfirmed.exit_code) == (
        {"stop_unconfirmed": 1},
        8,
        8,
    )
    assert "may have been sent" in str(unconfirmed.error)
    record, resumed = finals(journal)
    assert (record["error_kind"], record["state_before"], record["state_after"]) == (
        "stop_unconfirmed",
        "Doing",
        None,
    )
    assert (resumed["outcome"], resumed["by"]) == ("cancelled", BY_EARLIER_RUN)
    assert (second.counts, second.exit_code) == ({"cancelled": 1}, 0)
    assert len(emulator.stop_requests(task)) == 1


def test_wait_waits_for_a_task_found_stopping() -> None:
    """--wait means Stopped: a task already Stopping is polled until Stopped, like a fresh stop."""
    with Emulator(stop_delay_s=0.3) as emulator, pointed_at(emulator):
        task = emulator.add_task()
        cancel_eval_tasks([task])  # now Stopping for a (real) moment
        assert emulator.task(task).state == _api.V1_STOPPING
        emulator.clear_requests()
        reports = Reports()

        result = cancel_eval_tasks([task], wait=True, wait_timeout=100_000, on_report=reports)

        [report] = reports
        assert report.result is not None
        assert (report.label, report.result.state_before, report.result.state_after) == (
            "already_stopped",
            _api.V1_STOPPING,
            _api.V1_STOPPED,
        )
        assert result.exit_code == 0
        assert len(emulator.requests) >= 2  # the pre-check, then at least one poll
        assert emulator.stop_requests() == []


def test_wait_on_a_task_found_stopping_that_never_settles_times_out(emulator: Emulator) -> None:
    """A task stuck in Stopping is not reported as done with --wait: wait_timeout, exit 1."""
    task = emulator.add_task()
    emulator.set_state(task, _api.V1_STOPPING)  # a forced Stopping never settles

    reports = Reports()
    result = cancel_eval_tasks([task], wait=True, wait_timeout=30, on_report=reports)

    assert ([(r.label, r.exit_code) for r in reports], result.exit_code) == (
        [("wait_timeout", 1)],
        1,
    )
    assert emulator.stop_requests() == []


@pytest.mark.skipif(
    "id_int" not in EvalTask.__dataclass_fields__,
    reason="the fold reads EvalTask.id_str/id_int, which the decide branch adds (12.5)",
)
@pytest.mark.parametrize("concurrency", [1, 2])
def test_an_id_and_its_integer_twin_stop_the_task_once(
    emulator: Emulator, concurrency: int
) -> None:
    """The same task as `ame-…` and as its integer id: one stop; the other is a duplicate (0).

    One worker: the second finds the task stopping (folded as it is reported);
    two: both pre-checks may pass, and the second clearance is refused.
    """
    task = emulator.add_task()
    integer = emulator.task(task).evaluation_id
    reports = Reports()

    with pytest.warns(DeprecationWarning, match="deprecated by Qianfan"):
        result = cancel_eval_tasks([task, integer], concurrency=concurrency, on_report=reports)

    assert emulator.task(task).stop_requests == 1
    labels = sorted(r.label for r in reports)
    assert labels == ["cancelled", "duplicate"]
    [duplicate] = [r for r in reports if r.label == "duplicate"]
    [first] = [r for r in reports if r.label == "cancelled"]
    assert duplicate.facts()["duplicate_of"] == first.task_id
    assert (result.exit_code, result.failed, result.total) == (0, (), 2)


def test_after_an_abort_every_id_has_one_report_and_the_total_is_every_id(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Refused keys over a list of 30: 30 reports, 30 journal records, total 30 from the start."""
    journal = tmp_path / "j.jsonl"
    ids = [emulator.add_task() for _ in range(30)]
    reports = Reports()
    progress: list[BatchProgress] = []

    result = cancel_eval_tasks(
        ids,
        journal=journal,
        sk="not-the-secret-key",
        concurrency=2,
        on_report=reports,
        on_progress=progress.append,
    )

    assert sorted(ids) == sorted(r.task_id for r in reports)
    assert sorted(ids) == sorted(r["task_id"] for r in finals(journal))
    assert 30 == result.total == sum(result.counts.values())
    assert {30} == {p.total for p in progress}
    assert BatchProgress(0, 30, 0, 0) == progress[0]
    assert progress[-1].done == 30
    not_started = [r for r in reports if r.label == "not_started"]
    assert len(not_started) == result.not_started >= 26
    assert {1} == {r.exit_code for r in not_started}  # the abort's own code


def test_an_open_ended_source_is_not_read_after_an_abort(emulator: Emulator) -> None:
    """A generator may never end: after refused keys it is read no further than the lead."""
    concurrency = 1
    read = 0

    def endless() -> Iterator[str]:
        nonlocal read
        while read < 10_000:
            read += 1
            yield f"ame-endless{read}"
        raise AssertionError("the batch kept reading an endless source")

    reports = Reports()
    result = cancel_eval_tasks(
        endless(), sk="not-the-secret-key", concurrency=concurrency, on_report=reports
    )

    assert result.aborted is not None
    # Every id read has its report; at most the lead (+1) was read past the failing task.
    assert read == len(reports) == result.total
    assert read <= 1 + concurrency * (QUEUE_PER_WORKER + 1) + 1
    assert result.counts["authentication"] == 1
