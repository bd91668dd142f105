"""The one boundary between evalctl and the network: sign, guard, send, read.

Public surface (what the rest of evalctl codes against)::

    MAX_BODY_BYTES: Final = 8 * 1024 * 1024   # a larger answer is refused

    class Wire:                           # connection pools, nothing else
        def __init__(self) -> None
        @classmethod
        def shared(cls) -> Wire           # one per process (drop-in), closed at exit
        def requests_session(self) -> requests.Session          # lazily, pooled
        async def aiohttp_session(self) -> aiohttp.ClientSession  # per running loop
        def close(self) -> None           # idempotent; reopens on next use
        async def aclose(self) -> None    # + the running loop's aiohttp session

    @dataclass(frozen=True, eq=False)
    class Reply:                          # one 2xx JSON answer, read once
        status: int
        headers: Mapping[str, str]        # response headers
        body: dict[str, Any]              # the parsed JSON object
        duplicate_keys: bool              # some object repeated a key
        log_id: str | None                # parsed once, redacted
        url: str                          # the absolute URL as sent
        sent_body: dict[str, Any]         # the body as sent (what `guard` returned)
        request_headers: Mapping[str, str]  # as sent, Authorization masked
        request_latency: float            # seconds on the wire
        total_latency: float              # seconds in `send`
        start_timestamp: int              # ms since the epoch
        timeout: float = 0.0              # the attempt's budget
        def to_qf_response(self) -> QfResponse   # the drop-in's answer, as the SDK's

    def send(wire: Wire, route: str, action: str, body: Mapping[str, Any],
             credentials: Credentials, clearance: Clearance | None,
             timeout: float, redactor: Redactor, *, host: str | None = None) -> Reply
    async def asend(...same...) -> Reply

        route: "/wenxinworkshop/..." or "/v2/eval"; action: the `Action`
        query value ("" on v1: the SDK sends `?Action=` then too); body: the
        caller's mapping (never sent as such: `guard` returns what is sent);
        credentials: `evalctl._base._credentials.Credentials`; clearance:
        `evalctl._safety._stopguard.Clearance` for a stop, else None; timeout: TOTAL
        wall time of the attempt (connect + send + headers + body); host: the
        SDK requestor's `host=` override (scheme://host[:port]) or None.

        Raises:
            AttemptFailed(Failure): what the retry loop judges — timeouts,
                connection failures (naming scheme://host:port only), HTTP
                >= 300, 2xx error envelopes, non-JSON, oversized or malformed
                answers. Raised with no `__context__`.
            UnsafeRequestError: from the stop guard; nothing sent.
            ConfigurationError: the request cannot be built (a route that is
                no URL, a body that is no JSON, a key or header value HTTP
                cannot carry); nothing sent, no `__cause__`/`__context__`.

    Failure, AttemptFailed, interpret(status, headers, content, redactor),
    log_id_of(body, redactor), SignerLogMask       # as before

How a request is made (every request, sync and async):

1. The endpoint, TLS verification and proxy come from qianfan's public
   `get_config()` (`CONSOLE_API_BASE_URL`, `SSL_VERIFICATION_ENABLED`,
   `PROXY`) at each send, the base URL's scheme/host replaced by `host=`.
2. The HTTP client's own URL handling (requests' `PreparedRequest` / yarl's
   `URL`) builds the absolute URL that will go on the wire; that very URL
   is given to `_stopguard.guard(url, body, clearance)`, and the dict it
   returns is serialised once to JSON bytes.
3. Those bytes are signed with baidubce's public BCE v1 `sign` exactly as
   the SDK's console requestor signs (headers Content-Type, Host,
   request-source, x-bce-date; canonical URI = the path as sent; query as
   sent, `Action=` included), then sent — the prepared request itself, on
   evalctl's own pooled `requests.Session` / `aiohttp.ClientSession`.
4. The answer is read with a total deadline and a size cap, parsed with
   `_strictjson.loads` and judged by `interpret`.

evalctl does not call the SDK's requestor at all: its `_request` logs the
request with its Authorization header at TRACE level and, on HTTP errors,
builds and logs a message embedding every request header; its async twin
drops the body of non-200 answers, which is where v2 puts `requestId`,
`code` and `message`. The signing itself (baidubce) logs the derived signing
key and the Authorization value at DEBUG: a filter on that one logger masks
them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import email.utils
import functools
import heapq
import importlib
import itertools
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
import yarl

# bce-python-sdk ships no type information; `sign` is called with the exact
# argument types the qianfan SDK's IAM signing uses, so its result is bytes.
from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]
from qianfan import get_config
from qianfan.resources.typing import QfRequest, QfResponse, RetryConfig
from qianfan.version import VERSION as QIANFAN_VERSION
from urllib3.util.url import _encode_target  # what urlopen applies to the target

from evalctl._base._credentials import Credentials
from evalctl._base._errors import ConfigurationError, EvalctlError
from evalctl._base._redact import MASK, Redactor, remember_authorization
from evalctl._safety import _stopguard
from evalctl._safety._stopguard import Clearance

FailureKind = Literal["timeout", "connection", "http", "envelope", "not_json", "malformed"]

#: Largest response body evalctl reads, in bytes (after content decoding).
#: A larger answer is refused as an invalid response without being read whole.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024

_LOG_ID_KEYS: Final = ("log_id", "requestId", "request_id")
_LOG_ID_HEADERS: Final = ("X-Bce-Request-Id",)
_MAX_LOG_ID: Final = 128
_REQUEST_SOURCE: Final = f"qianfan_py_sdk_v{QIANFAN_VERSION}"
_SIGNER_LOGGER: Final = "baidubce.auth.bce_v1_signer"
_SIGN_KEY_RE: Final = re.compile(r"(sign_key=\[)[^\]]*")
_CHUNK: Final = 64 * 1024
_METHOD: Final = "POST"
# Header values http.client refuses (and echoes whole in its error): CR, LF, NUL.
_BAD_HEADER_CHARS: Final = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, independent of the HTTP library.

    Attributes:
        kind: timeout, connection, http (status >= 300), envelope (an
            `error_code` in a 2xx body), not_json, malformed (JSON, wrong
            shape, or a body larger than `MAX_BODY_BYTES`).
        message: Redacted, short, safe to show.
        maybe_applied: The server may have acted on the request (a timeout or
            a connection lost after sending, or an unreadable 2xx answer).
    """

    kind: FailureKind
    message: str
    http_status: int | None = None
    error_code: int | str | None = None
    log_id: str | None = None
    retry_after: float | None = None
    maybe_applied: bool = False


