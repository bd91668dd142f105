"""An existing qianfan script keeps working when `evalctl.call_action` is swapped in.

The script is written the way the qianfan docs show console calls; the test
adds the swap and nothing else, then runs it in a fresh interpreter against
the emulator (credentials and endpoint from the usual QIANFAN_* env vars).
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.support import APIS, ApiSpec
from evalctl import ManualEvaluationError
from evalctl._base import _api
from evalctl.emulator import Emulator, sdk_environment

#: A console call as the qianfan documentation writes one.
DOCS_SCRIPT = """\
from qianfan import resources

resp = resources.console.utils.call_action({route!r}, {action!r}, {params!r})
print(resp.body)
"""

#: What a project adds to adopt evalctl: the import goes first (so that
#: qianfan's import-time redis notice is filtered), the swap after the SDK's import.
IMPORT = "import evalctl\n"
SWAP = "resources.console.utils.call_action = evalctl.call_action\n"


def swapped(script: str) -> str:
    """`script` with evalctl imported before qianfan, and the swap right after qianfan's import."""
    anchor = "from qianfan import resources\n"
    return script.replace(anchor, IMPORT + anchor + SWAP, 1)


def run_script(source: str, emulator: Emulator, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cancel_eval.py"
    path.write_text(source, encoding="utf-8")
    env = {**os.environ, **sdk_environment(emulator), "EVALCTL_TESTING": "1"}
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def docs_script(api: ApiSpec, task_id: str) -> str:
    return DOCS_SCRIPT.format(
        route=api.stop_route, action=api.stop_action, params=api.params(task_id)
    )


def test_the_swap_adds_two_lines_and_changes_nothing_else() -> None:
    """The adoption really is the import and one assignment."""
    original = docs_script(APIS["v1"], "ame-abc1")

    added = [
        line[1:]
        for line in difflib.ndiff(original.splitlines(), swapped(original).splitlines())
        if line.startswith(("+ ", "- "))
    ]

    assert added == [
        " import evalctl",
        " resources.console.utils.call_action = evalctl.call_action",
    ]


def test_a_docs_style_stop_script_runs_unchanged_with_evalctl(
    emulator: Emulator, tmp_path: Path
) -> None:
    """In a fresh interpreter, the script stops a running task and prints the server's body."""
    api = APIS["v1"]
    task_id = emulator.add_task(state=api.running_states[0])

    done = run_script(swapped(docs_script(api, task_id)), emulator, tmp_path)

    assert (done.returncode, done.stderr.count("Traceback")) == (0, 0), done.stderr
    body = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert body["result"] == {"result": True, "errorMessage": ""}
    assert api.is_log_id(body["log_id"])
    assert [r.is_stop for r in emulator.requests] == [False, True]
    assert emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)
    assert emulator.ak not in done.stderr + done.stdout


def exec_script(
    source: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> object:
    """Run `source` in this interpreter (cheaper than a subprocess); return what it printed.

    The script reassigns the SDK's `call_action`; monkeypatch puts it back afterwards.
    """
    from qianfan.resources.console import utils

    monkeypatch.setattr(utils, "call_action", utils.call_action)
    exec(compile(source, "cancel_eval.py", "exec"), {"__name__": "__main__"})  # noqa: S102
    return ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_the_swapped_script_works_for_both_generations(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    api_name: str,
) -> None:
    """v1 cancel and v2 StopEvalTask: the body printed is the server's, after a pre-check."""
    api = APIS[api_name]
    task_id = emulator.add_task(state=api.running_states[0])

    body = exec_script(swapped(docs_script(api, task_id)), monkeypatch, capsys)

    assert isinstance(body, dict)
    expected = {"result": True, "errorMessage": ""} if api.name == "v1" else {}
    assert body["result"] == expected
    assert api.is_log_id(body["log_id" if api.name == "v1" else "requestId"])
    assert [r.is_stop for r in emulator.requests] == [False, True]


@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_the_swapped_script_refuses_a_manual_task(
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    api_name: str,
) -> None:
    """Where the raw SDK would send the stop, the swapped script fails before it."""
    api = APIS[api_name]
    task_id = emulator.add_task(eval_mode="rule,manual")

    with pytest.raises(ManualEvaluationError):
        exec_script(swapped(docs_script(api, task_id)), monkeypatch, capsys)

    assert emulator.stop_requests() == []


# --- what the swapped script prints, and where evalctl's events go ------------------

#: Prepended to the script: how an application may set up its logging.
LOGGING_SETUPS = {
    "stdlib-info": "import logging\nlogging.basicConfig(level=logging.INFO)\n",
    "structlog": (
        "import sys, structlog\n"
        "structlog.configure(processors=[structlog.processors.add_log_level,"
        " structlog.processors.JSONRenderer()],"
        " logger_factory=structlog.PrintLoggerFactory(sys.stderr))\n"
    ),
}


def printed_body(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The script's stdout is exactly its one line, the body it printed."""
    assert (done.returncode, done.stderr.count("Traceback")) == (0, 0), done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert done.stdout == lines[0] + "\n"
    body = ast.literal_eval(lines[0])
    assert isinstance(body, dict)
    return body


def test_unconfigured_the_script_prints_only_its_own_output_and_warnings_reach_stderr(
    emulator: Emulator, tmp_path: Path
) -> None:
    """No logging set up: stdout is the script's line; a retry warns on stderr; info is silent."""
    api = APIS["v1"]
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("http_503", route=api.detail_fault_route)

    done = run_script(swapped(docs_script(api, task_id)), emulator, tmp_path)

    body = printed_body(done)
    assert body["result"] == {"result": True, "errorMessage": ""}
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("qianfan.request route=/wenxinworkshop/modelrepo/eval/detail ")
    assert "outcome=retry" in warning
    assert "http_status=503" in warning
    assert "log_id=" in warning


def test_with_stdlib_logging_at_info_the_events_reach_stderr_with_their_log_ids(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`logging.basicConfig(level=INFO)`: every event on the `evalctl` logger, log ids included."""
    api = APIS["v1"]
    task_id = emulator.add_task(state=api.running_states[0])

    done = run_script(
        LOGGING_SETUPS["stdlib-info"] + swapped(docs_script(api, task_id)), emulator, tmp_path
    )

    body = printed_body(done)
    lines = [line for line in done.stderr.splitlines() if line.startswith("INFO:evalctl:")]
    assert [line.split(":", 2)[2].split(" ", 1)[0] for line in lines] == [
        "qianfan.request",
        "evalctl.precheck",
        "qianfan.request",
    ]
    assert f"log_id={body['log_id']}" in lines[2]
    assert "outcome=ok" in lines[2]
    assert emulator.ak not in done.stderr


def test_with_structlog_configured_the_events_are_structlog_events(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The application's structlog renders them (JSON here), same keys; nothing via stdlib."""
    api = APIS["v2"]
    task_id = emulator.add_task(state=api.running_states[0])

    done = run_script(
        LOGGING_SETUPS["structlog"] + swapped(docs_script(api, task_id)), emulator, tmp_path
    )

    body = printed_body(done)
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["event"], e["level"]) for e in events] == [
        ("qianfan.request", "info"),
        ("evalctl.precheck", "info"),
        ("qianfan.request", "info"),
    ]
    assert events[2]["log_id"] == body["requestId"]
    assert events[2].keys() >= {"route", "action", "attempt", "http_status", "outcome"}
    assert events[1]["allowed"] is True
