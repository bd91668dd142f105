"""One request through the emulated console: authenticate, limit, fault, apply, record.

The order is the cloud's gateway order and it is part of the contract:

1. authentication — failures are answered 401/403, recorded with
   ``signature_valid=False``, never change state and never consume a fault;
2. unknown route (404) or method (405) — no fault consumed either;
3. the QPS limit — over it, error code 18 without applying;
4. a raw answer queued by the `serve_raw` test hook, else an injected fault
   (FIFO among those whose `route` matches), else a random one with
   probability `fault_rate`;
5. the operation itself (unless the fault forbids it, see `_faults`).

`latency_s` is added to every answer, the `slow` delay on top of it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from evalctl._base import _api
from evalctl.emulator import _replies
from evalctl.emulator._auth import Verifier
from evalctl.emulator._defaults import QPS_WINDOW_S
from evalctl.emulator._faults import (
    CODE_FAULTS,
    HTTP_FAULTS,
    Fault,
    FaultHit,
    FaultPlan,
    narrowing_matches,
    validate_narrowing,
)
from evalctl.emulator._gateway import read_target
from evalctl.emulator._records import RecordedRequest, RequestLog, task_ref_of
from evalctl.emulator._replies import IdSource, Reply
from evalctl.emulator._routes import Call, Routes, classify

_logger = logging.getLogger("evalctl.emulator")

QPS_LIMIT_FAULT: Final = "qps_limit"  # the `fault` of a request the QPS limit refused
RAW_FAULT: Final = "raw"  # the `fault` of a request answered by `serve_raw`
_QPS_MESSAGE: Final = "QPS limit reached"

#: A raw answer's body: bytes, or made from the request's headers (names lower-cased).
RawBody = bytes | Callable[[Mapping[str, str]], bytes]


@dataclass
class _RawAnswer:
    """Test hook (`Emulator.serve_raw`): exact bytes for the next matching requests."""

    route: str | None
    remaining: int
    status: int
    body: RawBody
    content_type: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Incoming:
    """A request as read off the wire.

    Attributes:
        method: HTTP method.
        target: the request target (path and query) as sent.
        headers: header names lower-cased, first value kept.
        body: the raw body.
        arrival: `time.monotonic()` once the request was read.
        wall: `time.time()` at the same moment, for signature expiry.
    """

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    arrival: float
    wall: float


@dataclass(frozen=True)
class Outgoing:
    """What to send back, and how: after `hold_s` seconds, or a reset instead."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    hold_s: float = 0.0
    reset: bool = False


class QpsWindow:
    """A sliding one-second window over admitted requests. Thread-safe."""

    def __init__(self, limit: float | None) -> None:
        self._lock = threading.Lock()
        self._admitted: collections.deque[float] = collections.deque()
        self._limit = _checked_limit(limit)

    def set_limit(self, limit: float | None) -> None:
        """Change the limit; None lifts it."""
        with self._lock:
            self._limit = _checked_limit(limit)
            self._admitted.clear()

    def admit(self, now: float) -> bool:
        """Count the request and say whether it fits under the limit."""
        with self._lock:
            if self._limit is None:
                return True
            while self._admitted and self._admitted[0] <= now - QPS_WINDOW_S:
                self._admitted.popleft()
            if len(self._admitted) >= self._limit:
                return False
            self._admitted.append(now)
            return True