class AttemptFailed(Exception):
    """Internal: one attempt failed; carries the `Failure` to the retry loop."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure
        # Filled in by the attempt loop, for the log event.
        self.attempt = 0
        self.duration_ms = 0.0


# --- the reply ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Reply:
    """One 2xx JSON answer, read once.

    Attributes:
        status: HTTP status (2xx).
        headers: The response headers.
        body: The parsed JSON object, as the server sent it.
        duplicate_keys: Some object in the body repeated a key (a decision
            taken on such a body must fail closed).
        log_id: The server's request id (v1 `log_id`, v2 `requestId`, or the
            `X-Bce-Request-Id` header), redacted; None when absent.
        url: The absolute URL as sent.
        sent_body: The body as sent (the dict `_stopguard.guard` returned).
        request_headers: The request headers as sent, Authorization masked.
        request_latency: Seconds from sending to the end of the body.
        total_latency: Seconds spent in `send`.
        start_timestamp: When `send` started, ms since the epoch.
        timeout: The attempt's total time budget, seconds.
    """

    status: int
    # Not in the repr: a detail body carries the judge app's keys, and a
    # frame holding a Reply must not show them in a traceback with locals.
    headers: Mapping[str, str] = field(repr=False)
    body: dict[str, Any] = field(repr=False)
    duplicate_keys: bool
    log_id: str | None
    url: str
    sent_body: dict[str, Any] = field(repr=False)
    request_headers: Mapping[str, str] = field(repr=False)
    request_latency: float
    total_latency: float
    start_timestamp: int
    timeout: float = 0.0

    def to_qf_response(self) -> QfResponse:
        """The drop-in's answer, shaped as the SDK's `QfResponse`.

        `code`, `headers`, `body`, `statistic` (`request_latency`,
        `total_latency`, `start_timestamp`, `avg_output_tokens_per_second`)
        and `request` (method, URL and headers as sent with Authorization
        masked, `json_body` the body sent).
        """
        response = QfResponse(code=self.status, headers=dict(self.headers), body=self.body)
        request = QfRequest(method=_METHOD, url=self.url, headers=dict(self.request_headers))
        request.json_body = copy.deepcopy(self.sent_body)
        request.retry_config = RetryConfig(retry_count=1, timeout=self.timeout)
        response.request = request
        # The keys the SDK's latency decorator fills in, for drop-in callers.
        response.statistic["request_latency"] = self.request_latency
        response.statistic["total_latency"] = self.total_latency
        response.statistic["start_timestamp"] = self.start_timestamp
        response.statistic["avg_output_tokens_per_second"] = 0.0
        return response


# --- the baidubce signer's debug lines ---------------------------------------------


class SignerLogMask(logging.Filter):
    """Masks the signing key and Authorization value in baidubce's signing debug lines.

    They reach any handler of an application that logs at DEBUG (e.g.
    ``logging.basicConfig(level=logging.DEBUG)``); nothing else is changed.
    """

    _redact: Final = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._redact(_SIGN_KEY_RE.sub(r"\g<1>" + MASK, message), limit=None)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _mask_signer_logs() -> None:
    logger = logging.getLogger(_SIGNER_LOGGER)
    if not any(isinstance(existing, SignerLogMask) for existing in logger.filters):
        logger.addFilter(SignerLogMask())


_mask_signer_logs()


# --- total deadlines for the sync client ------------------------------------------
#
# `requests` bounds each socket operation, not the attempt: a server that
# trickles a byte a second keeps a call with a 3 s timeout alive forever.
# Each attempt registers a deadline with one watchdog thread; evalctl's
# urllib3 connection classes hand the deadline their socket when the answer
# is awaited, and at the deadline the watchdog shuts the socket down, which
# ends any blocked read at once. The pool disarms a deadline before it takes
# a connection back, so a pooled connection is never shut by a late expiry.


class _Deadline:
    """One attempt's total deadline (monotonic seconds)."""

    __slots__ = ("_lock", "_sock", "at", "done", "expired")

    def __init__(self, at: float) -> None:
        self.at = at
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.done = False
        self.expired = False

    def arm(self, sock: socket.socket | None) -> None:
        with self._lock:
            if self.done or sock is None:
                return
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def disarm(self) -> None:
        with self._lock:
            self.done = True
            self._sock = None


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: it must not touch
    # the TLS state the reading thread is using; the read then sees EOF.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires deadlines; started on first use."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="evalctl-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, due = heapq.heappop(self._heap)
            due.expire()


