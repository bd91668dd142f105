"""One `evalctl cancel ID` reaches the HTTP send in a few hops, on one session.

The README's "Architecture" section follows this path; the probe measures it
(`hops_probe.py`, in its own process, forked from the test zygote), so the
count it states stays true.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import forkserver
import pytest

PROBE = Path(__file__).with_name("hops_probe.py")
#: The issue's bound: at most about 25 function hops from the command to the send.
MAX_HOPS = 25


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    env = {**os.environ, "EVALCTL_TESTING": "1"}
    done = forkserver.run(
        [sys.executable, str(PROBE)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _path(probe: dict[str, Any], send: dict[str, Any]) -> list[str]:
    (handed_over,) = probe["handed_over"]  # one task: handed to the pool once
    return [*handed_over, *send["frames"][:-1], *send["generators"], send["frames"][-1]]


def test_the_cancel_stops_the_task_with_one_detail_read_and_one_stop(probe: dict[str, Any]) -> None:
    assert probe["exit"] == 0
    assert probe["state"] == "Stopping"
    assert [(s["route"], s["stop"]) for s in probe["sends"]] == [
        ("/wenxinworkshop/modelrepo/eval/detail", False),
        ("/wenxinworkshop/modelrepo/eval/cancel", True),
    ]


def test_both_requests_of_the_task_go_through_one_session(probe: dict[str, Any]) -> None:
    sessions = {send["session"] for send in probe["sends"]}
    assert len(sessions) == 1
    assert None not in sessions


def test_the_stop_reaches_the_send_in_at_most_25_hops(probe: dict[str, Any]) -> None:
    """Command → batch → pool worker → driver → operation generators → wire."""
    path = _path(probe, probe["sends"][-1])
    assert path[0] == "evalctl._cli._app.run"
    assert path[-1] == "evalctl._wire._transport.send"
    assert "evalctl._core._operations.cancel" in path
    assert len(path) <= MAX_HOPS, "\n".join(path)


def test_the_readme_states_the_measured_count(probe: dict[str, Any]) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    hops = len(_path(probe, probe["sends"][-1]))
    assert f"{hops} function hops" in readme
