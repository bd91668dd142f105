"""Cancelling many tasks: worker threads sharing one rate limit, one retry budget, one journal.

The calling thread reads the ids — streamed, de-duplicated and validated as
they come — and submits each to a `concurrent.futures.ThreadPoolExecutor` of
`concurrency` workers; a bounded semaphore keeps the reader at most a few ids
ahead of the workers (memory stays flat however many ids there are). Each
task runs the very cancel operation a single `cancel_eval_task` runs
(`_facade.prepare_cancel` + `_runner.run`), so every decision stays in
`_operations`. All requests of the batch share one `AdaptiveRateLimiter` and
one `RetryBudget` (`_limits`); each worker thread keeps its own `Wire`
from one task to the next. The batch hooks into each operation once, through
`Session.cleared` (called when the pre-check clears the task for a stop): it
folds two ids that the detail shows to be one task (the second is a
`duplicate`, nothing sent for it) and writes the journal's intent record.

Every id read ends in exactly one `TaskReport`, and each report is written to
the journal (if any), then reported (`on_report`), then counted
(`on_progress`), under one lock: callbacks are never called concurrently.
They run on worker threads (on the calling thread for invalid ids, ids never
started, and under `strict`).

Early stops — refused keys (every other task would fail alike), Ctrl-C
(KeyboardInterrupt in the calling thread), `strict` with an invalid id: no new
task starts, the tasks in flight finish, and every other id is reported
`not_started` (`NotStartedError`). Ids known up front (a sized collection:
the command line's arguments, a regular file) are all read and reported; an
open-ended iterable (stdin, a generator) is not read further. A second
Ctrl-C stops waiting: no further request is sent, it propagates, and the
journal's intents tell a resumed run which stops may have been sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any, ClassVar, Final

from evalctl._base import _logging
from evalctl._base._api import ApiVersion
from evalctl._base._config import Clock, RetryPolicy, get_clock
from evalctl._base._defaults import DEFAULT_CONCURRENCY, DEFAULT_WAIT_TIMEOUT_S, MAX_CONCURRENCY
from evalctl._base._errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AuthenticationError,
    ConfigurationError,
    EvalctlError,
    InvalidTaskIdError,
    WaitTimeoutError,
)
from evalctl._base._ids import TaskId, validate_task_id
from evalctl._base._model import CancelResult, EvalTask
from evalctl._base._redact import Redactor
from evalctl._batch._journal import Journal, final_record, intent_record, read_journal
from evalctl._client._facade import prepare_cancel
from evalctl._core._limits import RetryBudget, check_qps
from evalctl._core._options import GivenKeys, Options, check_options
from evalctl._core._runner import Operation, RateLimiter, Session, run
from evalctl._core._sharedlimit import Fallback, make_limiter
from evalctl._wire._transport import Wire

#: One id read: its text, and its validated form or why it is invalid.
_Entry = tuple[str, TaskId | InvalidTaskIdError]

#: Ids submitted but not yet started, per worker: enough that no worker waits
#: for the reader, few enough that the reader stays just ahead of the workers.
QUEUE_PER_WORKER: Final = 2

BATCH_EVENT: Final = "evalctl.batch"
BATCH_INTERRUPTED_EVENT: Final = "evalctl.batch_interrupted"
BATCH_ABORTED_EVENT: Final = "evalctl.batch_aborted"
TASK_CRASHED_EVENT: Final = "evalctl.batch_task_crashed"

#: `TaskReport.by` for a task whose stop was sent by an earlier, interrupted
#: run (its journal holds the intent) and that this run found Stopping/Stopped.
BY_EARLIER_RUN: Final = "earlier run"

class DuplicateTaskError(EvalctlError):
    """This id names a task another id of the batch already names: nothing sent for it.

    The detail shows the same task under its string and its integer id. Not a
    failure (exit code 0): the task is handled under the other id.
    """

    exit_code = EXIT_OK
    kind = "duplicate"

    def __init__(self, task_id: str, same_as: str, state: str | None) -> None:
        super().__init__(f"{task_id} is the same task as {same_as}: handled once, as {same_as}")
        self.task_id = task_id
        self.same_as = same_as
        self.state = state


class NotStartedError(EvalctlError):
    """The batch stopped early (refused keys, Ctrl-C, `strict`) before this task started.

    Nothing was sent for it. `cause_exit_code` is the exit code of what stopped
    the batch (1 for refused keys, 130 for Ctrl-C, 2 for `strict`), so an id
    never started never changes the batch's exit code.
    """

    kind = "not_started"
    #: The texts of `why` (`BatchResult.aborted` for refused keys).
    INTERRUPTED: ClassVar[str] = "interrupted (Ctrl-C)"
    STRICT: ClassVar[str] = "--strict: another id is invalid"

    def __init__(self, task_id: str, why: str, cause_exit_code: int) -> None:
        super().__init__(f"{task_id}: not started, nothing sent: the batch stopped early: {why}")
        self.task_id = task_id
        self.why = why
        self.cause_exit_code = cause_exit_code


@dataclass(frozen=True)
class TaskReport:
    """How one id of a batch ended: a result, or an error.

    Attributes:
        task_id: The id as given.
        result: The cancel's result, or None.
        error: Why it failed, or None (`DuplicateTaskError`, `NotStartedError` too).
        log_ids: Every server log id seen for this task, in order.
        attempts: Requests sent for this task.
        by: `BY_EARLIER_RUN` when an interrupted earlier run sent the stop
            (its journal intent) and this run found the task stopping; else None.
    """

    task_id: str
    result: CancelResult | None = None
    error: EvalctlError | None = None
    log_ids: tuple[str, ...] = ()
    attempts: int = 0
    by: str | None = None

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.error)

    @property
    def label(self) -> str:
        """The outcome, or the error's kind."""
        if self.result is not None:
            return self.result.outcome
        assert self.error is not None
        return self.error.kind

    @property
    def states(self) -> tuple[str | None, str | None]:
        """`state_before`, `state_after`: what the pre-check read, and what was seen last."""
        return states_of(self.result, self.error)

    def facts(self) -> dict[str, Any]:
        """The fields of its ``--json`` line and journal record (one definition for both)."""
        return task_facts(self.task_id, self.result, self.error, self.log_ids, by=self.by)