_WATCHDOG: Final = _Watchdog()
_current = threading.local()


def _arm_current(conn: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if isinstance(deadline, _Deadline):
        conn.evalctl_deadline = deadline
        deadline.arm(getattr(conn, "sock", None))


class _Connection(urllib3.connection.HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _arm_current(self)
        return super().getresponse(*args, **kwargs)


class _TLSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _arm_current(self)
        return super().getresponse(*args, **kwargs)


def _disarm(conn: Any) -> None:
    deadline = getattr(conn, "evalctl_deadline", None)
    if isinstance(deadline, _Deadline):
        deadline.disarm()
        conn.evalctl_deadline = None


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _Connection

    def _put_conn(self, conn: Any) -> None:
        _disarm(conn)
        super()._put_conn(conn)


class _TLSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection

    def _put_conn(self, conn: Any) -> None:
        _disarm(conn)
        super()._put_conn(conn)


_POOL_CLASSES: Final = {"http": _Pool, "https": _TLSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with evalctl's pools (deadlines) and no retries of its own."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.PoolManager):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# --- the wire: connection pools ---------------------------------------------------


class Wire:
    """evalctl's HTTP connections: a pooled `requests.Session` and, lazily, an
    `aiohttp.ClientSession` per event loop.

    `Wire.shared()` is the one the drop-in uses (one per process, closed at
    interpreter exit); a batch makes one per worker and closes it. Holds no
    credentials and no endpoint: both are given to each `send`. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        # One aiohttp session per event loop (a session is bound to its loop).
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def shared(cls) -> Wire:
        """The process-wide wire (created on first use, closed at exit)."""
        global _SHARED
        wire = _SHARED
        if wire is None:
            with _SHARED_LOCK:
                wire = _SHARED
                if wire is None:
                    wire = _SHARED = cls()
                    atexit.register(wire.close)
        return wire

    def requests_session(self) -> requests.Session:
        """The pooled `requests.Session` (created on first use)."""
        session = self._session
        if session is None:
            with self._lock:
                session = self._session
                if session is None:
                    session = requests.Session()
                    adapter = _Adapter(max_retries=0)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    self._session = session
        return session

    async def aiohttp_session(self) -> aiohttp.ClientSession:
        """The running loop's pooled `aiohttp.ClientSession` (created on first use).

        It is closed when the loop's async generators are shut down (as
        `asyncio.run` does before closing the loop), by `aclose()`, or
        by `close()` once its loop is closed.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async.get(loop)
            if entry is not None and not entry.session.closed:
                return entry.session
            entry = _LoopSession(_new_aiohttp_session(), loop)
            self._async[loop] = entry
        await entry.start()
        return entry.session

    def close(self) -> None:
        """Close the pooled connections (idempotent; the wire reopens on next use)."""
        with self._lock:
            session, self._session = self._session, None
            stale = [s for loop, s in self._async.items() if loop.is_closed()]
        if session is not None:
            session.close()
        for entry in stale:
            entry.close_if_loop_closed()

    async def aclose(self) -> None:
        """`close()`, and close the aiohttp session of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async.pop(loop, None)
        if entry is not None:
            await entry.session.close()
        self.close()

    def __repr__(self) -> str:
        return f"Wire(sync={'open' if self._session else 'idle'}, loops={len(self._async)})"


def _new_aiohttp_session() -> aiohttp.ClientSession:
    # Before Python 3.12.8 asyncio leaves a TLS connection open after an
    # aborted exchange (a timed-out attempt) until the peer completes the TLS
    # shutdown, which a trickling server never does: aiohttp then aborts the
    # transport itself after a short grace period.
    cleanup = bool(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False))
    connector = aiohttp.TCPConnector(enable_cleanup_closed=cleanup)
    return aiohttp.ClientSession(connector=connector, trust_env=False)


class _LoopSession:
    """An aiohttp session and the async generator that closes it with its loop.

    The loop knows the generator (its async-generator hooks saw it start), so
    `loop.shutdown_asyncgens()` — which `asyncio.run` calls before closing
    the loop — closes it, and that closes the session. A loop closed without
    that (`loop.close()` alone) is handled by the generator's finalizer and
    by `Wire.close()`: once the loop is closed, closing the session needs no
    loop, so it is done on the spot.
    """

    def __init__(self, session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self._loop = loop
        self._closer = self._close_at_loop_end()

    async def start(self) -> None:
        hooks = sys.get_asyncgen_hooks()
        # The loop's `firstiter` registers the generator for shutdown_asyncgens;
        # our finalizer replaces the loop's (which fails once the loop is closed).
        # The generator runs to its `yield` without suspending: nothing else
        # runs while the hooks are swapped.
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=self._finalize)
        try:
            await self._closer.__anext__()
        finally:
            sys.set_asyncgen_hooks(*hooks)

    async def _close_at_loop_end(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.session.close()

    def _finalize(self, generator: Any) -> None:
        if self._loop.is_closed():
            _run_now(generator.aclose())
        else:
            self._loop.call_soon_threadsafe(self._loop.create_task, generator.aclose())

    def close_if_loop_closed(self) -> None:
        if self._loop.is_closed():
            _run_now(self._closer.aclose())


def _run_now(awaitable: Any) -> None:
    """Drive a coroutine that needs no event loop (closing on a closed loop) to its end."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration:
        return
    except Exception:  # noqa: BLE001 - closing is best effort
        return
    steps.close()


_SHARED: Wire | None = None
_SHARED_LOCK: Final = threading.Lock()


def _forget_shared_after_fork() -> None:
    # The child must not share the parent's sockets, nor a watchdog lock that
    # another thread of the parent may have held at the fork.
    global _SHARED
    _SHARED = None
    _WATCHDOG.__init__()  # type: ignore[misc]


os.register_at_fork(after_in_child=_forget_shared_after_fork)


# --- the endpoint ----------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    base_url: str  # scheme://host[:port][/path], no userinfo
    shown: str  # scheme://host:port, for messages
    verify: bool
    proxy: str | None = field(repr=False)  # may carry a proxy password


def _endpoint(host: str | None) -> _Endpoint:
    """Base URL, TLS verification and proxy from qianfan's public `get_config()`."""
    config = get_config()
    base = str(config.CONSOLE_API_BASE_URL)
    proxy = str(config.PROXY or "") or None
    return _endpoint_of(base, host, bool(config.SSL_VERIFICATION_ENABLED), proxy)


_ENDPOINTS: dict[tuple[str, str | None, bool, str | None], _Endpoint] = {}


def _endpoint_of(base: str, host: str | None, verify: bool, proxy: str | None) -> _Endpoint:
    key = (base, host, verify, proxy)
    known = _ENDPOINTS.get(key)
    if known is not None:
        return known
    parts = urlsplit(base)
    if host:
        # As the SDK's console requestor: `host` replaces scheme and netloc.
        override = urlsplit(host)
        parts = parts._replace(
            scheme=override.scheme or parts.scheme, netloc=override.netloc or parts.netloc
        )
    try:
        hostname, port = parts.hostname, parts.port
    except ValueError:
        hostname, port = None, None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigurationError(
            "the console endpoint must be an http:// or https:// URL with a host"
        )
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        netloc = f"{netloc}:{port}"
    shown_port = port if port is not None else (443 if parts.scheme == "https" else 80)
    shown_host = f"[{hostname}]" if ":" in hostname else hostname
    endpoint = _Endpoint(
        base_url=urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")),
        shown=f"{parts.scheme}://{shown_host}:{shown_port}",
        verify=verify,
        proxy=proxy,
    )
    if len(_ENDPOINTS) < 64:
        _ENDPOINTS[key] = endpoint
    return endpoint


# --- building and signing ---------------------------------------------------------


class _Sealed:
    """Request headers with the Authorization value; its repr shows none of them.

    Frames that raise may hold one; traceback renderers that print locals
    then show only the header names.
    """

    __slots__ = ("__headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self.__headers = headers

    def open(self) -> dict[str, str]:
        return self.__headers

    def masked(self) -> dict[str, str]:
        return {k: MASK if k.lower() == "authorization" else v for k, v in self.__headers.items()}

    def __repr__(self) -> str:
        return f"<headers {', '.join(self.__headers)}>"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("request headers cannot be pickled")


@dataclass(frozen=True, repr=False)
class _Outgoing:
    """One request, ready for the socket: URL as sent, body bytes, signed headers."""

    url: str
    data: bytes
    sent_body: dict[str, Any]
    headers: _Sealed

    def __repr__(self) -> str:
        return f"<request POST {self.url}>"


def _guarded(
    url: str, body: Mapping[str, Any], clearance: Clearance | None
) -> dict[str, Any] | str:
    """What `guard` returns, or why the caller's body could not be read.

    `UnsafeRequestError` (and any evalctl error) passes through; anything
    else — a mapping changed by another thread while it was copied, a
    mapping whose methods fail — is reduced to its type, and nothing is sent.
    """
    try:
        return _stopguard.guard(url, body, clearance)
    except EvalctlError:
        raise
    except Exception as exc:  # noqa: BLE001 - the caller's object: keep only the type
        return f"the request body could not be read ({type(exc).__name__}); nothing was sent"


def _serialise(body: Mapping[str, Any]) -> bytes | str:
    """JSON bytes of the body to send, or the reason it cannot be sent."""
    try:
        return json.dumps(body, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        return f"the request body cannot be sent as JSON ({type(exc).__name__})"


def _sign_headers(
    url: str, credentials: Credentials, base_headers: Mapping[str, str]
) -> _Sealed | str:
    """Headers signed as the SDK's console requestor signs them, or why not.

    The SDK signs every header it set — Content-Type, Host, request-source
    and x-bce-date — over the route path and the `Action` query, with
    baidubce's BCE v1 `sign`; here the path and query are those of the URL
    exactly as it is sent, which is what the gateway verifies.
    """
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/json",
        "Host": parts.netloc,
        "request-source": _REQUEST_SOURCE,
    }
    problem = _header_problem({"Authorization": credentials.access_key()})
    if problem is not None:
        return problem
    timestamp = time.time()
    headers["x-bce-date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(timestamp)))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        authorization = sign(
            BceCredentials(credentials.access_key(), credentials.secret_key()),
            _METHOD.encode(),
            (parts.path or "/").encode(),
            {k.encode(): v for k, v in headers.items()},
            {k.encode(): v for k, v in query.items()},
            timestamp=timestamp,
            expiration_in_seconds=int(get_config().IAM_SIGN_EXPIRATION_SEC),
            headers_to_sign={k.lower().encode() for k in headers},
        )
        headers["Authorization"] = authorization.decode("ascii")
        # Its signature and signing key are masked by value in whatever evalctl emits.
        remember_authorization(headers["Authorization"], credentials.secret_key())
    except Exception as exc:  # noqa: BLE001 - args may hold a key: only the type is kept
        return f"the request could not be signed ({type(exc).__name__})"
    # The HTTP client's own headers (User-Agent, Accept, Connection, ...) go
    # unsigned, as with the SDK: a proxy may rewrite hop-by-hop headers.
    headers = {**base_headers, **headers}
    problem = _header_problem(headers)
    return problem if problem is not None else _Sealed(headers)


def _header_problem(headers: Mapping[str, str]) -> str | None:
    """Why a header cannot go on the wire (http.client would echo its value), or None."""
    for name, value in headers.items():
        bad = _BAD_HEADER_CHARS.search(value) is not None
        if not bad:
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                bad = True
        if bad:
            what = "the access key" if name == "Authorization" else f"the {name} header"
            return (
                f"{what} contains a character an HTTP header cannot carry"
                " (non-ASCII, CR, LF or NUL); nothing was sent"
            )
    return None


def _build(
    url: str,
    body: Mapping[str, Any],
    credentials: Credentials,
    clearance: Clearance | None,
    base_headers: Mapping[str, str],
) -> _Outgoing:
    """The choke point: guard the URL as sent, serialise the guarded body, sign."""
    guarded = _guarded(url, body, clearance)  # raises UnsafeRequestError
    if isinstance(guarded, str):
        raise ConfigurationError(guarded)
    sent_body = guarded
    data = _serialise(sent_body)
    if isinstance(data, str):
        raise ConfigurationError(data)
    signed = _sign_headers(url, credentials, base_headers)
    if isinstance(signed, str):
        raise ConfigurationError(signed)
    return _Outgoing(url, data, sent_body, signed)


def _sync_url(endpoint: _Endpoint, route: str, action: str) -> str | None:
    """The absolute URL `requests`/`urllib3` put on the wire for this route."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(endpoint.base_url + route, {"Action": action})
        parts = urlsplit(prepared.url or "")
        # urllib3's connection pool re-encodes the request target once more
        # (`urlopen` calls `_encode_target`: percent-escapes upper-cased,
        # invalid characters escaped, dot segments that requote_uri revealed
        # kept). Apply the very same function, so the URL guarded and signed
        # is byte for byte the one sent.
        target = _encode_target(prepared.path_url or "/")
        return f"{parts.scheme}://{parts.netloc}{target}"
    except Exception:  # noqa: BLE001 - any route the client cannot make a URL of
        return None


def _async_url(endpoint: _Endpoint, route: str, action: str) -> yarl.URL | None:
    """The URL `aiohttp`/`yarl` put on the wire for this route (given as a URL object)."""
    try:
        url = yarl.URL(endpoint.base_url + route).with_fragment(None)
        return url.extend_query({"Action": action})
    except Exception:  # noqa: BLE001 - any route the client cannot make a URL of
        return None


def _bad_route(route: str, redactor: Redactor) -> ConfigurationError:
    return ConfigurationError(f"cannot build a URL from the route {redactor(route, 100)!r}")


def _origin(url: str) -> str | None:
    """scheme://host:port of `url` (None with userinfo, or when unreadable)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname}:{port}"


@functools.lru_cache(maxsize=64)
def _expected_origin(base_url: str, flavour: str) -> str | None:
    """The origin the client makes of the endpoint itself (IDNA, case, port)."""
    endpoint = _Endpoint(base_url, "", True, None)
    url = _sync_url(endpoint, "/", "") if flavour == "sync" else _async_url(endpoint, "/", "")
    return None if url is None else _origin(str(url))


def _check_origin(endpoint: _Endpoint, url: str, flavour: str) -> None:
    """A route must not move the request to another host (`@host`, `:port`...).

    The SDK concatenates base URL and route; a route such as
    ``@attacker.example/x`` would send the signed request elsewhere.
    """
    if _origin(url) != _expected_origin(endpoint.base_url, flavour) or _origin(url) is None:
        raise ConfigurationError(
            f"the route would send the request to another host than {endpoint.shown};"
            " routes are paths such as /v2/eval"
        )
    if urlsplit(url).path.startswith("//"):
        # Servers read a leading "//" differently (collapsed, or a host):
        # no console route has one, so it is refused rather than guessed.
        raise ConfigurationError(
            "the route's path would start with //; routes are paths such as /v2/eval"
        )


# --- sending (sync) -------------------------------------------------------------


def send(
    wire: Wire,
    route: str,
    action: str,
    body: Mapping[str, Any],
    credentials: Credentials,
    clearance: Clearance | None,
    timeout: float,
    redactor: Redactor,
    *,
    host: str | None = None,
) -> Reply:
    """Send one request (sync): guard, sign, send, read. See the module docstring."""
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)
    deadline = _Deadline(time.monotonic() + timeout)
    endpoint = _endpoint(host)
    url = _sync_url(endpoint, route, action)
    if url is None:
        raise _bad_route(route, redactor)
    _check_origin(endpoint, url, "sync")
    outgoing = _build(url, body, credentials, clearance, requests.utils.default_headers())
    session = wire.requests_session()
    failure: AttemptFailed | None = None
    exchanged: tuple[int, Mapping[str, str], bytes | None, float] | None = None
    _WATCHDOG.watch(deadline)
    _current.deadline = deadline
    try:
        exchanged = _exchange(session, endpoint, outgoing, deadline)
    except requests.exceptions.ConnectTimeout as exc:
        failure = _transport_failure("timeout", exc, endpoint, redactor, applied=False)
    except requests.exceptions.RequestException as exc:
        if deadline.expired:  # the watchdog ended the attempt at its deadline
            failure = _deadline_failure()
        elif isinstance(exc, requests.exceptions.Timeout):
            failure = _transport_failure("timeout", exc, endpoint, redactor, applied=True)
        else:
            failure = _transport_failure(
                "connection", exc, endpoint, redactor, applied=not _never_sent(exc)
            )
    except Exception as exc:  # noqa: BLE001 - a foreign error: its args may hold a secret
        failure = _foreign_failure(exc, endpoint, deadline)
    finally:
        deadline.disarm()
        _current.deadline = None
    # Raised here, outside every `except`: no foreign exception as __context__.
    if failure is not None:
        raise failure
    assert exchanged is not None
    read = _reply(
        *exchanged,
        redactor,
        outgoing,
        {**outgoing.headers.masked(), "Content-Length": str(len(outgoing.data))},
        started,
        started_ms,
        timeout,
    )
    exchanged = None  # no frame keeps the raw answer when a failure is raised
    return _raised_or(read)


def _exchange(
    session: requests.Session, endpoint: _Endpoint, outgoing: _Outgoing, deadline: _Deadline
) -> tuple[int, Mapping[str, str], bytes | None, float]:
    prepared = requests.PreparedRequest()
    prepared.method = _METHOD
    prepared.url = outgoing.url
    prepared.headers = requests.structures.CaseInsensitiveDict(outgoing.headers.open())
    prepared.body = outgoing.data
    prepared.headers["Content-Length"] = str(len(outgoing.data))
    prepared.prepare_cookies(requests.cookies.RequestsCookieJar())  # none: a fresh jar
    proxies = {"http": endpoint.proxy, "https": endpoint.proxy} if endpoint.proxy else {}
    # Environment proxies and CA bundle, as `requests.request` (the SDK) honours
    # them — without scanning the whole environment when no proxy is set.
    if _proxy_environment():
        for scheme, proxy in requests.utils.get_environ_proxies(outgoing.url).items():
            proxies.setdefault(scheme, proxy)
    verify: bool | str = endpoint.verify
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    remaining = max(deadline.at - time.monotonic(), 0.001)
    sent = time.perf_counter()
    response = session.send(
        prepared,
        stream=True,
        timeout=(remaining, remaining),
        verify=verify,
        proxies=proxies,
        allow_redirects=False,
    )
    try:
        content = _read_capped(response, deadline)
        return response.status_code, response.headers, content, time.perf_counter() - sent
    finally:
        response.close()


# The variables `requests` reads proxies from for an http(s) URL.
_PROXY_VARIABLES: Final = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "request_method")
    for name in (base, base.upper())
)


