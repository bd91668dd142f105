"""The values evalctl hands back: what a task is, and how a cancel ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from evalctl._base._api import ApiVersion

Outcome = Literal["cancelled", "already_stopped", "not_running", "dry_run"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("cancelled", "already_stopped", "not_running", "dry_run")


@dataclass(frozen=True)
class EvalTask:
    """The parts of a task detail that decide whether it may be stopped.

    Built only from fields evalctl understands; the judge-model credentials
    the detail carries (`appAk`, `appSk`) are never copied here.
    """

    task_id: str
    name: str | None
    state: str | None
    eval_modes: frozenset[str]
    includes_manual: bool
    log_id: str | None = field(default=None, compare=False)
    #: Why the pre-check cannot decide from this detail (missing or unknown
    #: modes, unknown state, ...), or None. `includes_manual` False means only
    #: that no manual signal was found; a stop is allowed only when this is None.
    undecided_reason: str | None = None
    #: The ids the detail itself reports (v1 `evaluationIdStr`/`evaluationId`,
    #: v2 `taskId`), so that one task asked for by two spellings is seen as one.
    id_str: str | None = field(default=None, compare=False)
    id_int: int | None = field(default=None, compare=False)


ModeFieldKind = Literal["mode", "type"]


@dataclass(frozen=True)
class ModeField:
    """One field of a detail that says which modes the task has.

    Attributes:
        path: Where it was found, e.g. ``result.evalStandardConf.evalMode``.
        kind: ``mode`` (an `evalMode`: rule/model/manual) or ``type`` (an
            `evalType`: auto/manual).
        value: The text, or None when the field holds something else.
        value_type: The JSON type found (``str``, ``list``, ``NoneType``...).
    """

    path: str
    kind: ModeFieldKind
    value: str | None
    value_type: str


@dataclass(frozen=True)
class DetailReading:
    """What a task detail says, read and not judged (`_precheck.assess` judges).

    Attributes:
        api: The generation that answered.
        asked: The id the detail was asked for.
        named_field: The field that must name the task asked for
            (``evaluationIdStr``/``evaluationId`` on v1, ``taskId`` on v2).
        named: Its value as read, if it is a string or an integer, else None.
        named_present: Whether that field was there and not null.
        state: The `result.state` text, or None when it is missing or not text.
        state_type: The JSON type found there (``str``, ``NoneType``, ``int``...).
        other_states: Every other `state` text in the detail (e.g. of `evalUnits`).
        mode_fields: Every mode-bearing field, wherever it was.
        problems: Why the reading itself cannot be trusted (no result object,
            duplicate keys, a detail too large or too deep to read whole).
    """

    api: ApiVersion
    asked: str | int
    name: str | None
    named_field: str
    named: str | int | None
    named_present: bool
    state: str | None
    state_type: str
    other_states: tuple[str, ...]
    mode_fields: tuple[ModeField, ...]
    id_str: str | None
    id_int: int | None
    log_id: str | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CancelResult:
    """How one cancel ended.

    Attributes:
        task_id: The id as sent to the server.
        outcome: `cancelled` (the stop was accepted), `already_stopped`
            (Stopping/Stopped, nothing sent to the stop route), `not_running`
            (finished, nothing sent), or `dry_run` (pre-check passed, nothing sent).
        state_before: The state the pre-check read.
        state_after: `Stopping` once a stop is accepted, the state read last
            when waiting or when an ambiguous stop was verified, otherwise
            `state_before`.
        log_ids: Every server log id (v1 `log_id`, v2 `requestId`) seen, in order.
        attempts: Requests sent in total, pre-check reads included.
    """

    task_id: str
    outcome: Outcome
    state_before: str | None
    state_after: str | None
    log_ids: tuple[str, ...] = ()
    attempts: int = 0