def exit_code_of(error: EvalctlError | None) -> int:
    """A task's exit code: 0 without an error; a not-started id's is its cause's."""
    if error is None:
        return EXIT_OK
    if isinstance(error, NotStartedError):
        return error.cause_exit_code
    return error.exit_code


def states_of(
    result: CancelResult | None, error: EvalctlError | None
) -> tuple[str | None, str | None]:
    """`state_before`, `state_after` of a result or an error (None: not read)."""
    if result is not None:
        return result.state_before, result.state_after
    if isinstance(error, WaitTimeoutError):
        return error.result.state_before, error.result.state_after
    state = getattr(error, "state", None)
    state = state if isinstance(state, str) else None
    if isinstance(error, EvalctlError) and error.kind == "stop_unconfirmed":
        return state, None  # a stop may have been applied: the state after is unknown
    return state, state


def task_facts(
    task_id: str,
    result: CancelResult | None,
    error: EvalctlError | None,
    log_ids: Iterable[str] = (),
    *,
    by: str | None = None,
) -> dict[str, Any]:
    """One task's fields, as ``--json`` prints them and the journal records them.

    ``task_id``; ``outcome`` (a result or a duplicate) or ``error`` (see
    `error_text`) and ``error_kind``; ``exit_code``; ``state_before``,
    ``state_after``; ``log_ids``; ``by`` when an earlier run sent the stop,
    ``duplicate_of`` for a duplicate.
    """
    shown_log_ids = tuple(log_ids) or _error_log_ids(error)
    facts: dict[str, Any] = {"task_id": task_id}
    if result is not None:
        facts["outcome"] = result.outcome
        facts["exit_code"] = EXIT_OK
    elif isinstance(error, DuplicateTaskError):
        facts["outcome"] = error.kind
        facts["exit_code"] = EXIT_OK
        facts["duplicate_of"] = error.same_as
    elif error is not None:
        facts["error"] = error_text(task_id, error, shown_log_ids)
        facts["error_kind"] = error.kind
        facts["exit_code"] = exit_code_of(error)
    before, after = states_of(result, error)
    facts["state_before"] = before
    facts["state_after"] = after
    facts["log_ids"] = list(shown_log_ids)
    if by is not None:
        facts["by"] = by
    return facts


