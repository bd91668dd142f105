"""Soak: a batch over an emulator that faults 30 % of all requests, at random (seeded).

Every fault kind is drawn, the ambiguous ones included (`reset`, `slow`,
`not_json`, `missing_fields`), over a mix of tasks: automatic ones running,
queued, stopping, finished, manual by mode and by state, undecidable. The
run must keep perfect books: every task ends in exactly one report and one
final journal record that agree with each other, the counts add up, no task
gets more than one stop applied, no manual or undecidable task gets any stop
request, and every `cancelled` task really is stopped on the server.

`make test` runs `SHORT_TASKS` tasks; ``EVALCTL_SOAK=1`` makes it `LONG_TASKS`
(the same test, only the size changes: nothing is skipped either way).
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalctl import RetryPolicy
from evalctl._base import _api
from evalctl._batch._run import TaskReport, cancel_eval_tasks
from evalctl.emulator import Emulator, Fault, pointed_at
from evalctl.emulator._state import includes_manual

SHORT_TASKS = 60
LONG_TASKS = 2000
TASKS = LONG_TASKS if os.environ.get("EVALCTL_SOAK") == "1" else SHORT_TASKS
FAULT_RATE = 0.3
SEED = 20250101
#: `slow` holds an answer past the attempt timeout: real time, so kept short.
ATTEMPT_TIMEOUT_S = 0.25
SLOW_S = 0.5

#: (modes, state) → the share of the mix. Undecidable: an unknown mode token.
MIX = [
    (("rule", _api.V1_DOING), 6),
    (("rule,model", _api.V1_PENDING), 3),
    (("rule", _api.V1_STOPPING), 1),
    (("model", _api.V1_DONE), 1),
    (("rule,manual", _api.V1_DOING), 2),
    (("rule", _api.V1_DOING_MANUAL), 1),
    (("rule,judge", _api.V1_DOING), 1),
]
OUTCOMES = {"cancelled", "already_stopped", "not_running"}
ERROR_KINDS = {
    "manual_evaluation",
    "precheck",
    "retry_exhausted",
    "invalid_response",
    "rejected",
    # A stop lost to a fault whose verification read then failed too.
    "stop_unconfirmed",
}


@pytest.fixture
def faulty() -> Iterator[Emulator]:
    """An emulator that answers 30 % of requests with a random fault of any kind."""
    with Emulator(stop_delay_s=0.0, slow_s=SLOW_S) as emulator, pointed_at(emulator):
        emulator.set_fault_rate(FAULT_RATE, kinds=list(Fault), seed=SEED)
        yield emulator


@pytest.mark.parametrize("size", [TASKS], ids=lambda n: f"{n}-tasks")
def test_a_batch_under_random_faults_keeps_perfect_books(
    size: int, faulty: Emulator, tmp_path: Path
) -> None:
    """One report and one journal record per task, counts that add up, no wrong stop."""
    rng = random.Random(SEED)
    kinds = rng.choices([kind for kind, _ in MIX], weights=[w for _, w in MIX], k=size)
    ids = [faulty.add_task(eval_mode=modes, state=state) for modes, state in kinds]
    journal = tmp_path / "journal.jsonl"
    reports: list[TaskReport] = []
    lock = threading.Lock()

    def report(item: TaskReport) -> None:
        with lock:
            reports.append(item)

    result = cancel_eval_tasks(
        ids,
        retry=RetryPolicy(max_attempts=4, attempt_timeout=ATTEMPT_TIMEOUT_S),
        concurrency=4,
        journal=journal,
        on_report=report,
    )

    # Exactly one report per task, and the counts add up.
    assert sorted(ids) == sorted(r.task_id for r in reports)
    assert (size, size) == (result.total, sum(result.counts.values()))
    assert (result.skipped, result.not_started, result.duplicates, result.invalid) == (0, 0, 0, ())
    assert dict(Counter(r.label for r in reports)) == dict(result.counts)
    assert sorted(r.task_id for r in reports if r.error) == sorted(result.failed)
    assert max(r.exit_code for r in reports) == result.exit_code
    assert set(result.counts) <= OUTCOMES | ERROR_KINDS, result.counts

    # The journal: one final record per task, saying what the report said.
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    finals = {r["task_id"]: r for r in records if r["record"] == "final"}
    intents = {r["task_id"] for r in records if r["record"] == "intent"}
    assert size == len([r for r in records if r["record"] == "final"]) == len(finals)
    for item in reports:
        record = finals[item.task_id]
        assert item.label == (record.get("outcome") or record["error_kind"])
        assert item.exit_code == record["exit_code"]

    # The server's side of the books.
    for task_id, (modes, state) in zip(ids, kinds, strict=True):
        stops = faulty.stop_requests(task_id)
        applied = [r for r in stops if r.fault in (None, Fault.SLOW.value)]
        label = finals[task_id].get("outcome") or finals[task_id]["error_kind"]
        if includes_manual(modes) or state in _api.MANUAL_STATES or "judge" in modes:
            assert stops == [], (task_id, modes, state)
            assert task_id not in intents
        assert len(applied) <= 1, (task_id, [r.fault for r in stops])
        if stops:
            assert task_id in intents  # announced before it was sent
        if label == "cancelled":
            assert len(applied) == 1
            assert faulty.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)
        if label in ("already_stopped", "not_running") and not stops:
            assert state == faulty.task(task_id).state
    assert result.requests == len(faulty.requests)
    # And the run really was rough (about 30 % of requests faulted), yet did its job.
    faulted = sum(1 for r in faulty.requests if r.fault is not None)
    assert faulted >= 0.15 * len(faulty.requests)
    assert {"cancelled", "manual_evaluation"} <= set(result.counts)
