"""`evalctl cancel --journal` in a real process, killed mid-batch: nothing lost, nothing twice.

The batches run in real time (no testing mode): the emulator's latency and
the client's --qps keep them going long enough to be interrupted midway. The
processes are forked from a zygote that has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import forkserver
import pytest

from evalctl._base import _api
from evalctl.emulator import Emulator, sdk_environment

EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent))
TASKS = 60
TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(EVALCTL is None, reason="the evalctl console script is missing")


@pytest.fixture
def server() -> Iterator[Emulator]:
    """Slow enough answers that a batch of 60 tasks takes a few seconds."""
    with Emulator(latency_s=0.03, stop_delay_s=0.0) as emulator:
        yield emulator


def start(args: list[str], server: Emulator, folder: Path) -> subprocess.Popen[str]:
    assert EVALCTL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))}
    env.update(sdk_environment(server), HOME=str(folder), NO_COLOR="1")
    return forkserver.Popen(
        [EVALCTL, *args],
        env=env,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journal_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record (a torn last line is skipped, as a resumed run does)."""
    found = []
    for line in path.read_text("utf-8").splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def final_ids(path: Path) -> Counter[str]:
    return Counter(r["task_id"] for r in journal_records(path) if r["record"] == "final")


def wait_for_finals(path: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while sum(final_ids(path).values()) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.02)


def seed(server: Emulator, folder: Path) -> tuple[list[str], Path]:
    ids = [server.add_task() for _ in range(TASKS)]
    id_file = folder / "ids.txt"
    id_file.write_text("".join(f"{task_id}\n" for task_id in ids))
    return ids, id_file


def test_kill_9_then_resume_stops_every_task_once_with_one_final_record_each(
    server: Emulator, tmp_path: Path
) -> None:
    """SIGKILL mid-batch, then --resume: every id ends with exactly one final record, one stop."""
    ids, id_file = seed(server, tmp_path)
    journal = tmp_path / "j.jsonl"
    batch = ["cancel", "--from-file", str(id_file), "--journal", str(journal), "--concurrency", "4"]

    first = start([*batch, "--qps", "40"], server, tmp_path)
    wait_for_finals(journal, 15, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=TIMEOUT_S)
    killed_at = final_ids(journal)

    second = start([*batch, "--qps", "200", "--resume"], server, tmp_path)
    out, err = second.communicate(timeout=TIMEOUT_S)

    assert second.returncode == 0, err
    assert 15 <= sum(killed_at.values()) < TASKS, "the kill did not land mid-batch"
    assert dict.fromkeys(ids, 1) == dict(final_ids(journal))
    assert dict.fromkeys(ids, 1) == {task_id: len(server.stop_requests(task_id)) for task_id in ids}
    assert {_api.V1_STOPPED} == {server.task(task_id).state for task_id in ids}
    assert set(ids) - set(killed_at) == {line.split()[0] for line in out.splitlines()}


def test_ctrl_c_finishes_and_journals_the_tasks_in_flight_then_exits_130(
    server: Emulator, tmp_path: Path
) -> None:
    """SIGINT: no new task starts; each started one is finished, journalled, reported; exit 130."""
    ids, id_file = seed(server, tmp_path)
    journal = tmp_path / "j.jsonl"
    args = ["cancel", "--from-file", str(id_file), "--journal", str(journal), "--qps", "40"]

    process = start([*args, "--concurrency", "4"], server, tmp_path)
    wait_for_finals(journal, 10, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=TIMEOUT_S)

    assert process.returncode == 130, err
    # Every id of the file has exactly one final record and one line, run or not.
    assert dict.fromkeys(ids, 1) == dict(final_ids(journal))
    finals = {r["task_id"]: r for r in journal_records(journal) if r["record"] == "final"}
    ran = {task_id for task_id, r in finals.items() if r.get("error_kind") != "not_started"}
    assert 10 <= len(ran) < TASKS
    started = {r.task_id for r in server.requests}
    assert started == ran, "a started task was left without a final record"
    intents = {r["task_id"] for r in journal_records(journal) if r["record"] == "intent"}
    assert intents == ran
    assert {130} == {r["exit_code"] for t, r in finals.items() if t not in ran}
    assert ran == {line.split()[0] for line in out.splitlines()}
    not_started = [line for line in err.splitlines() if ": not started, nothing sent: " in line]
    assert sorted(set(ids) - ran) == sorted(line.split()[2].rstrip(":") for line in not_started)
    assert f"evalctl: {TASKS} tasks: " in err
    assert "interrupted" in err
    assert all(len(server.stop_requests(task_id)) <= 1 for task_id in ids)