def error_text(task_id: str, error: EvalctlError, log_ids: Iterable[str] = ()) -> str:
    """An error as one line, the same in every output: it names the task and its last log id.

    The rule: the message, prefixed with ``<task id>: `` unless it names the
    task, and ending with `` [log_id <id>]`` for the last log id the server
    gave for this task unless the message already shows it.
    """
    message = " ".join(str(error).split())  # one line, whatever the server said
    if task_id not in message:
        message = f"{task_id}: {message}"
    last = tuple(log_ids)[-1:] or _error_log_ids(error)[-1:]
    if last and last[0] not in message:
        message += f" [log_id {last[0]}]"
    return message


def _error_log_ids(error: EvalctlError | None) -> tuple[str, ...]:
    if error is None:
        return ()
    if isinstance(error, WaitTimeoutError):
        return error.result.log_ids
    found = getattr(error, "log_ids", None)
    if isinstance(found, tuple) and found:
        return found
    log_id = getattr(error, "log_id", None)
    return (log_id,) if isinstance(log_id, str) and log_id else ()


@dataclass(frozen=True)
class BatchProgress:
    """Where a running batch is, for a progress bar (`on_progress`).

    Attributes:
        done: Ids handled so far: reported (invalid and not started included),
            skipped as settled by the journal, or repeats.
        total: How many ids there are: known from the start for a sized
            collection of ids, otherwise None until every id has been read.
        failed: Reports so far with a non-zero exit code.
        requests: Requests sent so far by the finished tasks.
    """

    done: int
    total: int | None
    failed: int
    requests: int = 0


@dataclass(frozen=True)
class BatchResult:
    """What a batch did, in counts (per-task reports go to `on_report`).

    Attributes:
        total: Distinct ids read (= reported + `skipped`); after an early stop
            too, for ids known up front.
        counts: Reports per outcome or error kind (`not_started` included).
        failed: Ids of tasks that ended in an error (invalid, not started and
            duplicate ids excepted).
        invalid: Ids rejected by validation; nothing was sent for them.
        skipped: Ids the journal already settled (`resume=True`).
        duplicates: Repeated ids (the same text again), ignored.
        interrupted: Ctrl-C stopped the batch before every id was run.
        exit_code: The highest exit code of the reports; 130 when interrupted.
        not_started: Ids reported `not_started` (interrupted, `strict` refused
            the batch, or it was aborted).
        aborted: Why the batch stopped starting tasks on its own (the keys were
            refused: every further request would fail the same way), or None.
        requests: Requests sent, every attempt of every task.
        elapsed: Wall-clock seconds.
    """

    total: int
    counts: Mapping[str, int] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    skipped: int = 0
    duplicates: int = 0
    interrupted: bool = False
    exit_code: int = EXIT_OK
    not_started: int = 0
    requests: int = 0
    elapsed: float = 0.0
    aborted: str | None = None


