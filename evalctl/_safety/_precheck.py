"""May this task be stopped? Every rule of it lives here and nowhere else.

The rule: a task that includes human (manual) evaluation is never stopped.
The parser (`_generations`) only reads a detail into a `DetailReading`;
`assess` judges what it says (manual? clear enough to act on?) and `decide`
gives the verdict. The pre-check fails closed: when the detail does not say
clearly which modes the task has, in which state it is, or which task it
describes, the answer is no.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from typing import Final

from evalctl._base import _api
from evalctl._base._errors import ManualEvaluationError, PrecheckError
from evalctl._base._logging import precheck_event
from evalctl._base._model import DetailReading, EvalTask, ModeField

#: A state that names manual work is treated as manual, known or not.
_MANUAL_MARK: Final = "manual"


class Verdict(enum.Enum):
    """What the pre-check allows."""

    STOP = "stop"
    ALREADY_STOPPED = "already_stopped"
    NOT_RUNNING = "not_running"


@dataclass(frozen=True)
class ModeReading:
    """What a comma-joined `evalMode` (or `evalType`) says.

    Attributes:
        modes: Every non-empty token, folded (see `fold`).
        includes_manual: `manual` is among them.
        problem: Why the reading cannot be trusted (missing, empty, unknown
            or empty tokens), or None.
    """

    modes: frozenset[str]
    includes_manual: bool
    problem: str | None


def fold(text: str) -> str:
    """The one normalisation of server and route text: NFKC, trimmed, case-folded.

    NFKC folds width variants (ｍａｎｕａｌ) into ASCII; look-alikes from other
    scripts (a Cyrillic а) stay distinct and so remain unknown: fail closed.
    """
    return unicodedata.normalize("NFKC", text).strip().casefold()


def read_eval_modes(
    raw: object, *, field: str = "evalMode", known: frozenset[str] = _api.KNOWN_MODES
) -> ModeReading:
    """Parse a comma-joined mode field (e.g. ``"rule, Model,manual"``)."""
    if raw is None:
        return ModeReading(frozenset(), False, "the detail does not say which evaluation modes")
    if not isinstance(raw, str):
        return ModeReading(frozenset(), False, f"{field} is not a string ({type(raw).__name__})")
    tokens = [fold(token) for token in raw.split(",")]
    modes = frozenset(token for token in tokens if token)
    manual = _api.MODE_MANUAL in modes
    if not modes:
        return ModeReading(modes, manual, f"{field} is empty")
    if "" in tokens:
        return ModeReading(modes, manual, f"{field} {raw!r} has an empty mode")
    unknown = sorted(modes - known)
    if unknown:
        shown = ", ".join(repr(token) for token in unknown)
        return ModeReading(modes, manual, f"{field} has unknown mode(s) {shown}")
    return ModeReading(modes, manual, None)


def assess(reading: DetailReading) -> EvalTask:
    """What a detail means for the pre-check: the task, manual or not, decidable or not.

    Manual in any mode-bearing field, or a state implying human annotation,
    makes the task manual. A field present but unreadable, a missing
    documented field, a state outside the answering generation's vocabulary,
    or a detail about another task (or none) leaves it undecided.
    """
    problems: list[str | None] = list(reading.problems)
    problems.append(_identity_problem(reading))
    manual = False
    modes: set[str] = set()
    types: set[str] = set()
    for found in reading.mode_fields:
        mode_reading = _read_field(found)
        manual = manual or mode_reading.includes_manual
        (modes if found.kind == "mode" else types).update(mode_reading.modes)
        problems.append(mode_reading.problem)
    problems.append(_documented_field_problem(reading))
    kinds = _api.STATE_KINDS[reading.api]
    state = reading.state
    if state is None:
        problems.append(
            "the detail has no state"
            if reading.state_type == "NoneType"
            else f"state is not a string ({reading.state_type})"
        )
    elif state not in kinds:
        problems.append(f"unknown state {state!r} for the {reading.api} API")
    for seen in (state, *reading.other_states):
        if seen is not None and (
            kinds.get(seen) == "manual" or seen in _api.MANUAL_STATES or _MANUAL_MARK in fold(seen)
        ):
            manual = True
    return EvalTask(
        task_id=str(reading.asked),
        name=reading.name,
        state=state,
        eval_modes=frozenset(modes or types),
        includes_manual=manual,
        log_id=reading.log_id,
        undecided_reason=next((problem for problem in problems if problem), None),
        id_str=reading.id_str,
        id_int=reading.id_int,
    )


def decide(task: EvalTask) -> Verdict:
    """The pre-check's verdict for `task`, logged as `evalctl.precheck`.

    `allowed` in the event is True exactly when a stop would be sent.

    Raises:
        ManualEvaluationError: the task includes manual evaluation.
        PrecheckError: the detail leaves the question open (fail closed).
    """
    verdict: Verdict | None = None
    error: ManualEvaluationError | PrecheckError | None = None
    if task.includes_manual:
        error = ManualEvaluationError(task.task_id, task.eval_modes, task.state, task.log_id)
    elif task.undecided_reason is not None:
        error = PrecheckError(task.task_id, task.undecided_reason, task.log_id)
    elif task.state in _api.STOPPED_STATES:
        verdict = Verdict.ALREADY_STOPPED
    elif task.state in _api.FINISHED_STATES:
        verdict = Verdict.NOT_RUNNING
    elif task.state in _api.RUNNING_STATES:
        verdict = Verdict.STOP
    else:
        error = PrecheckError(task.task_id, f"unknown state {task.state!r}", task.log_id)
    precheck_event(
        task_id=task.task_id,
        state=task.state,
        eval_modes=task.eval_modes,
        allowed=verdict is Verdict.STOP,
        verdict=verdict.value if verdict else error.kind if error else None,
        log_id=task.log_id,
    )
    if error is not None:
        raise error
    assert verdict is not None
    return verdict


def _read_field(found: ModeField) -> ModeReading:
    name = found.path.rsplit(".", 1)[-1]
    known = _api.KNOWN_MODES if found.kind == "mode" else _api.KNOWN_EVAL_TYPES
    if found.value is None:
        if found.value_type == "NoneType":
            return ModeReading(frozenset(), False, f"{found.path} is null")
        return ModeReading(frozenset(), False, f"{name} is not a string ({found.value_type})")
    reading = read_eval_modes(found.value, field=name, known=known)
    if found.kind == "type" and reading.problem and reading.modes - known:
        unknown = ", ".join(repr(token) for token in sorted(reading.modes - known))
        return ModeReading(reading.modes, reading.includes_manual, f"unknown {name} {unknown}")
    return reading


def _documented_field_problem(reading: DetailReading) -> str | None:
    """The generation's documented mode field must be there (v1 evalMode, v2 evalType)."""
    if reading.api == "v1":
        wanted = f"result.{_api.V1_MODE_FIELD}"
        missing = "the detail does not say which evaluation modes"
    else:
        wanted, missing = f"result.{_api.V2_TYPE_FIELD}", "the detail has no evalType"
    if any(found.path == wanted for found in reading.mode_fields):
        return None
    return missing


def _identity_problem(reading: DetailReading) -> str | None:
    """The detail must name exactly the task that was asked for."""
    field = reading.named_field
    if not reading.named_present:
        return f"the detail does not name the task (no {field})"
    named = reading.named
    if named is None or type(named) is not type(reading.asked) or named != reading.asked:
        # Cut well past what a message shows, so a secret in it stays whole for redaction.
        shown = "a non-id value" if named is None else repr(str(named)[:400])
        return f"the detail describes another task ({field} {shown})"
    return None
