"""The batch journal: one fsynced record per finished task, resume, torn lines, one writer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import events

from evalctl import ConfigurationError
from evalctl._base import _api
from evalctl._base._model import CancelResult
from evalctl._batch._journal import UNREADABLE_EVENT, Journal, final_record, read_journal
from evalctl._batch._run import TaskReport, cancel_eval_tasks
from evalctl.emulator import Emulator
from evalctl.emulator._defaults import DEFAULT_APP_AK, DEFAULT_APP_SK


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def finals(path: Path) -> list[dict[str, Any]]:
    return [r for r in records(path) if r["record"] == "final"]


def test_each_finished_task_gets_one_final_record(emulator: Emulator, tmp_path: Path) -> None:
    """Outcome or error, states, log ids, attempts, api and a UTC time, per task."""
    journal = tmp_path / "j.jsonl"
    running = emulator.add_task()
    manual = emulator.add_task(eval_mode="manual")

    cancel_eval_tasks([running, manual, "bad-id"], journal=journal)

    by_id = {r["task_id"]: r for r in finals(journal)}
    assert {running, manual, "bad-id"} == set(by_id)  # every id given, invalid ones too
    assert (
        by_id["bad-id"]["error_kind"],
        by_id["bad-id"]["exit_code"],
        by_id["bad-id"]["attempts"],
    ) == ("invalid_task_id", 2, 0)
    cancelled = by_id[running]
    log_ids = cancelled.pop("log_ids")
    time = cancelled.pop("time")
    assert {
        "record": "final",
        "task_id": running,
        "outcome": "cancelled",
        "exit_code": 0,
        "state_before": "Doing",
        "state_after": "Stopping",
        "attempts": 2,
        "api": "v1",
    } == cancelled
    assert len(log_ids) == 2
    assert time.endswith("Z")
    refused = by_id[manual]
    assert (
        refused["error_kind"],
        refused["exit_code"],
        refused["state_before"],
        refused["attempts"],
    ) == ("manual_evaluation", 3, "Doing", 1)
    assert "outcome" not in refused
    assert "manual evaluation" in refused["error"]


def test_an_intent_is_journalled_before_each_stop_is_sent(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A stop is announced (and fsynced) before it is sent; tasks never stopped get no intent."""
    journal = tmp_path / "j.jsonl"
    running = emulator.add_task()
    stopped = emulator.add_task(state=_api.V1_STOPPED)

    cancel_eval_tasks([running, stopped], journal=journal, concurrency=1)

    assert [("intent", running), ("final", running), ("final", stopped)] == [
        (r["record"], r["task_id"]) for r in records(journal)
    ]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")