def cancel_eval_tasks(
    task_ids: Iterable[object],
    *,
    dry_run: bool = False,
    wait: bool = False,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
    retry: RetryPolicy | None = None,
    api: ApiVersion = "v1",
    ak: str | None = None,
    sk: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    qps: float | None = None,
    rate_limit_url: str | None = None,
    rate_limit_key: str | None = None,
    rate_limit_fallback: Fallback = "fail",
    journal: str | PathLike[str] | None = None,
    resume: bool = False,
    strict: bool = False,
    on_report: Callable[[TaskReport], None] | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchResult:
    """Cancel many tasks; each id read ends in exactly one `TaskReport`.

    Every task is cancelled exactly as `cancel_eval_task` would (pre-check
    first; manual tasks refused). Invalid ids are reported (exit code 2) as
    they are read while the valid ones are processed. Two ids that the detail
    shows to be one task (its `ame-` id and its integer id) stop it once; the
    second is reported as a `duplicate`.

    Args:
        task_ids: Ids, streamed (a generator over a file is fine); repeats are
            ignored. A sized collection (`len()`) gives the progress its total
            from the start, and is read to its end after an early stop.
        dry_run, wait, wait_timeout, retry, api, ak, sk: As for `cancel_eval_task`.
        concurrency: Worker threads (1 to 256).
        qps: Requests per second for the whole batch, pre-check reads
            included; lowered while the server throttles and recovered
            gradually. None: the server's limit is learned from its throttles.
        rate_limit_url, rate_limit_key, rate_limit_fallback: Share the rate
            through Redis (`redis://host:port/db`; default
            `EVALCTL_RATE_LIMIT_URL`) under a key (default: the endpoint and
            a hash of the access key) with every process using the same;
            when Redis fails, "fail" the requests or go on with a "local"
            limit (see `_sharedlimit`).
        journal: Path of a JSON-lines journal: one record per id (fsynced,
            except for ids never started), and an fsynced intent right before
            each task's first stop.
        resume: Skip the ids the journal already settled: only final records
            that state a fact about the task (see `_journal`); any other id
            runs again. A task with an intent record that is found Stopping or
            Stopped is reported `cancelled`, `by` the earlier run.
        strict: Read and validate every id first; if any is invalid, report
            it and send nothing (exit code 2): the others are `not_started`.
        on_report: Called with each id's report.
        on_progress: Called at the start, after each id handled, and once the
            total is known.

    Returns:
        The counts; `interrupted` after Ctrl-C.

    Raises:
        ConfigurationError: bad settings, missing credentials, an unusable
            journal — before any id is read.
        OSError: the journal could not be written; the batch stopped (the
            tasks in flight finished first).
        Exception: whatever `task_ids`, `on_report` or `on_progress` raised;
            the batch stopped the same way.
        KeyboardInterrupt: a second Ctrl-C while waiting for tasks in flight.
    """
    started = time.perf_counter()
    keys = GivenKeys(ak, sk)
    del ak, sk  # no frame keeps a bare key (see `_options`)
    options = check_options(
        keys=keys, api=api, retry=retry, dry_run=dry_run, wait=wait, wait_timeout=wait_timeout
    )
    redactor = Redactor([options.credentials.access_key(), options.credentials.secret_key()])
    workers = _check_concurrency(concurrency)
    rate = check_qps(qps)
    if resume and journal is None:
        raise ConfigurationError("resume needs a journal")
    clock = get_clock()
    batch = _Batch(
        options=options,
        api=api,
        dry_run=bool(dry_run),
        limiter=make_limiter(
            rate,
            clock,
            url=rate_limit_url,
            key=rate_limit_key,
            fallback=rate_limit_fallback,
            ak=options.credentials.access_key(),
        ),
        budget=RetryBudget(),
        workers=workers,
        on_report=on_report,
        on_progress=on_progress,
        expected=len(task_ids) if isinstance(task_ids, Sized) else None,
        redactor=redactor,
    )
    interrupted = batch.execute(task_ids, journal=journal, resume=resume, strict=strict)
    result = batch.result(interrupted=interrupted, elapsed=time.perf_counter() - started)
    _logging.event(
        "info",
        BATCH_EVENT,
        total=result.total,
        counts=dict(result.counts),
        skipped=result.skipped,
        duplicates=result.duplicates,
        not_started=result.not_started,
        requests=result.requests,
        elapsed_s=round(result.elapsed, 3),
        interrupted=result.interrupted,
    )
    return result


def _check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise ConfigurationError(f"concurrency must be an integer, got {concurrency!r}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigurationError(
            f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}"
        )
    return concurrency


