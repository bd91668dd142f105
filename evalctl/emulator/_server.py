"""The HTTP side: a threaded HTTP/1.1 server on loopback that can shut down cleanly.

One thread per connection (the SDK opens a new connection per call), keep-alive
with an idle timeout, and a tracked set of connections so that `stop()` can
unblock everything — the accept loop through a wake-up socket, idle readers by
shutting their sockets down, handlers holding a slow answer through the shared
`stopping` event — and then join every thread.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from evalctl.emulator._console import Console, Incoming, Outgoing
from evalctl.emulator._defaults import (
    ACCEPT_BACKLOG,
    IDLE_TIMEOUT_S,
    JOIN_TIMEOUT_S,
    MAX_BODY_BYTES,
    SERVER_HEADER,
)

_logger = logging.getLogger("evalctl.emulator")

# SO_LINGER on, timeout 0: close() sends RST instead of FIN.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so it can close them all."""

    daemon_threads = True
    block_on_close = False  # we join our own threads, with a timeout
    request_queue_size = ACCEPT_BACKLOG

    def __init__(self, address: tuple[str, int], console: Console) -> None:
        self.console = console
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._resets: set[socket.socket] = set()
        self._serve_thread: threading.Thread | None = None
        #: Connections accepted so far (clients that keep theirs alive open few).
        self.connections_opened = 0
        super().__init__(address, _Handler)  # binds; raises OSError if it cannot
        self._wake_receive, self._wake_send = socket.socketpair()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (slow in sandboxes)."""
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def start(self) -> None:
        """Serve in a background daemon thread."""
        self._serve_thread = threading.Thread(
            target=self._accept_loop,
            name=f"evalctl-emulator:{self.server_port}",
            daemon=True,
        )
        self._serve_thread.start()

    def stop(self) -> None:
        """Stop accepting, unblock and close every connection, join every thread."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_send.send(b"\0")  # wakes the accept loop at once, no polling
        if self._serve_thread is not None:
            self._serve_thread.join(JOIN_TIMEOUT_S)
        self.server_close()
        self._wake_send.close()
        self._wake_receive.close()
        with self._lock:
            threads = list(self._connections.values())
            for connection in self._connections:
                _quietly_shutdown(connection)
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)

    def _accept_loop(self) -> None:
        """`serve_forever`, minus its polling: a wake-up socket ends the wait on stop."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_receive, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self.stopping.is_set():
                        self._accept_one()

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up between select and accept
        try:
            self.process_request(request, client_address)
        except Exception:  # noqa: BLE001 (e.g. no thread could start: drop this one client)
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start one daemon thread per connection, and remember both."""
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"evalctl-emulator-conn:{self.server_port}",
            daemon=True,
        )
        with self._lock:
            self._connections[request] = thread
            self.connections_opened += 1
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it (with RST if a `reset` fault asked)."""
        with self._lock:
            self._connections.pop(request, None)
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            request.close()
        else:
            super().shutdown_request(request)

    def mark_reset(self, request: socket.socket) -> None:
        """Make the close of this connection a TCP RST."""
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        with self._lock:
            self._resets.add(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors (clients that vanish, time out, get reset) are routine here.

        Bugs in answering a request never get this far: the handler turns
        them into an HTTP 500 and logs them.
        """
        _logger.debug("emulator: connection error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One connection; each request goes to the `Console`."""

    server: HttpServer
    protocol_version = "HTTP/1.1"
    server_version = SERVER_HEADER
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        """Every method is served alike; the console answers 405 for non-POST."""
        arrival = time.monotonic()
        wall = time.time()
        body = self._read_body()
        if body is None:
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        try:
            outgoing = self.server.console.handle(
                Incoming(self.command, self._target(), headers, body, arrival, wall)
            )
        except Exception:  # last resort: never leave a client hanging
            _logger.exception("emulator: request handling crashed; answering HTTP 500")
            outgoing = Outgoing(
                500,
                (("Content-Type", "application/json"),),
                b'{"code": "InternalError", "message": "the emulator crashed"}',
            )
        self._send(outgoing)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the emulator records requests instead of printing them."""

    def _target(self) -> str:
        """The request target exactly as sent.

        `self.path` is not: http.server turns a leading "//" into "/" (against
        open redirects), so a stop sent as ``//wenxinworkshop/...`` would be
        recorded, verified and routed as another spelling than it was.
        """
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) == 3 else self.path

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self._send_plain(411, "Content-Length required")
            return None
        length_header = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send_plain(413 if length > MAX_BODY_BYTES else 400, "bad Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def _send_plain(self, status: int, message: str) -> None:
        self.close_connection = True
        content_type = (("Content-Type", "text/plain; charset=utf-8"),)
        self._send(Outgoing(status, content_type, message.encode()))

    def _send(self, outgoing: Outgoing) -> None:
        if outgoing.hold_s > 0 and self.server.stopping.wait(outgoing.hold_s):
            self.close_connection = True  # shutting down: drop instead of answering late
            return
        if outgoing.reset:
            self.close_connection = True
            self.server.mark_reset(self.connection)
            return
        lines = [
            f"{self.protocol_version} {outgoing.status} {_phrase(outgoing.status)}",
            f"Server: {SERVER_HEADER}",
            f"Date: {self.date_time_string()}",
            f"Content-Length: {len(outgoing.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in outgoing.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + outgoing.body)


def _phrase(status: int) -> str:
    responses = BaseHTTPRequestHandler.responses
    return responses[status][0] if status in responses else ""


def _quietly_shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its handler
        connection.shutdown(socket.SHUT_RDWR)
