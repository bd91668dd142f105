"""Real processes forked from a "zygote" that has already imported the SDK.

A run of the ``evalctl`` console script spends most of its first second
importing qianfan and the libraries under it (requests, aiohttp, pydantic,
structlog, typer, rich). `Popen` and `run` here are `subprocess.Popen` and
`subprocess.run` for such a run, except that the new process is forked from a
zygote that imported those third-party libraries once, single-threaded:

- The child is a real process with its own pid (signals, kill -9, exit codes,
  closed pipes, a pty as its stderr all behave as with `subprocess`): the test's
  pipe ends are passed to it over a Unix socket and become its fds 0, 1, 2.
- It gets the requested environment, working directory and argv, then runs the
  program as the interpreter would (``runpy``: the console script itself,
  ``-m module``, ``-c code`` or a script path) and exits through the normal
  interpreter shutdown (atexit, flushing stdout: a failed flush is exit 120).
- The zygote imports what importing evalctl imports (found once by a probe
  child, then cached while nothing changes; the regular expressions the probe
  compiled go into the `re` module's cache), but nothing of evalctl itself, nor
  structlog: their import-time reads of the environment (credentials for the
  redactor, EVALCTL_TESTING, NO_COLOR) and of the terminal, and evalctl's guard
  of the SDK's logger, all happen in the child, as in a fresh process.
- What a fork would share that a fresh import would not: the preloaded
  modules' random generators are seeded anew in each child.
- The few variables the preloaded modules read at import time (locale,
  PYTHON*, FORCE_COLOR, TERMINAL_WIDTH, ...): there is one zygote per distinct
  set of their values (`_STARTUP_VARIABLES`), started with them.

What a zygote child cannot show is anything about import time itself (what
importing evalctl imports, the SDK's import-time notices): tests of that keep
`subprocess` and a fresh interpreter.

Run as a script, this file is the zygote: ``python forkserver.py SOCKET_PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: Read at import time by the interpreter or by the modules the zygote imports.
_STARTUP_VARIABLES = (
    "LANG",
    "TZ",
    "FORCE_COLOR",  # typer's rich_utils
    "GITHUB_ACTIONS",
    "PY_COLORS",
    "TERMINAL_WIDTH",
    "AIOHTTP_NOSENDFILE",
    "QIANFAN_ENABLE_STRESS_TEST",
)
_STARTUP_PREFIXES = ("PYTHON", "LC_", "TYPER_", "_TYPER_")
_STARTUP_SUFFIXES = ("_NO_EXTENSIONS",)  # aiohttp, yarl, multidict, frozenlist, propcache
#: Not preloaded: structlog reads NO_COLOR, FORCE_COLOR and whether stdout is a
#: terminal at import time (for its default configuration); the child imports it.
_NOT_PRELOADED = ("evalctl", "__main__", "structlog")
_LENGTH_BYTES = 8


# --- the test's side ------------------------------------------------------------


class _Zygote:
    """One zygote process and the socket it listens on."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="zygote-")
        self.address = os.path.join(self.folder, "socket")
        # HOME too is a folder of its own: no configuration of the machine leaks in.
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), self.address],
            env={**env, "HOME": self.folder},
            cwd=self.folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.folder, "stderr"), "wb"),  # noqa: SIM115
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        assert ready == b"ready\n", (ready, self.stderr())

    def stderr(self) -> str:
        with open(os.path.join(self.folder, "stderr"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the zygote ends at EOF on its stdin
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}
_zygotes_lock = threading.Lock()


def _startup_key(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (name, value)
            for name, value in env.items()
            if name in _STARTUP_VARIABLES
            or name.startswith(_STARTUP_PREFIXES)
            or name.endswith(_STARTUP_SUFFIXES)
        )
    )


def _zygote_for(env: Mapping[str, str]) -> _Zygote:
    key = _startup_key(env)
    with _zygotes_lock:
        zygote = _zygotes.get(key)
        if zygote is None or zygote.process.poll() is not None:
            zygote = _zygotes[key] = _Zygote(env)
        return zygote


@atexit.register
def _close_zygotes() -> None:
    with _zygotes_lock:
        for zygote in _zygotes.values():
            zygote.close()
        _zygotes.clear()


def _read_line(conn: socket.socket, buffer: bytearray) -> bytes | None:
    """One line from `conn` (blocking as the socket is set), or None at EOF."""
    while b"\n" not in buffer:
        part = conn.recv(64)
        if not part:
            return None
        buffer += part
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


