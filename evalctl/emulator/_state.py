"""Evaluation tasks as the cloud keeps them, and the rules of stopping one.

States are stored with their v1 names; the v2 views map them. The move from
`Stopping` to `Stopped` is evaluated lazily on every read (no timer threads),
so a test controls it entirely through `stop_delay_s`.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from evalctl._base import _api

V1_STATES: Final = frozenset(
    {
        _api.V1_PENDING,
        _api.V1_DOING,
        _api.V1_DOING_MANUAL,
        _api.V1_DOING_METRICS,
        _api.V1_STOPPING,
        _api.V1_STOPPED,
        _api.V1_DONE,
        _api.V1_PARTLY_DONE,
        _api.V1_FAIL,
        _api.V1_FAILED,
    }
)
_STOPPABLE: Final = frozenset({_api.V1_PENDING, _api.V1_DOING})
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_ID_LENGTH: Final = 12
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as the emulator holds it at one moment.

    `state` already includes the lazy `Stopping` → `Stopped` move;
    `stop_requests` counts the stop requests with a valid signature that
    reached the task (refused and repeated ones included, ones swallowed by a
    fault or the QPS limit excluded — see `Emulator.stop_requests` for those).
    """

    task_id: str
    evaluation_id: int
    name: str
    eval_mode: str
    state: str
    stop_requests: int


class StopOutcome(enum.Enum):
    """What a stop request did to a task."""

    STOPPING = "stopping"
    ALREADY_STOPPED = "already_stopped"
    REFUSED_MANUAL = "refused_manual"
    REFUSED_NOT_RUNNING = "refused_not_running"


def has_mode(eval_mode: str, mode: str) -> bool:
    """Whether the comma-separated `eval_mode` has a token that reads `mode` once trimmed.

    Generous on purpose (case and blanks ignored), so the emulator refuses at
    least everything a careful client would; look-alike letters stay unknown.
    """
    if not isinstance(eval_mode, str):
        return False
    return any(token.strip().lower() == mode for token in eval_mode.split(","))


def includes_manual(eval_mode: str) -> bool:
    """The cloud's view of "this task includes human evaluation"."""
    return has_mode(eval_mode, _api.MODE_MANUAL)


def to_v1_state(state: str) -> str:
    """A v1 name for `state`, given in either generation; unknown names pass through."""
    if state in V1_STATES:
        return state
    return _api.V2_TO_V1_STATE.get(state, state)


def to_v2_state(state: str) -> str:
    """The v2 name of a stored (v1) state; unknown names pass through."""
    return _api.V1_TO_V2_STATE.get(state, state)


def new_task_id() -> str:
    """A fresh id in the cloud's form: ``ame-`` + 12 lowercase letters/digits."""
    return "ame-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def _wall_clock() -> str:
    return time.strftime(_TIME_FORMAT, time.gmtime())


