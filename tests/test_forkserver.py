"""The test fork server's children behave as `subprocess` children would.

Many CLI and process tests rely on it (`forkserver.py`): if it hid an exit
code, an environment or a signal, those tests would prove less than they say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import forkserver


def _python(code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return forkserver.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, **kwargs
    )


def test_the_child_is_its_own_process_and_its_exit_code_is_the_result() -> None:
    process = forkserver.Popen(
        [sys.executable, "-c", "import os, sys; print(os.getpid()); sys.exit(7)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 7
    assert int(out) == process.pid
    assert process.pid != os.getpid()


def test_the_child_gets_exactly_the_given_environment_and_directory(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "ONLY_HERE": "yes"}
    done = _python(
        "import os; print(sorted(k for k in os.environ if k in ('ONLY_HERE', 'HOME')),"
        " os.getcwd())",
        env=env,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"['ONLY_HERE'] {tmp_path.resolve()}\n"


def test_stdin_stdout_and_stderr_are_the_tests_pipes() -> None:
    code = "import sys; sys.stderr.write('e'); print(sys.stdin.read()[::-1], end='')"
    done = forkserver.run(
        [sys.executable, "-c", code],
        input="abc",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "cba", "e")


def test_kill_9_ends_the_child_as_a_signal() -> None:
    process = forkserver.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "up\n"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()


def test_evalctl_is_imported_fresh_in_each_child() -> None:
    """Its import-time reads of the environment happen in the child, as in a fresh process."""
    done = _python("import sys; print('evalctl' in sys.modules, 'structlog' in sys.modules)")
    assert (done.returncode, done.stdout) == (0, "False False\n")


def test_random_generators_differ_between_children() -> None:
    code = "import random; print(random.getrandbits(64))"
    assert _python(code).stdout != _python(code).stdout
