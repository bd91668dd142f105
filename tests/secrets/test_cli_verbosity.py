"""`-vv` adds what `-v` does not — each retry's wait and the SDK's own debug lines — redacted.

Run through the installed console script against the emulator, with
sentinel keys and judge-app keys; one run per verbosity, each with one
retried stop. The runs are processes forked from a zygote that has imported
the SDK (`forkserver`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import forkserver
import pytest

from evalctl.emulator import Emulator, sdk_environment

AK = "AKvv3Lq8Zt5Wm1Xc"
SK = "SKvv7Hn2Rb9Yd4Pf"
APP_AK = "APvv1Kz6Qs3Lw8Ne"
APP_SK = "APvv5Tg0Vc7Hr2Mj"
EVALCTL = Path(sys.executable).with_name("evalctl")
STOP_ROUTE = "/wenxinworkshop/modelrepo/eval/cancel"


def _run(verbosity: str, tmp_path: Path, *, fmt: str = "console") -> str:
    """stderr of `evalctl cancel <verbosity>` whose stop fails once (HTTP 503)."""
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0, app_ak=APP_AK, app_sk=APP_SK) as emulator:
        # Each run has its own emulator (a fault is injected per run) and its own home.
        task = emulator.add_task(eval_mode="rule,model")  # its detail carries appAk/appSk
        emulator.inject("http_503", route=STOP_ROUTE)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))},
            **sdk_environment(emulator),
            "HOME": str(tmp_path),
            "EVALCTL_TESTING": "1",
            "EVALCTL_LOG_FORMAT": fmt,
            "NO_COLOR": "1",
        }
        done = forkserver.run(
            [str(EVALCTL), "cancel", *([verbosity] if verbosity else []), task],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(emulator.stop_requests(task)) == 2  # the 503, then the stop
    return done.stderr


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    windows = {secret[i : i + 10].lower() for secret in (AK, SK, APP_AK, APP_SK) for i in range(7)}
    return sorted(w for w in windows if w in lowered)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """stderr of the default, -v and -vv runs, and of -vv with JSON logs."""
    runs = (
        ("default", "", "console"),
        ("-v", "-v", "console"),
        ("-vv", "-vv", "console"),
        ("-vv json", "-vv", "json"),
    )
    homes = [tmp_path_factory.mktemp(name.replace(" ", "_")) for name, _, _ in runs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        errs = list(
            pool.map(lambda r: _run(r[0][1], r[1], fmt=r[0][2]), zip(runs, homes, strict=True))
        )
    return {name: err for (name, _, _), err in zip(runs, errs, strict=True)}


def test_only_vv_shows_each_retrys_wait(runs: dict[str, str]) -> None:
    """The retried stop's event: without its wait below -vv, with `wait_s` at -vv."""
    retry_lines = {
        name: [line for line in err.splitlines() if "qianfan.request" in line and "retry" in line]
        for name, err in runs.items()
        if name != "-vv json"
    }

    assert {name: len(lines) for name, lines in retry_lines.items()} == {
        "default": 1,
        "-v": 1,
        "-vv": 1,
    }
    assert [("wait_s=" in lines[0]) for lines in retry_lines.values()] == [False, False, True]
    assert re.search(r"\bwait_s=\d+(\.\d+)?\b", retry_lines["-vv"][0])


def test_only_vv_shows_the_sdks_debug_lines_redacted(runs: dict[str, str]) -> None:
    """baidubce's signing lines appear at -vv only, with the signing key and signature masked."""
    sdk_lines = {
        name: [line for line in err.splitlines() if "sdk.log" in line] for name, err in runs.items()
    }

    assert (sdk_lines["default"], sdk_lines["-v"]) == ([], [])
    signer = [line for line in sdk_lines["-vv"] if "baidubce.auth.bce_v1_signer" in line]
    assert any("sign_key=[***]" in line for line in signer), sdk_lines["-vv"]
    assert any("bce-auth-v1/***" in line for line in signer), sdk_lines["-vv"]
    assert not re.search(r"[0-9a-f]{64}", runs["-vv"])


def test_vv_with_json_logs_keeps_every_line_json(runs: dict[str, str]) -> None:
    """EVALCTL_LOG_FORMAT=json: the SDK's lines are JSON events like evalctl's own."""
    events = [json.loads(line) for line in runs["-vv json"].splitlines()]

    sdk = [e for e in events if e["event"] == "sdk.log"]
    assert {e["logger"] for e in sdk} >= {"baidubce.auth.bce_v1_signer"}
    assert {e["level"] for e in sdk} == {"debug"}
    retries = [e for e in events if e["event"] == "qianfan.request" and e["outcome"] == "retry"]
    assert [("wait_s" in e) for e in retries] == [True]


def test_no_verbosity_shows_a_key_an_app_secret_or_a_signature(runs: dict[str, str]) -> None:
    """Every run's stderr: no 10 characters of a key or an app key, no HMAC in hex."""
    assert {name: _leaks(err) for name, err in runs.items()} == {name: [] for name in runs}
    assert {name: re.findall(r"[0-9a-fA-F]{64}", err) for name, err in runs.items()} == {
        name: [] for name in runs
    }