class Console:
    """The emulated console, without HTTP. Thread-safe."""

    def __init__(
        self,
        *,
        verifier: Verifier,
        routes: Routes,
        faults: FaultPlan,
        log: RequestLog,
        ids: IdSource,
        qps_limit: float | None,
        latency_s: float,
    ) -> None:
        self._verifier = verifier
        self._routes = routes
        self._faults = faults
        self._log = log
        self._ids = ids
        self._qps = QpsWindow(qps_limit)
        self.latency_s = latency_s
        self._raw_lock = threading.Lock()
        self._raw: list[_RawAnswer] = []

    @property
    def latency_s(self) -> float:
        """Seconds added to every answer."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"latency_s must be >= 0, not {value!r}")
        self._latency_s = value

    def set_qps_limit(self, limit: float | None) -> None:
        """Change the QPS limit; None lifts it."""
        self._qps.set_limit(limit)

    def serve_raw(
        self,
        body: RawBody,
        *,
        status: int,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        route: str | None,
        times: int,
    ) -> None:
        """Queue a raw answer (validated here, so misuse fails at the call)."""
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status (100..599), not {status!r}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive integer, not {times!r}")
        if not isinstance(body, bytes) and not callable(body):
            raise ValueError("body must be bytes or a callable returning bytes")
        if route is not None:
            validate_narrowing(route)
        with self._raw_lock:
            self._raw.append(_RawAnswer(route, times, status, body, content_type, headers))

    def clear_raw(self) -> None:
        """Drop every queued raw answer."""
        with self._raw_lock:
            self._raw.clear()

    def _take_raw(self, path: str, action: str) -> _RawAnswer | None:
        with self._raw_lock:
            for index, pending in enumerate(self._raw):
                if narrowing_matches(pending.route, path, action):
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        del self._raw[index]
                    return pending
        return None

    def handle(self, incoming: Incoming) -> Outgoing:
        """Answer one request and record it."""
        raw_path, _, query = incoming.target.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        # Signed over the target as received; routed by the gateway's reading.
        view = read_target(incoming.target)
        path, action = view.route, view.action
        body = _parse_json(incoming.body)
        failure = self._verifier.verify(
            incoming.method, raw_path, pairs, incoming.headers, incoming.wall
        )
        fault: str | None = None
        hold_s = self._latency_s
        reset = False
        if failure is not None:
            reply = _replies.bce_error(
                failure.status,
                self._ids,
                failure.code,
                failure.cause,
                headers=(("X-Bce-Error-Message", failure.header),),
            )
        else:
            call = classify(path, action)
            if call is None:
                reply = _replies.bce_error(404, self._ids, "NotFound", f"no such route: {path}")
            elif incoming.method != "POST":
                reply = _replies.bce_error(
                    405, self._ids, "MethodNotAllowed", "console routes accept POST only"
                )
            elif not self._qps.admit(incoming.arrival):
                reply = _replies.envelope_error(
                    call.api, self._ids, _api.CODE_QPS_LIMIT, _QPS_MESSAGE
                )
                fault = QPS_LIMIT_FAULT
            elif (raw := self._take_raw(path, action)) is not None:
                data = raw.body if isinstance(raw.body, bytes) else raw.body(incoming.headers)
                reply = Reply(
                    raw.status, raw=data, content_type=raw.content_type, headers=raw.headers
                )
                fault = RAW_FAULT
            else:
                hit = self._faults.take(path, action)
                fault = None if hit is None else hit.kind.value
                reset = hit is not None and hit.kind is Fault.RESET
                reply = self._apply(call, body, hit)
                if hit is not None and hit.kind is Fault.SLOW:
                    hold_s += hit.delay_s
        outgoing = self._render(reply, hold_s, reset)
        ref = task_ref_of(body)
        self._log.add(
            RecordedRequest(
                route=path,
                action=action,
                body=body,
                signature_valid=failure is None,
                status=0 if reset else outgoing.status,
                fault=fault,
                time=incoming.arrival,
                task_id=None if ref is None else str(ref),
                target=incoming.target,
                actions=view.actions,
            )
        )
        return outgoing

    def _apply(self, call: Call, body: object, hit: FaultHit | None) -> Reply:
        """The reply to an admitted request, shaped by its fault (see `Fault`)."""
        try:
            if hit is None or hit.kind is Fault.SLOW:
                return self._routes.answer(call, body)
            if hit.kind is Fault.RESET:
                return Reply(0)
            if hit.kind is Fault.NOT_JSON:
                return _replies.garbage()
            if hit.kind is Fault.MISSING_FIELDS:
                return self._routes.answer_missing_fields(call, body)
            if hit.kind is Fault.HTTP_502:
                return _replies.html(502, "Bad Gateway")
            if hit.kind in HTTP_FAULTS:
                status, code = HTTP_FAULTS[hit.kind]
                extra = (("Retry-After", hit.retry_after),) if hit.kind is Fault.HTTP_429 else ()
                return _replies.bce_error(status, self._ids, code, f"injected {hit.kind}", extra)
            code_number, message = CODE_FAULTS[hit.kind]
            return _replies.envelope_error(call.api, self._ids, code_number, message)
        # BLE001: any bug in the emulator must become a 500, as a crashing server's would.
        except Exception:  # noqa: BLE001
            return self._crashed()

    def _render(self, reply: Reply, hold_s: float, reset: bool) -> Outgoing:
        if reset:
            return Outgoing(0, (), b"", hold_s=hold_s, reset=True)
        try:
            data = reply.raw
            if data is None:
                data = json.dumps(reply.payload, ensure_ascii=False).encode()
        # BLE001: an unserialisable payload (a test's override, or a bug) becomes a 500.
        except Exception:  # noqa: BLE001
            return self._render(self._crashed(), hold_s, reset)
        headers = (("Content-Type", reply.content_type), *reply.headers)
        return Outgoing(reply.status, headers, data, hold_s=hold_s)

    def _crashed(self) -> Reply:
        _logger.exception("emulator: handler crashed; answering HTTP 500")
        return _replies.bce_error(500, self._ids, "InternalError", "the emulator crashed")


def _parse_json(data: bytes) -> object:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _checked_limit(limit: float | None) -> float | None:
    if limit is not None and not limit > 0:
        raise ValueError(f"qps_limit must be > 0 or None, not {limit!r}")
    return limit
