"""Helpers for the wire tests: one entry point for both flavours, hostile servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from evalctl._base._credentials import Credentials
from evalctl._base._redact import Redactor
from evalctl._safety._stopguard import Clearance
from evalctl._wire._transport import Reply, Wire, asend, send
from evalctl.emulator import Emulator

Flavour = Literal["sync", "async"]
FLAVOURS: tuple[Flavour, ...] = ("sync", "async")


def credentials_of(emulator: Emulator) -> Credentials:
    return Credentials(emulator.ak, emulator.sk)


def call(
    flavour: Flavour,
    route: str,
    action: str,
    body: Mapping[str, Any],
    credentials: Credentials,
    clearance: Clearance | None = None,
    *,
    wire: Wire | None = None,
    timeout: float = 5.0,
    redactor: Redactor | None = None,
    host: str | None = None,
) -> Reply:
    """`send` or `asend` (in a fresh event loop), with the same arguments."""
    wire = wire or Wire()
    redactor = redactor or Redactor([credentials.access_key(), credentials.secret_key()])
    if flavour == "sync":
        return send(wire, route, action, body, credentials, clearance, timeout, redactor, host=host)

    async def run() -> Reply:
        return await asend(
            wire, route, action, body, credentials, clearance, timeout, redactor, host=host
        )

    return asyncio.run(run())


class HostileServer:
    """A one-purpose HTTP server on 127.0.0.1: answers every request with `answer`.

    `answer(conn)` writes whatever it likes to the connected socket; the
    server records how each answer ended (`"done"` or the `OSError` name that
    stopped it, e.g. a client that hung up).
    """

    def __init__(
        self, answer: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None
    ) -> None:
        self._answer = answer
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.endings: list[str] = []
        self.heads: list[bytes] = []  # each request's request line and headers
        self.finished = threading.Event()

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    if self._tls is not None:
                        conn = self._tls.wrap_socket(conn, server_side=True)
                    self.heads.append(_read_request(conn))
                    self._answer(conn)
                    self.endings.append("done")
                except OSError as exc:
                    self.endings.append(type(exc).__name__)
                self.finished.set()

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head


def trickle(data: bytes, interval_s: float) -> Callable[[socket.socket], None]:
    """An answer that sends `data` one byte every `interval_s` seconds."""

    def answer(conn: socket.socket) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(interval_s)

    return answer


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@contextmanager
def pointed_to(base_url: str) -> Iterator[None]:
    """qianfan's console base URL is `base_url` within the block."""
    from qianfan import get_config

    config = get_config()
    saved = config.CONSOLE_API_BASE_URL
    config.CONSOLE_API_BASE_URL = base_url
    try:
        yield
    finally:
        config.CONSOLE_API_BASE_URL = saved


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
