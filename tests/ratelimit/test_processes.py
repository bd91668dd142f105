"""Many real processes, one account limit: the shared rate through a real Redis.

Real processes (the CLI, and the batch API; forked from a zygote that has
imported the SDK, `forkserver`) against one emulator whose QPS limit they
share. The emulator's arrival times are the judge: no one-second window may
hold more than the limit plus 10 %. These run in real time: a few seconds each.
"""

from __future__ import annotations

import bisect
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import forkserver
import pytest
from helpers import events

from evalctl import cancel_eval_tasks
from evalctl._batch._run import TaskReport
from evalctl._core._sharedlimit import FALLBACK_EVENT
from evalctl.emulator import Emulator, RecordedRequest, sdk_environment

from .conftest import RedisServer, closed_port

LIMIT = 50
TIMEOUT_S = 60
EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent)) or shutil.which("evalctl")
#: A batch API process: says it is ready once everything is imported, waits
#: for a line on stdin, then cancels the ids of its file and prints its counts.
BATCH_SCRIPT = """
import json, sys
import evalctl
import evalctl._batch._run, evalctl._core._sharedlimit, redis  # SDK + redis-py: before the go
print("ready", flush=True)
sys.stdin.readline()
ids = open(sys.argv[3]).read().split()
result = evalctl.cancel_eval_tasks(
    ids, qps=float(sys.argv[1]), concurrency=4, rate_limit_url=sys.argv[2]
)
print(json.dumps({"counts": dict(result.counts), "exit_code": result.exit_code}))
"""


def busiest_second(times: Sequence[float]) -> int:
    """The most requests that arrived within any one-second window."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, start + 1.0) - i for i, start in enumerate(ordered))


def environment(emulator: Emulator, tmp_path: Path) -> dict[str, str]:
    """The machine's environment without QIANFAN_/EVALCTL_ settings, pointed at `emulator`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("QIANFAN_", "EVALCTL_"))
    }
    return {**env, "HOME": str(tmp_path), **sdk_environment(emulator)}


def spans_overlap(received: Sequence[RecordedRequest], groups: Sequence[set[str]]) -> bool:
    """Whether every group's requests were still arriving when every other group's began."""
    spans = []
    for ids in groups:
        times = [r.time for r in received if r.task_id in ids]
        spans.append((min(times), max(times)))
    return max(start for start, _ in spans) < min(end for _, end in spans)


def stops_follow_their_prechecks(received: Sequence[RecordedRequest]) -> bool:
    """Every stop request came after a detail read of the same task."""
    read: set[str | None] = set()
    for record in received:
        if record.is_stop and record.task_id not in read:
            return False
        if not record.is_stop:
            read.add(record.task_id)
    return True


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """Whatever a test started is killed when it ends (a failed test may leave one running)."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def started(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    _STARTED.append(process)
    return process


@pytest.fixture
def limited() -> Iterator[Emulator]:
    """An emulator with a QPS limit of LIMIT; stops settle at once."""
    with Emulator(qps_limit=LIMIT, stop_delay_s=0.0) as emulator:
        yield emulator


def cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """`evalctl ARGS...` started, with pipes for all three streams."""
    assert EVALCTL is not None, "the evalctl console script is not installed in this venv"
    process = forkserver.Popen(
        [EVALCTL, *args],
        env=dict(env),
        cwd=env["HOME"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return started(process)


def ready_fifo(path: Path, process: subprocess.Popen[str]) -> int:
    """Wait until `process` has opened the FIFO `path` for reading; a descriptor to write ids to."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO:
                raise
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd
    raise AssertionError("the CLI never opened its --from-file")


def test_two_cli_processes_share_one_limit(
    limited: Emulator, redis_url: str, tmp_path: Path
) -> None:
    """Two `evalctl cancel --qps 50` sharing Redis: together at most 50 a second (+10 %)."""
    groups = [{limited.add_task() for _ in range(30)} for _ in range(2)]
    env = environment(limited, tmp_path)
    fifos = [tmp_path / f"ids-{n}" for n in range(len(groups))]
    processes = []
    for fifo in fifos:
        os.mkfifo(fifo)
        args = ["cancel", "--from-file", str(fifo), "--json", "--qps", str(LIMIT),
                "--concurrency", "4", "--rate-limit-url", redis_url]
        processes.append(cli(args, env))
    # Both started and blocked on their id files (a FIFO) before either gets an id.
    writers = [ready_fifo(fifo, process) for fifo, process in zip(fifos, processes, strict=True)]
    for fd, ids in zip(writers, groups, strict=True):
        os.write(fd, ("\n".join(sorted(ids)) + "\n").encode())
        os.close(fd)

    outputs = [process.communicate(timeout=TIMEOUT_S) for process in processes]

    received = limited.requests
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert {json.loads(line)["outcome"] for line in stdout.splitlines()} == {"cancelled"}
    assert len({r.task_id for r in received if r.is_stop}) == 60
    assert spans_overlap(received, groups)
    assert busiest_second([r.time for r in received]) <= LIMIT * 1.1


