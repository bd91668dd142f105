"""What the emulator received: one record per request, never a header value."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from evalctl import _api

# The body fields that name a task, in the order they are looked up.
_TASK_FIELDS: Final = ("id", "taskId", "evaluationId")
_ACTION_QUERY: Final = "?Action="


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it.

    Attributes:
        route: the request path, without the query.
        action: the ``Action`` query value; "" for v1 routes.
        body: the parsed JSON body, or None when it was not JSON.
        signature_valid: whether authentication passed (signature and expiry).
        status: the HTTP status answered; 0 when the connection was reset.
        fault: the fault that shaped the answer (a `Fault` value, or
            ``"qps_limit"``), None for a normal answer.
        time: `time.monotonic()` when the request had arrived.
        task_id: the task the body names (``id``/``taskId``/``evaluationId``) as str.
    """

    route: str
    action: str
    body: object
    signature_valid: bool
    status: int
    fault: str | None
    time: float
    task_id: str | None

    @property
    def is_stop(self) -> bool:
        """Whether this went to a stop route (v1 cancel or v2 StopEvalTask)."""
        return self.route == _api.V1_CANCEL_ROUTE or (
            self.route == _api.V2_ROUTE and self.action == _api.V2_STOP_ACTION
        )


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
