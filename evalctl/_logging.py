"""The structured events evalctl emits, with their stable names and keys.

The library only emits through `structlog.get_logger`; it never configures
structlog. The CLI configures rendering (`evalctl._cli_logging`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import structlog

from evalctl._api import ordered_modes

REQUEST_EVENT: Final = "qianfan.request"
PRECHECK_EVENT: Final = "evalctl.precheck"
CANCEL_EVENT: Final = "evalctl.cancel"
VERIFY_EVENT: Final = "evalctl.stop_verified"
INTERRUPTED_EVENT: Final = "evalctl.interrupted"

RequestOutcome = Literal["ok", "retry", "error"]

logger: Final = structlog.get_logger("evalctl")

_LEVEL_OF_OUTCOME: Final = {"ok": "info", "retry": "warning", "error": "error"}


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


def event(level: str, name: str, **fields: Any) -> None:
    """Any other evalctl event."""
    _emit(level, name, **fields)


def _emit(level: str, name: str, **fields: Any) -> None:
    getattr(logger, level)(name, **fields)
