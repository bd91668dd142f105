"""The batch progress bar: shown to a person at a terminal, never in machine output.

The runs are processes forked from a zygote that has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import forkserver

from evalctl.emulator import Emulator, sdk_environment

EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent)) or "evalctl"
AK = "progress-test-ak-1234"
SK = "progress-test-sk-5678"


def _run_with_terminal_stderr(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `evalctl` with stderr on a pseudo-terminal and stdout on a pipe."""
    master, slave = os.openpty()
    try:
        process = forkserver.Popen(
            [EVALCTL, *args], stdout=subprocess.PIPE, stderr=slave, env=env, text=True
        )
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                process.kill()
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal (Linux raises EIO)
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read() if process.stdout else ""
        code = process.wait(timeout=30)
    finally:
        os.close(master)
    return code, stdout, b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_sees_a_progress_bar_and_stdout_stays_clean() -> None:
    """stderr on a terminal shows the bar; stdout still has exactly one line per task."""
    with Emulator(ak=AK, sk=SK, latency_s=0.02) as emulator:
        ids = [emulator.add_task() for _ in range(20)]
        env = {
            **os.environ,
            **sdk_environment(emulator),
            "EVALCTL_TESTING": "1",
            "TERM": "xterm",
            "COLUMNS": "120",
        }
        env.pop("NO_COLOR", None)

        code, stdout, terminal = _run_with_terminal_stderr(["cancel", *ids], env)

    assert code == 0
    assert sorted(line.split()[0] for line in stdout.splitlines()) == sorted(ids)
    assert "cancelling" in terminal
    assert "failed" in terminal
    for secret in (AK, SK, "bce-auth-v1/"):
        assert secret not in terminal + stdout


def test_json_output_never_draws_a_progress_bar() -> None:
    """With --json, stderr on a terminal still gets no bar: machine output stays machine output."""
    with Emulator(ak=AK, sk=SK) as emulator:
        ids = [emulator.add_task() for _ in range(3)]
        env = {**os.environ, **sdk_environment(emulator), "EVALCTL_TESTING": "1", "TERM": "xterm"}

        code, stdout, terminal = _run_with_terminal_stderr(["cancel", "--json", *ids], env)

    assert code == 0
    assert len(stdout.splitlines()) == 3
    assert "cancelling" not in terminal


def _first_frame(terminal: str, label: str) -> str:
    """The bar as first drawn: from its label to the end of that frame's line."""
    start = terminal.index(label)
    end = min(
        (i for i in (terminal.find("\r", start), terminal.find("\n", start)) if i != -1),
        default=len(terminal),
    )
    return terminal[start:end]


def _bar_env(emulator: Emulator) -> dict[str, str]:
    env = {
        **os.environ,
        **sdk_environment(emulator),
        "EVALCTL_TESTING": "1",
        "TERM": "xterm",
        "COLUMNS": "120",
    }
    env.pop("NO_COLOR", None)
    return env


def test_the_first_frame_shows_the_total_of_ids_given_as_arguments() -> None:
    """Every id on the command line is known up front: the bar says 0/12 at once, not 0/?."""
    with Emulator(ak=AK, sk=SK, latency_s=0.02) as emulator:
        ids = [emulator.add_task() for _ in range(12)]

        code, stdout, terminal = _run_with_terminal_stderr(["cancel", *ids], _bar_env(emulator))

    assert code == 0
    first = _first_frame(terminal, "cancelling")
    assert "0/12" in first, first
    assert "?" not in first
    assert len(stdout.splitlines()) == 12


def test_the_first_frame_shows_the_total_of_ids_in_a_regular_file(tmp_path: Path) -> None:
    """A regular --from-file is counted before anything is sent (blank lines and comments not)."""
    with Emulator(ak=AK, sk=SK, latency_s=0.02) as emulator:
        ids = [emulator.add_task() for _ in range(9)]
        id_file = tmp_path / "ids.txt"
        id_file.write_text("# to stop\n\n" + "\n".join(ids) + "\n")

        code, stdout, terminal = _run_with_terminal_stderr(
            ["cancel", "--from-file", str(id_file)], _bar_env(emulator)
        )

    assert code == 0
    first = _first_frame(terminal, "cancelling")
    assert "0/9" in first, first
    assert sorted(ids) == sorted(line.split()[0] for line in stdout.splitlines())


def test_a_dry_run_is_labelled_checking_not_cancelling() -> None:
    """--dry-run stops nothing, and its progress bar says so."""
    with Emulator(ak=AK, sk=SK, latency_s=0.02) as emulator:
        ids = [emulator.add_task() for _ in range(5)]

        code, stdout, terminal = _run_with_terminal_stderr(
            ["cancel", "--dry-run", *ids], _bar_env(emulator)
        )

    assert code == 0
    assert "cancelling" not in terminal
    assert "0/5" in _first_frame(terminal, "checking")
    assert {"dry_run"} == {line.split()[2] for line in stdout.splitlines()}
