"""The `evalctl` console script, run for real as a process against an in-test emulator.

The processes are forked from a zygote that has imported the SDK already
(`forkserver`); `demo` runs in a fresh interpreter (`subprocess`), import of
qianfan included. Every run goes through `_finish`, which also checks that
neither stream carries a credential, an Authorization value, qianfan's redis
warning or a Python traceback. Runs that do not depend on each other are
started together (`_run_all`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import clirun
import pytest

from evalctl._base import _api
from evalctl._cli._app import _failed, _globals
from evalctl._cli._logging import QianfanLogFilter
from evalctl.emulator import Emulator, sdk_environment
from evalctl.emulator._defaults import DEFAULT_APP_AK, DEFAULT_APP_SK

AK = "cli-test-ak-7Qx2Lm9PzT"
SK = "cli-test-sk-V4nR8sK1wZ"
#: Never in any output of any run.
FORBIDDEN = (AK, SK, "bce-auth-v1/", DEFAULT_APP_AK, DEFAULT_APP_SK, "redis", "Traceback")
TIMEOUT_S = clirun.TIMEOUT_S

JSON_KEYS_OK = {"task_id", "outcome", "exit_code", "state_before", "state_after", "log_ids"}
JSON_KEYS_ERROR = {
    "task_id",
    "error",
    "error_kind",
    "exit_code",
    "state_before",
    "state_after",
    "log_ids",
}


@dataclass(frozen=True)
class Ran:
    """What one run of the console script did."""

    code: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def errors(self) -> list[str]:
        """The ``evalctl: error:`` lines on stderr."""
        return [line for line in self.err_lines if line.startswith("evalctl: error: ")]

    def rows(self) -> dict[str, str]:
        """The human stdout lines, by their first column (the task id)."""
        return {line.split()[0]: line for line in self.out_lines if line.strip()}


@pytest.fixture
def server() -> Iterator[Emulator]:
    """An emulator with recognisable keys; stops settle at once."""
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as emulator:
        yield emulator


@pytest.fixture
def env(server: Emulator, tmp_path: Path) -> dict[str, str]:
    """The environment of a run pointed at `server`, in zero-backoff testing mode."""
    return _env(tmp_path, sdk_environment(server))


def _env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("QIANFAN_", "EVALCTL_")) and name != "NO_COLOR"
    }
    # HOME in tmp: no qianfan config of the machine running the tests leaks in.
    return {**base, "HOME": str(tmp_path), "EVALCTL_TESTING": "1", "NO_COLOR": "1", **(extra or {})}


def _start(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None, *, fresh: bool = False
) -> subprocess.Popen[str]:
    """Start a run: forked from the zygote, or with `fresh` in a new interpreter."""
    return clirun.start(args, env, stdin, fresh=fresh)


def _finish(process: subprocess.Popen[str], stdin: str | None = None) -> Ran:
    return Ran(*clirun.finish(process, stdin, FORBIDDEN))


def _run(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None, *, fresh: bool = False
) -> Ran:
    return _finish(_start(args, env, stdin, fresh=fresh), stdin)


def _run_all(runs: Sequence[tuple[Sequence[str], Mapping[str, str]]]) -> list[Ran]:
    """Start every run at once, then collect them in order."""
    processes = [_start(args, run_env) for args, run_env in runs]
    return [_finish(process) for process in processes]


def _seed(server: Emulator) -> dict[str, str]:
    """One task per situation; returns role → task id."""
    return {
        "auto": server.add_task("ame-auto1", "rule,model"),
        "auto2": server.add_task("ame-auto2", "rule"),
        "manual": server.add_task("ame-manual1", "rule,manual"),
        "stopped": server.add_task("ame-stopped1", "rule", _api.V1_STOPPED),
        "done": server.add_task("ame-done1", "model", _api.V1_DONE),
        # The detail says rule only; the server knows better and refuses the stop.
        "rejected": server.add_task(
            "ame-rejected1",
            "rule,manual",
            detail_overrides={"evalStandardConf": {"evalMode": "rule"}},
        ),
        "undecidable": server.add_task("ame-odd1", "rule,bogus"),
    }


def _stopped_ids(server: Emulator) -> set[str | None]:
    return {record.task_id for record in server.stop_requests()}


# --- cancel -------------------------------------------------------------------------


def test_cancel_reports_a_mixed_batch_line_by_line_and_exits_with_the_highest_code(
    server: Emulator, env: dict[str, str]
) -> None:
    """Successes on stdout, one error line per failed task on stderr, summary last; exit 6."""
    ids = _seed(server)
    integer_id = str(server.task(ids["done"]).evaluation_id)
    ran = _run(
        [
            "-v",
            "cancel",
            ids["auto"],
            ids["manual"],
            ids["stopped"],
            integer_id,
            ids["rejected"],
            "ame-missing1",
            "abc",
        ],
        env,
    )

    assert ran.code == 6
    rows = ran.rows()
    assert {ids["auto"], ids["stopped"], integer_id} == set(rows)
    assert re.fullmatch(
        rf"{ids['auto']}\s+Doing → Stopping\s+cancelled\s+log_ids \d+, \d+", rows[ids["auto"]]
    )
    assert re.fullmatch(
        rf"{ids['stopped']}\s+Stopped\s+already_stopped\s+log_id \d+", rows[ids["stopped"]]
    )
    assert re.fullmatch(rf"{integer_id}\s+Done\s+not_running\s+log_id \d+", rows[integer_id])
    errors = sorted(ran.errors())
    assert len(errors) == 4
    assert errors[0].startswith("evalctl: error: invalid task id 'abc': must start with 'ame-'")
    assert errors[1].startswith(f"evalctl: error: refusing to stop {ids['manual']}: it includes")
    assert re.fullmatch(r"evalctl: error: task ame-missing1 not found \[log_id \d+\]", errors[2])
    assert errors[3].startswith(f"evalctl: error: the server refused to stop {ids['rejected']}")
    # The deprecated integer id: one readable line, not a warning dump.
    assert [line for line in ran.err_lines if "warning" in line] == [
        f"evalctl: warning: integer evaluation id {integer_id} is deprecated by Qianfan;"
        " use its 'ame-...' id (evalIdStr) instead"
    ]
    assert "DeprecationWarning" not in ran.stderr
    summary = ran.err_lines[-1]
    assert summary.startswith(
        "evalctl: 7 tasks: 1 already_stopped, 1 cancelled, 1 invalid_task_id,"
        " 1 manual_evaluation, 1 not_found, 1 not_running, 1 rejected; failed: "
    )
    failed = summary.split("failed: ")[1].split(", ")
    assert {"abc", ids["manual"], ids["rejected"], "ame-missing1"} == set(failed)
    # -v: every request is logged with its log id.
    for log_id in re.findall(r"\d{6,}", rows[ids["auto"]]):
        assert re.search(rf"qianfan\.request .*log_id={log_id}", ran.stderr)
    # Nothing went to the stop route for the manual, stopped, finished or invalid ones.
    assert {ids["auto"], ids["rejected"]} == _stopped_ids(server)
    assert server.task(ids["manual"]).state == _api.V1_DOING


def test_cancel_json_prints_exactly_one_object_per_task_and_nothing_else(
    server: Emulator, env: dict[str, str]
) -> None:
    """--json: every stdout line parses, with the contract's keys; -q drops summary and warnings."""
    ids = _seed(server)
    ran = _run(
        [
            "cancel",
            "--json",
            "-q",
            ids["auto"],
            ids["manual"],
            ids["rejected"],
            ids["undecidable"],
            "ame-missing2",
            "abc",
        ],
        env,
    )

    assert ran.code == 7  # the highest: pre-check could not decide
    objects = [json.loads(line) for line in ran.out_lines]
    by_id = {obj["task_id"]: obj for obj in objects}
    assert 6 == len(objects) == len(by_id)
    auto = by_id.pop(ids["auto"])
    assert set(auto) == JSON_KEYS_OK
    assert (
        auto["outcome"],
        auto["state_before"],
        auto["state_after"],
    ) == ("cancelled", "Doing", "Stopping")
    assert len(auto["log_ids"]) == 2
    for obj in by_id.values():
        assert set(obj) == JSON_KEYS_ERROR
    kinds = {task_id: (obj["error_kind"], obj["exit_code"]) for task_id, obj in by_id.items()}
    assert {
        ids["manual"]: ("manual_evaluation", 3),
        ids["rejected"]: ("rejected", 6),
        ids["undecidable"]: ("precheck", 7),
        "ame-missing2": ("not_found", 4),
        "abc": ("invalid_task_id", 2),
    } == kinds
    assert by_id[ids["manual"]]["state_before"] == "Doing"
    assert len(by_id[ids["manual"]]["log_ids"]) == 1
    assert by_id["abc"]["log_ids"] == []
    assert "refusing to stop ame-manual1" in by_id[ids["manual"]]["error"]
    # -q: no summary, no warnings; each failure still has its error line.
    assert not [line for line in ran.err_lines if re.match(r"evalctl: \d+ tasks", line)]
    assert len(ran.errors()) == 5
    assert {ids["auto"], ids["rejected"]} == _stopped_ids(server)


