"""Helpers of the over-HTTP safety tests: detail answers made by hand, what reached a stop."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from core.support import ApiSpec

from evalctl.emulator import Emulator, RecordedRequest


def detail_text(api: ApiSpec, task_id: str | int, *, modes: str = "rule", **fields: Any) -> str:
    """A detail answer for `task_id` in `api`'s shape (a None field is left out)."""
    if api.name == "v1":
        result: dict[str, Any] = {
            "evaluationId": task_id if isinstance(task_id, int) else 4242,
            "evaluationIdStr": task_id if isinstance(task_id, str) else "ame-byinteger1",
            "name": "hand-made",
            "state": "Doing",
            "evalStandardConf": {"evalMode": modes},
        }
        envelope: dict[str, Any] = {"log_id": "777"}
    else:
        result = {
            "taskId": task_id,
            "taskName": "hand-made",
            "state": "Running",
            "evalType": "manual" if "manual" in modes else "auto",
            "evalMode": modes,
            "evalStandardConf": {"evalMode": modes},
        }
        envelope = {"requestId": "req-777"}
    for key, value in fields.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return json.dumps({**envelope, "result": result})


def answer_detail(
    emulator: Emulator,
    api: ApiSpec,
    text: str,
    *,
    then: Callable[[], None] | None = None,
    times: int = 3,
) -> None:
    """The next detail reads get `text`; `then` runs (in the server) as each is answered."""

    def body(_headers: Mapping[str, str]) -> bytes:
        if then is not None:
            then()
        return text.encode()

    emulator.serve_raw(body, route=api.detail_fault_route, times=times)


def named_ids(body: object) -> set[str]:
    """Every task reference in a body, at any depth: ``ame-`` strings and integers, as str."""
    found: set[str] = set()
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int) or (isinstance(node, str) and node.startswith("ame-")):
            found.add(str(node))
    return found


def stops(emulator: Emulator) -> list[RecordedRequest]:
    """Every request a gateway could have routed to a stop, however spelt or answered."""
    return [record for record in emulator.requests if record.is_stop]
