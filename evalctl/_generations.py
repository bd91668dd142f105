"""The two API generations (v1 routes, v2 actions): how to ask, how to read.

Everything that differs between v1 and v2 lives in a `Generation`; the
operations in `_operations` are written once against it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl

from evalctl import _api
from evalctl._api import ApiVersion
from evalctl._errors import ConfigurationError, InvalidResponseError
from evalctl._ids import TaskId
from evalctl._model import EvalTask
from evalctl._precheck import ModeReading, known_state, read_eval_modes
from evalctl._redact import Redactor

_APP_SECRET_KEY: Final = re.compile(r"app_?[as]k|.*secret.*", re.IGNORECASE)
_MAX_SCAN_DEPTH: Final = 8
#: Bounds on the server-provided text an `EvalTask` shows (a hostile detail
#: can hold megabytes, or thousands of made-up modes).
_MAX_SHOWN_NAME: Final = 200
_MAX_SHOWN_FIELD: Final = 80
_MAX_SHOWN_UNKNOWN_MODES: Final = 8


@dataclass(frozen=True)
class Generation:
    """One API generation's routes, request bodies and response readers."""

    name: ApiVersion
    detail_route: str
    detail_action: str
    stop_route: str
    stop_action: str
    id_field: str
    parse: Callable[[Mapping[str, Any], TaskId, str | None], EvalTask]
    read_stop: Callable[[Mapping[str, Any]], tuple[bool, str]]

    def body(self, task_id: TaskId) -> dict[str, Any]:
        """The request body naming `task_id`."""
        return {self.id_field: task_id}


def parse_detail(
    generation: Generation,
    body: Mapping[str, Any],
    task_id: TaskId,
    log_id: str | None,
    redactor: Redactor,
) -> EvalTask:
    """Read a detail body into an `EvalTask`, remembering any app secrets to mask."""
    redactor.add(*_app_secrets(body))
    return _shown(generation.parse(body, task_id, log_id), redactor)


def _shown(task: EvalTask, redactor: Redactor) -> EvalTask:
    """`task` with the server-provided text it shows redacted and bounded.

    A gateway can echo the request (the Authorization value) into any field.
    The decisions were taken on the raw values and stay as they are
    (`includes_manual`, whether `undecided_reason` is set); masking can only
    turn a state unknown, which fails closed.
    """
    unknown = sorted(task.eval_modes - _api.KNOWN_MODES)[:_MAX_SHOWN_UNKNOWN_MODES]
    modes = task.eval_modes & _api.KNOWN_MODES
    return replace(
        task,
        name=None if task.name is None else redactor(task.name, _MAX_SHOWN_NAME),
        state=None if task.state is None else redactor(task.state, _MAX_SHOWN_FIELD),
        eval_modes=modes | {redactor(mode, _MAX_SHOWN_FIELD) for mode in unknown},
        log_id=task.log_id,  # redacted where the reply was read (`_transport`)
        undecided_reason=(
            None if task.undecided_reason is None else redactor(task.undecided_reason)
        ),
    )


def _parse_v1(body: Mapping[str, Any], task_id: TaskId, log_id: str | None) -> EvalTask:
    result = body.get("result")
    if not isinstance(result, dict):
        return _unreadable(task_id, log_id, "the detail has no result object")
    problems = [_id_mismatch(result, task_id, ("evaluationIdStr", "evaluationId"))]
    state, state_problem = _state(result)
    problems.append(state_problem)
    conf = result.get("evalStandardConf")
    if isinstance(conf, dict):
        reading = read_eval_modes(conf.get("evalMode"))
    else:
        reading = ModeReading(frozenset(), False, "the detail has no evalStandardConf object")
    problems.append(reading.problem)
    return EvalTask(
        task_id=str(task_id),
        name=_text(result.get("name")),
        state=state,
        eval_modes=reading.modes,
        includes_manual=reading.includes_manual or state in _api.MANUAL_STATES,
        log_id=log_id,
        undecided_reason=next((p for p in problems if p), None),
    )


