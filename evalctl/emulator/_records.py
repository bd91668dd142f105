"""What the emulator received: one record per request, never a header value."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final

from evalctl.emulator._gateway import is_stop

# The body fields that name a task, in the order they are looked up.
_TASK_FIELDS: Final = ("id", "taskId", "evaluationId")
_ACTION_QUERY: Final = "?Action="


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it.

    Attributes:
        route: the request path as the gateway routes it: escapes decoded, dot
            and empty segments resolved, ``;`` parameters dropped, a known
            route in its canonical case (see `_gateway`); `target` keeps what
            was received.
        action: the ``Action`` query value as the gateway reads it; "" for
            v1 routes.
        body: the parsed JSON body, or None when it was not JSON.
        signature_valid: whether authentication passed (signature and expiry).
        status: the HTTP status answered; 0 when the connection was reset.
        fault: the fault that shaped the answer (a `Fault` value, or
            ``"qps_limit"``), None for a normal answer.
        time: `time.monotonic()` when the request had arrived.
        task_id: the task the body names (``id``/``taskId``/``evaluationId``) as str.
        target: the request target (path and query) exactly as received.
        actions: every ``Action`` value the query holds, in any key case.
    """

    route: str
    action: str
    body: object
    signature_valid: bool
    status: int
    fault: str | None
    time: float
    task_id: str | None
    target: str = field(default="", compare=False)
    actions: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_stop(self) -> bool:
        """Whether a gateway could route this to a stop, however it was spelt.

        The v1 cancel route, or ``/v2/eval`` with any `Action` that reads as
        StopEvalTask (a second `Action`, another case).
        """
        return is_stop(self.route, (self.action, *self.actions))


def task_ref_of(body: object) -> object:
    """The raw task reference a body carries, or None."""
    if isinstance(body, dict):
        for name in _TASK_FIELDS:
            if body.get(name) is not None:
                return body[name]
    return None


def split_route(route: str, action: str | None) -> tuple[str, str | None]:
    """Accept ``/v2/eval?Action=X`` as shorthand for route ``/v2/eval`` with action X."""
    if _ACTION_QUERY in route:
        path, _, embedded = route.partition(_ACTION_QUERY)
        if action is not None and action != embedded:
            raise ValueError(f"route {route!r} names action {embedded!r}, not {action!r}")
        return path, embedded
    return route, action


class RequestLog:
    """The records of one emulator, in arrival order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []

    def add(self, record: RecordedRequest) -> None:
        """Keep one record."""
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RecordedRequest]:
        """A copy, ordered by arrival (records are added on completion, hence the sort)."""
        with self._lock:
            records = list(self._records)
        return sorted(records, key=lambda record: record.time)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()
