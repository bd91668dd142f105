"""Failure → public error, decided here only, by what the request was for.

A `Failure` (one attempt that did not work, see `_transport`) becomes the
same public error wherever it happened; what it *means* depends on the
request's purpose:

* ``call`` (a drop-in request): the plain error (`plain_error`).
* ``detail`` (the pre-check read): not found → `TaskNotFoundError`; a server
  error or an unreadable answer → `PrecheckError` (fail closed); the keys
  refused → `AuthenticationError`; a lost connection → `TransportError`.
* ``stop``: not found → `TaskNotFoundError`; a server error →
  `CancelRejectedError`; the keys refused → `AuthenticationError`.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from evalctl._base import _api
from evalctl._base._errors import (
    APICallError,
    AuthenticationError,
    CancelRejectedError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    PrecheckError,
    TaskNotFoundError,
    TransportError,
)
from evalctl._wire._transport import Failure

Purpose = Literal["detail", "stop", "call"]

_AUTH_STATUSES: Final = frozenset({401, 403})
_NOT_FOUND_TEXT: Final = re.compile(
    r"not\s*(?:be\s*)?(?:found|exists?)|不存在|未找到", re.IGNORECASE
)


def plain_error(failure: Failure) -> EvalctlError:
    """The public error for `failure`, whatever the request was for."""
    if failure.kind in ("timeout", "connection"):
        return TransportError(failure.message, timeout=failure.kind == "timeout")
    if failure.kind == "http":
        status = failure.http_status or 0
        cls = AuthenticationError if status in _AUTH_STATUSES else HTTPStatusError
        return cls(status, failure.error_code, failure.message, failure.log_id)
    if failure.kind == "envelope":
        code = failure.error_code if isinstance(failure.error_code, int) else -1
        return APICallError(code, failure.message, failure.log_id)
    return InvalidResponseError(failure.message, failure.log_id)


def error_for(failure: Failure, purpose: Purpose, task_id: str | None) -> EvalctlError:
    """The public error for a request that `failure` ended (see the module doc)."""
    plain = plain_error(failure)
    if purpose == "call" or task_id is None or isinstance(plain, AuthenticationError):
        return plain
    if is_not_found(failure):
        return TaskNotFoundError(task_id, failure.log_id)
    if purpose == "detail" and isinstance(
        plain, APICallError | HTTPStatusError | InvalidResponseError
    ):
        return PrecheckError(task_id, f"the detail could not be read ({plain})", failure.log_id)
    if purpose == "stop" and isinstance(plain, APICallError | HTTPStatusError):
        return CancelRejectedError(task_id, failure.error_code, failure.message, failure.log_id)
    return plain


def is_not_found(failure: Failure) -> bool:
    """Whether the server says the task does not exist (see `_api`)."""
    if failure.kind == "http":
        # BCE answers an unknown access key with 401 "NotFound": that is about
        # the credential, not the task.
        if failure.http_status in _AUTH_STATUSES:
            return False
        code = failure.error_code
        return failure.http_status == _api.V2_NOT_FOUND_STATUS or (
            isinstance(code, str) and "notfound" in code.lower()
        )
    return (
        failure.kind == "envelope"
        and failure.error_code == _api.V1_NOT_FOUND_CODE
        and bool(_NOT_FOUND_TEXT.search(failure.message))
    )