def test_cancel_single_tasks_exit_with_their_own_codes(
    server: Emulator, env: dict[str, str]
) -> None:
    """3 manual (JSON logs: the pre-check event says why), 4 not found, 6 rejected."""
    ids = _seed(server)
    json_logs = {**env, "EVALCTL_LOG_FORMAT": "json"}
    manual, missing, rejected = _run_all(
        [
            (["cancel", "-v", ids["manual"]], json_logs),
            (["cancel", "ame-missing3"], env),
            (["cancel", ids["rejected"]], env),
        ]
    )

    assert (manual.code, manual.stdout) == (3, "")
    events = [json.loads(line) for line in manual.err_lines if line.startswith("{")]
    precheck = [event for event in events if event["event"] == "evalctl.precheck"]
    assert len(precheck) == 1
    assert {
        "task_id": ids["manual"],
        "state": "Doing",
        "eval_modes": ["rule", "manual"],
        "allowed": False,
        "verdict": "manual_evaluation",
        "level": "info",
    }.items() <= precheck[0].items()
    requests = [event for event in events if event["event"] == "qianfan.request"]
    assert [event["purpose"] for event in requests] == ["detail"]
    assert requests[0]["log_id"] == precheck[0]["log_id"]
    assert [
        f"evalctl: error: refusing to stop {ids['manual']}: it includes manual evaluation"
        f" (modes rule,manual, state Doing); tasks with human evaluation must not be stopped"
        f" [log_id {precheck[0]['log_id']}]"
    ] == manual.errors()

    assert (missing.code, missing.stdout) == (4, "")
    assert re.fullmatch(
        r"evalctl: error: task ame-missing3 not found \[log_id \d+\]", missing.errors()[0]
    )

    assert (rejected.code, rejected.stdout) == (6, "")
    assert [
        f"evalctl: error: the server refused to stop {ids['rejected']}:"
        f" {_api.REFUSE_MANUAL_MESSAGE}"
    ] == [re.sub(r" \[log_id \d+\]$", "", line) for line in rejected.errors()]

    assert {ids["rejected"]} == _stopped_ids(server)


