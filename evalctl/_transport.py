"""The one boundary between evalctl and the network: sign, guard, send, read.

Public surface (what the rest of evalctl codes against)::

    MAX_BODY_BYTES: Final[int]            # 8 MiB: a larger answer is refused

    class Wire:                           # connection pools + nothing else
        def __init__(self) -> None
        @classmethod
        def shared(cls) -> Wire           # one per process (drop-in), closed at exit
        def close(self) -> None           # the requests pool (and any aiohttp pool)
        async def aclose(self) -> None    # the aiohttp pool of the running loop + close()

    @dataclass(frozen=True, eq=False)
    class Reply:
        status: int
        headers: Mapping[str, str]        # response headers
        body: dict[str, Any]              # the parsed 2xx JSON object
        duplicate_keys: bool              # any object in the body repeated a key
        log_id: str | None                # parsed once, redacted
        url: str                          # the absolute URL as sent
        sent_body: dict[str, Any]         # the body as sent (what `guard` returned)
        request_headers: Mapping[str, str]  # as sent, Authorization masked
        request_latency: float            # seconds on the wire
        total_latency: float              # seconds in `send`
        start_timestamp: int              # ms since the epoch
        def to_qf_response(self) -> QfResponse   # the drop-in's answer, as the SDK's

    def send(wire, route, action, body, credentials, clearance, timeout, redactor,
             *, host=None) -> Reply
    async def asend(wire, route, action, body, credentials, clearance, timeout,
                    redactor, *, host=None) -> Reply
        wire: Wire; route: str ("/api/v1/..." or "/v2/..."); action: str ("" for
        v1: the SDK sends `?Action=` then too); body: Mapping[str, Any];
        credentials: evalctl._credentials.Credentials; clearance:
        evalctl._stopguard.Clearance | None; timeout: float (TOTAL wall time of
        the attempt: connect + send + headers + body); redactor: Redactor;
        host: the SDK's `host=` override (scheme://host[:port]) or None.
        Raises AttemptFailed(Failure) for anything the retry loop judges
        (timeouts, connection failures, HTTP >= 300, 2xx error envelopes,
        non-JSON, oversized or malformed answers), UnsafeRequestError from the
        stop guard (nothing sent), and EvalctlError (ConfigurationError /
        TransportError) for anything else raised while building, signing or
        sending — never a foreign exception, never one chained to a secret.

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
import copy
import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import requests
from qianfan.resources.console.utils import _get_console_v2_query
from qianfan.resources.requestor.console_requestor import ConsoleAPIRequestor
from qianfan.resources.typing import QfRequest, QfResponse, RetryConfig
from qianfan.version import VERSION as QIANFAN_VERSION

from evalctl._credentials import Credentials
from evalctl._errors import (
    APICallError,
    AuthenticationError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    TransportError,
)
from evalctl._redact import MASK, Redactor
from evalctl._stopguard import Clearance

FailureKind = Literal["timeout", "connection", "http", "envelope", "not_json", "malformed"]

_AUTH_STATUSES: Final = frozenset({401, 403})
_LOG_ID_KEYS: Final = ("log_id", "requestId", "request_id")
_LOG_ID_HEADERS: Final = ("X-Bce-Request-Id",)
_MAX_LOG_ID: Final = 128
_REQUEST_SOURCE: Final = f"qianfan_py_sdk_v{QIANFAN_VERSION}"
_SIGNER_LOGGER: Final = "baidubce.auth.bce_v1_signer"
_SIGN_KEY_RE: Final = re.compile(r"(sign_key=\[)[^\]]*")


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, independent of the HTTP library.

    Attributes:
        kind: timeout, connection, http (status >= 300), envelope (an
            `error_code` in a 2xx body), not_json, malformed (JSON, wrong shape).
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

    def to_error(self) -> EvalctlError:
        """The public error for this failure, when nothing more specific applies."""
        if self.kind in ("timeout", "connection"):
            return TransportError(self.message, timeout=self.kind == "timeout")
        if self.kind == "http":
            status = self.http_status or 0
            cls = AuthenticationError if status in _AUTH_STATUSES else HTTPStatusError
            return cls(status, self.error_code, self.message, self.log_id)
        if self.kind == "envelope":
            code = self.error_code if isinstance(self.error_code, int) else -1
            return APICallError(code, self.message, self.log_id)
        return InvalidResponseError(self.message, self.log_id)


class AttemptFailed(Exception):
    """Internal: one attempt failed; carries the `Failure` to the retry loop."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure
        # Filled in by the attempt loop, for the log event.
        self.attempt = 0
        self.duration_ms = 0.0


