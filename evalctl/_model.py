"""The values evalctl hands back: what a task is, and how a cancel ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

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