def test_cancel_gives_up_after_max_attempts_with_exit_5(
    server: Emulator, env: dict[str, str]
) -> None:
    """Transient failures beyond --max-attempts: exit 5, each retry logged at the default level."""
    task_id = server.add_task("ame-flaky1")
    server.inject("http_503", times=3)
    ran = _run(["cancel", "--max-attempts", "2", task_id], env)

    assert (ran.code, ran.stdout) == (5, "")
    assert [
        f"evalctl: error: {task_id}: gave up after 2 attempt(s), no attempts left:"
        " last error: HTTP 503"
    ] == [re.sub(r" ServiceUnavailable.*", "", line) for line in ran.errors()]
    assert len([line for line in ran.err_lines if "outcome=retry" in line]) == 1
    assert len(server.requests) == 2
    assert server.stop_requests() == []
    assert server.task(task_id).state == _api.V1_DOING


def test_cancel_refuses_malformed_ids_without_sending_anything(
    server: Emulator, env: dict[str, str]
) -> None:
    """Malformed ids: exit 2, one line each, zero requests; --strict also holds back valid ids."""
    task_id = server.add_task("ame-valid1")
    invalid, strict = _run_all(
        [
            (["cancel", "abc", "ame-", "ame-bad_id"], env),
            (["cancel", "--strict", task_id, "not-an-id"], env),
        ]
    )

    assert (invalid.code, invalid.stdout) == (2, "")
    assert invalid.errors() == [
        "evalctl: error: invalid task id 'abc': must start with 'ame-'",
        "evalctl: error: invalid task id 'ame-': after 'ame-' only ASCII letters and digits"
        " are allowed",
        "evalctl: error: invalid task id 'ame-bad_id': after 'ame-' only ASCII letters and digits"
        " are allowed",
    ]
    assert strict.code == 2
    assert "evalctl: error: invalid task id 'not-an-id': must start with 'ame-'" in strict.errors()
    assert server.requests == []
    assert server.task(task_id).state == _api.V1_DOING


