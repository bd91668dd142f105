"""`cancel_eval_tasks` against the emulator: outcomes, ids, budget, interruption, callbacks.

These run in testing mode (virtual clock: retries and rate-limit waits cost
no real time); the real-time rate tests are in `test_batch_rate.py`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import events

from evalctl import ConfigurationError, InvalidTaskIdError, MissingCredentialsError, RetryPolicy
from evalctl._base import _api
from evalctl._base._errors import EXIT_INTERRUPTED
from evalctl._batch._run import (
    BATCH_EVENT,
    QUEUE_PER_WORKER,
    BatchProgress,
    BatchResult,
    TaskReport,
    cancel_eval_tasks,
)
from evalctl._core._limits import RETRY_BUDGET, RETRY_COST
from evalctl.emulator import Emulator


class Reports:
    """Collects `on_report` calls (they come from worker threads)."""

    def __init__(self) -> None:
        self.items: list[TaskReport] = []
        self._lock = threading.Lock()

    def __call__(self, report: TaskReport) -> None:
        with self._lock:
            self.items.append(report)

    def labels(self) -> dict[str, str]:
        return {report.task_id: report.label for report in self.items}


def add_tasks(emulator: Emulator, count: int, **kwargs: Any) -> list[str]:
    return [emulator.add_task(**kwargs) for _ in range(count)]


def wait_until_started(emulator: Emulator, tasks: int) -> None:
    """Until the emulator has seen requests for `tasks` different tasks."""
    deadline = time.monotonic() + 10
    while len({r.task_id for r in emulator.requests}) < tasks:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_every_kind_of_outcome_is_reported_once_and_counted(emulator: Emulator) -> None:
    """Cancelled, manual refused, not found, already stopped, finished, invalid: one report each."""
    running = add_tasks(emulator, 3)
    manual = emulator.add_task(eval_mode="manual,rule")
    stopped = emulator.add_task(state=_api.V1_STOPPED)
    done = emulator.add_task(state=_api.V1_DONE)
    missing = "ame-doesnotexist"
    ids = [*running, manual, "not-an-id", stopped, missing, done, ""]
    reports = Reports()

    result = cancel_eval_tasks(ids, on_report=reports)

    expected = {
        **dict.fromkeys(running, "cancelled"),
        manual: "manual_evaluation",
        stopped: "already_stopped",
        done: "not_running",
        missing: "not_found",
        "not-an-id": "invalid_task_id",
        "": "invalid_task_id",
    }
    assert expected == reports.labels()
    assert len(ids) == len(reports.items)
    assert result.counts == {
        "cancelled": 3,
        "manual_evaluation": 1,
        "already_stopped": 1,
        "not_running": 1,
        "not_found": 1,
        "invalid_task_id": 2,
    }
    assert (len(ids), 4, ("not-an-id", "")) == (result.total, result.exit_code, result.invalid)
    assert {manual, missing} == set(result.failed)
    assert sorted(running) == sorted(str(r.task_id) for r in emulator.stop_requests())
    assert len(emulator.requests) == result.requests
    assert emulator.task(running[0]).state == _api.V1_STOPPED


def test_invalid_ids_alone_exit_with_two_and_send_nothing(emulator: Emulator) -> None:
    """A batch of only malformed ids: each reported with InvalidTaskIdError, no request sent."""
    reports = Reports()

    result = cancel_eval_tasks(["x", "ame-", " ame-abc"], on_report=reports)

    assert all(isinstance(r.error, InvalidTaskIdError) for r in reports.items)
    assert (result.exit_code, len(reports.items), result.requests) == (2, 3, 0)
    assert emulator.requests == []


def test_repeated_ids_are_cancelled_once(emulator: Emulator) -> None:
    """Duplicates are counted and skipped: one pre-check and one stop per distinct id."""
    a, b = add_tasks(emulator, 2)
    reports = Reports()

    result = cancel_eval_tasks([a, b, a, a, b], on_report=reports)

    assert (result.total, result.duplicates) == (2, 3)
    assert sorted([a, b]) == sorted(r.task_id for r in reports.items)
    assert 1 == len(emulator.stop_requests(a)) == len(emulator.stop_requests(b))
    assert len(emulator.requests) == 4


def test_strict_sends_nothing_when_one_id_is_invalid(emulator: Emulator) -> None:
    """strict: every id is read first; one bad id means no request at all, exit code 2."""
    good = add_tasks(emulator, 3)
    reports = Reports()

    result = cancel_eval_tasks([*good, "ame-bad!"], strict=True, on_report=reports)

    assert emulator.requests == []
    assert [
        *((task_id, "not_started", 2) for task_id in good),
        ("ame-bad!", "invalid_task_id", 2),
    ] == [(r.task_id, r.label, r.exit_code) for r in reports.items]
    assert (
        result.exit_code,
        result.total,
        result.not_started,
        result.invalid,
        result.failed,
    ) == (2, 4, 3, ("ame-bad!",), ())


def test_strict_runs_normally_when_every_id_is_valid(emulator: Emulator) -> None:
    """strict with good ids only is an ordinary batch."""
    ids = add_tasks(emulator, 3)

    result = cancel_eval_tasks(ids, strict=True)

    assert (result.counts, result.exit_code) == ({"cancelled": 3}, 0)


def test_an_outage_spends_the_retry_budget_then_fails_fast(emulator: Emulator) -> None:
    """Every request 503: ~one request per task plus the budget's 100 retries, not five per task."""
    tasks = 150
    ids = add_tasks(emulator, tasks)
    emulator.set_fault_rate(1.0, kinds=["http_503"])
    reports = Reports()

    result = cancel_eval_tasks(ids, on_report=reports)

    sent = len(emulator.requests)
    assert sent == result.requests
    assert tasks <= sent <= tasks + RETRY_BUDGET // RETRY_COST
    assert {"retry_exhausted": tasks} == result.counts
    budget_spent = [r for r in reports.items if getattr(r.error, "why", None) == "budget"]
    assert len(budget_spent) >= tasks - (RETRY_BUDGET // RETRY_COST)
    assert emulator.stop_requests() == []


def test_transient_faults_are_retried_within_the_budget(emulator: Emulator) -> None:
    """15 % random 5xx/code faults: every task still ends cancelled, each stopped once."""
    ids = add_tasks(emulator, 60)
    emulator.set_fault_rate(0.15, kinds=["http_500", "http_502", "http_503", "code_336100"])
    # Eight attempts: five faults in a row somewhere in a batch is not that rare.
    policy = RetryPolicy(max_attempts=8)

    result = cancel_eval_tasks(ids, concurrency=6, retry=policy)

    assert (result.counts, result.exit_code) == ({"cancelled": 60}, 0)
    assert all(len([r for r in emulator.stop_requests(i) if not r.fault]) == 1 for i in ids)


def test_the_reader_stays_a_bounded_distance_ahead_of_the_workers(emulator: Emulator) -> None:
    """Ids are pulled from the iterable as workers free up, never all at once."""
    concurrency = 3
    ids = add_tasks(emulator, 30)
    consumed = 0
    lead: list[int] = []

    def source() -> Iterator[str]:
        nonlocal consumed
        for task_id in ids:
            consumed += 1
            yield task_id

    def on_report(report: TaskReport) -> None:
        lead.append(consumed - len(lead) - 1)

    cancel_eval_tasks(source(), concurrency=concurrency, on_report=on_report)

    # queued + one in each worker's hands + the one being put
    assert max(lead) <= QUEUE_PER_WORKER * concurrency + concurrency + 1
    assert len(lead) == 30


def test_progress_counts_up_and_learns_the_total_when_reading_ends(emulator: Emulator) -> None:
    """on_progress: done grows by one per report; total is None until every id was read."""
    ids = add_tasks(emulator, 5)
    seen: list[BatchProgress] = []

    cancel_eval_tasks([*ids, "bad"], concurrency=2, on_progress=seen.append)

    reports = [p for p in seen if p.done > 0]
    assert list(range(1, 7)) == sorted({p.done for p in reports})
    assert BatchProgress(6, 6, 1, 10) == seen[-1]
    assert any(p.total is None for p in seen) or seen[0].total == 6


def test_ctrl_c_lets_tasks_in_flight_finish_and_starts_no_new_ones(emulator: Emulator) -> None:
    """KeyboardInterrupt while reading: started tasks are reported, the rest never started."""
    ids = add_tasks(emulator, 40)
    reports = Reports()
    emulator.set_latency(0.02)

    def source() -> Iterator[str]:
        yield from ids[:10]
        wait_until_started(emulator, 2)
        raise KeyboardInterrupt

    result = cancel_eval_tasks(source(), concurrency=2, on_report=reports)

    assert (result.interrupted, result.exit_code) == (True, EXIT_INTERRUPTED)
    # An open-ended source is not read further; every id it gave has one report.
    assert sorted(ids[:10]) == sorted(r.task_id for r in reports.items)
    ran = {r.task_id for r in reports.items if r.label == "cancelled"}
    assert 2 <= len(ran) < 10
    assert len(ran) + result.not_started == 10 == result.total
    started = {r.task_id for r in emulator.requests}
    assert started == ran
    assert {"cancelled": len(ran), "not_started": 10 - len(ran)} == result.counts
    assert {EXIT_INTERRUPTED} == {r.exit_code for r in reports.items if r.label == "not_started"}


def test_an_on_report_failure_stops_the_batch_and_is_raised(emulator: Emulator) -> None:
    """A callback that raises (e.g. a closed stdout) ends the batch; the error surfaces."""
    ids = add_tasks(emulator, 30)

    def broken(report: TaskReport) -> None:
        raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError):
        cancel_eval_tasks(ids, concurrency=2, on_report=broken)

    assert len(emulator.stop_requests()) < 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resume": True}, "resume needs a journal"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1000}, "concurrency"),
        ({"qps": 0}, "qps"),
        ({"api": "v3"}, "api"),
        ({"wait_timeout": -1}, "wait_timeout"),
    ],
)
def test_bad_settings_fail_before_any_id_is_read(
    emulator: Emulator, kwargs: dict[str, Any], message: str
) -> None:
    """Settings shared by every task are checked once, up front: nothing read, nothing sent."""
    consumed: list[str] = []

    def source() -> Iterator[str]:
        consumed.append("read")
        yield "ame-abc"

    with pytest.raises(ConfigurationError, match=message):
        cancel_eval_tasks(source(), **kwargs)

    assert (consumed, emulator.requests) == ([], [])


