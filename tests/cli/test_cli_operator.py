"""The operator's view through the real console script: each message one clear, true line.

A busy port is named, a closed stdout is not an error, `status` reads ids
from a file as `cancel` does, help texts show no Python types, and a bad
choice names the choices. The runs are processes forked from a zygote that
has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import forkserver
import pytest

from evalctl._batch import _run as _batch
from evalctl._cli import _app as _cli
from evalctl.emulator import Emulator, sdk_environment
from evalctl.emulator._defaults import DEFAULT_HOST

AK = "cli-op-ak-3Hq8Vx2Lr"
SK = "cli-op-sk-9Zt4Mw7Qp"
TIMEOUT_S = 60
EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent)) or shutil.which("evalctl")


@pytest.fixture
def server() -> Iterator[Emulator]:
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as emulator:
        yield emulator


def _env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("QIANFAN_", "EVALCTL_")) and name != "NO_COLOR"
    }
    return {**base, "HOME": str(tmp_path), "EVALCTL_TESTING": "1", "NO_COLOR": "1", **(extra or {})}


def _start(
    args: Sequence[str], env: Mapping[str, str], stdin: bool = False
) -> subprocess.Popen[str]:
    assert EVALCTL is not None, "the evalctl console script is not installed in this venv"
    return forkserver.Popen(
        [EVALCTL, *args],
        env=dict(env),
        cwd=env["HOME"],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def _run(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None
) -> tuple[int, str, str]:
    process = _start(args, env, stdin is not None)
    out, err = process.communicate(stdin, timeout=TIMEOUT_S)
    for secret in (AK, SK, "Traceback"):
        assert secret not in out + err
    return process.returncode, out, err


def test_emulator_on_a_busy_port_names_the_address_in_one_line(tmp_path: Path) -> None:
    """Exit 1, `cannot serve on HOST:PORT: address already in use`, nothing on stdout."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = _run(["emulator", "--port", str(port)], _env(tmp_path))

    assert (code, out, err) == (
        1,
        "",
        f"evalctl: error: cannot serve on 127.0.0.1:{port}: address already in use\n",
    )


def test_emulator_whose_stdout_is_closed_stops_quietly(tmp_path: Path) -> None:
    """`evalctl emulator | head -3`: no "Broken pipe" line, no traceback, exit 0."""
    process = _start(["emulator", "--port", "0"], _env(tmp_path))
    assert process.stdout is not None
    assert process.stderr is not None
    head = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()  # the reader goes away, as `head -3` does
    process.send_signal(signal.SIGTERM)  # its "Emulator stopped." line then meets a closed pipe
    errors = process.stderr.read()
    code = process.wait(TIMEOUT_S)

    assert head[0].startswith("Qianfan console emulator listening on http://127.0.0.1:")
    assert (code, errors) == (0, "")


def test_status_and_cancel_whose_stdout_is_closed_end_with_their_own_code(
    server: Emulator, tmp_path: Path
) -> None:
    """`... --json | head -0`: the output is dropped silently; the exit code is the work's."""
    ids = [server.add_task(f"ame-pipe{n}") for n in range(3)]
    env = _env(tmp_path, sdk_environment(server))
    for command, code_expected in (
        (["status", "--json", *ids, "ame-missing9"], 4),
        (["cancel", "--dry-run", "--json", *ids], 0),
        (["list", "--json"], 0),
    ):
        process = _start(command, env)
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # before the first line: every write meets a closed pipe
        errors = process.stderr.read()
        code = process.wait(TIMEOUT_S)

        # stderr still has its own lines (the missing task, the summary), and nothing more.
        assert code == code_expected, (command, errors)
        assert "Broken pipe" not in errors, command
        assert all(line.startswith("evalctl: ") for line in errors.splitlines()), errors
    assert len(server.requests) == 8  # 4 + 3 detail reads and 1 page: the work was done
    assert server.stop_requests() == []