class _JournalFailed(EvalctlError):
    """Internal: writing an intent failed; the stop was not sent (the batch stops)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Halted(EvalctlError):
    """Internal: a second Ctrl-C; no further request of the batch is sent."""

    def __init__(self) -> None:
        super().__init__("interrupted: no further request sent")


class _HaltableLimiter:
    """The batch's rate limiter, refusing every request once the batch is halted."""

    def __init__(self, inner: RateLimiter, halted: threading.Event) -> None:
        self._inner = inner
        self._halted = halted

    def acquire(self, clock: Clock) -> None:
        if self._halted.is_set():
            raise _Halted()
        self._inner.acquire(clock)

    async def aacquire(self, clock: Clock) -> None:
        if self._halted.is_set():
            raise _Halted()
        await self._inner.aacquire(clock)

    def feedback(self, throttled: bool, *, retry_after: float | None = None) -> None:
        self._inner.feedback(throttled, retry_after=retry_after)


class _Batch:
    """The state of one running batch, shared by the reader and the workers."""

    def __init__(
        self,
        *,
        options: Options,
        api: ApiVersion,
        dry_run: bool,
        limiter: RateLimiter,
        budget: RetryBudget,
        workers: int,
        on_report: Callable[[TaskReport], None] | None,
        on_progress: Callable[[BatchProgress], None] | None,
        expected: int | None,
        redactor: Redactor,
    ) -> None:
        self._options = options
        # For what the user typed: an invalid id may be a key pasted by mistake.
        self._redactor = redactor
        self._halted = threading.Event()
        self._limiter = _HaltableLimiter(limiter, self._halted)
        self._budget = budget
        self._api = api
        self._dry_run = dry_run
        self._workers = workers
        self._on_report = on_report
        self._on_progress = on_progress
        self._expected = expected
        self._journal: Journal | None = None
        self._settled: set[str] = set()
        self._intents: set[str] = set()
        # The reader's state (calling thread only).
        self._seen: set[str] = set()
        self._duplicates = 0
        self._skipped = 0
        # Shared state, under _lock.
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failed: list[str] = []
        self._invalid: list[str] = []
        self._exit_code = EXIT_OK
        self._handled = 0  # ids handled: reported, skipped or repeated
        self._not_started = 0
        self._failures = 0
        self._requests = 0
        self._total: int | None = expected
        self._fatal: BaseException | None = None
        # Every name of each task cleared for a stop -> the id it was given as.
        self._owners: dict[str, str] = {}
        # Why no new task starts (None: keep going), and its exit code.
        self._stop_why: str | None = None
        self._stop_code = EXIT_OK
        self._aborted: str | None = None
        self._local = threading.local()
        self._wires: list[Wire] = []  # one per worker thread, closed at the end
        self._read = 0  # entries read, repeats included (the reader's)
        # The id handed to the pool, until a worker takes it; the one a Ctrl-C
        # caught in between (reported by the handler, skipped by the worker).
        self._pending: str | None = None
        self._abandoned: str | None = None
        # Ids known up front: after an early stop the rest are read and reported.
        self._known = expected is not None

    # -- the calling thread ----------------------------------------------------

    def execute(
        self,
        task_ids: Iterable[object],
        *,
        journal: str | PathLike[str] | None,
        resume: bool,
        strict: bool,
    ) -> bool:
        """Run the batch; return whether Ctrl-C interrupted it."""
        self._progress_now()
        entries: Iterator[_Entry] = self._entries(iter(task_ids))
        refused = False
        if strict:
            read = list(entries)  # every id read and validated before anything is sent
            with self._lock:
                self._total = self._read
            refused = any(isinstance(item, InvalidTaskIdError) for _, item in read)
            entries = iter(read)
            self._known = True
        if journal is not None:
            # Locked before it is read: no other run appends in between.
            self._journal = Journal(journal)
            if resume:
                try:
                    state = read_journal(journal)
                except BaseException:
                    self._journal.close()
                    raise
                self._settled, self._intents = state.settled, state.intents
        try:
            if refused:
                self._stop(NotStartedError.STRICT, EXIT_USAGE)
                self._drain(entries)
                return False
            return self._run_all(entries)
        finally:
            if self._journal is not None:
                self._journal.close()
            if not self._halted.is_set():  # else workers may still be sending
                self._close_wires()

    def result(self, *, interrupted: bool, elapsed: float) -> BatchResult:
        with self._lock:
            return BatchResult(
                total=len(self._seen),
                counts=dict(self._counts),
                failed=tuple(self._failed),
                invalid=tuple(self._invalid),
                skipped=self._skipped,
                duplicates=self._duplicates,
                interrupted=interrupted,
                exit_code=EXIT_INTERRUPTED if interrupted else self._exit_code,
                not_started=self._not_started,
                requests=self._requests,
                elapsed=elapsed,
                aborted=self._aborted,
            )

    def _entries(self, source: Iterator[object]) -> Iterator[_Entry]:
        """Each new id read, with its validated form or why it is invalid (repeats dropped)."""
        for raw in source:
            self._read += 1
            key = str(raw)
            if key in self._seen:
                self._duplicates += 1
                self._count_handled()
                continue
            self._seen.add(key)
            try:
                yield key, validate_task_id(raw, self._api)
            except InvalidTaskIdError as error:
                yield key, error
        with self._lock:
            self._total = self._read
            self._emit_progress()

    def _run_all(self, entries: Iterator[_Entry]) -> bool:
        pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="evalctl-batch")
        # Tasks in flight plus a short lead: the reader blocks (no polling) beyond it.
        slots = threading.BoundedSemaphore(self._workers * (QUEUE_PER_WORKER + 1))
        interrupted = False
        try:
            try:
                self._feed(entries, pool, slots)
                pool.shutdown(wait=True)
            except KeyboardInterrupt:
                interrupted = True
                self._stop(NotStartedError.INTERRUPTED, EXIT_INTERRUPTED)
                with self._lock:
                    # The id being handed over when Ctrl-C came, if no worker took it.
                    abandoned, self._pending = self._pending, None
                    self._abandoned = abandoned
                if abandoned is not None:
                    self._report_not_started(abandoned)
                _logging.event(
                    "warning",
                    BATCH_INTERRUPTED_EVENT,
                    detail="no new task starts; waiting for the tasks in flight",
                )
                self._drain(entries)
                pool.shutdown(wait=True)
        except KeyboardInterrupt:
            # The second Ctrl-C: stop waiting; no request of the batch goes out any more.
            self._halted.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            # The reader failed: the tasks in flight finish, the rest start no more.
            self._stop("stopped", EXIT_INTERRUPTED)
            pool.shutdown(wait=True)
            raise
        if self._fatal is not None:
            raise self._fatal
        return interrupted

    def _feed(
        self,
        entries: Iterator[_Entry],
        pool: ThreadPoolExecutor,
        slots: threading.BoundedSemaphore,
    ) -> None:
        for key, item in entries:
            if self._stop_why is not None:
                self._stopped_entry(key, item)
                if not self._known:
                    return  # open-ended input: not read further
                self._drain(entries)
                return
            if isinstance(item, InvalidTaskIdError):
                self._settle(TaskReport(key, error=item), invalid=True)
            elif key in self._settled:
                self._skip()
            else:
                # Until a worker takes it, a Ctrl-C leaves this id to the handler.
                self._pending = key
                # Blocks while every worker is busy and the lead is full.
                slots.acquire()
                try:
                    future = pool.submit(self._task, item)
                except BaseException:
                    slots.release()
                    raise
                future.add_done_callback(lambda _done: slots.release())
                self._pending = None

    def _drain(self, entries: Iterator[_Entry]) -> None:
        """After an early stop: report every id known up front; open-ended input stays unread."""
        if not self._known:
            return
        for key, item in entries:
            self._stopped_entry(key, item)

    def _stopped_entry(self, key: str, item: TaskId | InvalidTaskIdError) -> None:
        if isinstance(item, InvalidTaskIdError):
            self._settle(TaskReport(key, error=item), invalid=True)
        elif key in self._settled:
            self._skip()
        else:
            self._report_not_started(key)

    def _skip(self) -> None:
        self._skipped += 1
        self._count_handled()

    def _stop(self, why: str, exit_code: int) -> None:
        """Start no new task; the first reason given is the one reported."""
        with self._lock:
            if self._stop_why is None:
                self._stop_why, self._stop_code = why, exit_code

    # -- the workers -------------------------------------------------------------

    def _task(self, task_id: TaskId) -> None:
        key = str(task_id)
        with self._lock:
            if key == self._abandoned:
                return  # reported not started by the Ctrl-C handler
            if key == self._pending:
                self._pending = None
        try:
            if self._stop_why is not None:
                self._report_not_started(str(task_id))
            else:
                self._run(task_id)
        # BLE001: a journal or callback failure ends the batch; it is raised
        # in the calling thread once the other tasks in flight have finished.
        except BaseException as exc:  # noqa: BLE001
            with self._lock:
                if self._fatal is None:
                    self._fatal = exc.error if isinstance(exc, _JournalFailed) else exc
            self._stop("stopped", EXIT_INTERRUPTED)

    def _run(self, task_id: TaskId) -> None:
        key = str(task_id)
        session: Session | None = None
        try:
            operation, session = self._prepare(task_id, key)
            result = run(operation, session)
            same_as = self._owners.get(key)
            if same_as is not None and same_as != key:
                # Its twin (the other spelling) was cleared and stopped first.
                duplicate = DuplicateTaskError(key, same_as, result.state_before)
                report = TaskReport(key, error=duplicate)
            elif result.outcome == "already_stopped" and key in self._intents:
                # The interrupted run's stop went out: the task is stopping because of it.
                report = TaskReport(
                    key, result=replace(result, outcome="cancelled"), by=BY_EARLIER_RUN
                )
            else:
                report = TaskReport(key, result=result)
        except _JournalFailed:
            raise
        except _Halted as halted:
            report = TaskReport(key, error=NotStartedError(key, str(halted), EXIT_INTERRUPTED))
        except AuthenticationError as error:
            report = TaskReport(key, error=error)
            self._abort(f"authentication failed ({error.http_status})", error.exit_code)
        except EvalctlError as error:
            report = TaskReport(key, error=error)
        # BLE001: a bug in one task must not end the others; it is reported
        # as that task's failure (only the type: a message could hold anything).
        except Exception as exc:  # noqa: BLE001
            _logging.event("error", TASK_CRASHED_EVENT, task_id=key, error=type(exc).__name__)
            report = TaskReport(key, error=EvalctlError(f"unexpected {type(exc).__name__}"))
        if session is not None:
            report = replace(report, log_ids=tuple(session.log_ids), attempts=session.attempts)
        self._settle(report)

    def _prepare(self, task_id: TaskId, key: str) -> tuple[Operation[CancelResult], Session]:
        """The task's cancel operation, on a session of this batch (limiter, budget, hook)."""
        operation, session = prepare_cancel(
            task_id,  # validated by `_entries`
            self._options,
            limiter=self._limiter,
            budget=self._budget,
            # One wire per worker thread: its connections are kept alive
            # from one task to the next instead of reopened for every request.
            wire=self._worker_wire(),
            cleared=lambda task: self._cleared(key, task),
        )
        return operation, session

    def _worker_wire(self) -> Wire:
        """This worker thread's connection pool (made on its first task, closed with the batch)."""
        wire: Wire | None = getattr(self._local, "wire", None)
        if wire is None:
            wire = self._local.wire = Wire()
            with self._lock:
                self._wires.append(wire)
        return wire

    def _close_wires(self) -> None:
        with self._lock:
            wires, self._wires = self._wires, []
        for wire in wires:
            wire.close()

    def _cleared(self, key: str, task: EvalTask) -> None:
        """`Session.cleared`: the pre-check allows a stop of `task` (given as `key`).

        Raises:
            DuplicateTaskError: another id of this batch names the same task
                and was cleared first; nothing is sent for this one.
            _JournalFailed: the intent could not be written; nothing is sent.
        """
        id_str = getattr(task, "id_str", None)
        id_int = getattr(task, "id_int", None)
        names = {key, task.task_id}
        if isinstance(id_str, str) and id_str:
            names.add(id_str)
        if isinstance(id_int, int) and not isinstance(id_int, bool):
            names.add(str(id_int))
        with self._lock:
            for name in names:
                owner = self._owners.get(name)
                if owner is not None and owner != key:
                    raise DuplicateTaskError(key, owner, task.state)
            for name in names:
                self._owners[name] = key
        if self._halted.is_set():
            raise _Halted()
        if self._journal is None or self._dry_run:
            return
        record = intent_record(
            key,
            self._api,
            id_str=id_str if isinstance(id_str, str) else None,
            id_int=id_int if isinstance(id_int, int) and not isinstance(id_int, bool) else None,
        )
        try:
            self._journal.write(record)
        except OSError as error:
            raise _JournalFailed(error) from error

    def _abort(self, reason: str, exit_code: int) -> None:
        """Start no more tasks: what failed this one would fail every other."""
        with self._lock:
            if self._aborted is not None or self._stop_why is not None:
                return
            self._aborted = reason
            self._stop_why, self._stop_code = reason, exit_code
        # Info, not error: the failed task's own line already says what happened.
        _logging.event("info", BATCH_ABORTED_EVENT, reason=reason)

    # -- reporting (any thread) --------------------------------------------------

    def _report_not_started(self, key: str) -> None:
        why = self._stop_why or "stopped"
        self._settle(TaskReport(key, error=NotStartedError(key, why, self._stop_code)))

    def _settle(self, report: TaskReport, *, invalid: bool = False) -> None:
        """Journal, count, report: one id is finished."""
        not_started = isinstance(report.error, NotStartedError)
        with self._lock:
            if self._journal is not None:
                facts = report.facts()
                if invalid:
                    facts.update(
                        task_id=self._redactor(facts["task_id"]),
                        error=self._redactor(facts["error"]),
                    )
                self._journal.write(
                    final_record(facts, attempts=report.attempts, api=self._api),
                    # Only records that follow a possible stop must reach the disk at once.
                    sync=not (not_started or invalid),
                )
            self._counts[report.label] += 1
            self._exit_code = max(self._exit_code, report.exit_code)
            self._handled += 1
            self._requests += report.attempts
            if invalid:
                self._invalid.append(report.task_id)
            elif not_started:
                self._not_started += 1
            elif report.exit_code != EXIT_OK:
                self._failed.append(report.task_id)
            if report.exit_code != EXIT_OK and not not_started:
                self._failures += 1
            if self._on_report is not None:
                self._on_report(report)
            self._emit_progress()

    def _count_handled(self) -> None:
        with self._lock:
            self._handled += 1
            self._emit_progress()

    def _progress_now(self) -> None:
        with self._lock:
            self._emit_progress()

    def _emit_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(
                BatchProgress(self._handled, self._total, self._failures, self._requests)
            )
