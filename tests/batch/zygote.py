"""Fork `evalctl` runs from one process that has already imported the library.

A run of the console script spends most of its first second importing
qianfan; a test that kills many runs (kill -9) would spend its time there.
This process imports once, single-threaded, then per line on stdin —
``["run", stdout_path, stderr_path, *argv]`` or ``["wait", pid]`` — forks a
child that runs ``evalctl._cli._app.run(argv)`` with its streams on those files
(printing the child's pid), or reaps a child (printing its exit status).
The children are real processes: the test kills them with SIGKILL.
"""

from __future__ import annotations

import json
import os
import sys

import evalctl._batch._run
import evalctl._cli._app
import evalctl._cli._output

assert evalctl._batch._run  # the library and qianfan are imported now


def main() -> None:
    for line in sys.stdin:
        command = json.loads(line)
        if command[0] == "wait":
            _, status = os.waitpid(int(command[1]), 0)
            print(status, flush=True)
            continue
        _, out, err, *argv = command
        pid = os.fork()
        if pid == 0:
            for path, fd in ((out, 1), (err, 2)):
                opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(opened, fd)
                os.close(opened)
            code = evalctl._cli._app.run(argv)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