#: Largest response body evalctl reads, in bytes (after content decoding).
#: A larger answer is refused as an invalid response without being read whole.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024


class Wire:
    """evalctl's HTTP connections: a pooled `requests.Session` and, lazily, an
    `aiohttp.ClientSession` per event loop.

    `Wire.shared()` is the one the drop-in uses (one per process, closed at
    interpreter exit); a batch makes one per worker and closes it. Holds no
    credentials and no endpoint: both are given to each `send`.
    """

    def __init__(self) -> None:
        raise NotImplementedError  # skeleton

    @classmethod
    def shared(cls) -> Wire:
        """The process-wide wire (created on first use, closed at exit)."""
        raise NotImplementedError  # skeleton

    def close(self) -> None:
        """Close the pooled connections (idempotent; the wire reopens on next use)."""
        raise NotImplementedError  # skeleton

    async def aclose(self) -> None:
        """`close()`, and close the aiohttp session of the running loop."""
        raise NotImplementedError  # skeleton


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
    """

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]
    duplicate_keys: bool
    log_id: str | None
    url: str
    sent_body: dict[str, Any]
    request_headers: Mapping[str, str]
    request_latency: float
    total_latency: float
    start_timestamp: int

    def to_qf_response(self) -> QfResponse:
        """The drop-in's answer, shaped as the SDK's `QfResponse`.

        `code`, `headers`, `body`, `statistic` (`request_latency`,
        `total_latency`, `start_timestamp`, `avg_output_tokens_per_second`)
        and `request` (method, URL and headers as sent with Authorization
        masked, `json_body` the body sent).
        """
        raise NotImplementedError  # skeleton


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
    raise NotImplementedError  # skeleton


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
    raise NotImplementedError  # skeleton


class ConsoleRequestor(ConsoleAPIRequestor):
    """The SDK's console requestor, used for signing and HTTP settings only."""

    def _check_error(self, body: dict[str, Any]) -> None:
        # The SDK's version logs the server's message at ERROR before raising;
        # evalctl reads envelopes itself (`interpret`), so this is never reached.
        raise NotImplementedError  # pragma: no cover


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


def build_request(
    requestor: ConsoleRequestor,
    route: str,
    action: str,
    params: Mapping[str, Any],
    ak: str,
    sk: str,
    timeout: float,
) -> QfRequest:
    """A signed request, built exactly as the SDK's `call_action` builds it."""
    request = QfRequest(method="POST", url=route, query=_get_console_v2_query(action))
    request.json_body = dict(params)
    request.headers["request-source"] = _REQUEST_SOURCE
    request.retry_config = RetryConfig(retry_count=1, timeout=timeout)
    requestor._sign(request, ak, sk)
    return request


def legacy_send(requestor: ConsoleRequestor, request: QfRequest, redactor: Redactor) -> QfResponse:
    """Send one signed request with `requests`; return the response or raise `AttemptFailed`."""
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)
    try:
        response = requestor._client.request(request)
        content = response.content
    except requests.exceptions.ConnectTimeout as exc:
        raise _transport_failure("timeout", exc, redactor, applied=False) from None
    except requests.exceptions.Timeout as exc:
        raise _transport_failure("timeout", exc, redactor, applied=True) from None
    except requests.exceptions.RequestException as exc:
        raise _transport_failure(
            "connection", exc, redactor, applied=not _never_sent(exc)
        ) from None
    body = interpret(response.status_code, response.headers, content, redactor)
    reply = QfResponse(code=response.status_code, headers=dict(response.headers), body=body)
    reply.request = _scrubbed(QfRequest.from_requests(response.request), request)
    _add_statistics(reply, started, started_ms, response.elapsed.total_seconds())
    return reply


