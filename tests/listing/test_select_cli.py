"""`evalctl list` and `evalctl cancel --select`, run as the console script against an emulator.

Every run checks that no output carries a credential or a traceback. Runs
that do not depend on each other start together (each costs ~1 s of start-up).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalctl import _api
from evalctl.emulator import Emulator, sdk_environment

AK = "select-test-ak-9Hq3Zp"
SK = "select-test-sk-2Wm7Rt"
FORBIDDEN = (AK, SK, "bce-auth-v1/", "SECRET", "Traceback", "redis")
TIMEOUT_S = 60
EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent)) or "evalctl"
LIST = (_api.V2_ROUTE, _api.V2_LIST_ACTION)
DETAIL_V1 = _api.V1_DETAIL_ROUTE


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out_lines]


@pytest.fixture
def server() -> Iterator[Emulator]:
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as emulator:
        yield emulator


@pytest.fixture
def env(server: Emulator, tmp_path: Path) -> dict[str, str]:
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("QIANFAN_", "EVALCTL_"))
    }
    return {
        **base,
        **sdk_environment(server),
        "HOME": str(tmp_path),
        "EVALCTL_TESTING": "1",
        "NO_COLOR": "1",
        "COLUMNS": "160",
        "TERM": "xterm",
    }


def _start(args: Sequence[str], env: Mapping[str, str], stdin: str | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EVALCTL, *args],
        env=dict(env),
        cwd=env["HOME"],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def _finish(process: subprocess.Popen[str], stdin: str | None = None) -> Ran:
    stdout, stderr = process.communicate(stdin, timeout=TIMEOUT_S)
    for text in FORBIDDEN:
        assert text not in stdout + stderr, f"{text!r} in the output:\n{stdout}\n{stderr}"
    return Ran(process.returncode, stdout, stderr)


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
        process = subprocess.Popen(
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
    return all((record.route, record.action) == LIST for record in server.requests)


def seed(server: Emulator) -> dict[str, str]:
    """A fleet: three running automatic tasks, a stopped and a finished one, two manual ones."""
    return {
        "run1": server.add_task("ame-run1", "rule", "Doing", name="nightly-2026-11-01"),
        "run2": server.add_task("ame-run2", "rule,model", "Doing", name="nightly-2026-11-02"),
        "run3": server.add_task("ame-run3", "model", "Pending", name="nightly-2026-11-03"),
        "stopped": server.add_task("ame-stop1", "rule", "Stopped", name="nightly-2026-11-04"),
        "done": server.add_task("ame-done1", "rule", "Done", name="nightly-2026-11-05"),
        "manual": server.add_task("ame-man1", "rule,manual", "Doing", name="nightly-2026-11-06"),
        "other": server.add_task("ame-other1", "rule", "Doing", name="weekly-2026-11-01"),
    }


# --- evalctl list ------------------------------------------------------------------------


def test_list_json_lines_type_all_and_plain_lines_with_filters(
    server: Emulator, env: dict[str, str]
) -> None:
    """--json: one JSON object per line per task; --type all adds the manual list; filters."""
    ids = seed(server)

    auto, every, plain = run_all(
        [
            ["list", "--json"],
            ["list", "--json", "--type", "all"],
            ["list", "--name", "nightly-2026-11-0[1-4]", "--state", "Running,Queued"],
        ],
        env,
    )

    assert (auto.code, every.code) == (0, 0)
    automatic = [ids[k] for k in ("run1", "run2", "run3", "stopped", "done", "other")]
    assert [line["task_id"] for line in auto.json_lines()] == automatic
    assert [line["task_id"] for line in every.json_lines()] == [*automatic, ids["manual"]]
    assert every.json_lines()[-1] == {
        "task_id": ids["manual"],
        "name": "nightly-2026-11-06",
        "eval_type": "manual",
        "state": "Running",
    }
    # --name (glob) and --state select client-side; a pipe gets tab-separated lines.
    assert plain.code == 0
    assert plain.out_lines == [
        f"{ids['run1']}\tauto\tRunning\tnightly-2026-11-01",
        f"{ids['run2']}\tauto\tRunning\tnightly-2026-11-02",
        f"{ids['run3']}\tauto\tQueued\tnightly-2026-11-03",
    ]


def test_list_on_a_terminal_is_a_table_without_escape_sequences(
    server: Emulator, env: dict[str, str]
) -> None:
    """A person sees a table; a task name cannot send escape sequences or rich markup."""
    task_id = server.add_task(name="evil\x1b[2J[bold red]x")

    ran = run_on_terminal(["list"], env, None)

    assert ran.code == 0
    header = next(line for line in ran.out_lines if "TASK ID" in line)
    assert header.split() == ["TASK", "ID", "TYPE", "STATE", "NAME"]
    row = next(line for line in ran.out_lines if task_id in line)
    assert row.split()[:3] == [task_id, "auto", "Running"]
    assert row.rstrip().endswith("[2J[bold red]x")  # markup shown as text, not applied
    assert "\x1b[2J" not in ran.stdout  # the escape character never reaches the terminal


#: Bad input of every kind, and the message that names it.
BAD_INPUT = [
    (["list", "--state", "Sleeping"], "--state: unknown state 'Sleeping'"),
    (["list", "--name", ""], "--name is empty"),
    (["list", "--limit", "0"], "Invalid value for '--limit'"),
    (["cancel", "--select", "ame-abc"], "--select chooses tasks by filters"),
    (["cancel", "--name", "nightly-*"], "--name needs --select"),
    (["cancel", "--select", "--state", "Running,Nope"], "--state: unknown state 'Nope'"),
]


def test_bad_input_is_one_line_exit_2_and_nothing_sent(
    server: Emulator, env: dict[str, str]
) -> None:
    """Usage errors are caught before any request: one error line, exit code 2."""
    seed(server)

    runs = run_all([args for args, _ in BAD_INPUT], env)

    for (args, message), ran in zip(BAD_INPUT, runs, strict=True):
        assert ran.code == 2, args
        errors = [line for line in ran.stderr.splitlines() if line.startswith("evalctl: error: ")]
        assert len(errors) == 1, (args, ran.stderr)
        assert message in errors[0], args
        assert ran.stdout == "", args
    assert server.requests == []


# --- cancel --select: the plan ------------------------------------------------------------


def test_the_plan_without_yes_sends_no_stop_and_says_how_to_act(
    server: Emulator, env: dict[str, str]
) -> None:
    """Without --yes: the plan (stop / skip and why), exit 0, only list requests sent.

    stdin is a pipe that even carries the right answer: it is never read as a confirmation.
    """
    ids = seed(server)
    args = ["cancel", "--select", "--type", "all", "--name", "nightly-*"]

    human, machine = run_all([args, [*args, "--json"]], env, stdin="3\n")

    assert (human.code, machine.code) == (0, 0)
    assert human.out_lines[0] == (
        "Plan: 6 tasks selected: 3 to stop, 3 skipped"
        " (1 already stopped, 1 finished, 1 manual type)"
    )
    rows = {line.split()[0]: line for line in human.out_lines[1:]}
    assert sorted(rows) == sorted(ids[k] for k in ids if k != "other")
    assert " stop " in rows[ids["run1"]]
    assert "skip (manual type)" in rows[ids["manual"]]
    assert "skip (already stopped)" in rows[ids["stopped"]]
    assert "skip (finished)" in rows[ids["done"]]
    assert "anything else aborts" not in human.stderr  # no prompt: stdin is not a terminal
    assert "nothing was stopped" in human.stderr
    assert "run the same command with --yes" in human.stderr
    plan = {line["task_id"]: (line["plan"], line["reason"]) for line in machine.json_lines()}
    assert plan == {
        ids["run1"]: ("stop", None),
        ids["run2"]: ("stop", None),
        ids["run3"]: ("stop", None),
        ids["stopped"]: ("skip", "already stopped"),
        ids["done"]: ("skip", "finished"),
        ids["manual"]: ("skip", "manual type"),
    }
    assert server.stop_requests() == []
    assert only_list_requests(server)


def test_max_refuses_a_selection_larger_than_the_cap(server: Emulator, env: dict[str, str]) -> None:
    """--max N: more than N selected tasks is refused with exit 2 and no stop or detail read."""
    seed(server)

    over, at_cap = run_all(
        [
            ["cancel", "--select", "--max", "5", "--yes"],
            ["cancel", "--select", "--name", "nightly-*", "--max", "5"],
        ],
        env,
    )

    assert over.code == 2
    assert "more than 5 tasks (--max 5)" in over.stderr
    assert "nothing was stopped" in over.stderr
    assert at_cap.code == 0  # 5 auto nightly tasks: exactly the cap, a plan is shown
    assert at_cap.out_lines[0].startswith("Plan: 5 tasks selected: 3 to stop")
    assert server.stop_requests() == []
    assert only_list_requests(server)


def test_max_defaults_to_one_hundred_and_help_says_so(env: dict[str, str]) -> None:
    """The cap is stated in `cancel --help`."""
    ran = run(["cancel", "--help"], env)

    assert ran.code == 0
    assert "--max" in ran.stdout
    assert "[default: 100]" in " ".join(ran.stdout.split())


# --- cancel --select --yes -----------------------------------------------------------------


def test_yes_stops_exactly_the_planned_tasks_each_after_its_own_detail_read(
    server: Emulator, env: dict[str, str]
) -> None:
    """--yes: the running automatic tasks are stopped, each right after its own detail read.

    A manual task the list mislabels as auto is in the plan, but its detail says
    manual: refused (exit 3), no stop. Stopped and finished tasks are reported from
    the list, no request about them at all.
    """
    ids = seed(server)
    liar = server.add_task(
        "ame-liar1",
        "rule,manual",
        "Doing",
        name="nightly-2026-11-07",
        list_overrides={"evalType": "auto", "evalMode": None},
    )

    ran = run(["cancel", "--select", "--name", "nightly-*", "--yes", "--json"], env)

    assert ran.code == 3  # the mislabelled manual task was refused by its pre-check
    report = {line["task_id"]: line for line in ran.json_lines()}
    assert {k: v.get("outcome", v.get("error_kind")) for k, v in report.items()} == {
        ids["run1"]: "cancelled",
        ids["run2"]: "cancelled",
        ids["run3"]: "cancelled",
        ids["stopped"]: "already_stopped",
        ids["done"]: "not_running",
        liar: "manual_evaluation",
    }
    assert report[ids["stopped"]]["source"] == "list"
    stopped = {record.task_id for record in server.stop_requests()}
    assert stopped == {ids["run1"], ids["run2"], ids["run3"]}
    assert server.task(liar).state == "Doing"
    assert server.task(ids["manual"]).stop_requests == 0
    calls = requests_of(server)
    for task_id in stopped:
        stop_at = calls.index((_api.V1_CANCEL_ROUTE, "", task_id))
        assert (DETAIL_V1, "", task_id) in calls[:stop_at]
    assert (DETAIL_V1, "", liar) in calls
    touched = {task_id for _, _, task_id in calls if task_id is not None}
    assert touched == {*stopped, liar}  # nothing about the stopped/finished/manual ones


def test_yes_combines_with_v2_journal_concurrency_qps_and_wait(
    server: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    """The batch options apply to the selection; --resume skips what the journal settled."""
    ids = seed(server)
    journal = tmp_path / "journal.jsonl"
    running = {ids["run1"], ids["run2"], ids["run3"], ids["other"]}
    options = ["--journal", str(journal), "--concurrency", "2", "--qps", "50", "--api", "v2"]

    first = run(
        ["cancel", "--select", "--state", "Running,Queued", "--yes", "--wait", *options], env
    )
    assert first.code == 0, first.stderr
    assert {record.task_id for record in server.stop_requests()} == running
    assert all(record.action == _api.V2_STOP_ACTION for record in server.stop_requests())
    assert {json.loads(line)["task_id"] for line in journal.read_text().splitlines()} == running
    # The same tasks run again (as if the stops had not been seen): the journal settles them.
    for task_id in running:
        server.set_state(task_id, "Doing")
    server.clear_requests()

    again = run(["cancel", "--select", "--yes", "--state", "Running", "--resume", *options], env)

    assert again.code == 0, again.stderr
    assert server.stop_requests() == []
    assert "4 skipped (already done in the journal)" in again.stderr


def test_dry_run_with_yes_prechecks_every_planned_task_and_stops_none(
    server: Emulator, env: dict[str, str]
) -> None:
    """--dry-run --yes: each planned task's detail is read; nothing goes to the stop route."""
    ids = seed(server)

    ran = run(["cancel", "--select", "--name", "nightly-*", "--yes", "--dry-run"], env)

    assert ran.code == 0
    assert server.stop_requests() == []
    read = {task_id for route, _, task_id in requests_of(server) if route == DETAIL_V1}
    assert read == {ids["run1"], ids["run2"], ids["run3"]}


