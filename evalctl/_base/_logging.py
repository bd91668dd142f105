"""The structured events evalctl emits, with their stable names and keys — quiet by default.

The library never configures logging. Where each event goes depends on the
application:

- structlog configured by the application (``structlog.is_configured()``;
  the CLI configures it, so does ``structlog.testing.capture_logs``): the
  event is a structlog event, name in ``event``, fields as keys.
- otherwise: a standard `logging` record on the ``evalctl`` logger, so that an
  application that never heard of structlog gets what any library gives it —
  nothing on stdout, warnings and errors on stderr through logging's last
  resort, info only once the application enables it. The message is the event
  name followed by its fields (``qianfan.request route=… log_id=…``); each field
  is also an attribute of the record (``record.log_id``), and all of them are
  in ``record.evalctl_fields``.

structlog's own default, used when nobody configured it, would print every
info event to stdout — which breaks a script whose stdout is its output.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final, Literal

import structlog

from evalctl._base._api import ordered_modes

REQUEST_EVENT: Final = "qianfan.request"
PRECHECK_EVENT: Final = "evalctl.precheck"
CANCEL_EVENT: Final = "evalctl.cancel"
VERIFY_EVENT: Final = "evalctl.stop_verified"
INTERRUPTED_EVENT: Final = "evalctl.interrupted"

#: The standard-library logger evalctl's events go to when structlog is unconfigured.
STDLIB_LOGGER_NAME: Final = "evalctl"

RequestOutcome = Literal["ok", "retry", "error"]

logger: Final = structlog.get_logger(STDLIB_LOGGER_NAME)
stdlib_logger: Final = logging.getLogger(STDLIB_LOGGER_NAME)

_LEVEL_OF_OUTCOME: Final = {"ok": "info", "retry": "warning", "error": "error"}

_STDLIB_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Attributes a `LogRecord` already has (or that `Formatter` sets): a field of
#: the same name stays in the message and in `evalctl_fields`, not on the record.
_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "event",
    "evalctl_fields",
}


def request_event(
    *,
    route: str,
    action: str,
    attempt: int,
    outcome: RequestOutcome,
    log_id: str | None,
    http_status: int | None,
    error_code: int | str | None,
    duration_ms: float,
    task_id: str | None,
    **extra: Any,
) -> None:
    """One event per request attempt (the contract's `qianfan.request`)."""
    _emit(
        _LEVEL_OF_OUTCOME[outcome],
        REQUEST_EVENT,
        route=route,
        action=action,
        attempt=attempt,
        log_id=log_id,
        http_status=http_status,
        error_code=error_code,
        duration_ms=round(duration_ms, 3),
        outcome=outcome,
        task_id=task_id,
        **extra,
    )


def precheck_event(
    *, task_id: str, state: str | None, eval_modes: frozenset[str], allowed: bool, **extra: Any
) -> None:
    """The pre-check's verdict (`evalctl.precheck`)."""
    _emit(
        "info",
        PRECHECK_EVENT,
        task_id=task_id,
        state=state,
        eval_modes=ordered_modes(eval_modes),
        allowed=allowed,
        **extra,
    )


def cancel_event(*, task_id: str, outcome: str, log_id: str | None, **extra: Any) -> None:
    """A finished cancel (`evalctl.cancel`)."""
    _emit("info", CANCEL_EVENT, task_id=task_id, outcome=outcome, log_id=log_id, **extra)


def event(level: str, name: str, /, **fields: Any) -> None:
    """Any other evalctl event."""
    _emit(level, name, **fields)


def _emit(level: str, name: str, /, **fields: Any) -> None:
    # Asked per event, not once: the application may configure structlog after
    # importing evalctl, and capture_logs() configures it for a while.
    if structlog.is_configured():
        getattr(logger, level)(name, **fields)
        return
    levelno = _STDLIB_LEVELS.get(level, logging.INFO)
    if not stdlib_logger.isEnabledFor(levelno):
        return
    extra = {key: value for key, value in fields.items() if key not in _RESERVED}
    extra["event"] = name
    extra["evalctl_fields"] = dict(fields)
    # stacklevel 3: the record names the evalctl module that emitted the event.
    stdlib_logger.log(levelno, "%s", render(name, fields), extra=extra, stacklevel=3)


def render(name: str, fields: dict[str, Any]) -> str:
    """``name key=value …``: plain values bare, others (spaces, quotes, None, lists) as JSON."""
    return " ".join([name, *(f"{key}={_value(value)}" for key, value in fields.items())])


def _value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in ' "=\n\t'):
        return value
    if isinstance(value, bool | int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
