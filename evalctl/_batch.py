"""Cancelling many tasks: worker threads sharing one rate limit, one retry budget, one journal.

The calling thread reads the ids — streamed, de-duplicated and validated as
they come — into a small bounded queue; `concurrency` worker threads take
them and run each task's cancel operation, the very operation a single
`cancel_eval_task` runs (`_facade.prepare_cancel` + `_runner.run`), so every
decision stays in `_operations`. All requests of the batch, pre-check reads
and stops alike, share one `AdaptiveRateLimiter` and one `RetryBudget`
(`_limits`). Only counts, the ids of failed tasks and the set of ids seen
(for de-duplication: one string per id) are kept, never the per-task
results, and the reader is never more than the queue's length ahead of the
workers. `strict` is the exception: it reads every id before sending anything.

Each finished task is written to the journal (if any), then reported
(`on_report`), then counted (`on_progress`), under one lock: callbacks are
never called concurrently. They run on worker threads (on the calling
thread for invalid ids, reported as they are read).

Ctrl-C (KeyboardInterrupt in the calling thread): no new task starts, the
tasks in flight finish and are journalled and reported, and the result says
`interrupted` (exit code 130). A second Ctrl-C stops waiting for them and
propagates; their journal intents tell a resumed run which stops may have
been sent.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Final

from evalctl import _logging
from evalctl._api import ApiVersion
from evalctl._config import DEFAULT_WAIT_TIMEOUT_S, RetryPolicy, get_clock
from evalctl._errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    AuthenticationError,
    ConfigurationError,
    EvalctlError,
    InvalidTaskIdError,
)
from evalctl._facade import prepare_cancel
from evalctl._ids import TaskId, validate_task_id
from evalctl._journal import Journal, final_record, intent_record, read_journal
from evalctl._limits import RetryBudget, check_qps
from evalctl._model import CancelResult
from evalctl._options import GivenKeys, Options, check_options
from evalctl._runner import RateLimiter, Session, run
from evalctl._sharedlimit import Fallback, make_limiter
from evalctl._transport import Wire

DEFAULT_CONCURRENCY: Final = 4
MAX_CONCURRENCY: Final = 256
#: Ids waiting in the queue per worker: enough that no worker waits for the
#: reader, few enough that the reader stays just ahead of the workers.
QUEUE_PER_WORKER: Final = 2
#: How often blocked threads look up (stop requested, reading finished).
POLL_S: Final = 0.05

BATCH_EVENT: Final = "evalctl.batch"
BATCH_INTERRUPTED_EVENT: Final = "evalctl.batch_interrupted"
BATCH_ABORTED_EVENT: Final = "evalctl.batch_aborted"
TASK_CRASHED_EVENT: Final = "evalctl.batch_task_crashed"

@dataclass(frozen=True)
class TaskReport:
    """How one task of a batch ended: a result, or an error."""

    task_id: str
    result: CancelResult | None = None
    error: EvalctlError | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.error is None else self.error.exit_code

    @property
    def label(self) -> str:
        """The outcome, or the error's kind."""
        if self.result is not None:
            return self.result.outcome
        assert self.error is not None
        return self.error.kind


@dataclass(frozen=True)
class BatchProgress:
    """Where a running batch is, for a progress bar (`on_progress`).

    Attributes:
        done: Tasks reported so far, invalid ids included.
        total: How many tasks will be reported; None until every id has been read.
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
        total: Distinct ids read (= reported + `skipped` + `not_started`).
        counts: Reports per outcome or error kind.
        failed: Ids of tasks that ended in an error (invalid ids excepted).
        invalid: Ids rejected by validation; nothing was sent for them.
        skipped: Ids the journal already settled (`resume=True`).
        duplicates: Repeated ids, ignored.
        interrupted: Ctrl-C stopped the batch before every id was run.
        exit_code: The highest exit code of the reports; 130 when interrupted.
        not_started: Valid ids that were never started (interrupted, `strict`
            refused the batch, or it was aborted).
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
    """Cancel many tasks; each one read ends in exactly one `TaskReport`.

    Every task is cancelled exactly as `cancel_eval_task` would (pre-check
    first; manual tasks refused). Invalid ids are reported (exit code 2) as
    they are read while the valid ones are processed.

    Args:
        task_ids: Ids, streamed (a generator over a file is fine); repeats are ignored.
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
        journal: Path of a JSON-lines journal: one fsynced record per
            finished task (and one right before each task's first stop).
        resume: Skip the ids the journal already settled (see `_journal`):
            any outcome but `dry_run`, any error but `retry_exhausted` and
            `transport`, which are tried again.
        strict: Read and validate every id first; if any is invalid, report
            the invalid ones and send nothing (exit code 2).
        on_report: Called with each finished task's report.
        on_progress: Called after each report, and once the total is known.

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
    )
    source: Iterable[TaskId] | None = None
    interrupted = False
    if strict:
        source = batch.read_strictly(task_ids)
    if source is not None or not strict:
        if journal is not None:
            # Locked before it is read: no other run appends in between.
            batch.journal = Journal(journal)
            if resume:
                try:
                    batch.settled = read_journal(journal).settled
                except BaseException:
                    batch.journal.close()
                    raise
        interrupted = batch.execute(task_ids if source is None else source, checked=strict)
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


