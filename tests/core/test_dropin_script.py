"""An existing qianfan script keeps working when `evalctl.call_action` is swapped in.

The script is written the way the qianfan docs show console calls; the test
adds the swap and nothing else, then runs it in a fresh interpreter against
the emulator (credentials and endpoint from the usual QIANFAN_* env vars).
"""

from __future__ import annotations

import ast
import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.support import APIS, ApiSpec
from evalctl import ManualEvaluationError, _api
from evalctl.emulator import Emulator, sdk_environment

#: A console call as the qianfan documentation writes one.
DOCS_SCRIPT = """\
from qianfan import resources

resp = resources.console.utils.call_action({route!r}, {action!r}, {params!r})
print(resp.body)
"""

#: What a project adds to adopt evalctl.
SWAP = """\
import evalctl
resources.console.utils.call_action = evalctl.call_action
"""


def swapped(script: str) -> str:
    """`script` with the swap inserted right after its qianfan import."""
    anchor = "from qianfan import resources\n"
    return script.replace(anchor, anchor + SWAP, 1)


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
