"""`evalctl list`, run as the console script against an emulator; and bad input of both commands.

Every run checks that no output carries a credential or a traceback (`listing.support`).
"""

from __future__ import annotations

from evalctl.emulator import Emulator
from listing.support import run_all, run_on_terminal, seed

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
    (["list", "--limit", "0"], "Invalid value for '--limit'"),
    (["cancel", "--select", "ame-abc"], "--select chooses tasks by filters"),
    (["cancel", "--name", "nightly-*"], "--name needs --select"),
    (["cancel", "--type", "auto", "ame-abc"], "--type needs --select"),
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