def _proxy_environment() -> bool:
    environ = os.environ
    return any(name in environ for name in _PROXY_VARIABLES)


def _read_capped(response: requests.Response, deadline: _Deadline) -> bytes | None:
    """The body, or None when it is larger than `MAX_BODY_BYTES` (not read further)."""
    if _declared_length(response.headers.get("Content-Length")) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if deadline.expired:
            break  # the watchdog shut the socket; the read below would fail anyway
    if deadline.expired:
        raise requests.exceptions.ReadTimeout("the attempt's deadline passed")
    return b"".join(chunks)


def _declared_length(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 0
    return int(value.strip())


# --- sending (async) --------------------------------------------------------------


async def asend(
    wire: Wire,
    route: str,
    action: str,
    body: Mapping[str, Any],
    credentials: Credentials,
    clearance: Clearance | None,
    timeout: float,
    redactor: Redactor,
    *,
    host: str | None = None,
) -> Reply:
    """Send one request (async): guard, sign, send, read. See the module docstring."""
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)
    endpoint = _endpoint(host)
    url = _async_url(endpoint, route, action)
    if url is None:
        raise _bad_route(route, redactor)
    _check_origin(endpoint, str(url), "async")
    outgoing = _build(str(url), body, credentials, clearance, {})
    session = await wire.aiohttp_session()
    failure: AttemptFailed | None = None
    exchanged: tuple[int, Mapping[str, str], bytes | None, float, dict[str, str]] | None = None
    try:
        async with asyncio.timeout(timeout):
            exchanged = await _aexchange(session, endpoint, url, outgoing, timeout)
    except aiohttp.ClientConnectorError as exc:
        failure = _transport_failure("connection", exc, endpoint, redactor, applied=False)
    except aiohttp.ConnectionTimeoutError as exc:
        failure = _transport_failure("timeout", exc, endpoint, redactor, applied=False)
    except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
        failure = _transport_failure("timeout", exc, endpoint, redactor, applied=True)
    except aiohttp.ClientError as exc:
        failure = _transport_failure("connection", exc, endpoint, redactor, applied=True)
    except Exception as exc:  # noqa: BLE001 - a foreign error: its args may hold a secret
        failure = _foreign_failure(exc, endpoint, None)
    if failure is not None:
        raise failure
    assert exchanged is not None
    status, headers, content, latency, sent_headers = exchanged
    exchanged = None  # no frame keeps the raw answer when a failure is raised
    read = _reply(
        status,
        headers,
        content,
        latency,
        redactor,
        outgoing,
        sent_headers,
        started,
        started_ms,
        timeout,
    )
    del content, headers  # the answer's headers may echo the request's (Authorization)
    return _raised_or(read)


