"""A bad number on the command line is said as a person would say it, in one line.

typer checks numbers with pydantic and words the result for developers
("Input should be greater than or equal to 1"); the CLI says what was given
and what it must be. In-process: only the parser runs, nothing is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import forkserver
import pytest
import typer

from evalctl._base._defaults import DEFAULT_MAX_ATTEMPTS, DEFAULT_WAIT_TIMEOUT_S
from evalctl._batch import _run as _batch
from evalctl._cli import _app

_EVALCTL = str(Path(sys.executable).with_name("evalctl"))


def _usage_line(args: list[str]) -> str:
    command = typer.main.get_command(_app.app)
    with pytest.raises(_app._CLICK_EXCEPTION) as caught:
        command.main(args=args, prog_name="evalctl", standalone_mode=False)
    return _app._usage_message(caught.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cancel", "x", "--concurrency", "0"], "'--concurrency': '0' (must be at least 1)"),
        (
            ["cancel", "x", "--concurrency", str(_batch.MAX_CONCURRENCY + 1)],
            f"'--concurrency': '{_batch.MAX_CONCURRENCY + 1}'"
            f" (must be at most {_batch.MAX_CONCURRENCY})",
        ),
        (
            ["cancel", "x", "--max-attempts", "many"],
            "'--max-attempts': 'many' (must be a whole number)",
        ),
        (["cancel", "x", "--max", "1.5"], "'--max': '1.5' (must be a whole number)"),
        (["cancel", "x", "--timeout", "-1"], "'--timeout': '-1' (must be at least 0)"),
        (["cancel", "x", "--qps", "fast"], "'--qps': 'fast' (must be a number)"),
        (["cancel", "x", "--qps", "0"], "'--qps': '0' (must be a number above 0)"),
        (["list", "--qps", "nan"], "'--qps': 'nan' (must be a number above 0)"),
        (["list", "--limit", "0"], "'--limit': '0' (must be at least 1)"),
    ],
)
def test_a_bad_number_names_the_value_and_what_it_must_be(args: list[str], expected: str) -> None:
    line = _usage_line(args)
    assert line == f"Invalid value for {expected} (see 'evalctl {args[0]} --help')"
    assert "Input should" not in line
    assert "\n" not in line


def test_a_bad_choice_keeps_its_own_wording() -> None:
    assert _usage_line(["status", "--api", "v3", "x"]) == (
        "Invalid value for '--api': 'v3' (choose v1 or v2) (see 'evalctl status --help')"
    )


def test_help_defaults_come_from_the_one_block_of_constants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = typer.main.get_command(_app.app)
    code = command.main(args=["cancel", "--help"], prog_name="evalctl", standalone_mode=False)
    assert code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"[default: {DEFAULT_WAIT_TIMEOUT_S:g}]" in text
    assert f"[default: EVALCTL_MAX_ATTEMPTS or {DEFAULT_MAX_ATTEMPTS}]" in text


def test_loading_the_command_line_does_not_import_the_sdk() -> None:
    """The help's defaults are read without qianfan: start-up stays cheap."""
    code = "import sys, evalctl._cli._app; print('qianfan' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")


def test_a_secret_given_as_a_bad_number_is_masked_in_the_line() -> None:
    """A key pasted into the wrong option is named as "***", never echoed."""
    secret = "sk-pasted-by-mistake-9QzT"
    env = {
        "PATH": os.environ["PATH"],
        "QIANFAN_ACCESS_KEY": "ak-usage-test-4Hw",
        "QIANFAN_SECRET_KEY": secret,
        "EVALCTL_TESTING": "1",
    }
    done = forkserver.run(
        [_EVALCTL, "cancel", "ame-x", "--max-attempts", secret],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "evalctl: error: Invalid value for '--max-attempts': '***' (must be a whole number)"
        " (see 'evalctl cancel --help')\n"
    )
