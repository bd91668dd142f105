"""What the CLI tests of listing share: running the console script, on a pipe or a terminal.

The runs are processes forked from a zygote that has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import clirun
import forkserver

from evalctl._base import _api
from evalctl.emulator import Emulator

AK = "select-test-ak-9Hq3Zp"
SK = "select-test-sk-2Wm7Rt"
#: Never in any output of any run.
FORBIDDEN = (AK, SK, "bce-auth-v1/", "SECRET", "Traceback", "redis")
TIMEOUT_S = clirun.TIMEOUT_S
EVALCTL = clirun.EVALCTL or "evalctl"
LIST = (_api.V2_ROUTE, _api.V2_LIST_ACTION)
LIST_ROUTE = f"{_api.V2_ROUTE}?Action={_api.V2_LIST_ACTION}"
DETAIL_V1 = _api.V1_DETAIL_ROUTE


@dataclass(frozen=True)
class Ran:
    """What one run of the console script did."""

    code: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out_lines]


def _start(args: Sequence[str], env: Mapping[str, str], stdin: str | None) -> subprocess.Popen[str]:
    return clirun.start(args, env, stdin)


def _finish(process: subprocess.Popen[str], stdin: str | None = None) -> Ran:
    return Ran(*clirun.finish(process, stdin, FORBIDDEN))


def run(args: Sequence[str], env: Mapping[str, str], stdin: str | None = None) -> Ran:
    return _finish(_start(args, env, stdin), stdin)


def run_all(
    runs: Sequence[Sequence[str]], env: Mapping[str, str], stdin: str | None = None
) -> list[Ran]:
    """Start every run at once (each with `stdin` on a pipe, if given), then collect them."""
    processes = [_start(args, env, stdin) for args in runs]
    return [_finish(process, stdin) for process in processes]


def run_on_terminal(args: Sequence[str], env: Mapping[str, str], answer: str | None) -> Ran:
    """Run with stdin, stdout and stderr on one pseudo-terminal; type `answer` at the prompt."""
    master, slave = os.openpty()
    try:
        process = forkserver.Popen(
            [EVALCTL, *args], stdin=slave, stdout=slave, stderr=slave, env=dict(env)
        )
        os.close(slave)
        seen = b""
        answered = answer is None
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal (Linux: EIO)
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"(anything else aborts): " in seen:
                assert answer is not None
                os.write(master, answer.encode() + b"\n")
                answered = True
        code = process.wait(timeout=TIMEOUT_S)
    finally:
        os.close(master)
    # Styles (bold headers) are the program's own; anything else would be a leak.
    text = re.sub(r"\x1b\[[0-9;]*m", "", seen.decode("utf-8", "replace")).replace("\r\n", "\n")
    for secret in FORBIDDEN:
        assert secret not in text, f"{secret!r} on the terminal:\n{text}"
    return Ran(code, text, "")


def requests_of(server: Emulator) -> list[tuple[str, str, str | None]]:
    """(route, action, task id) of every request, in arrival order."""
    return [(record.route, record.action, record.task_id) for record in server.requests]


def only_list_requests(server: Emulator) -> bool:
    """Whether every request the server saw was a DescribeEvalTasks page."""
    return all((record.route, record.action) == LIST for record in server.requests)


def seed(server: Emulator) -> dict[str, str]:
    """Nightly tasks (3 running automatic, 1 stopped, 1 finished, 1 manual) and a weekly one."""
    return {
        "run1": server.add_task("ame-run1", "rule", "Doing", name="nightly-2026-11-01"),
        "run2": server.add_task("ame-run2", "rule,model", "Doing", name="nightly-2026-11-02"),
        "run3": server.add_task("ame-run3", "model", "Pending", name="nightly-2026-11-03"),
        "stopped": server.add_task("ame-stop1", "rule", "Stopped", name="nightly-2026-11-04"),
        "done": server.add_task("ame-done1", "rule", "Done", name="nightly-2026-11-05"),
        "manual": server.add_task("ame-man1", "rule,manual", "Doing", name="nightly-2026-11-06"),
        "other": server.add_task("ame-other1", "rule", "Doing", name="weekly-2026-11-01"),
    }