class _JournalFailed(Exception):
    """Internal: writing an intent failed; the stop was not sent."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


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
    ) -> None:
        self._options = options
        self._api = api
        self._dry_run = dry_run
        self._limiter = limiter
        self._budget = budget
        self._workers = workers
        self._on_report = on_report
        self._on_progress = on_progress
        self.journal: Journal | None = None
        self.settled: set[str] = set()
        # The reader's state (calling thread only).
        self._seen: set[str] = set()
        self._duplicates = 0
        self._skipped = 0
        self._accepted = 0
        # Shared state, under _lock.
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failed: list[str] = []
        self._invalid: list[str] = []
        self._exit_code = EXIT_OK
        self._done = 0
        self._finished = 0  # valid tasks reported
        self._failures = 0
        self._requests = 0
        self._total: int | None = None
        self._fatal: BaseException | None = None
        self._queue: queue.Queue[TaskId] = queue.Queue(maxsize=QUEUE_PER_WORKER * workers)
        self._stop = threading.Event()
        self._fed = threading.Event()
        self._local = threading.local()
        self._aborted: str | None = None
        self._threads: list[threading.Thread] = []

    # -- the calling thread ----------------------------------------------------

    def read_strictly(self, task_ids: Iterable[object]) -> list[TaskId] | None:
        """Read and validate every id; None (after reporting them) if any is invalid."""
        valid: list[TaskId] = []
        bad: list[tuple[str, InvalidTaskIdError]] = []
        for raw in task_ids:
            key = self._first_time(raw)
            if key is None:
                continue
            try:
                valid.append(validate_task_id(raw, self._api))
            except InvalidTaskIdError as error:
                bad.append((key, error))
        if not bad:
            return valid
        with self._lock:
            self._total = len(bad)
        for key, invalid in bad:
            self._report_invalid(key, invalid)
        self._accepted = len(valid)
        return None

    def execute(self, task_ids: Iterable[object], *, checked: bool) -> bool:
        """Run the workers over `task_ids`; return whether Ctrl-C interrupted the batch."""
        self._threads = [
            threading.Thread(target=self._work, name=f"evalctl-batch-{n}", daemon=True)
            for n in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()
        interrupted = False
        try:
            self._feed(task_ids, checked=checked)
            self._join()
        except KeyboardInterrupt:
            interrupted = True
            self._stop.set()
            _logging.event(
                "warning",
                BATCH_INTERRUPTED_EVENT,
                detail="no new task starts; waiting for the tasks in flight",
            )
            # A second Ctrl-C propagates from here, the journal left open
            # for the workers still writing (the process is going away).
            self._join()
        except BaseException:
            self._stop.set()
            self._join()
            self._close_journal()
            raise
        self._close_journal()
        if self._fatal is not None:
            raise self._fatal
        return interrupted

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
                not_started=self._accepted - self._finished,
                requests=self._requests,
                elapsed=elapsed,
                aborted=self._aborted,
            )

    def _feed(self, task_ids: Iterable[object], *, checked: bool) -> None:
        for raw in task_ids:
            if self._stop.is_set():
                return
            task_id = self._admit(raw, checked=checked)
            if task_id is None:
                continue
            while True:
                try:
                    self._queue.put(task_id, timeout=POLL_S)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        return
        self._fed.set()
        with self._lock:
            self._total = self._accepted + len(self._invalid)
            if self._on_progress is not None:
                self._on_progress(self._progress())

    def _admit(self, raw: object, *, checked: bool) -> TaskId | None:
        """The id to run, or None: a repeat, invalid (reported here) or settled."""
        if checked:
            task_id: TaskId = raw  # type: ignore[assignment]
            key = str(task_id)
        else:
            found = self._first_time(raw)
            if found is None:
                return None
            key = found
            try:
                task_id = validate_task_id(raw, self._api)
            except InvalidTaskIdError as error:
                self._report_invalid(key, error)
                return None
        if key in self.settled:
            self._skipped += 1
            return None
        self._accepted += 1
        return task_id

    def _first_time(self, raw: object) -> str | None:
        key = str(raw)
        if key in self._seen:
            self._duplicates += 1
            return None
        self._seen.add(key)
        return key

    def _report_invalid(self, key: str, error: InvalidTaskIdError) -> None:
        # Not journalled: an invalid id names no task, and a resumed run
        # reports it again without sending anything.
        self._settle(TaskReport(key, error=error), invalid=True)

    def _join(self) -> None:
        for thread in self._threads:
            while thread.is_alive():
                thread.join(POLL_S * 2)

    def _close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # -- the workers -------------------------------------------------------------

    def _work(self) -> None:
        self._local.wire = Wire()  # this worker's connection pool
        try:
            while not self._stop.is_set():
                try:
                    task_id = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    if self._fed.is_set() and self._queue.empty():
                        return
                    continue
                if self._stop.is_set():
                    return
                self._run(task_id)
        # BLE001: a journal or callback failure ends the batch; it is raised
        # in the calling thread once the other tasks in flight have finished.
        except BaseException as exc:  # noqa: BLE001
            with self._lock:
                if self._fatal is None:
                    self._fatal = exc.error if isinstance(exc, _JournalFailed) else exc
            self._stop.set()
        finally:
            self._local.wire.close()

    def _worker_wire(self) -> Wire:
        wire: Wire = self._local.wire
        return wire

    def _run(self, task_id: TaskId) -> None:
        key = str(task_id)
        session: Session | None = None
        try:
            operation, session = prepare_cancel(
                task_id,  # validated by `_admit` or `read_strictly`
                self._options,
                limiter=self._limiter,
                budget=self._budget,
                # One wire per worker thread: its connections are kept alive
                # from one task to the next instead of reopened for every request.
                wire=self._worker_wire(),
                cleared=(
                    (lambda _task: self._intent(key))
                    if self.journal is not None and not self._dry_run
                    else None
                ),
            )
            report = TaskReport(key, result=run(operation, session))
        except _JournalFailed:
            raise
        except AuthenticationError as error:
            report = TaskReport(key, error=error)
            self._abort(f"authentication failed ({error.http_status})")
        except EvalctlError as error:
            report = TaskReport(key, error=error)
        # BLE001: a bug in one task must not end the others; it is reported
        # as that task's failure (only the type: a message could hold anything).
        except Exception as exc:  # noqa: BLE001
            _logging.event("error", TASK_CRASHED_EVENT, task_id=key, error=type(exc).__name__)
            report = TaskReport(key, error=EvalctlError(f"unexpected {type(exc).__name__}"))
        self._settle(
            report,
            log_ids=session.log_ids if session is not None else (),
            attempts=session.attempts if session is not None else 0,
        )

    def _abort(self, reason: str) -> None:
        """Start no more tasks: what failed this one would fail every other."""
        with self._lock:
            if self._aborted is not None:
                return
            self._aborted = reason
        _logging.event("error", BATCH_ABORTED_EVENT, reason=reason)
        self._stop.set()

    def _intent(self, key: str) -> None:
        assert self.journal is not None
        try:
            self.journal.write(intent_record(key, self._api))
        except OSError as error:
            raise _JournalFailed(error) from error

    def _settle(
        self,
        report: TaskReport,
        *,
        invalid: bool = False,
        log_ids: Iterable[str] = (),
        attempts: int = 0,
    ) -> None:
        """Journal, count, report: one task is finished (or one id was invalid)."""
        with self._lock:
            if not invalid and self.journal is not None:
                self.journal.write(
                    final_record(
                        report.task_id,
                        report.result,
                        report.error,
                        log_ids=list(log_ids),
                        attempts=attempts,
                        api=self._api,
                    )
                )
            self._counts[report.label] += 1
            self._exit_code = max(self._exit_code, report.exit_code)
            self._done += 1
            self._requests += attempts
            if invalid:
                self._invalid.append(report.task_id)
            else:
                self._finished += 1
            if report.exit_code != EXIT_OK:
                self._failures += 1
                if not invalid:
                    self._failed.append(report.task_id)
            if self._on_report is not None:
                self._on_report(report)
            if self._on_progress is not None:
                self._on_progress(self._progress())

    def _progress(self) -> BatchProgress:
        return BatchProgress(self._done, self._total, self._failures, self._requests)
