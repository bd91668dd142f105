"""The guard end to end in other processes: the SDK's CLI command, and a user's pytest suite.

`qianfan api raw.console` is the SDK's own Typer command
(`qianfan.common.cli.api.api_app`); the full ``qianfan`` entry point also
loads the SDK's dataset CLI, which needs the SDK's heavy `dataset` extra
(pyarrow, numpy, …), so the tests run the `api` command group itself — the
same function `qianfan api raw.console` ends in — in a fresh interpreter
that called `evalctl.guard()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalctl._base import _api
from evalctl.emulator import Emulator, sdk_environment

#: ``qianfan api …`` in an interpreter guarded before the SDK's CLI is imported,
#: and one guarded after (the CLI module then holds the original `call_action`).
GUARDED_CLI = {
    "guard-first": (
        "import sys, evalctl; evalctl.guard(); from qianfan.common.cli.api import api_app; "
        "sys.argv[0] = 'qianfan api'; api_app()"
    ),
    "import-first": (
        "import sys, evalctl; from qianfan.common.cli.api import api_app; evalctl.guard(); "
        "sys.argv[0] = 'qianfan api'; api_app()"
    ),
}


def environment(emulator: Emulator) -> dict[str, str]:
    env = {**os.environ, **sdk_environment(emulator), "EVALCTL_TESTING": "1"}
    env.pop("EVALCTL_GUARD", None)
    return env


def raw_console(
    emulator: Emulator, code: str, route: str, action: str, body: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = ["raw.console", "--route", route, "--action", action, "--data", json.dumps(body)]
    return subprocess.run(
        [sys.executable, "-c", code, *command],
        capture_output=True,
        text=True,
        env=environment(emulator),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("api_name", "order"), [("v1", "guard-first"), ("v2", "import-first")])
def test_raw_console_refuses_a_manual_stop(emulator: Emulator, order: str, api_name: str) -> None:
    """The SDK's CLI stop of a manual task fails with the pre-check's reason; zero stops sent."""
    task_id = emulator.add_task(eval_mode="rule,manual")
    route, action, field = (
        (_api.V1_CANCEL_ROUTE, "", "id")
        if api_name == "v1"
        else (_api.V2_ROUTE, _api.V2_STOP_ACTION, "taskId")
    )

    done = raw_console(emulator, GUARDED_CLI[order], route, action, {field: task_id})

    assert done.returncode == 1
    assert "ManualEvaluationError" in done.stderr
    assert done.stdout == ""
    assert emulator.stop_requests() == []
    assert [r.is_stop for r in emulator.requests] == [False]
    assert emulator.sk not in done.stderr


def test_raw_console_stops_an_automatic_task_exactly_once(emulator: Emulator) -> None:
    """The CLI prints the server's body as the SDK would; one stop after one pre-check read."""
    task_id = emulator.add_task(state=_api.V2_RUNNING)

    done = raw_console(
        emulator,
        GUARDED_CLI["import-first"],
        _api.V2_ROUTE,
        _api.V2_STOP_ACTION,
        {"taskId": task_id},
    )

    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["result"] == {}
    assert [r.is_stop for r in emulator.requests] == [False, True]
    assert len(emulator.stop_requests(task_id)) == 1


USER_TEST = """\
import pytest
from qianfan.resources import Model


def test_my_cleanup_refuses_a_manual_task(qianfan_emulator):
    task_id = qianfan_emulator.add_task(eval_mode="rule,manual")
    with pytest.raises(Exception, match="manual evaluation"):
        Model.stop_evaluation_task(task_id)
    assert qianfan_emulator.stop_requests() == []
"""


#: Uncaptured (`-s`), so that a redis notice would show; without the plugins
#: the user's suite does not need (they only cost start-up time).
FAST = ("-s", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:hypothesispytest")


def run_user_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TEST, encoding="utf-8")
    base = {**os.environ, "EVALCTL_TESTING": "1"}
    base.pop("EVALCTL_GUARD", None)
    base.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *FAST, "test_user.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**base, **env},
        timeout=120,
        check=False,
    )


def test_evalctl_guard_1_guards_a_users_suite_end_to_end(tmp_path: Path) -> None:
    """With EVALCTL_GUARD=1 the plugin guards the session: the SDK's stop is refused, none sent."""
    done = run_user_suite(tmp_path, EVALCTL_GUARD="1")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "no redis" not in (done.stdout + done.stderr).lower()


def test_without_the_switch_the_users_suite_is_not_guarded(tmp_path: Path) -> None:
    """The control: no EVALCTL_GUARD, the SDK sends the manual task's stop and the test fails."""
    done = run_user_suite(tmp_path)

    assert done.returncode == 1
    assert "1 failed" in done.stdout
    assert "no redis" not in (done.stdout + done.stderr).lower()
