"""The one boundary between evalctl and the SDK, `requests` and `aiohttp`.

A request is built and signed by the qianfan SDK (`ConsoleAPIRequestor._sign`,
i.e. the SDK's own BCE v1 signing and base-URL handling) and sent through the
SDK's HTTP client settings (TLS verification, proxy). What comes back is read
here and nowhere else: a 2xx JSON object becomes a `QfResponse`; anything
else becomes a `Failure` raised inside `AttemptFailed`.

evalctl does not call the SDK's `_request`: that path logs the request with
its Authorization header at TRACE level and, on HTTP errors, builds and logs
a message embedding every request header. Its async twin drops the body of
non-200 answers, which is where v2 puts `requestId`, `code` and `message`.
The signing itself (baidubce) logs the derived signing key and the
Authorization value at DEBUG: a filter on that one logger masks them.
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

from evalctl._errors import (
    APICallError,
    AuthenticationError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    TransportError,
)
from evalctl._redact import MASK, Redactor

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


def send(requestor: ConsoleRequestor, request: QfRequest, redactor: Redactor) -> QfResponse:
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


async def asend(requestor: ConsoleRequestor, request: QfRequest, redactor: Redactor) -> QfResponse:
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