async def legacy_asend(
    requestor: ConsoleRequestor, request: QfRequest, redactor: Redactor
) -> QfResponse:
    """Send one signed request with `aiohttp`; return the response or raise `AttemptFailed`."""
    client = requestor._client
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)
    timeout = aiohttp.ClientTimeout(total=request.retry_config.timeout)
    try:
        # One session per request, as the SDK's HTTPClient.arequest does, but
        # always closed, also when the request fails.
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                **request.requests_args(),
                timeout=timeout,
                ssl=client.ssl,
                proxy=client._aiohttp_proxy(),
            ) as response,
        ):
            content = await response.read()
            status = response.status
            headers = response.headers
            info = response.request_info
    except aiohttp.ClientConnectorError as exc:
        raise _transport_failure("connection", exc, redactor, applied=False) from None
    except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
        raise _transport_failure("timeout", exc, redactor, applied=True) from None
    except aiohttp.ClientError as exc:
        raise _transport_failure("connection", exc, redactor, applied=True) from None
    latency = time.perf_counter() - started
    body = interpret(status, headers, content, redactor)
    reply = QfResponse(code=status, headers=dict(headers), body=body)
    reply.request = _scrubbed(QfRequest.from_aiohttp(info), request)
    _add_statistics(reply, started, started_ms, latency)
    return reply


def interpret(
    status: int, headers: Mapping[str, str], content: bytes, redactor: Redactor
) -> dict[str, Any]:
    """Read one HTTP answer: the JSON object of a 2xx, or `AttemptFailed`."""
    parsed, parse_problem = _parse_json(content)
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
        raise AttemptFailed(
            Failure("not_json", parse_problem, http_status=status, maybe_applied=True)
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
    return body


def log_id_of(body: object, redactor: Redactor) -> str | None:
    """The server's request id in a body: v1 `log_id`, v2 `requestId` (redacted)."""
    return _log_id(body if isinstance(body, dict) else None, {}, redactor)


def _parse_json(content: bytes) -> tuple[object, str | None]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"body is not UTF-8 ({len(content)} bytes)"
    try:
        return json.loads(text), None
    except ValueError:
        kind = "an HTML page" if text.lstrip()[:1] == "<" else "not JSON"
        return None, f"body is {kind} ({len(content)} bytes)"
    except RecursionError:
        return None, "body is JSON nested too deeply to read"


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


def _transport_failure(
    kind: FailureKind, exc: BaseException, redactor: Redactor, *, applied: bool
) -> AttemptFailed:
    what = "timed out" if kind == "timeout" else "connection failed"
    detail = _root_cause(exc)
    return AttemptFailed(
        Failure(kind, redactor(f"{what}: {detail}" if detail else what), maybe_applied=applied)
    )


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
    return type(last).__name__


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never made, so the server saw nothing."""
    text_types = {"NewConnectionError", "ConnectionRefusedError", "NameResolutionError"}
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


def _scrubbed(received: QfRequest, sent: QfRequest) -> QfRequest:
    """The request as the SDK would report it, with the Authorization value masked."""
    received.headers = {
        k: (MASK if k.lower() == "authorization" else v) for k, v in received.headers.items()
    }
    received.json_body = copy.deepcopy(sent.json_body)
    received.retry_config = sent.retry_config
    return received


def _add_statistics(
    reply: QfResponse, started: float, started_ms: int, request_latency: float
) -> None:
    # The keys the SDK's latency decorator fills in, for drop-in callers.
    total = time.perf_counter() - started
    reply.statistic["request_latency"] = request_latency
    reply.statistic["total_latency"] = total
    reply.statistic["start_timestamp"] = started_ms
    reply.statistic["avg_output_tokens_per_second"] = 0.0