def test_four_batch_api_processes_share_one_limit(
    limited: Emulator, redis_url: str, tmp_path: Path
) -> None:
    """Four processes running `cancel_eval_tasks(qps=50)` on one Redis: at most 50 a second."""
    groups = [{limited.add_task() for _ in range(12)} for _ in range(4)]
    env = environment(limited, tmp_path)
    files = [tmp_path / f"ids-{n}" for n in range(len(groups))]
    for path, ids in zip(files, groups, strict=True):
        path.write_text(" ".join(sorted(ids)))
    processes = [
        started(
            forkserver.Popen(
                [sys.executable, "-c", BATCH_SCRIPT, str(LIMIT), redis_url, str(path)],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        for path in files
    ]
    for process in processes:  # every one imported before any starts
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"

    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()

    outputs = [process.communicate(timeout=TIMEOUT_S) for process in processes]

    received = limited.requests
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        # The last line (the library's warnings may precede it until logging is configured).
        last = stdout.strip().splitlines()[-1]
        assert json.loads(last) == {"counts": {"cancelled": 12}, "exit_code": 0}
    assert spans_overlap(received, groups)
    assert busiest_second([r.time for r in received]) <= LIMIT * 1.1


def test_redis_down_at_start_sends_nothing_and_exits_2(
    emulator: Emulator, tmp_path: Path
) -> None:
    """No Redis: one clear line, exit 2, no request; the URL's password is never shown."""
    ids = [emulator.add_task() for _ in range(3)]
    url = f"redis://:hunter2-pw@127.0.0.1:{closed_port()}/0"

    process = cli(["cancel", *ids, "--rate-limit-url", url], environment(emulator, tmp_path))
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)

    assert (process.returncode, stdout) == (2, "")
    [line] = stderr.strip().splitlines()
    assert "shared rate limit" in line
    assert "unreachable" in line
    assert "hunter2" not in line
    assert emulator.requests == []


def test_redis_down_at_start_with_fallback_warns_and_cancels(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`--rate-limit-fallback local`: a warning, then the batch with a per-process limit."""
    ids = [emulator.add_task() for _ in range(3)]
    env = {
        **environment(emulator, tmp_path),
        "EVALCTL_RATE_LIMIT_URL": f"redis://127.0.0.1:{closed_port()}/0",
    }

    process = cli(["cancel", *ids, "--json", "--rate-limit-fallback", "local"], env)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)

    assert process.returncode == 0, stderr
    assert [json.loads(line)["outcome"] for line in stdout.splitlines()] == ["cancelled"] * 3
    assert "rate_limit_fallback" in stderr
    assert "Traceback" not in stderr


def run_and_kill_redis(
    emulator: Emulator, redis: RedisServer, *, after: int, **options: Any
) -> tuple[list[str], list[TaskReport]]:
    """A 30-task batch on `redis`, which is killed once `after` tasks have been reported."""
    ids = [emulator.add_task() for _ in range(30)]
    reports: list[TaskReport] = []

    def on_report(report: TaskReport) -> None:
        reports.append(report)
        if len(reports) == after:
            redis.stop()

    cancel_eval_tasks(
        ids, qps=200, concurrency=3, rate_limit_url=redis.url, on_report=on_report, **options
    )
    return ids, reports


def test_redis_failing_mid_batch_fails_the_rest_and_sends_no_stop_unchecked(
    emulator: Emulator, own_redis: RedisServer
) -> None:
    """Redis killed mid-batch: every task reported once; the rest fail unsent; no stop unchecked."""
    ids, reports = run_and_kill_redis(emulator, own_redis, after=5)

    received = emulator.requests
    assert sorted(ids) == sorted(report.task_id for report in reports)
    cancelled = {r.task_id for r in reports if r.result is not None}
    failed = [r for r in reports if r.error is not None]
    assert len(cancelled) >= 5
    assert failed
    for report in failed:
        assert report.label == "transport"  # --resume tries them again
        assert "shared rate limit" in str(report.error)
    stopped = {r.task_id for r in received if r.is_stop}
    assert stopped == cancelled
    assert stops_follow_their_prechecks(received)


def test_redis_failing_mid_batch_with_fallback_cancels_everything(
    emulator: Emulator, own_redis: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """fallback="local": one warning, and every task cancelled after its pre-check."""
    ids, reports = run_and_kill_redis(emulator, own_redis, after=5, rate_limit_fallback="local")

    received = emulator.requests
    assert sorted(ids) == sorted(r.task_id for r in reports if r.label == "cancelled")
    assert len(events(logs, FALLBACK_EVENT)) == 1
    assert len([r for r in received if r.is_stop]) == 30
    assert stops_follow_their_prechecks(received)