def test_every_record_is_fsynced_as_it_is_written(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each record reaches the disk before the next is written: one fsync per line."""
    journal = tmp_path / "j.jsonl"
    ids = [emulator.add_task() for _ in range(5)]
    lines_at_fsync: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            lines_at_fsync.append(journal.read_bytes().count(b"\n"))

    monkeypatch.setattr(os, "fsync", fsync)

    cancel_eval_tasks(ids, journal=journal)

    assert list(range(1, 11)) == lines_at_fsync  # 5 intents + 5 finals


def test_resume_skips_settled_ids_and_finishes_the_rest(emulator: Emulator, tmp_path: Path) -> None:
    """Ids with a final record are neither sent nor journalled again; they count as skipped."""
    journal = tmp_path / "j.jsonl"
    ids = [emulator.add_task() for _ in range(6)]
    cancel_eval_tasks(ids[:4], journal=journal)
    emulator.clear_requests()

    result = cancel_eval_tasks(ids, journal=journal, resume=True)

    assert (result.skipped, result.counts, result.total) == (4, {"cancelled": 2}, 6)
    assert set(ids[4:]) == {r.task_id for r in emulator.requests}
    assert sorted(ids) == sorted(r["task_id"] for r in finals(journal))


def test_resume_runs_dry_runs_and_transient_failures_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A dry run decided nothing, an outage may have passed: those ids run again, no others."""
    journal = tmp_path / "j.jsonl"
    dry, flaky, settled = emulator.add_task(), emulator.add_task(), emulator.add_task()
    cancel_eval_tasks([dry], journal=journal, dry_run=True)
    emulator.set_fault_rate(1.0, kinds=["http_503"])
    cancel_eval_tasks([flaky], journal=journal)
    emulator.set_fault_rate(0.0)
    with Journal(journal) as open_journal:
        earlier = TaskReport(settled, CancelResult(settled, "not_running", "Done", "Done"))
        open_journal.write(final_record(earlier.facts(), attempts=1, api="v1"))
    emulator.clear_requests()

    result = cancel_eval_tasks([dry, flaky, settled], journal=journal, resume=True)

    assert (result.skipped, result.counts) == (1, {"cancelled": 2})
    assert {dry, flaky} == {r.task_id for r in emulator.requests}
    assert [(dry, "dry_run"), (flaky, "retry_exhausted"), (settled, "not_running")] == [
        (r["task_id"], r.get("outcome") or r.get("error_kind")) for r in finals(journal)[:3]
    ]


def test_a_torn_last_line_is_ignored_and_the_next_record_starts_on_a_new_line(
    emulator: Emulator, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """After a crash mid-write: the fragment settles nothing; the journal stays line-parsable."""
    journal = tmp_path / "j.jsonl"
    done, torn = emulator.add_task(), emulator.add_task()
    cancel_eval_tasks([done], journal=journal)
    with journal.open("ab") as handle:
        handle.write(b'{"record":"final","task_id":"' + torn.encode() + b'","outc')

    result = cancel_eval_tasks([done, torn], journal=journal, resume=True)

    assert (result.skipped, result.counts) == (1, {"cancelled": 1})
    lines = journal.read_text("utf-8").splitlines()
    assert lines[2].endswith('"outc')
    assert [json.loads(line)["task_id"] for line in lines[3:]] == [torn, torn]
    assert [
        {"event": UNREADABLE_EVENT, "log_level": "warning", "path": str(journal), "lines": 1}
    ] == (events(logs, UNREADABLE_EVENT))
    assert {done, torn} == read_journal(journal).settled


def test_a_stop_sent_before_a_crash_is_not_sent_again_on_resume(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Intent written, stop applied, final record lost: resumed, it sees Stopping, sends none."""
    journal = tmp_path / "j.jsonl"
    task = emulator.add_task()
    emulator.set_state(task, _api.V1_STOPPING)  # what the lost stop did
    with Journal(journal) as open_journal:
        open_journal.write({"record": "intent", "task_id": task, "api": "v1", "time": "t"})

    result = cancel_eval_tasks([task], journal=journal, resume=True)

    # The earlier run's stop did it: reported cancelled (by it), not already_stopped.
    assert (result.counts, emulator.stop_requests()) == ({"cancelled": 1}, [])
    [final] = finals(journal)
    assert (
        final["outcome"],
        final["by"],
        final["state_before"],
    ) == ("cancelled", "earlier run", "Stopping")
    assert {task} == read_journal(journal).intents


def test_a_journal_in_use_by_another_run_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """Two runs appending to one journal could stop tasks twice: the second is refused up front."""
    journal = tmp_path / "j.jsonl"
    task = emulator.add_task()

    with Journal(journal), pytest.raises(ConfigurationError, match="in use"):
        cancel_eval_tasks([task], journal=journal)

    assert emulator.requests == []


def test_an_unusable_journal_path_is_a_configuration_error(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A directory (or an unwritable path) as journal: refused before anything is sent."""
    task = emulator.add_task()

    with pytest.raises(ConfigurationError, match="journal"):
        cancel_eval_tasks([task], journal=tmp_path)

    assert emulator.requests == []


def test_strict_refusal_journals_every_id_and_sends_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """strict with an invalid id: nothing sent; each id has its record (not_started, invalid)."""
    journal = tmp_path / "j.jsonl"
    good = emulator.add_task()

    cancel_eval_tasks([good, "nope"], journal=journal, strict=True)

    assert emulator.requests == []
    assert [(good, "not_started", 2), ("nope", "invalid_task_id", 2)] == [
        (r["task_id"], r["error_kind"], r["exit_code"]) for r in finals(journal)
    ]
    assert not read_journal(journal).settled


def test_the_journal_holds_no_secret(emulator: Emulator, tmp_path: Path) -> None:
    """Neither the API keys nor the judge-app keys of a model task reach the journal."""
    journal = tmp_path / "j.jsonl"
    ids = [emulator.add_task(eval_mode="model"), emulator.add_task(eval_mode="manual")]
    emulator.inject("http_503", times=1)

    # A key pasted as an id is invalid, and journalled masked.
    cancel_eval_tasks([*ids, "ame-nosuchtask", emulator.sk, emulator.ak], journal=journal)

    text = journal.read_text("utf-8")
    assert len(finals(journal)) == 5
    for secret in (emulator.sk, emulator.ak, DEFAULT_APP_AK, DEFAULT_APP_SK):
        assert secret not in text


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_journal_that_cannot_be_written_stops_the_batch_before_any_stop(
    emulator: Emulator,
) -> None:
    """Disk full: the intent cannot be recorded, so no stop is sent and the error surfaces."""
    ids = [emulator.add_task() for _ in range(5)]

    with pytest.raises(OSError, match="No space left"):
        cancel_eval_tasks(ids, journal="/dev/full", concurrency=2)

    assert emulator.stop_requests() == []