def test_cancel_dry_run_reads_ids_from_stdin_and_sends_no_stop(
    server: Emulator, env: dict[str, str]
) -> None:
    """--dry-run with --from-file -: comments and blank lines skipped, pre-check only."""
    ids = _seed(server)
    stdin = f"# to stop\n{ids['auto']}\n\n  {ids['auto2']}  # the second\n"
    ran = _run(["cancel", "--dry-run", "--from-file", "-"], env, stdin=stdin)

    assert ran.code == 0
    rows = ran.rows()
    assert {ids["auto"], ids["auto2"]} == set(rows)
    for row in rows.values():
        assert re.fullmatch(r"ame-auto\d\s+Doing\s+dry_run\s+log_id \d+", row)
    assert ran.err_lines == ["evalctl: 2 tasks: 2 dry_run"]
    assert server.stop_requests() == []


def test_cancel_wait_reads_ids_from_a_file_and_ends_stopped(
    server: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    """--wait --from-file PATH: the line shows Doing → Stopped and the task is Stopped."""
    ids = _seed(server)
    id_file = tmp_path / "ids.txt"
    id_file.write_text(f"{ids['auto']}\n# {ids['auto2']} is not to be stopped\n", "utf-8")
    ran = _run(["cancel", "--wait", "--timeout", "30", "-f", str(id_file)], env)

    assert (ran.code, ran.stderr) == (0, "")
    assert re.fullmatch(
        rf"{ids['auto']}\s+Doing → Stopped\s+cancelled\s+log_ids \d+(, \d+)+\n", ran.stdout
    )
    assert server.task(ids["auto"]).state == _api.V1_STOPPED
    assert server.task(ids["auto2"]).state == _api.V1_DOING


def test_bad_input_is_one_line_on_stderr_with_exit_2_and_nothing_sent(
    server: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    """Credentials, endpoint, env, options, files: each problem named in one line, exit 2."""
    task_id = server.add_task("ame-keep1")
    no_keys = _env(tmp_path, {"QIANFAN_CONSOLE_API_BASE_URL": server.base_url})
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (
            ["cancel", task_id],
            no_keys,
            "no credentials: export QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY",
        ),
        (
            ["cancel", task_id],
            {**env, "QIANFAN_CONSOLE_API_BASE_URL": "ftp://127.0.0.1/"},
            "QIANFAN_CONSOLE_API_BASE_URL must be an http:// or https:// URL, got 'ftp://127.0.0.1/'",
        ),
        (
            ["cancel", task_id],
            {**env, "EVALCTL_MAX_ATTEMPTS": "many"},
            "EVALCTL_MAX_ATTEMPTS must be a whole number >= 1",
        ),
        (
            ["cancel", task_id],
            {**env, "EVALCTL_LOG_FORMAT": "xml"},
            "EVALCTL_LOG_FORMAT must be one of console, json, got 'xml'",
        ),
        (
            ["cancel", "-f", str(tmp_path / "missing.txt")],
            env,
            f"cannot read --from-file '{tmp_path / 'missing.txt'}': No such file or directory",
        ),
        (["cancel"], env, "no task ids: give ID... or --from-file PATH"),
        (
            ["cancel", "--bogus", task_id],
            env,
            "No such option: --bogus",
        ),
        (
            ["cancel", "--qps", "0", task_id],
            env,
            "Invalid value for '--qps': '0' (must be a number above 0)"
            " (see 'evalctl cancel --help')",
        ),
        (
            ["cancel", "--concurrency", "0", task_id],
            env,
            "Invalid value for '--concurrency'",
        ),
        (["frobnicate"], env, "No such command 'frobnicate'"),
    ]
    results = _run_all([(args, run_env) for args, run_env, _ in cases])

    for (args, _, expected), ran in zip(cases, results, strict=True):
        assert (ran.code, ran.stdout) == (2, ""), args
        assert len(ran.err_lines) == 1, (args, ran.stderr)
        assert ran.stderr.startswith(f"evalctl: error: {expected}"), (args, ran.stderr)
    assert server.requests == []


# --- status --------------------------------------------------------------------------


def test_status_shows_state_modes_and_whether_a_stop_would_be_allowed(
    server: Emulator, env: dict[str, str]
) -> None:
    """Human and JSON: automatic allowed, manual refused; exit 0 when all read, 4 if one is not."""
    ids = _seed(server)
    human, as_json = _run_all(
        [
            (["status", ids["auto"], ids["manual"], ids["stopped"], ids["undecidable"]], env),
            (["status", "--json", ids["auto"], ids["manual"], ids["done"], "ame-missing4"], env),
        ]
    )

    assert (human.code, human.stderr) == (0, "")
    rows = human.rows()
    assert re.fullmatch(
        r"ame-auto1\s+Doing\s+rule,model\s+stop allowed\s+\"eval-ame-auto1\"", rows[ids["auto"]]
    )
    assert re.fullmatch(
        r"ame-manual1\s+Doing\s+rule,manual\s+stop refused \(manual_evaluation\):"
        r" includes manual evaluation\s+\"eval-ame-manual1\"",
        rows[ids["manual"]],
    )
    assert "already_stopped: nothing to stop" in rows[ids["stopped"]]
    assert (
        "stop refused (precheck): evalMode has unknown mode(s) 'bogus'" in rows[ids["undecidable"]]
    )

    assert as_json.code == 4
    objects = {obj["task_id"]: obj for obj in map(json.loads, as_json.out_lines)}
    log_id = objects[ids["auto"]].pop("log_id")
    assert log_id.isdigit()
    assert {
        "task_id": ids["auto"],
        "name": "eval-ame-auto1",
        "state": "Doing",
        "eval_modes": ["rule", "model"],
        "includes_manual": False,
        "stop_allowed": True,
        "verdict": "stop",
        "reason": None,
    } == objects[ids["auto"]]
    assert (
        objects[ids["manual"]]["stop_allowed"],
        objects[ids["manual"]]["verdict"],
        objects[ids["manual"]]["includes_manual"],
    ) == (False, "manual_evaluation", True)
    assert (
        objects[ids["done"]]["stop_allowed"],
        objects[ids["done"]]["verdict"],
    ) == (False, "not_running")
    assert (
        objects["ame-missing4"]["error_kind"],
        objects["ame-missing4"]["exit_code"],
    ) == ("not_found", 4)
    assert server.stop_requests() == []


# --- the other commands ------------------------------------------------------------------


def test_version_and_help_of_every_command(tmp_path: Path) -> None:
    """--version prints the package version; every command has --help, exit 0."""
    from importlib.metadata import version

    env = _env(tmp_path)
    commands = [[], ["cancel"], ["status"], ["emulator"], ["demo"]]
    results = _run_all([(["--version"], env), *[([*cmd, "--help"], env) for cmd in commands]])

    assert (0, f"evalctl {version('evalctl')}\n", "") == (
        results[0].code,
        results[0].stdout,
        results[0].stderr,
    )
    for command, ran in zip(commands, results[1:], strict=True):
        assert (ran.code, ran.stderr) == (0, ""), command
        assert ran.stdout.startswith(f"Usage: evalctl {' '.join(command)}".rstrip()), command
    assert "Exit codes" in results[1].stdout
    for option in ("--from-file", "--dry-run", "--wait", "--timeout", "--json", "--concurrency"):
        assert option in results[2].stdout


def test_demo_cancels_the_automatic_task_and_refuses_the_manual_one(tmp_path: Path) -> None:
    """`evalctl demo` needs no account: three outcomes shown, the refusal explained, exit 0."""
    ran = _run(["demo"], _env(tmp_path), fresh=True)  # the whole start-up, qianfan's import too

    assert (ran.code, ran.stderr) == (0, "")
    lines = ran.out_lines
    assert lines[0].startswith("evalctl demo: a local Qianfan console emulator is running at")
    start = next(n for n, line in enumerate(lines) if line.startswith("`evalctl cancel` on them"))
    outcome = {line.split()[0]: line for line in lines[start + 1 :] if line.startswith("  ame-")}
    assert len(outcome) == 4
    assert re.search(r"Doing → Stopping\s+cancelled\s+log_ids \d+, \d+$", outcome["ame-demoauto01"])
    assert re.search(
        r"Doing\s+manual_evaluation\s+refusing to stop ame-demomanual1: it includes manual",
        outcome["ame-demomanual1"],
    )
    assert re.search(r"Stopped\s+already_stopped\s+log_id \d+$", outcome["ame-demostopped"])
    assert any("never stops a task that includes human evaluation" in line for line in lines)
    assert any("export QIANFAN_ACCESS_KEY=" in line for line in lines)


def test_emulator_command_serves_until_sigterm(tmp_path: Path) -> None:
    """`evalctl emulator --demo` prints where it listens and stops cleanly on SIGTERM."""
    process = _start(["emulator", "--demo", "--port", "0"], _env(tmp_path))
    banner: list[str] = []
    try:
        # Up to the line that says it serves: SIGTERM is for a running emulator.
        while not banner or "Press Ctrl-C" not in banner[-1]:
            line = process.stdout.readline()
            if not line:
                break
            banner.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
    # Read through the same buffered pipe objects readline used (communicate would not).
    rest, errors = process.stdout.read(), process.stderr.read()
    code = process.wait(TIMEOUT_S)

    assert (code, errors, rest) == (0, "", "Emulator stopped.\n")
    assert re.fullmatch(
        r"Qianfan console emulator listening on http://127\.0\.0\.1:\d+\n", banner[0]
    )
    assert "  manual   ame-demomanual1  rule,manual  Doing\n" in banner
    export = "  export QIANFAN_CONSOLE_API_BASE_URL=http://127.0.0.1:"
    assert any(line.startswith(export) for line in banner)


# --- in-process pieces ----------------------------------------------------------------------


def test_unexpected_exception_is_one_redacted_line_pointing_at_verbose(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal error: type and redacted message, exit 1; -v adds the (redacted) traceback."""
    error = RuntimeError("boom Authorization: bce-auth-v1/AKxyz/2024/1800/host/abcdef")
    monkeypatch.setattr(_globals, "verbosity", 0)
    assert _failed(error) == 1
    assert capsys.readouterr().err == (
        "evalctl: internal error: RuntimeError: boom Authorization: *** (run with -v for details)\n"
    )

    monkeypatch.setattr(_globals, "verbosity", 1)
    try:
        raise error
    except RuntimeError as raised:  # a real traceback to print
        code = _failed(raised)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "AKxyz" not in err
    assert err.endswith("evalctl: internal error: RuntimeError: boom Authorization: ***\n")


def test_qianfan_log_filter_drops_the_redis_notice_and_redacts_the_rest() -> None:
    """The filter on qianfan's logger: no redis warning, nothing below WARNING, no secrets."""
    logger = logging.getLogger("tests.cli.qianfan_filter")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addFilter(QianfanLogFilter())
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    logger.warning("No redis installed, RedisRateLimiter unavailable. Ignore this warning")
    logger.info("request sent")
    logger.error("request failed: headers %s", {"Authorization": "bce-auth-v1/AK/2024/x"})

    assert [record.getMessage() for record in records] == [
        "request failed: headers {'Authorization': '***'}"
    ]


def test_cli_exit_codes_match_the_library_ones() -> None:
    """The CLI's own copies of the exit codes (kept to start fast) equal the library's."""
    from evalctl._base import _errors
    from evalctl._cli import _app as _cli

    assert (_cli.EXIT_ERROR, _cli.EXIT_USAGE, _cli.EXIT_INTERRUPTED) == (
        _errors.EXIT_ERROR,
        _errors.EXIT_USAGE,
        _errors.EXIT_INTERRUPTED,
    )