def test_status_reads_ids_from_a_file_or_stdin_like_cancel(
    server: Emulator, tmp_path: Path
) -> None:
    """Blank lines and # comments are skipped; the ids of the arguments come first."""
    auto = server.add_task("ame-file1", "rule")
    manual = server.add_task("ame-file2", "rule,manual")
    listed = tmp_path / "ids.txt"
    listed.write_text(f"# to check\n\n{manual}  # the manual one\n   \n", encoding="utf-8")
    env = _env(tmp_path, sdk_environment(server))

    code, out, err = _run(["status", "--json", auto, "-f", str(listed)], env)
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(row["task_id"], row["stop_allowed"]) for row in rows] == [
        (auto, True),
        (manual, False),
    ]

    code, out, err = _run(["status", "--from-file", "-"], env, stdin=f"{auto}\n# done\n")
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == [auto]
    assert server.stop_requests() == []


def test_status_without_ids_is_one_line_with_exit_2(server: Emulator, tmp_path: Path) -> None:
    env = _env(tmp_path, sdk_environment(server))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n", encoding="utf-8")
    cases = [
        (["status"], "evalctl: error: no task ids: give ID... or --from-file PATH\n"),
        (
            ["status", "-f", str(empty)],
            f"evalctl: error: no task ids in --from-file '{empty}'\n",
        ),
        (
            ["status", "-f", str(tmp_path / "missing.txt")],
            f"evalctl: error: cannot read --from-file '{tmp_path / 'missing.txt'}':"
            " No such file or directory\n",
        ),
    ]
    for args, expected in cases:
        assert _run(args, env) == (2, "", expected), args
    assert server.requests == []


def test_a_bad_choice_names_the_choices_in_one_plain_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for command in ("status", "cancel"):
        assert _run([command, "--api", "v3", "ame-x"], env) == (
            2,
            "",
            f"evalctl: error: Invalid value for '--api': 'v3' (choose v1 or v2)"
            f" (see 'evalctl {command} --help')\n",
        )


def test_concurrency_limit_is_the_batchs_and_the_help_says_so(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, out, err = _run(["cancel", "--concurrency", str(_batch.MAX_CONCURRENCY + 1), "x"], env)
    assert (code, out) == (2, "")
    assert err.startswith("evalctl: error: Invalid value for '--concurrency': ")
    assert err.count("\n") == 1

    code, out, err = _run(["cancel", "--help"], env)
    assert (code, err) == (0, "")
    help_text = " ".join(out.split())
    assert f"[default: {_batch.DEFAULT_CONCURRENCY}; 1<=x<={_batch.MAX_CONCURRENCY}]" in help_text


def test_help_texts_show_no_python_types(tmp_path: Path) -> None:
    """`ID`, `--api v1|v2`, `--host ADDR`: never `<list[str]>`, `<str>` or `<v1|v2>`."""
    env = _env(tmp_path)
    for command in ("cancel", "status", "emulator", "demo"):
        code, out, err = _run([command, "--help"], env)
        assert (code, err) == (0, ""), command
        assert "<" not in out.replace("<=", ""), (command, out)
        if command in ("cancel", "status"):
            assert f"Usage: evalctl {command} [OPTIONS] [ID]..." in out
            assert "--api v1|v2" in out
    code, out, _ = _run(["emulator", "--help"], env)
    assert "--host ADDR" in out
    assert "[default: 127.0.0.1]" in out


def test_the_clis_copies_of_library_constants_match() -> None:
    assert (_cli.DEFAULT_CONCURRENCY, _cli.MAX_CONCURRENCY, _cli.EMULATOR_HOST) == (
        _batch.DEFAULT_CONCURRENCY,
        _batch.MAX_CONCURRENCY,
        DEFAULT_HOST,
    )


def test_one_terminal_check_colours_only_a_terminal_that_wants_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rich decides: a pty is a terminal, a pipe is not; NO_COLOR (even empty) and TERM=dumb
    turn colours off."""
    import pty

    from evalctl._cli._logging import is_terminal, wants_color

    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    main_fd, side_fd = pty.openpty()
    read_fd, write_fd = os.pipe()
    with (
        os.fdopen(main_fd, "w") as _,
        os.fdopen(side_fd, "w") as terminal,
        os.fdopen(read_fd) as _r,
        os.fdopen(write_fd, "w") as pipe,
    ):
        assert (is_terminal(terminal), is_terminal(pipe)) == (True, False)
        assert (wants_color(terminal), wants_color(pipe)) == (True, False)
        monkeypatch.setenv("TERM", "dumb")
        assert wants_color(terminal) is False
        monkeypatch.setenv("TERM", "xterm-256color")
        monkeypatch.setenv("NO_COLOR", "")
        assert wants_color(terminal) is False
