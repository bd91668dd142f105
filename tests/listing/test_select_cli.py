"""`evalctl cancel --select`, run as the console script against an emulator.

Every run checks that no output carries a credential or a traceback (`listing.support`).
"""

from __future__ import annotations

import json
from pathlib import Path

from evalctl._base import _api
from evalctl.emulator import Emulator
from listing.support import (
    DETAIL_V1,
    LIST_ROUTE,
    only_list_requests,
    requests_of,
    run,
    run_all,
    run_on_terminal,
    seed,
)

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
    assert "4 skipped (" in again.stderr  # the summary counts the journal-settled tasks


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
    server.serve_raw(json.dumps(first_page).encode(), route=LIST_ROUTE)
    server.inject("missing_fields", route=LIST_ROUTE)

    ran = run(["cancel", "--select", "--yes"], env)

    assert ran.code == 1
    assert "DescribeEvalTasks (auto) page 2 has no evalTaskList" in ran.stderr
    assert ran.stdout == ""
    assert server.stop_requests() == []
    assert only_list_requests(server)