class Popen(subprocess.Popen[Any]):
    """`subprocess.Popen` whose child is forked from a zygote (see the module's docstring).

    Supports what the tests use: argv, env, cwd, stdin/stdout/stderr (PIPE,
    DEVNULL, STDOUT, a file or an fd), text/encoding, start_new_session.
    """

    _status_conn: socket.socket | None = None
    _status_buffer: bytearray

    def _execute_child(  # type: ignore[override]
        self,
        args: Sequence[str | os.PathLike[str]],
        executable: str | None,
        preexec_fn: object,
        close_fds: bool,
        pass_fds: Sequence[int],
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        startupinfo: object,
        creationflags: int,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: bool,
        gid: object,
        gids: object,
        uid: object,
        umask: int,
        start_new_session: bool,
        process_group: int,
    ) -> None:
        unsupported = (
            preexec_fn is not None
            or bool(pass_fds)
            or shell
            or executable is not None
            or gid is not None
            or gids is not None
            or uid is not None
            or umask >= 0
            or process_group != -1
            or not close_fds
        )
        if unsupported or isinstance(args, str | bytes | os.PathLike):
            raise ValueError("forkserver.Popen runs an argv list with the options tests use")
        argv = [os.fspath(arg) for arg in args]
        environment = dict(os.environ if env is None else env)
        request = json.dumps(
            {
                "argv": argv,
                "env": environment,
                "cwd": os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd()),
                "start_new_session": bool(start_new_session),
            }
        ).encode("utf-8")
        zygote = _zygote_for(environment)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(zygote.address)
            fds = [
                p2cread if p2cread != -1 else 0,
                c2pwrite if c2pwrite != -1 else 1,
                errwrite if errwrite != -1 else 2,
            ]
            socket.send_fds(conn, [len(request).to_bytes(_LENGTH_BYTES, "big")], fds)
            conn.sendall(request)
            self._status_buffer = bytearray()
            pid = _read_line(conn, self._status_buffer)
            if pid is None:
                raise subprocess.SubprocessError(f"the zygote did not fork:\n{zygote.stderr()}")
        except BaseException:
            conn.close()
            raise
        self.pid = int(pid)
        self._child_created = True
        self._status_conn = conn
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _status(self, timeout: float | None) -> int | None:
        """The child's wait status, once the zygote has reaped it; None if not yet."""
        conn = self._status_conn
        if conn is None:
            return None
        conn.settimeout(timeout)
        try:
            line = _read_line(conn, self._status_buffer)
        except (BlockingIOError, TimeoutError):
            return None
        conn.close()
        self._status_conn = None
        if line is None:
            raise subprocess.SubprocessError("the zygote went away before the child ended")
        return int(line)

    def _internal_poll(self, _deadstate: int | None = None, **_: object) -> int | None:
        if self.returncode is None:
            if not self._waitpid_lock.acquire(False):
                return None
            try:
                if self.returncode is None:
                    status = self._status(0.0)
                    if status is not None:
                        self._handle_exitstatus(status)
            except Exception:
                if _deadstate is None:
                    raise
                self.returncode = _deadstate
            finally:
                self._waitpid_lock.release()
        return self.returncode

    def _wait(self, timeout: float | None) -> int:
        if timeout is not None:
            endtime = time.monotonic() + timeout
        while self.returncode is None:
            remaining = None if timeout is None else max(0.0, endtime - time.monotonic())
            acquired = self._waitpid_lock.acquire(timeout=-1 if remaining is None else remaining)
            if acquired:
                try:
                    if self.returncode is None:
                        status = self._status(remaining)
                        if status is not None:
                            self._handle_exitstatus(status)
                finally:
                    self._waitpid_lock.release()
            if self.returncode is None and timeout is not None and time.monotonic() >= endtime:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    input: str | bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run` with a `Popen` forked from the zygote."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.PIPE
    with Popen(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        code = process.poll()
        assert code is not None
    if check and code:
        raise subprocess.CalledProcessError(code, process.args, stdout, stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)


# --- the zygote's side ------------------------------------------------------------


def _dependencies() -> dict[str, list[Any]]:
    """What importing every evalctl module and parsing a command line imports, evalctl itself
    left out (found in a probe child)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            import importlib
            import pkgutil

            import evalctl
            import evalctl._cli._app

            for module in pkgutil.walk_packages(evalctl.__path__, "evalctl."):
                if "pytest" not in module.name:
                    importlib.import_module(module.name)
            # And what parsing a command line imports lazily (typer's pydantic adapters).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            for name in [name for name in os.environ if name.startswith(("QIANFAN_", "EVALCTL_"))]:
                del os.environ[name]  # no credentials: the command stops after parsing
            evalctl._cli._app.run(["cancel", "--help"])
            evalctl._cli._app.run(["status", "--api", "v1", "--json", "ame-probe"])
            names = [n for n in sys.modules if n.split(".")[0] not in _NOT_PRELOADED]
            # The regular expressions compiled meanwhile, evalctl's included: the zygote
            # fills the `re` module's cache with them (a cache: the same objects result).
            patterns = [
                [key[1], key[2]]
                for key in getattr(re, "_cache", {})
                if isinstance(key, tuple) and len(key) == 3 and isinstance(key[1], str)
            ]
            with os.fdopen(write_end, "w") as out:
                json.dump({"modules": names, "patterns": patterns}, out)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as found:
        names: dict[str, list[Any]] = json.loads(found.read() or "{}")
    os.waitpid(pid, 0)
    return names


def _cached_dependencies(cache: str) -> dict[str, list[Any]]:
    """`_dependencies`, kept in `cache` while evalctl's sources and the installed packages stay
    the same. (A stale list costs only speed: what it misses, the child imports.)"""
    import hashlib
    import importlib.util
    import sysconfig

    spec = importlib.util.find_spec("evalctl")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    stamp = hashlib.sha256(sys.version.encode())
    for root in spec.submodule_search_locations:
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                if name.endswith(".py"):
                    info = os.stat(os.path.join(folder, name))
                    stamp.update(f"{folder}/{name}:{info.st_mtime_ns}:{info.st_size};".encode())
    stamp.update(";".join(sorted(os.listdir(sysconfig.get_paths()["purelib"]))).encode())
    path = os.path.join(cache, f"zygote-{stamp.hexdigest()[:16]}.json")
    try:
        with open(path, encoding="utf-8") as known:
            cached: dict[str, list[Any]] = json.load(known)
            return cached
    except (OSError, ValueError):
        pass
    names = _dependencies()
    os.makedirs(cache, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache, delete=False, suffix=".tmp") as out:
        json.dump(names, out)
    os.replace(out.name, path)
    return names


#: The module-level random generators of the preloaded modules (qianfan has one).
_GENERATORS: list[random.Random] = []


def _preload() -> None:
    """Import evalctl's dependencies, then keep them out of the children's garbage collection."""
    import gc
    import importlib

    # The probe compiles what it imports into a bytecode cache in the venv
    # (PYTHONDONTWRITEBYTECODE or not; the one tests/conftest.py keeps), which
    # the zygote and every child then read.
    sys.pycache_prefix = os.path.join(sys.prefix, "pycache")
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    found = _cached_dependencies(sys.pycache_prefix)
    sys.dont_write_bytecode = writes_bytecode
    for name in found.get("modules", []):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - a module that only imports as a side effect
            continue
    for pattern, flags in found.get("patterns", []):
        with contextlib.suppress(Exception):
            re.compile(pattern, flags)
    assert not any(name.split(".")[0] in ("evalctl", "structlog") for name in sys.modules)
    assert threading.active_count() == 1, threading.enumerate()
    _GENERATORS.extend(
        value
        for module in list(sys.modules.values())
        for value in list(getattr(module, "__dict__", {}).values())
        if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom)
    )
    # Without this a child's first collection (at the latest, its shutdown) touches
    # every preloaded object and so copies every page of the zygote.
    gc.collect()
    gc.freeze()


def _serve(address: str) -> tuple[dict[str, Any], list[int]] | None:
    """Fork a child per request until EOF on stdin; in a child, return its request."""
    import selectors

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(0, selectors.EVENT_READ, "stdin")
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, conn)
    os.write(1, b"ready\n")
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                if not os.read(0, 4096):
                    return None
            elif key.data == "accept":
                conn, _ = listener.accept()
                conn.settimeout(30)
                header, fds, _, _ = socket.recv_fds(conn, _LENGTH_BYTES, 3)
                while len(header) < _LENGTH_BYTES:
                    header += conn.recv(_LENGTH_BYTES - len(header))
                length = int.from_bytes(header, "big")
                body = bytearray()
                while len(body) < length:
                    part = conn.recv(length - len(body))
                    if not part:
                        break
                    body += part
                request = json.loads(body)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    conn.close()
                    for pidfd, (_, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    return request, fds
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                selector.register(pidfd, selectors.EVENT_READ, "child")
                with contextlib.suppress(OSError):  # the test may have gone away
                    conn.sendall(b"%d\n" % pid)
            else:
                pidfd = key.fd
                selector.unregister(pidfd)
                pid, conn = children.pop(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    conn.sendall(b"%d\n" % status)
                conn.close()


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take on the request's process, then run its program."""
    import runpy

    if request["start_new_session"]:
        os.setsid()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    # As the interpreter sets them up at start: stdout is line-buffered on a terminal.
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    # As a fresh import would have them: the preloaded modules' random generators
    # seeded anew (at a fork the `random` module reseeds only its own).
    for generator in _GENERATORS:
        generator.seed()
    argv: list[str] = request["argv"]
    if os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        sys.argv = argv  # a script with a shebang (the console script)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    elif argv[1:2] == ["-m"]:
        sys.argv = ["-m", *argv[3:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    elif argv[1:2] == ["-c"]:
        sys.argv = ["-c", *argv[3:]]
        sys.path[0] = ""
        import types

        main = sys.modules["__main__"] = types.ModuleType("__main__")
        exec(compile(argv[2], "<string>", "exec"), main.__dict__)  # noqa: S102
    else:
        sys.argv = argv[1:]
        sys.path[0] = os.path.dirname(os.path.abspath(argv[1]))
        runpy.run_path(argv[1], run_name="__main__")


if __name__ == "__main__":
    _preload()
    forked = _serve(sys.argv[1])
    if forked is not None:
        _become(*forked)
