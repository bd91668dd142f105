"""Listing tasks (v2 ``DescribeEvalTasks``), lazily, and planning a selection's stops.

The list call has no filter by state or by name pattern, so `states` and
`name` are applied here, client-side; `key_filter` is the server's own
fuzzy ``keyFilter``. Pages are fetched only as the caller consumes them,
each through the public `call_action`/`acall_action` (retries, logging,
redaction), after the rate limiter's `acquire` when a `qps` is set.

A page that does not have the documented shape ends the listing with an
`InvalidResponseError` (fail closed): a selection must never come out
silently shorter than the server's list.

The list is never trusted for safety. `plan_selection` only sorts the
listed tasks into "would be stopped" and "skipped, and why"; whatever is to
be stopped still goes through `cancel_eval_task`'s own detail pre-check.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from evalctl._base import _api
from evalctl._base._config import RetryPolicy, get_clock
from evalctl._base._credentials import check_key
from evalctl._base._errors import ConfigurationError, InvalidResponseError
from evalctl._core._limits import AdaptiveRateLimiter, check_qps

EvalTypeFilter = Literal["auto", "manual", "all"]
EVAL_TYPES: Final[tuple[str, ...]] = ("auto", "manual", "all")

#: The page size asked for: the most the API gives (fewest requests).
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 100
#: Bounds on what a caller may send as a filter.
MAX_FILTER_LENGTH: Final = 256

#: The v2 state names the `states` filter accepts (matched case-insensitively).
LIST_STATES: Final[tuple[str, ...]] = (
    _api.V2_QUEUED,
    _api.V2_RUNNING,
    _api.V2_RUNNING_MANUAL,
    _api.V2_RUNNING_METRICS,
    _api.V2_STOPPING,
    _api.V2_STOPPED,
    _api.V2_SUCCESSED,
    _api.V2_FAILED,
)
_CANONICAL_STATE: Final = {state.casefold(): state for state in LIST_STATES}


@dataclass(frozen=True)
class ListedTask:
    """One task as the list call shows it (a summary: not a basis for a stop).

    Attributes:
        task_id: The string id (``ame-...``).
        name: The task name.
        eval_type: ``auto`` or ``manual`` as the list says; ``manual`` also when
            the item's ``evalMode`` names manual whatever ``evalType`` says.
        state: The v2 state name, as listed.
    """

    task_id: str
    name: str
    eval_type: str
    state: str


# --- the listing ----------------------------------------------------------------


def list_eval_tasks(
    *,
    eval_type: EvalTypeFilter = "auto",
    key_filter: str | None = None,
    name: str | None = None,
    states: Iterable[str] | str | None = None,
    limit: int | None = None,
    retry: RetryPolicy | None = None,
    ak: str | None = None,
    sk: str | None = None,
    qps: float | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[ListedTask]:
    """List evaluation tasks, page by page as they are consumed.

    Every argument is checked at the call, before anything is sent.

    Args:
        eval_type: ``auto``, ``manual``, or ``all`` (both lists, auto first).
        key_filter: The server's ``keyFilter``: a fragment of the name or id,
            or a model version id.
        name: A shell glob (``fnmatch``, case-sensitive) the whole name must match.
        states: v2 state names to keep (e.g. ``["Running", "Queued"]``; any case).
        limit: Yield at most this many tasks (no further page is asked for).
        retry: Retry settings for each page; default `RetryPolicy.from_env()`.
        ak, sk: Credentials for these calls (default: the qianfan env vars).
        qps: Pages per second at most; None for no client-side limit.
        page_size: ``maxKeys`` of each request, 1 to 100.

    Returns:
        An iterator of `ListedTask`, each task once, in the server's order.

    Raises:
        ConfigurationError: a bad argument (at the call; nothing sent).
        InvalidResponseError: a page without the documented shape (on iteration).
        RetryExhaustedError, ServerError, ...: as `call_action` (on iteration).
    """
    query = _query(eval_type, key_filter, name, states, limit, retry, ak, sk, qps, page_size)
    return _pages(query)


def alist_eval_tasks(
    *,
    eval_type: EvalTypeFilter = "auto",
    key_filter: str | None = None,
    name: str | None = None,
    states: Iterable[str] | str | None = None,
    limit: int | None = None,
    retry: RetryPolicy | None = None,
    ak: str | None = None,
    sk: str | None = None,
    qps: float | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> AsyncIterator[ListedTask]:
    """`list_eval_tasks`, as an async generator (``async for task in alist_eval_tasks()``).

    The arguments are checked at the call, as for `list_eval_tasks`.
    """
    query = _query(eval_type, key_filter, name, states, limit, retry, ak, sk, qps, page_size)
    return _apages(query)


class _Keys:
    """The explicit `ak`/`sk` of a listing (None: from the environment), never shown."""

    __slots__ = ("reveal",)

    def __init__(self, ak: str | None, sk: str | None) -> None:
        self.reveal: Callable[[], tuple[str | None, str | None]] = lambda: (ak, sk)

    def __repr__(self) -> str:
        return "_Keys(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class _Query:
    """The checked arguments of one listing."""

    eval_types: tuple[str, ...]
    key_filter: str | None
    name: str | None
    states: frozenset[str] | None
    limit: int | None
    retry: RetryPolicy | None
    #: Explicit keys, masked; unwrapped only in the call expression, so no
    #: frame of the listing holds them bare.
    keys: _Keys
    qps: float | None
    page_size: int

    def call_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {} if self.retry is None else {"retry": self.retry}
        ak, sk = self.keys.reveal()
        if ak is not None:
            kwargs["ak"] = ak
        if sk is not None:
            kwargs["sk"] = sk
        return kwargs

    def wanted(self, task: ListedTask) -> bool:
        if self.states is not None and task.state not in self.states:
            return False
        return self.name is None or fnmatch.fnmatchcase(task.name, self.name)


def _pages(query: _Query) -> Iterator[ListedTask]:
    from evalctl._client._facade import call_action  # imports the SDK: only when listing

    walk = _Walk(query)
    clock = get_clock()
    limiter = None if query.qps is None else AdaptiveRateLimiter(query.qps, clock)
    while (body := walk.next_body()) is not None:
        if limiter is not None:
            limiter.acquire(clock)
        reply = call_action(_api.V2_ROUTE, _api.V2_LIST_ACTION, body, **query.call_kwargs())
        yield from walk.take(reply.body)


async def _apages(query: _Query) -> AsyncIterator[ListedTask]:
    from evalctl._client._facade import acall_action

    walk = _Walk(query)
    clock = get_clock()
    limiter = None if query.qps is None else AdaptiveRateLimiter(query.qps, clock)
    while (body := walk.next_body()) is not None:
        if limiter is not None:
            await limiter.aacquire(clock)
        reply = await acall_action(
            _api.V2_ROUTE, _api.V2_LIST_ACTION, body, **query.call_kwargs()
        )
        for task in walk.take(reply.body):
            yield task


class _Walk:
    """Where a listing is: which type, which marker, what was seen.

    No I/O: the sync and the async listing share it.
    """

    def __init__(self, query: _Query) -> None:
        self._query = query
        self._types = list(query.eval_types)
        self._marker: str | None = None
        self._markers: set[str] = set()
        self._seen: set[str] = set()
        self._yielded = 0
        self._pages = 0

    def next_body(self) -> dict[str, Any] | None:
        """The body of the next request, or None when the listing is over."""
        limit = self._query.limit
        if not self._types or (limit is not None and self._yielded >= limit):
            return None
        body: dict[str, Any] = {"evalType": self._types[0], "maxKeys": self._query.page_size}
        if self._query.key_filter is not None:
            body["keyFilter"] = self._query.key_filter
        if self._marker is not None:
            body["marker"] = self._marker
        return body

    def take(self, payload: object) -> list[ListedTask]:
        """Read one page: the tasks to yield from it; moves on to the next page.

        Raises:
            InvalidResponseError: the page does not have the documented shape.
        """
        self._pages += 1
        where = f"{_api.V2_LIST_ACTION} ({self._types[0]}) page {self._pages}"
        items, truncated, next_marker = _read_page(payload, where)
        if truncated:
            request_id = _request_id(payload)
            if next_marker is None:
                raise InvalidResponseError(
                    f"{where} says more pages follow but gives no nextMarker", request_id
                )
            if next_marker in self._markers:
                raise InvalidResponseError(
                    f"{where} repeats an earlier nextMarker ({next_marker[:80]!r}):"
                    " the listing would never end",
                    request_id,
                )
            self._markers.add(next_marker)
            self._marker = next_marker
        else:
            self._types.pop(0)
            self._marker = None
            self._markers.clear()
        kept: list[ListedTask] = []
        limit = self._query.limit
        for task in items:
            if task.task_id in self._seen or not self._query.wanted(task):
                continue
            self._seen.add(task.task_id)
            kept.append(task)
            self._yielded += 1
            if limit is not None and self._yielded >= limit:
                break
        return kept


def _read_page(payload: object, where: str) -> tuple[list[ListedTask], bool, str | None]:
    """(tasks, isTruncated, nextMarker or None) of one answer, or InvalidResponseError."""
    request_id = _request_id(payload)
    result = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise InvalidResponseError(f"{where} has no result object", request_id)
    listed = result.get("evalTaskList")
    info = result.get("pageInfo")
    if not isinstance(listed, list):
        raise InvalidResponseError(f"{where} has no evalTaskList", request_id)
    if not isinstance(info, dict):
        raise InvalidResponseError(f"{where} has no pageInfo", request_id)
    truncated = info.get("isTruncated")
    if not isinstance(truncated, bool):
        raise InvalidResponseError(f"{where}: pageInfo.isTruncated is not a boolean", request_id)
    next_marker = info.get("nextMarker")
    if next_marker is not None and not isinstance(next_marker, str):
        raise InvalidResponseError(f"{where}: pageInfo.nextMarker is not a string", request_id)
    tasks = [_read_item(item, where, index, request_id) for index, item in enumerate(listed)]
    return tasks, truncated, next_marker or None


_ITEM_FIELDS: Final = ("taskId", "taskName", "evalType", "state")


def _read_item(item: object, where: str, index: int, request_id: str | None) -> ListedTask:
    if not isinstance(item, dict):
        raise InvalidResponseError(f"{where}: item {index} is not an object", request_id)
    task_id, name, eval_type, state = (item.get(key) for key in _ITEM_FIELDS)
    if not (
        isinstance(task_id, str)
        and task_id
        and isinstance(name, str)
        and isinstance(eval_type, str)
        and eval_type
        and isinstance(state, str)
        and state
    ):
        missing = next(
            key
            for key in _ITEM_FIELDS
            if not isinstance(item.get(key), str) or (key != "taskName" and not item.get(key))
        )
        raise InvalidResponseError(f"{where}: item {index} has no {missing} string", request_id)
    mode = item.get("evalMode")
    # A summary that names manual anywhere is listed as manual: the plan then
    # skips it. (Safety does not rest on this: every stop is pre-checked.)
    if (
        isinstance(mode, str)
        and _api.MODE_MANUAL in mode.casefold()
        and any(token.strip().casefold() == _api.MODE_MANUAL for token in mode.split(","))
    ):
        eval_type = _api.V2_EVAL_TYPE_MANUAL
    return ListedTask(task_id, name, eval_type, state)


def _request_id(payload: object) -> str | None:
    value = payload.get("requestId") if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


# --- argument checks ---------------------------------------------------------------


def _query(
    eval_type: object,
    key_filter: object,
    name: object,
    states: object,
    limit: object,
    retry: object,
    ak: object,
    sk: object,
    qps: object,
    page_size: object,
) -> _Query:
    if eval_type not in EVAL_TYPES:
        raise ConfigurationError(
            f"eval_type must be one of {', '.join(EVAL_TYPES)}, got {_shown(eval_type)}"
        )
    types = ("auto", "manual") if eval_type == "all" else (str(eval_type),)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    # Messages name the argument, never the value.
    keys = _Keys(
        None if ak is None else check_key(ak, "ak"), None if sk is None else check_key(sk, "sk")
    )
    return _Query(
        eval_types=types,
        key_filter=_text_filter("key_filter", key_filter),
        name=_text_filter("name", name),
        states=check_states(states),
        limit=_count("limit", limit, None),
        retry=retry,
        keys=keys,
        qps=check_qps(qps),
        page_size=_count("page_size", page_size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE,
    )


def check_states(states: object) -> frozenset[str] | None:
    """The canonical v2 names of `states` (a name, or an iterable of names), or None.

    Raises:
        ConfigurationError: an unknown name, a non-string, or an empty selection.
    """
    if states is None:
        return None
    values = [states] if isinstance(states, str) else states
    if not isinstance(values, Iterable):
        raise ConfigurationError(f"states must be state names, got {type(states).__name__}")
    chosen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise ConfigurationError(f"states must be strings, got {type(value).__name__}")
        canonical = _CANONICAL_STATE.get(value.strip().casefold())
        if canonical is None:
            raise ConfigurationError(f"unknown state {_shown(value)}: use {', '.join(LIST_STATES)}")
        chosen.add(canonical)
    if not chosen:
        raise ConfigurationError("states is empty: no task would match")
    return frozenset(chosen)


def _text_filter(label: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{label} must be a string, got {type(value).__name__}")
    if not value:
        raise ConfigurationError(f"{label} is empty")
    if len(value) > MAX_FILTER_LENGTH:
        raise ConfigurationError(f"{label} is longer than {MAX_FILTER_LENGTH} characters")
    if not value.isprintable():
        raise ConfigurationError(f"{label} has control characters")
    return value


def _count(label: str, value: object, most: int | None) -> int | None:
    if value is None and most is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{label} must be an integer, got {_shown(value)}")
    if value < 1 or (most is not None and value > most):
        bound = f"from 1 to {most}" if most is not None else ">= 1"
        raise ConfigurationError(f"{label} must be {bound}, got {value}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- planning a selection ------------------------------------------------------------

PlanAction = Literal["stop", "skip"]

#: Why a listed task is not stopped, and the outcome it is reported with.
SKIP_MANUAL_TYPE: Final = "manual type"
SKIP_MANUAL_STATE: Final = "manual evaluation in progress"
SKIP_STOPPED: Final = "already stopped"
SKIP_FINISHED: Final = "finished"
SKIP_UNKNOWN_STATE: Final = "state not recognised"


@dataclass(frozen=True)
class PlanEntry:
    """What the plan does with one selected task.

    Attributes:
        task: The task as listed.
        action: ``stop`` (after its own detail pre-check) or ``skip``.
        reason: Why it is skipped (None for ``stop``).
        outcome: How a skipped task is reported: ``already_stopped``,
            ``not_running`` or ``skipped``; None for ``stop``.
    """

    task: ListedTask
    action: PlanAction
    reason: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class SelectionPlan:
    """The selected tasks, in listing order, each with what would be done with it."""

    entries: tuple[PlanEntry, ...]

    @property
    def to_stop(self) -> tuple[ListedTask, ...]:
        return tuple(entry.task for entry in self.entries if entry.action == "stop")

    @property
    def skipped(self) -> tuple[PlanEntry, ...]:
        return tuple(entry for entry in self.entries if entry.action == "skip")


def plan_entry(task: ListedTask) -> PlanEntry:
    """Sort one listed task: only an automatic, running (or queued) task is to be stopped."""
    if task.eval_type != _api.V2_EVAL_TYPE_AUTO:
        reason = (
            SKIP_MANUAL_TYPE
            if task.eval_type == _api.V2_EVAL_TYPE_MANUAL
            else (f"evalType {_shown(task.eval_type)} is not auto")
        )
        return PlanEntry(task, "skip", reason, "skipped")
    if task.state in _api.MANUAL_STATES:
        return PlanEntry(task, "skip", SKIP_MANUAL_STATE, "skipped")
    if task.state in _api.STOPPED_STATES:
        return PlanEntry(task, "skip", SKIP_STOPPED, "already_stopped")
    if task.state in _api.FINISHED_STATES:
        return PlanEntry(task, "skip", SKIP_FINISHED, "not_running")
    if task.state in _api.RUNNING_STATES:
        return PlanEntry(task, "stop")
    return PlanEntry(task, "skip", SKIP_UNKNOWN_STATE, "skipped")


def plan_selection(tasks: Iterable[ListedTask]) -> SelectionPlan:
    """The plan for a selection (see `plan_entry`)."""
    return SelectionPlan(tuple(plan_entry(task) for task in tasks))
