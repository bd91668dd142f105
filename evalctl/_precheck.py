"""May this task be stopped? Decided here and nowhere else.

The rule: a task that includes human (manual) evaluation is never stopped.
The pre-check fails closed: when the detail does not say clearly which modes
the task has, or in which state it is, the answer is no.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from evalctl import _api
from evalctl._errors import ManualEvaluationError, PrecheckError
from evalctl._logging import precheck_event
from evalctl._model import EvalTask


class Verdict(enum.Enum):
    """What the pre-check allows."""

    STOP = "stop"
    ALREADY_STOPPED = "already_stopped"
    NOT_RUNNING = "not_running"


@dataclass(frozen=True)
class ModeReading:
    """What a comma-joined `evalMode` says.

    Attributes:
        modes: Every non-empty token, normalised (NFKC, trimmed, lower-cased).
        includes_manual: `manual` is among them.
        problem: Why the reading cannot be trusted (missing, empty, unknown
            or empty tokens), or None.
    """

    modes: frozenset[str]
    includes_manual: bool
    problem: str | None


def read_eval_modes(raw: object) -> ModeReading:
    """Parse `evalStandardConf.evalMode` (e.g. ``"rule, Model,manual"``)."""
    if raw is None:
        return ModeReading(frozenset(), False, "the detail does not say which evaluation modes")
    if not isinstance(raw, str):
        return ModeReading(frozenset(), False, f"evalMode is not a string ({type(raw).__name__})")
    tokens = [_normalise(token) for token in raw.split(",")]
    modes = frozenset(token for token in tokens if token)
    manual = _api.MODE_MANUAL in modes
    if not modes:
        return ModeReading(modes, manual, "evalMode is empty")
    if "" in tokens:
        return ModeReading(modes, manual, f"evalMode {raw!r} has an empty mode")
    unknown = sorted(modes - _api.KNOWN_MODES)
    if unknown:
        shown = ", ".join(repr(token) for token in unknown)
        return ModeReading(modes, manual, f"evalMode has unknown mode(s) {shown}")
    return ModeReading(modes, manual, None)


def _normalise(token: str) -> str:
    # NFKC folds width variants (ｍａｎｕａｌ) into ASCII; look-alikes from other
    # scripts (a Cyrillic а) stay distinct and so remain unknown: fail closed.
    return unicodedata.normalize("NFKC", token).strip().lower()


def known_state(state: object) -> bool:
    return isinstance(state, str) and (
        state in _api.RUNNING_STATES
        or state in _api.MANUAL_STATES
        or state in _api.STOPPED_STATES
        or state in _api.FINISHED_STATES
    )


def decide(task: EvalTask) -> Verdict:
    """The pre-check's verdict for `task`, logged as `evalctl.precheck`.

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
        allowed=error is None,
        verdict=verdict.value if verdict else error.kind if error else None,
        log_id=task.log_id,
    )
    if error is not None:
        raise error
    assert verdict is not None
    return verdict
