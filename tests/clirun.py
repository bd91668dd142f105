"""Running the `evalctl` console script in a test: started, finished, its output screened.

A run is a real process forked from the zygote that has imported the SDK
(`forkserver`), or with `fresh` a new interpreter. `finish` fails the test
when any of the given forbidden texts (keys, signatures, tracebacks) shows
on stdout or stderr.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import forkserver

TIMEOUT_S = 60
EVALCTL = shutil.which("evalctl", path=str(Path(sys.executable).parent)) or shutil.which("evalctl")


def start(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None, *, fresh: bool = False
) -> subprocess.Popen[str]:
    """Start ``evalctl ARGS`` in `env`, in its HOME; `stdin` on a pipe when given."""
    assert EVALCTL is not None, "the evalctl console script is not installed in this venv"
    return (subprocess.Popen if fresh else forkserver.Popen)(
        [EVALCTL, *args],
        env=dict(env),
        cwd=env["HOME"],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def finish(
    process: subprocess.Popen[str], stdin: str | None, forbidden: Iterable[str]
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a started run; neither may show a forbidden text."""
    stdout, stderr = process.communicate(stdin, timeout=TIMEOUT_S)
    for text in forbidden:
        assert text not in stdout, f"{text!r} on stdout:\n{stdout}"
        assert text not in stderr, f"{text!r} on stderr:\n{stderr}"
    return process.returncode, stdout, stderr