def _parse_v2(body: Mapping[str, Any], task_id: TaskId, log_id: str | None) -> EvalTask:
    result = body.get("result")
    if not isinstance(result, dict):
        return _unreadable(task_id, log_id, "the detail has no result object")
    problems = [_id_mismatch(result, task_id, ("taskId",))]
    state, state_problem = _state(result)
    problems.append(state_problem)
    raw_type = result.get("evalType")
    eval_type = (
        unicodedata.normalize("NFKC", raw_type).strip().lower()
        if isinstance(raw_type, str)
        else None
    )
    if eval_type not in (_api.V2_EVAL_TYPE_MANUAL, _api.V2_EVAL_TYPE_AUTO):
        problems.append(
            "the detail has no evalType" if raw_type is None else f"unknown evalType {raw_type!r}"
        )
    modes: frozenset[str] = frozenset({eval_type}) if eval_type else frozenset()
    manual = eval_type == _api.V2_EVAL_TYPE_MANUAL
    if "evalMode" in result:
        # When v2 also spells out the modes, any manual signal wins and any
        # doubt about them blocks the stop.
        reading = read_eval_modes(result["evalMode"])
        modes = reading.modes or modes
        manual = manual or reading.includes_manual
        problems.append(reading.problem)
    return EvalTask(
        task_id=str(task_id),
        name=_text(result.get("taskName")),
        state=state,
        eval_modes=modes,
        includes_manual=manual or state in _api.MANUAL_STATES,
        log_id=log_id,
        undecided_reason=next((p for p in problems if p), None),
    )


def _read_stop_v1(body: Mapping[str, Any]) -> tuple[bool, str]:
    result = body.get("result")
    accepted = result.get("result") if isinstance(result, dict) else None
    if not isinstance(accepted, bool):
        raise InvalidResponseError("the stop answer has no boolean result.result")
    message = result.get("errorMessage") if isinstance(result, dict) else None
    return accepted, message if isinstance(message, str) else ""


def _read_stop_v2(body: Mapping[str, Any]) -> tuple[bool, str]:
    if not isinstance(body.get("result"), dict):
        raise InvalidResponseError("the stop answer has no result object")
    return True, ""


V1: Final = Generation(
    name="v1",
    detail_route=_api.V1_DETAIL_ROUTE,
    detail_action="",
    stop_route=_api.V1_CANCEL_ROUTE,
    stop_action="",
    id_field="id",
    parse=_parse_v1,
    read_stop=_read_stop_v1,
)
V2: Final = Generation(
    name="v2",
    detail_route=_api.V2_ROUTE,
    detail_action=_api.V2_DESCRIBE_ACTION,
    stop_route=_api.V2_ROUTE,
    stop_action=_api.V2_STOP_ACTION,
    id_field="taskId",
    parse=_parse_v2,
    read_stop=_read_stop_v2,
)
GENERATIONS: Final[Mapping[str, Generation]] = {"v1": V1, "v2": V2}


def generation(api: object) -> Generation:
    """The `Generation` named `api` ("v1" or "v2").

    Raises:
        ConfigurationError: any other value.
    """
    found = GENERATIONS.get(api) if isinstance(api, str) else None
    if found is None:
        raise ConfigurationError(f"unknown api {api!r}: expected 'v1' or 'v2'")
    return found


def stop_generation(route: str, action: str) -> Generation | None:
    """The generation whose stop route `route` + `action` names, or None.

    Tolerant on purpose: a doubled or trailing slash, a different case, or an
    `Action` hidden in the route's query still counts as a stop, so the
    pre-check cannot be side-stepped by spelling.
    """
    path, _, query = route.partition("?")
    path = "/" + "/".join(part for part in path.strip().split("/") if part)
    path = path.lower()
    actions = {action.strip().lower()} | {
        value.strip().lower()
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key.lower() == "action"
    }
    if path == _api.V1_CANCEL_ROUTE.lower():
        return V1
    if path == _api.V2_ROUTE.lower() and _api.V2_STOP_ACTION.lower() in actions:
        return V2
    return None


def _unreadable(task_id: TaskId, log_id: str | None, reason: str) -> EvalTask:
    return EvalTask(str(task_id), None, None, frozenset(), False, log_id, reason)


def _state(result: Mapping[str, Any]) -> tuple[str | None, str | None]:
    state = result.get("state")
    if state is None:
        return None, "the detail has no state"
    if not isinstance(state, str):
        return None, f"state is not a string ({type(state).__name__})"
    if not known_state(state):
        return state, f"unknown state {state!r}"
    return state, None


def _id_mismatch(result: Mapping[str, Any], task_id: TaskId, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = result.get(key)
        if value is None:
            continue
        if isinstance(task_id, int) and key != "evaluationId":
            continue
        if isinstance(task_id, str) and key == "evaluationId":
            continue
        if value != task_id:
            # Cut well past what a message shows, so a secret in it stays whole for redaction.
            return f"the detail describes another task ({key} {str(value)[:400]!r})"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None  # bounded by `_shown`, after redaction


def _app_secrets(node: object, depth: int = 0) -> list[str]:
    """Values of secret-looking keys (appAk, appSk, ...) anywhere in a body."""
    found: list[str] = []
    if depth > _MAX_SCAN_DEPTH:
        return found
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and _APP_SECRET_KEY.fullmatch(key) and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_app_secrets(value, depth + 1))
    elif isinstance(node, list):
        for item in node[:100]:
            found.extend(_app_secrets(item, depth + 1))
    return found
