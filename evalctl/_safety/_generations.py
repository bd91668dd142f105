"""The two API generations (v1 routes, v2 actions): how to ask, how to read.

Everything that differs between v1 and v2 lives in a `Generation`; the
operations in `_operations` are written once against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from evalctl._base import _api
from evalctl._base._api import ApiVersion
from evalctl._base._errors import ConfigurationError, InvalidResponseError
from evalctl._base._ids import TaskId, task_id_problem
from evalctl._base._model import DetailReading, EvalTask, ModeField, ModeFieldKind
from evalctl._base._redact import MASK, Redactor
from evalctl._safety._precheck import assess, fold

# Matched against `_key_name(key)` (folded, separators removed): appAk, app_sk,
# secretKey, password, accessToken, authorization, ...
_SECRET_KEY: Final = re.compile(
    r"(?:app)?(?:ak|sk)|.*(?:secret|passw|accesskey|privatekey|apikey|credential).*"
    r"|authorization|.*token"
)
_SEPARATORS: Final = re.compile(r"[\s_\-.]+")
# Keys that say which modes a task has (after `_key_name`).
_MODE_KEYS: Final[Mapping[str, ModeFieldKind]] = {
    "evalmode": "mode",
    "evalmodes": "mode",
    "evaltype": "type",
    "evaltypes": "type",
}
_DOCUMENTED_MODE_PATHS: Final = frozenset(
    {f"result.{_api.V1_MODE_FIELD}", f"result.{_api.V2_TYPE_FIELD}"}
)
# Bound of the walk over a detail (a real one has some fifty nodes); iterative,
# so any depth the JSON parser accepted is walked.
_MAX_SCAN_NODES: Final = 100_000
_MAX_SECRETS_PER_KEY: Final = 64
_MAX_PATH_KEY: Final = 40
_MAX_PATH: Final = 200
_MAX_CACHED_KEY: Final = 64
_MAX_CACHED_KEYS: Final = 4096
_KeyRole = Literal["secret", "state", "mode", "type"]
_ROLES: dict[str, _KeyRole | None] = {}
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
    read_stop: Callable[[Mapping[str, Any]], tuple[bool, str]]
    #: Fields of the detail `result`: the task name, its string id, its
    #: deprecated integer id (v1 only).
    name_field: str
    str_id_field: str
    int_id_field: str | None

    def body(self, task_id: TaskId) -> dict[str, Any]:
        """The request body naming `task_id`."""
        return {self.id_field: task_id}

    def id_field_for(self, task_id: TaskId) -> str:
        """The detail field that must name `task_id` (the integer one for an int id)."""
        if type(task_id) is int and self.int_id_field is not None:
            return self.int_id_field
        return self.str_id_field


def parse_detail(
    generation: Generation,
    body: Mapping[str, Any],
    task_id: TaskId,
    log_id: str | None,
    redactor: Redactor,
    *,
    duplicate_keys: bool = False,
) -> EvalTask:
    """Read a detail body into an `EvalTask`, judged by `_precheck.assess`.

    App secrets (`appAk`, `appSk`, any secret-looking key at any depth) are
    learnt by `redactor` and masked in `body` itself as it is read: the
    pre-check never needs them, and no frame keeps them afterwards.

    Args:
        generation: The generation that answered.
        body: The detail reply (a JSON object); its secrets are masked in place.
        task_id: The id the detail was asked for.
        log_id: The reply's server log id, already redacted.
        redactor: Learns the secrets found.
        duplicate_keys: The reply had an object with a key twice
            (`_strictjson.loads`): ambiguous, so the pre-check cannot decide.
    """
    scan = _scan(body, redactor)
    problems: list[str] = []
    result = body.get("result")
    if not isinstance(result, dict):
        problems.append("the detail has no result object")
        result = {}
    if duplicate_keys:
        problems.append("the detail has a key twice (ambiguous JSON)")
    if scan.problem is not None:
        problems.append(scan.problem)
    named_field = generation.id_field_for(task_id)
    named = result.get(named_field)
    reading = DetailReading(
        api=generation.name,
        asked=task_id,
        name=_text(result.get(generation.name_field)),
        named_field=named_field,
        named=named if type(named) in (str, int) else None,
        named_present=named is not None,
        state=_text(result.get("state")),
        state_type=type(result.get("state")).__name__,
        other_states=tuple(scan.states),
        mode_fields=tuple(sorted(scan.mode_fields, key=_documented_first)),
        id_str=_plausible_str_id(result.get(generation.str_id_field)),
        id_int=_plausible_int_id(result.get(generation.int_id_field or "")),
        log_id=log_id,
        problems=tuple(problems),
    )
    return _shown(assess(reading), redactor)


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
    read_stop=_read_stop_v1,
    name_field="name",
    str_id_field=_api.V1_ID_STR_FIELD,
    int_id_field=_api.V1_ID_INT_FIELD,
)
V2: Final = Generation(
    name="v2",
    detail_route=_api.V2_ROUTE,
    detail_action=_api.V2_DESCRIBE_ACTION,
    stop_route=_api.V2_ROUTE,
    stop_action=_api.V2_STOP_ACTION,
    id_field="taskId",
    read_stop=_read_stop_v2,
    name_field="taskName",
    str_id_field=_api.V2_ID_FIELD,
    int_id_field=None,
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
    """The generation whose stop `route` + `action` could be, or None.

    Tolerant on purpose, for deciding that a caller's request needs the
    pre-check: a doubled or trailing slash, a different case, escapes, dot
    segments or an `Action` hidden in the route's query still count as a
    stop. The send boundary (`_stopguard.classify`) then refuses every such
    spelling that is not the stop route exactly.
    """
    # Imported here: `_stopguard` builds on the generations defined in this module.
    from evalctl._safety._stopguard import stop_like

    return stop_like(route, action)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None  # bounded by `_shown`, after redaction


def _plausible_str_id(value: object) -> str | None:
    return value if type(value) is str and task_id_problem(value) is None else None


def _plausible_int_id(value: object) -> int | None:
    return value if type(value) is int and task_id_problem(value) is None else None


def _documented_first(found: ModeField) -> tuple[bool, str]:
    documented = found.path in _DOCUMENTED_MODE_PATHS
    return not documented, found.path


@dataclass
class _Scan:
    """What one walk over a detail found besides the fields read by name."""

    mode_fields: list[ModeField] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    problem: str | None = None


def _scan(body: Mapping[str, Any], redactor: Redactor) -> _Scan:
    """Walk the whole detail once (bounded): mode fields, states, secrets.

    Secret-looking keys have their values learnt by `redactor` and replaced
    by the mask in place. Every key that names modes (`evalMode`, `evalType`,
    in any case or spelling, at any depth) is a `ModeField`; every `state`
    text besides `result.state` is kept (a unit in manual annotation counts).
    """
    scan = _Scan()
    secrets: list[str] = []
    # (node, its path): a path is only spelt out when a mode field needs it.
    stack: list[tuple[object, tuple[object, ...]]] = [(body, ())]
    budget = _MAX_SCAN_NODES
    while stack:
        node, path = stack.pop()
        budget -= 1
        if budget < 0:
            scan.problem = "the detail is too large to read whole"
            break
        if isinstance(node, list):
            stack.extend(
                (item, (*path, index))
                for index, item in enumerate(node)
                if isinstance(item, dict | list)
            )
            continue
        if not isinstance(node, Mapping):
            continue
        # Masking replaces values of existing keys only: iterating stays safe.
        for key, value in node.items():
            role = _ROLES[key] if key in _ROLES else _key_role(key)
            if role == "secret":
                secrets.extend(_strings(value))
                if isinstance(node, dict):
                    node[key] = MASK
                continue
            if role == "mode" or role == "type":
                text = value if isinstance(value, str) else None
                here = _spelt((*path, key))
                scan.mode_fields.append(ModeField(here, role, text, type(value).__name__))
            elif role == "state" and isinstance(value, str) and path != ("result",):
                scan.states.append(value)
            if isinstance(value, dict | list):
                stack.append((value, (*path, key)))
    redactor.add(*secrets)
    del secrets
    return scan


def _spelt(path: tuple[object, ...]) -> str:
    """A path such as ``result.evalUnits[0].evalMode``, cut in the middle when long."""
    text = "".join(
        f"[{step}]" if isinstance(step, int) else f".{str(step)[:_MAX_PATH_KEY]}"
        for step in path
    ).lstrip(".")
    if len(text) > _MAX_PATH:
        return f"{text[: _MAX_PATH // 2]}…{text[-_MAX_PATH // 2 :]}"
    return text


def _key_role(key: object) -> _KeyRole | None:
    """What a key is to the pre-check: secret, mode, type, state, or nothing.

    Read as a lenient server would: folded, without separators.
    """
    if not isinstance(key, str):
        return None
    name = _SEPARATORS.sub("", fold(key))
    role: _KeyRole | None = None
    if _SECRET_KEY.fullmatch(name):
        role = "secret"
    elif name == "state":
        role = "state"
    else:
        role = _MODE_KEYS.get(name)
    # Keys repeat from one detail to the next; long or countless (hostile) ones are not kept.
    if len(key) <= _MAX_CACHED_KEY and len(_ROLES) < _MAX_CACHED_KEYS:
        _ROLES[key] = role
    return role


def _strings(value: object) -> list[str]:
    """Every string in a (secret) value, bounded."""
    found: list[str] = []
    stack = [value]
    while stack and len(found) < _MAX_SECRETS_PER_KEY:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
