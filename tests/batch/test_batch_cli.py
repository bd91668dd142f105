"""`evalctl cancel` batches through the real console script (processes, real HTTP).

Every id given ends in exactly one line and one journal record — after an
abort, `--strict` and kill -9 too —, the journal and ``--json`` say the same
thing in the same fields, and a single failing task prints one line.

The runs are processes forked from a zygote that has imported the SDK
(`forkserver`; the kill -9 test has a zygote of its own, `zygote.py`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import forkserver
import pytest

from evalctl._base import _api
from evalctl.emulator import Emulator, sdk_environment

EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent))
ZYGOTE = Path(__file__).with_name("zygote.py")
TIMEOUT_S = 60
AK = "batch-cli-ak-3Hq8Vd"
SK = "batch-cli-sk-Z7mT2p"

pytestmark = pytest.mark.skipif(EVALCTL is None, reason="the evalctl console script is missing")

#: The bookkeeping a journal record has on top of the task's --json fields.
JOURNAL_ONLY = {"record", "attempts", "api", "time"}


@pytest.fixture
def server() -> Iterator[Emulator]:
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as emulator:
        yield emulator


def environment(server: Emulator, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))}
    env.update(sdk_environment(server), HOME=str(folder), NO_COLOR="1", EVALCTL_TESTING="1")
    env.update(extra)
    return env


def evalctl(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert EVALCTL is not None
    ran = forkserver.run(
        [EVALCTL, *args],
        env=dict(env),
        cwd=env["HOME"],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    for secret in (SK, AK, "bce-auth-v1/", "Traceback"):
        assert secret not in ran.stdout + ran.stderr
    return ran


def records(path: Path) -> list[dict[str, Any]]:
    """Every complete record (a torn last line is skipped, as a resumed run does)."""
    found = []
    for line in path.read_text("utf-8").splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def finals(path: Path) -> list[dict[str, Any]]:
    return [r for r in records(path) if r["record"] == "final"]


def stops_per_task(server: Emulator, ids: Sequence[str]) -> dict[str, int]:
    """`len(server.stop_requests(t))` for each of `ids`, from one copy of the records."""
    stops = Counter(record.task_id for record in server.stop_requests())
    return {t: stops[t] for t in ids}


def final_count(path: Path) -> int:
    """Final records so far, cheaply (polled while a run is going)."""
    try:
        return path.read_bytes().count(b'{"record":"final"')
    except FileNotFoundError:
        return 0


def test_a_single_task_failing_on_a_refused_key_prints_one_line(
    server: Emulator, tmp_path: Path
) -> None:
    """No batch_aborted event, no one-task summary: the error line alone, exit 1."""
    task = server.add_task()

    ran = evalctl(["cancel", task], environment(server, tmp_path, QIANFAN_SECRET_KEY="wrong-sk"))

    assert (ran.returncode, ran.stdout) == (1, "")
    [line] = ran.stderr.splitlines()
    assert line.startswith(f"evalctl: error: {task}: authentication failed (HTTP 403")
    assert server.stop_requests() == []


def test_after_a_refused_key_every_id_has_one_json_line_and_one_record(
    server: Emulator, tmp_path: Path
) -> None:
    """30 ids, keys refused: 30 JSON lines, 30 final records, a summary of 30; resume fixes it."""
    ids = [server.add_task() for _ in range(30)]
    journal = tmp_path / "j.jsonl"
    args = ["cancel", "--json", "--journal", str(journal), "--concurrency", "2", *ids]

    ran = evalctl(args, environment(server, tmp_path, QIANFAN_SECRET_KEY="wrong-sk"))

    assert ran.returncode == 1
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert sorted(ids) == sorted(line["task_id"] for line in lines)
    kinds = Counter(line["error_kind"] for line in lines)
    assert set(kinds) == {"authentication", "not_started"}
    assert {1} == {line["exit_code"] for line in lines}
    assert sorted(ids) == sorted(r["task_id"] for r in finals(journal))
    summary = ran.stderr.splitlines()[-1]
    assert summary.startswith(f"evalctl: 30 tasks: {kinds['authentication']} authentication,")
    assert f"{kinds['not_started']} not_started" in summary
    assert "stopped early: authentication failed (403)" in summary
    assert server.stop_requests() == []

    resumed = evalctl([*args, "--resume"], environment(server, tmp_path))

    assert resumed.returncode == 0, resumed.stderr
    resumed_ids = [json.loads(line)["task_id"] for line in resumed.stdout.splitlines()]
    assert sorted(ids) == sorted(resumed_ids)
    assert dict.fromkeys(ids, 1) == stops_per_task(server, ids)


def test_strict_refusal_prints_one_line_per_id_and_counts_them_all(
    server: Emulator, tmp_path: Path
) -> None:
    """--strict with one bad id of four: four lines (3 not_started), 'evalctl: 4 tasks', exit 2."""
    ids = [server.add_task() for _ in range(3)]
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join([ids[0], "not-an-id", *ids[1:]]) + "\n")

    ran = evalctl(
        ["cancel", "--strict", "--from-file", str(id_file)], environment(server, tmp_path)
    )

    assert (ran.returncode, ran.stdout) == (2, "")
    errors = [line for line in ran.stderr.splitlines() if line.startswith("evalctl: error: ")]
    assert [
        f"evalctl: error: {ids[0]}: not started, nothing sent: the batch stopped early:"
        " --strict: another id is invalid",
        "evalctl: error: invalid task id 'not-an-id': must start with 'ame-'",
        *(
            f"evalctl: error: {task}: not started, nothing sent: the batch stopped early:"
            " --strict: another id is invalid"
            for task in ids[1:]
        ),
    ] == errors
    assert ran.stderr.splitlines()[-1].startswith(
        "evalctl: 4 tasks: 1 invalid_task_id, 3 not_started; failed: not-an-id"
    )
    assert server.requests == []


def test_json_and_the_journal_say_the_same_with_the_states_read(
    server: Emulator, tmp_path: Path
) -> None:
    """rejected (6) and precheck (7) carry the state the detail showed, in --json and journal."""
    rejected = server.add_task(
        "ame-rejected1",
        "rule,manual",
        detail_overrides={"evalStandardConf": {"evalMode": "rule"}},
    )
    undecided = server.add_task("ame-odd1", "rule,bogus")
    cancelled = server.add_task("ame-fine1")
    missing = "ame-missing1"
    journal = tmp_path / "j.jsonl"
    ids = [rejected, undecided, cancelled, missing]

    ran = evalctl(
        ["cancel", "--json", "--journal", str(journal), *ids], environment(server, tmp_path)
    )

    assert ran.returncode == 7
    lines = {line["task_id"]: line for line in map(json.loads, ran.stdout.splitlines())}
    journalled = {r["task_id"]: r for r in finals(journal)}
    assert set(ids) == set(lines) == set(journalled)
    for task_id in ids:
        record = {k: v for k, v in journalled[task_id].items() if k not in JOURNAL_ONLY}
        assert lines[task_id] == record
    assert (
        lines[rejected]["error_kind"],
        lines[rejected]["exit_code"],
        lines[rejected]["state_before"],
        lines[rejected]["state_after"],
    ) == ("rejected", 6, "Doing", "Doing")
    assert (
        lines[undecided]["error_kind"],
        lines[undecided]["exit_code"],
        lines[undecided]["state_before"],
    ) == ("precheck", 7, "Doing")
    # One rule for log ids in error strings: the last one, at the end, once.
    for task_id in (rejected, undecided, missing):
        error = lines[task_id]["error"]
        last = lines[task_id]["log_ids"][-1]
        assert error.endswith(f" [log_id {last}]") or f"[log_id {last}]" in error
        assert error.count(f"[log_id {last}]") == 1
        assert task_id in error
    # The human error lines are those very strings (in the order the tasks finish).
    human = evalctl(["cancel", undecided, missing], environment(server, tmp_path))
    errors = [line.removeprefix("evalctl: error: ") for line in human.stderr.splitlines()[:2]]
    assert sorted(e.rsplit(" [log_id", 1)[0] for e in errors) == sorted(
        lines[t]["error"].rsplit(" [log_id", 1)[0] for t in (undecided, missing)
    )


def test_kill_9_at_random_points_then_resume_stops_every_task_exactly_once(
    tmp_path: Path,
) -> None:
    """21 SIGKILLs over a 300-task batch, then --resume: one final record per id, one stop
    per task, and the tasks whose stop a killed run sent are reported cancelled (by it)."""
    tasks, kills = 300, 21
    rng = random.Random(1414)
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0, latency_s=0.002) as server:
        ids = [server.add_task() for _ in range(tasks)]
        id_file = tmp_path / "ids.txt"
        id_file.write_text("".join(f"{task_id}\n" for task_id in ids))
        journal = tmp_path / "j.jsonl"
        args = ["cancel", "--from-file", str(id_file), "--journal", str(journal), "--resume"]
        # A high --qps: no slow start, so every run has stops in flight at once
        # (a fresh process without --qps starts slow and has few to kill among).
        args += ["--concurrency", "8", "--qps", "2000"]
        env = environment(server, tmp_path)
        del env["EVALCTL_TESTING"]  # real time: the kills land among real requests
        zygote = subprocess.Popen(
            [sys.executable, str(ZYGOTE)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert zygote.stdin is not None
        assert zygote.stdout is not None
        started = time.monotonic()
        killed = 0
        try:
            for run in range(kills):
                before = final_count(journal)
                if before >= tasks:
                    break
                out, err = tmp_path / f"out{run}", tmp_path / f"err{run}"
                zygote.stdin.write(json.dumps(["run", str(out), str(err), *args]) + "\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline())
                # A random point: after 0-9 more final records, plus 0-3 ms.
                target = before + rng.randrange(10)
                while final_count(journal) < target and time.monotonic() - started < TIMEOUT_S:
                    time.sleep(0.001)
                time.sleep(rng.random() * 0.003)
                os.kill(pid, signal.SIGKILL)
                zygote.stdin.write(json.dumps(["wait", pid]) + "\n")
                zygote.stdin.flush()
                status = int(zygote.stdout.readline())
                killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        finally:
            zygote.stdin.close()
            zygote.wait(timeout=TIMEOUT_S)
        killed_finals = {r["task_id"] for r in finals(journal)}

        ran = evalctl(args, env)

        assert ran.returncode == 0, ran.stderr
        assert killed >= 20
        assert 0 < len(killed_finals) < tasks, "the kills did not land mid-batch"
        final = finals(journal)
        assert dict.fromkeys(ids, 1) == dict(Counter(r["task_id"] for r in final))
        assert dict.fromkeys(ids, 1) == stops_per_task(server, ids)
        assert {_api.V1_STOPPED} == {server.task(t).state for t in ids}
        assert {"cancelled"} == {r["outcome"] for r in final}
        # Stopped by a killed run, then found stopping: cancelled, by the earlier run.
        by_earlier = {r["task_id"] for r in final if r.get("by") == "earlier run"}
        assert by_earlier, "no kill landed between a stop and its final record"
        intents = Counter(r["task_id"] for r in records(journal) if r["record"] == "intent")
        assert by_earlier <= set(intents)
        assert all(server.task(t).stop_requests == 1 for t in by_earlier)


def test_ctrl_c_on_ids_from_an_open_pipe_reports_the_ids_read_and_exits_130(
    server: Emulator, tmp_path: Path
) -> None:
    """stdin still open (more ids may come): Ctrl-C ends the wait; each id read has its line."""
    assert EVALCTL is not None
    ids = [server.add_task() for _ in range(5)]
    journal = tmp_path / "j.jsonl"
    process = forkserver.Popen(
        [EVALCTL, "cancel", "--from-file", "-", "--journal", str(journal)],
        env=environment(server, tmp_path),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write("".join(f"{task_id}\n" for task_id in ids))
    process.stdin.flush()  # and left open: the reader blocks for more
    deadline = time.monotonic() + TIMEOUT_S
    while final_count(journal) < len(ids):
        assert process.poll() is None
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.01)

    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=TIMEOUT_S)

    assert process.returncode == 130, err
    assert sorted(ids) == sorted(line.split()[0] for line in out.splitlines())
    assert err.splitlines()[-1] == "evalctl: 5 tasks: 5 cancelled; interrupted"
    assert dict.fromkeys(ids, 1) == dict(Counter(r["task_id"] for r in finals(journal)))