# --- the confirmation prompt ------------------------------------------------------------------


def test_on_a_terminal_typing_the_count_confirms(server: Emulator, env: dict[str, str]) -> None:
    """Without --yes on a terminal, typing the number of tasks to be stopped acts on the plan."""
    ids = seed(server)

    ran = run_on_terminal(["cancel", "--select", "--name", "nightly-*"], env, "3")

    assert ran.code == 0, ran.stdout
    assert "To stop these 3 tasks, type 3 (anything else aborts): 3" in ran.stdout
    assert {r.task_id for r in server.stop_requests()} == {ids["run1"], ids["run2"], ids["run3"]}


def test_on_a_terminal_anything_else_aborts(server: Emulator, env: dict[str, str]) -> None:
    """A wrong answer (here "yes") stops nothing: exit 2."""
    seed(server)

    ran = run_on_terminal(["cancel", "--select", "--name", "nightly-*"], env, "yes")

    assert ran.code == 2
    assert "evalctl: error: not confirmed: nothing was stopped" in ran.stdout
    assert server.stop_requests() == []
    assert only_list_requests(server)


def test_nothing_to_stop_asks_nothing(server: Emulator, env: dict[str, str]) -> None:
    """A plan without a task to stop is shown and ends at once, even on a terminal."""
    server.add_task(state="Stopped", name="nightly-1")

    ran = run_on_terminal(["cancel", "--select"], env, None)

    assert ran.code == 0
    assert "anything else aborts" not in ran.stdout
    assert "nothing to stop" in ran.stdout
    assert only_list_requests(server)


def test_a_listing_that_fails_midway_stops_nothing_even_with_yes(
    server: Emulator, env: dict[str, str]
) -> None:
    """The whole selection is listed before anything acts: a bad second page means no stop."""
    ids = seed(server)
    first_page = {
        "requestId": "req-page-1",
        "result": {
            "evalTaskList": [
                {
                    "taskId": ids["run1"],
                    "taskName": "nightly-1",
                    "evalType": "auto",
                    "state": "Running",
                }
            ],
            "pageInfo": {
                "marker": "",
                "maxKeys": 100,
                "isTruncated": True,
                "nextMarker": ids["run2"],
            },
        },
    }
    route = f"{_api.V2_ROUTE}?Action={_api.V2_LIST_ACTION}"
    server.serve_raw(json.dumps(first_page).encode(), route=route)
    server.inject("missing_fields", route=route)

    ran = run(["cancel", "--select", "--yes"], env)

    assert ran.code == 1
    assert "DescribeEvalTasks (auto) page 2 has no evalTaskList" in ran.stderr
    assert ran.stdout == ""
    assert server.stop_requests() == []
    assert only_list_requests(server)
