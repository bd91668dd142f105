"""The pytest fixture, the SDK switch it uses, and the demo/foreground entry points."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from qianfan import get_config
from qianfan.resources.console.utils import call_action

from evalctl._base import _api
from evalctl.emulator import (
    DEFAULT_AK,
    DEFAULT_SK,
    DEMO_TASKS,
    Emulator,
    pointed_at,
    run_foreground,
    seed_demo,
)

SWITCHED = ("QIANFAN_CONSOLE_API_BASE_URL", "QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY")


def test_fixture_points_env_and_live_config_at_the_emulator(qianfan_emulator: Emulator) -> None:
    """Inside a test, env vars and qianfan's cached config both name the emulator."""
    config = get_config()

    assert [qianfan_emulator.base_url, qianfan_emulator.ak, qianfan_emulator.sk] == [
        os.environ[name] for name in SWITCHED
    ]
    assert (qianfan_emulator.base_url, qianfan_emulator.ak, qianfan_emulator.sk) == (
        config.CONSOLE_API_BASE_URL,
        config.ACCESS_KEY,
        config.SECRET_KEY,
    )


def test_pointed_at_restores_env_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Previous values come back, and env vars that were unset are unset again."""
    config = get_config()
    monkeypatch.setenv("QIANFAN_ACCESS_KEY", "outer-ak")
    monkeypatch.delenv("QIANFAN_SECRET_KEY", raising=False)
    monkeypatch.setattr(config, "CONSOLE_API_BASE_URL", "https://outer.example")
    monkeypatch.setattr(config, "SECRET_KEY", None)

    with Emulator() as emulator, pointed_at(emulator) as same:
        assert same is emulator
        assert emulator.base_url == config.CONSOLE_API_BASE_URL

    assert (
        os.environ.get("QIANFAN_ACCESS_KEY"),
        os.environ.get("QIANFAN_SECRET_KEY"),
    ) == ("outer-ak", None)
    assert (config.CONSOLE_API_BASE_URL, config.SECRET_KEY) == ("https://outer.example", None)


def test_fixture_restores_everything_after_the_test(tmp_path: Path) -> None:
    """Run a small suite in a fresh pytest: after the fixture's test, nothing points at it."""
    suite = tmp_path / "test_uses_fixture.py"
    suite.write_text(
        textwrap.dedent(
            """
            import os
            from qianfan import get_config
            from qianfan.resources.console.utils import call_action

            SEEN = {}

            def test_a_uses_the_emulator(qianfan_emulator):
                SEEN["url"] = qianfan_emulator.base_url
                task_id = qianfan_emulator.add_task()
                route = "/wenxinworkshop/modelrepo/eval/detail"
                body = call_action(route, "", {"id": task_id}).body
                assert body["result"]["state"] == "Doing"

            def test_b_nothing_points_at_it_any_more():
                assert os.environ.get("QIANFAN_CONSOLE_API_BASE_URL") == "https://before.example"
                assert "QIANFAN_SECRET_KEY" not in os.environ
                assert get_config().CONSOLE_API_BASE_URL == "https://before.example"
                assert get_config().CONSOLE_API_BASE_URL != SEEN["url"]
            """
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in SWITCHED},
        "QIANFAN_CONSOLE_API_BASE_URL": "https://before.example",
    }

    completed = subprocess.run(
        # hypothesis' plugin alone costs seconds to import and is not needed here
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            str(suite),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "2 passed" in completed.stdout


def test_seed_demo_gives_one_task_per_situation(qianfan_emulator: Emulator) -> None:
    """Four readable ids: running automatic, running manual, stopped, finished."""
    roles = seed_demo(qianfan_emulator)

    assert list(roles) == ["auto", "manual", "stopped", "done"]
    assert all(re.fullmatch(r"ame-[a-z0-9]+", task_id) for task_id in roles.values())
    states = {role: qianfan_emulator.task(task_id).state for role, task_id in roles.items()}
    assert states == {"auto": "Doing", "manual": "Doing", "stopped": "Stopped", "done": "Done"}
    refused = call_action(_api.V1_CANCEL_ROUTE, "", {"id": roles["manual"]}).body["result"]
    assert refused["result"] is False


def test_run_foreground_prints_exports_and_serves_until_stopped() -> None:
    """The foreground runner prints what to export, serves, and stops on request."""
    out = io.StringIO()
    stop = threading.Event()
    runner = threading.Thread(
        target=run_foreground,
        kwargs={"port": 0, "demo": True, "out": out, "stop": stop},
    )
    runner.start()
    try:
        while "Press Ctrl-C" not in out.getvalue():
            assert runner.is_alive()
            stop.wait(0.01)
        text = out.getvalue()
        base_url = re.search(r"export QIANFAN_CONSOLE_API_BASE_URL=(\S+)", text)
        assert base_url is not None
        with pointed_at(_Endpoint(base_url.group(1), DEFAULT_AK, DEFAULT_SK)):
            body = call_action(_api.V1_DETAIL_ROUTE, "", {"id": DEMO_TASKS[0].task_id}).body
    finally:
        stop.set()
        runner.join(10)

    assert body["result"]["state"] == "Doing"
    assert "export QIANFAN_ACCESS_KEY=emulator-ak" in text
    assert "export QIANFAN_SECRET_KEY=emulator-sk" in text
    assert all(task.task_id in text for task in DEMO_TASKS)
    assert not runner.is_alive()
    assert out.getvalue().endswith("Emulator stopped.\n")


def test_run_foreground_shuts_down_cleanly_on_sigterm() -> None:
    """In its own process, SIGTERM ends the emulator with exit status 0."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from evalctl.emulator import run_foreground; run_foreground()"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    while "Press Ctrl-C" not in process.stdout.readline():
        pass

    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=10)

    assert first_line.startswith("Qianfan console emulator listening on http://127.0.0.1:")
    assert (process.returncode, rest) == (0, "Emulator stopped.\n")


class _Endpoint:
    def __init__(self, base_url: str, ak: str, sk: str) -> None:
        self.base_url, self.ak, self.sk = base_url, ak, sk