async def _aexchange(
    session: aiohttp.ClientSession,
    endpoint: _Endpoint,
    url: yarl.URL,
    outgoing: _Outgoing,
    timeout: float,
) -> tuple[int, Mapping[str, str], bytes | None, float, dict[str, str]]:
    sent = time.perf_counter()
    async with session.request(
        _METHOD,
        url,  # a URL object: aiohttp sends it as is, the very URL guarded and signed
        data=outgoing.data,
        headers=outgoing.headers.open(),
        ssl=endpoint.verify,
        proxy=endpoint.proxy,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        content = await _aread_capped(response)
        sent_headers = {
            k: MASK if k.lower() == "authorization" else v
            for k, v in response.request_info.headers.items()
        }
        return response.status, response.headers, content, time.perf_counter() - sent, sent_headers


async def _aread_capped(response: aiohttp.ClientResponse) -> bytes | None:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --- reading the answer -----------------------------------------------------------


def _reply(
    status: int,
    headers: Mapping[str, str],
    content: bytes | None,
    latency: float,
    redactor: Redactor,
    outgoing: _Outgoing,
    sent_headers: Mapping[str, str],
    started: float,
    started_ms: int,
    timeout: float,
) -> Reply | AttemptFailed:
    """The `Reply`, or the failure to raise — with no traceback, so no frame
    that held the raw answer (a detail carries the judge app's keys) stays
    reachable from it."""
    try:
        body, duplicates, log_id = _judge(status, headers, content, redactor)
    except AttemptFailed as failed:
        return failed.with_traceback(None)
    return Reply(
        status=status,
        headers=dict(headers),
        body=body,
        duplicate_keys=duplicates,
        log_id=log_id,
        url=outgoing.url,
        sent_body=outgoing.sent_body,
        request_headers=sent_headers,
        request_latency=latency,
        total_latency=time.perf_counter() - started,
        start_timestamp=started_ms,
        timeout=timeout,
    )


def _raised_or(read: Reply | AttemptFailed) -> Reply:
    if isinstance(read, AttemptFailed):
        raise read
    return read


def interpret(
    status: int, headers: Mapping[str, str], content: bytes, redactor: Redactor
) -> dict[str, Any]:
    """Read one HTTP answer: the JSON object of a 2xx, or `AttemptFailed`."""
    return _judge(status, headers, content, redactor)[0]


def _judge(
    status: int, headers: Mapping[str, str], content: bytes | None, redactor: Redactor
) -> tuple[dict[str, Any], bool, str | None]:
    """(body, duplicate_keys, log_id) of a 2xx JSON object, or `AttemptFailed`."""
    if content is None:
        parsed, duplicates = None, False
        parse_problem: str | None = f"body is larger than {MAX_BODY_BYTES} bytes, not read"
    else:
        parsed, duplicates, parse_problem = _parse_json(content)
    body = parsed if isinstance(parsed, dict) else None
    log_id = _log_id(body, headers, redactor)
    if not 200 <= status < 300:
        code, message = _error_fields(body, redactor)
        if not message:
            message = redactor(headers.get("X-Bce-Error-Message", "")) or _reason(status)
        raise AttemptFailed(
            Failure(
                "http",
                message,
                http_status=status,
                error_code=code,
                log_id=log_id,
                retry_after=_retry_after(headers.get("Retry-After")),
            )
        )
    if parse_problem is not None:
        kind: FailureKind = "malformed" if content is None else "not_json"
        raise AttemptFailed(
            Failure(kind, parse_problem, http_status=status, log_id=log_id, maybe_applied=True)
        )
    if body is None:
        raise AttemptFailed(
            Failure(
                "malformed",
                f"expected a JSON object, got {_json_type(parsed)}",
                http_status=status,
                maybe_applied=True,
            )
        )
    if "error_code" in body:
        code, message = _error_fields(body, redactor)
        raise AttemptFailed(
            Failure(
                "envelope",
                message or "no error message",
                http_status=status,
                error_code=code,
                log_id=log_id,
            )
        )
    return body, duplicates, log_id


def log_id_of(body: object, redactor: Redactor) -> str | None:
    """The server's request id in a body: v1 `log_id`, v2 `requestId` (redacted)."""
    return _log_id(body if isinstance(body, dict) else None, {}, redactor)


def _local_strict_loads(text: str) -> tuple[object, bool]:
    """`json.loads`, and whether any object repeated a key (until `_strictjson` lands)."""
    duplicates = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        result = dict(items)
        if len(result) != len(items):
            duplicates = True
        return result

    return json.loads(text, object_pairs_hook=pairs), duplicates


def _strict_loads_function() -> Callable[[str], tuple[object, bool]]:
    try:
        module = importlib.import_module("evalctl._base._strictjson")
    except ImportError:
        return _local_strict_loads
    return cast(Callable[[str], tuple[object, bool]], module.loads)


_strict_loads: Final = _strict_loads_function()


def _parse_json(content: bytes) -> tuple[object, bool, str | None]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None, False, f"body is not UTF-8 ({len(content)} bytes)"
    try:
        value, duplicates = _strict_loads(text)
        return value, duplicates, None
    except RecursionError:
        return None, False, "body is JSON nested too deeply to read"
    except ValueError:
        kind = "an HTML page" if text.lstrip()[:1] == "<" else "not JSON"
        return None, False, f"body is {kind} ({len(content)} bytes)"


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _log_id(
    body: Mapping[str, Any] | None, headers: Mapping[str, str], redactor: Redactor
) -> str | None:
    # Server-provided like any message: a gateway may echo the request into it.
    if body is not None:
        for key in _LOG_ID_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return redactor(value, _MAX_LOG_ID)
            if isinstance(value, int) and not isinstance(value, bool):
                return redactor(str(value), _MAX_LOG_ID)
    for header in _LOG_ID_HEADERS:
        value = headers.get(header)
        if value:
            return redactor(value, _MAX_LOG_ID)
    return None


def _error_fields(
    body: Mapping[str, Any] | None, redactor: Redactor
) -> tuple[int | str | None, str]:
    """(code, message) from a v1 envelope or a v2 error body."""
    if body is None:
        return None, ""
    code: int | str | None = None
    for key in ("error_code", "code"):
        value = body.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            code = value
            break
        if isinstance(value, str) and value:
            code = int(value) if value.isdigit() and len(value) < 10 else redactor(value, 80)
            break
    message = ""
    for key in ("error_msg", "message", "errorMessage"):
        value = body.get(key)
        if isinstance(value, str) and value:
            message = redactor(value)
            break
    return code, message


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "unexpected status"


# --- failures of the exchange -----------------------------------------------------


def _transport_failure(
    kind: FailureKind,
    exc: BaseException,
    endpoint: _Endpoint,
    redactor: Redactor,
    *,
    applied: bool,
) -> AttemptFailed:
    what = "timed out" if kind == "timeout" else f"connection failed to {endpoint.shown}"
    detail = _root_cause(exc)
    return AttemptFailed(
        Failure(kind, redactor(f"{what}: {detail}" if detail else what), maybe_applied=applied)
    )


def _foreign_failure(
    exc: BaseException, endpoint: _Endpoint, deadline: _Deadline | None
) -> AttemptFailed:
    """An unexpected error from the HTTP stack: only its type is kept (its args may
    hold a header value). The request may have gone out: assume it did."""
    if deadline is not None and deadline.expired:
        return _deadline_failure()
    return AttemptFailed(
        Failure(
            "connection",
            f"connection failed to {endpoint.shown}: {type(exc).__name__}",
            maybe_applied=True,
        )
    )


def _deadline_failure() -> AttemptFailed:
    return AttemptFailed(Failure("timeout", "timed out: TimeoutError", maybe_applied=True))


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without URLs or headers."""
    seen: set[int] = set()
    current: BaseException | None = exc
    last: BaseException = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        last = current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        nested = next((a for a in current.args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
        # asyncio's timeouts raise TimeoutError from the CancelledError they
        # interrupted the await with: that is the mechanism, not the reason.
        if isinstance(current, asyncio.CancelledError):
            break
    name = type(last).__name__
    # A connection the watchdog (or the server) ended mid-answer.
    return "TimeoutError" if name == "timeout" else name


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never made, so the server saw nothing."""
    # A refused connection, an unknown host, a certificate refused in the TLS
    # handshake: the request itself was never written.
    text_types = {
        "NewConnectionError",
        "ConnectionRefusedError",
        "NameResolutionError",
        "SSLCertVerificationError",
    }
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__name__ in text_types:
            return True
        reason = getattr(current, "reason", None)
        stack.extend(
            a for a in (*current.args, reason, current.__cause__) if isinstance(a, BaseException)
        )
    return False