@dataclass
class Task:
    """One task; mutated only under `TaskStore`'s lock."""

    task_id: str
    evaluation_id: int
    name: str
    eval_mode: str
    state: str
    description: str = ""
    create_time: str = field(default_factory=_wall_clock)
    modify_time: str = field(default_factory=_wall_clock)
    stopped_at: float | None = None  # monotonic deadline of Stopping → Stopped
    stop_requests: int = 0
    detail_overrides: Mapping[str, Any] | None = None
    describe_overrides: Mapping[str, Any] | None = None
    list_overrides: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: copies of its tasks, and the first task of the next page."""

    tasks: list[Task]
    next_marker: str | None


class TaskStore:
    """The tasks of one emulator. Thread-safe; reads return copies."""

    def __init__(self, *, stop_delay_s: float) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        # Creation order and each id's place in it, so a page starts at its
        # marker without a scan (a listing of 10,000 tasks pages 100 times).
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._next_evaluation_id = 1
        self._stop_delay_s = 0.0
        self.set_stop_delay(stop_delay_s)

    def set_stop_delay(self, stop_delay_s: float) -> None:
        """How long the next stopped tasks stay `Stopping` (tasks already stopping keep theirs)."""
        if not stop_delay_s >= 0:
            raise ValueError(f"stop_delay_s must be >= 0, not {stop_delay_s!r}")
        with self._lock:
            self._stop_delay_s = stop_delay_s

    def add(
        self,
        task_id: str | None,
        eval_mode: str,
        state: str,
        *,
        name: str | None = None,
        description: str = "",
        detail_overrides: Mapping[str, Any] | None = None,
        describe_overrides: Mapping[str, Any] | None = None,
        list_overrides: Mapping[str, Any] | None = None,
    ) -> Task:
        """Create a task and return a copy of it.

        Raises:
            ValueError: the id is empty or already taken.
        """
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise ValueError(f"task_id must be a non-empty string, not {task_id!r}")
        with self._lock:
            if task_id is None:
                task_id = new_task_id()
                while task_id in self._tasks:
                    task_id = new_task_id()
            elif task_id in self._tasks:
                raise ValueError(f"task {task_id!r} already exists")
            task = Task(
                task_id=task_id,
                evaluation_id=self._next_evaluation_id,
                name=name if name is not None else f"eval-{task_id}",
                eval_mode=eval_mode,
                state=to_v1_state(state),
                description=description,
                detail_overrides=dict(detail_overrides) if detail_overrides else None,
                describe_overrides=dict(describe_overrides) if describe_overrides else None,
                list_overrides=dict(list_overrides) if list_overrides else None,
            )
            self._next_evaluation_id += 1
            self._tasks[task_id] = task
            self._position[task_id] = len(self._order)
            self._order.append(task_id)
            return dataclasses.replace(task)

    def get(self, ref: object) -> Task | None:
        """A copy of the task named by `ref` (``ame-`` id or deprecated integer id)."""
        with self._lock:
            task = self._find(ref)
            return None if task is None else self._settled_copy(task)

    def all(self) -> list[Task]:
        """Copies of every task, oldest first."""
        with self._lock:
            return [self._settled_copy(task) for task in self._tasks.values()]

    def page(
        self,
        matches: Callable[[Task], bool],
        *,
        marker: str | None,
        max_keys: int,
        reverse: bool = False,
    ) -> ListPage | None:
        """Up to `max_keys` matching tasks from `marker` on (creation order, or its reverse).

        The marker is the id of the first task of the page (``nextMarker`` of
        the previous one), so a page is inclusive of it. None: unknown marker.
        """
        with self._lock:
            count = len(self._order)
            if marker is None:
                start = count - 1 if reverse else 0
            elif marker in self._position:
                start = self._position[marker]
            else:
                return None
            step = -1 if reverse else 1
            found: list[Task] = []
            index = start
            now = time.monotonic()
            while 0 <= index < count:
                task = self._tasks[self._order[index]]
                self._settle(task, now)
                # `matches` sees the stored task (under the lock; it only reads).
                if matches(task):
                    if len(found) == max_keys:
                        return ListPage(found, task.task_id)
                    found.append(dataclasses.replace(task))
                index += step
            return ListPage(found, None)

    def set_state(self, task_id: str, state: str) -> None:
        """Force a state (v1 or v2 name). A forced `Stopping` stays `Stopping`.

        Raises:
            KeyError: no such task.
        """
        with self._lock:
            task = self._tasks[task_id]
            task.state = to_v1_state(state)
            task.stopped_at = None
            task.modify_time = _wall_clock()

    def stop(self, ref: object) -> tuple[Task, StopOutcome] | None:
        """Apply one stop request the way the cloud does; None if no such task.

        Manual comes first: a task whose modes include manual (or that sits in
        a manual state) is refused whatever else holds, and keeps its state.
        """
        with self._lock:
            task = self._find(ref)
            if task is None:
                return None
            now = time.monotonic()
            self._settle(task, now)
            task.stop_requests += 1
            if includes_manual(task.eval_mode) or task.state in _api.MANUAL_STATES:
                outcome = StopOutcome.REFUSED_MANUAL
            elif task.state in _api.STOPPED_STATES:
                outcome = StopOutcome.ALREADY_STOPPED
            elif task.state in _STOPPABLE:
                task.state = _api.V1_STOPPING
                task.stopped_at = now + self._stop_delay_s
                task.modify_time = _wall_clock()
                outcome = StopOutcome.STOPPING
            else:
                outcome = StopOutcome.REFUSED_NOT_RUNNING
            return dataclasses.replace(task), outcome

    def clear(self) -> None:
        """Forget every task; integer ids start again at 1."""
        with self._lock:
            self._tasks.clear()
            self._order.clear()
            self._position.clear()
            self._next_evaluation_id = 1

    def _find(self, ref: object) -> Task | None:
        if isinstance(ref, str):
            return self._tasks.get(ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            for task in self._tasks.values():
                if task.evaluation_id == ref:
                    return task
        return None

    def _settled_copy(self, task: Task) -> Task:
        self._settle(task, time.monotonic())
        return dataclasses.replace(task)

    @staticmethod
    def _settle(task: Task, now: float) -> None:
        due = task.stopped_at is not None and now >= task.stopped_at
        if task.state == _api.V1_STOPPING and due:
            task.state = _api.V1_STOPPED
            task.stopped_at = None
            task.modify_time = _wall_clock()


def snapshot(task: Task) -> TaskSnapshot:
    """The public, frozen view of a task."""
    return TaskSnapshot(
        task_id=task.task_id,
        evaluation_id=task.evaluation_id,
        name=task.name,
        eval_mode=task.eval_mode,
        state=task.state,
        stop_requests=task.stop_requests,
    )