def test_missing_credentials_fail_the_batch_not_each_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No keys: one MissingCredentialsError for the batch, before any id is read."""
    from qianfan import get_config

    monkeypatch.setattr(get_config(), "ACCESS_KEY", None)
    monkeypatch.setattr(get_config(), "SECRET_KEY", None)

    with pytest.raises(MissingCredentialsError):
        cancel_eval_tasks(iter(["ame-abc"]))


def test_the_batch_logs_one_summary_event(emulator: Emulator, logs: list[dict[str, Any]]) -> None:
    """`evalctl.batch` closes the batch with its counts."""
    ids = add_tasks(emulator, 2)

    result = cancel_eval_tasks([*ids, ids[0]])

    [summary] = events(logs, BATCH_EVENT)
    assert {
        "event": BATCH_EVENT,
        "log_level": "info",
        "total": 2,
        "counts": {"cancelled": 2},
        "skipped": 0,
        "duplicates": 1,
        "not_started": 0,
        "requests": 4,
        "elapsed_s": round(result.elapsed, 3),
        "interrupted": False,
    } == summary


def test_v2_batches_use_the_v2_routes(emulator: Emulator) -> None:
    """api="v2": pre-check and stop through /v2/eval, as a single cancel would."""
    ids = add_tasks(emulator, 3)

    result = cancel_eval_tasks(ids, api="v2")

    assert result.counts == {"cancelled": 3}
    assert {_api.V2_ROUTE} == {r.route for r in emulator.requests}


def test_dry_run_sends_no_stop(emulator: Emulator) -> None:
    """dry_run: pre-checks only."""
    ids = add_tasks(emulator, 4)

    result: BatchResult = cancel_eval_tasks(ids, dry_run=True)

    assert (result.counts, emulator.stop_requests()) == ({"dry_run": 4}, [])


def test_a_second_ctrl_c_stops_waiting_for_the_tasks_in_flight(emulator: Emulator) -> None:
    """After the first Ctrl-C the batch waits for tasks in flight; a second one propagates."""
    ids = add_tasks(emulator, 20)
    emulator.set_latency(0.05)
    workers_before = threading.active_count()
    first_sent = threading.Event()
    second_sent = threading.Event()

    def source() -> Iterator[str]:
        yield from ids[:8]
        wait_until_started(emulator, 2)
        first_sent.set()
        raise KeyboardInterrupt

    def on_report(report: TaskReport) -> None:
        if first_sent.is_set() and not second_sent.is_set():
            second_sent.set()
            os.kill(os.getpid(), signal.SIGINT)  # handled in the main thread, as Ctrl-C is

    with pytest.raises(KeyboardInterrupt):
        cancel_eval_tasks(source(), concurrency=4, on_report=on_report)

    assert second_sent.is_set()
    # The abandoned workers still finish their tasks, in the background.
    deadline = time.monotonic() + 10
    while threading.active_count() > workers_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == workers_before


def test_refused_keys_stop_the_batch_instead_of_failing_every_task(emulator: Emulator) -> None:
    """A 401/403 would fail every task the same way: no new task starts after the first."""
    ids = add_tasks(emulator, 40)
    reports = Reports()

    result = cancel_eval_tasks(ids, sk="not-the-secret-key", concurrency=2, on_report=reports)

    assert result.aborted is not None
    assert "authentication failed" in result.aborted
    assert result.exit_code == 1
    labels = reports.labels()
    # Every id is accounted for: the ones tried, and the rest never started.
    assert sorted(ids) == sorted(labels)
    assert len(reports.items) == 40 == result.total
    assert {"authentication", "not_started"} == set(labels.values())
    tried = [task_id for task_id, label in labels.items() if label == "authentication"]
    assert 40 - len(tried) == result.not_started == result.counts["not_started"]
    assert sorted(tried) == sorted(result.failed)
    # At most the tasks already in flight were tried: far fewer than 40 requests.
    assert len(emulator.requests) <= 2 + 2
    assert emulator.stop_requests() == []


def test_workers_keep_their_connection_alive_between_tasks(emulator: Emulator) -> None:
    """One requestor per worker thread: a batch reuses connections instead of reopening them."""
    ids = add_tasks(emulator, 12)

    result = cancel_eval_tasks(ids, concurrency=2)

    assert result.counts == {"cancelled": 12}
    assert emulator.connections_opened <= 4
