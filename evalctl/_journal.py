"""The batch journal: append-only JSON lines, each record fsynced before the batch moves on.

One JSON object per line (UTF-8), two kinds of record::

    {"record": "intent", "task_id": "ame-…", "api": "v1", "time": "2025-…Z"}
    {"record": "final", "task_id": "ame-…", "outcome": "cancelled",
     "exit_code": 0, "state_before": "Doing", "state_after": "Stopping",
     "log_ids": ["…", "…"], "attempts": 2, "api": "v1", "time": "2025-…Z"}

An intent is written (and fsynced) right before a task's first stop request
is sent, so after a crash the journal tells which stops may have reached the
server. A final record is written when a task finishes; a failed task has
``"error"`` (the message) and ``"error_kind"`` instead of ``"outcome"``.
No record carries a credential: error messages are redacted where they are
made, and nothing else from a request is written.

Only one process writes a journal at a time (an exclusive ``flock`` where the
platform has it). A crash (``kill -9``) can tear the last line: readers skip
lines that are not JSON objects, and the writer starts on a fresh line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import Any, Final

from evalctl import _logging
from evalctl._errors import (
    ConfigurationError,
    EvalctlError,
    ManualEvaluationError,
    WaitTimeoutError,
)
from evalctl._model import CancelResult

INTENT: Final = "intent"
FINAL: Final = "final"
#: Final records that do not settle a task: `--resume` runs these again.
#: A dry run decided nothing, and transient trouble may have passed.
UNSETTLED_OUTCOMES: Final = frozenset({"dry_run"})
UNSETTLED_ERRORS: Final = frozenset({"retry_exhausted", "transport"})

UNREADABLE_EVENT: Final = "evalctl.journal_unreadable"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]


@dataclass
class JournalState:
    """What a journal says about earlier runs.

    Attributes:
        settled: Ids with a final record that settles them (see `settles`).
        intents: Ids with an intent record (a stop was about to be sent).
        unreadable: Lines that were not JSON objects (a torn last line).
    """

    settled: set[str] = field(default_factory=set)
    intents: set[str] = field(default_factory=set)
    unreadable: int = 0


def read_journal(path: str | PathLike[str]) -> JournalState:
    """Read a journal line by line; a missing file is an empty journal.

    Raises:
        ConfigurationError: the path cannot be read (a directory, no permission).
    """
    state = JournalState()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; open errors are mapped
    except FileNotFoundError:
        return state
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the journal {os.fspath(path)!r}: {exc.strerror}"
        ) from None
    with handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                state.unreadable += 1
                continue
            if not isinstance(record, dict) or not isinstance(record.get("task_id"), str):
                state.unreadable += 1
                continue
            task_id = record["task_id"]
            if record.get("record") == FINAL and settles(record):
                state.settled.add(task_id)
            elif record.get("record") == INTENT:
                state.intents.add(task_id)
    if state.unreadable:
        _logging.event("warning", UNREADABLE_EVENT, path=os.fspath(path), lines=state.unreadable)
    return state


def settles(record: Mapping[str, Any]) -> bool:
    """Whether a final record means the task needs nothing more from a resumed run."""
    if "outcome" in record:
        return record["outcome"] not in UNSETTLED_OUTCOMES
    return record.get("error_kind") not in UNSETTLED_ERRORS


def intent_record(task_id: str, api: str) -> dict[str, Any]:
    """The record written right before a task's first stop request."""
    return {"record": INTENT, "task_id": task_id, "api": api, "time": _now()}


def final_record(
    task_id: str,
    result: CancelResult | None,
    error: EvalctlError | None,
    *,
    log_ids: Sequence[str],
    attempts: int,
    api: str,
) -> dict[str, Any]:
    """The record of a finished task: its outcome, or its error."""
    record: dict[str, Any] = {"record": FINAL, "task_id": task_id}
    before: str | None = None
    after: str | None = None
    if result is not None:
        record["outcome"] = result.outcome
        record["exit_code"] = 0
        before, after = result.state_before, result.state_after
    elif error is not None:
        record["error"] = str(error)
        record["error_kind"] = error.kind
        record["exit_code"] = error.exit_code
        if isinstance(error, WaitTimeoutError):
            before, after = error.result.state_before, error.result.state_after
        elif isinstance(error, ManualEvaluationError):
            before = after = error.state
    record.update(
        state_before=before,
        state_after=after,
        log_ids=list(log_ids),
        attempts=attempts,
        api=api,
        time=_now(),
    )
    return record


class Journal:
    """An open journal, appended to by many threads; every record is fsynced.

    Raises:
        ConfigurationError: the file cannot be opened, or another process
            holds it.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = os.fspath(path)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        created = not os.path.exists(self.path)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the journal {self.path!r}: {exc.strerror}"
            ) from None
        try:
            _lock(fd, self.path)
            if created:
                _fsync_directory(self.path)
            torn = _ends_without_newline(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._lock = threading.Lock()
        # After a crash the last line may be torn: start on a fresh one.
        self._prefix = b"\n" if torn else b""
        self._closed = False

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and fsync it.

        Raises:
            OSError: the write or the fsync failed (disk full, I/O error).
        """
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            if self._closed:
                raise ValueError("the journal is closed")
            data = memoryview(self._prefix + line.encode("utf-8"))
            self._prefix = b""
            # One write per record (looping only on a short write), so a
            # crash tears at most the line being written.
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
            os.fsync(self._fd)

    def close(self) -> None:
        """Release the lock and close the file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lock(fd: int, path: str) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigurationError(
            f"the journal {path!r} is in use by another evalctl process"
        ) from None


def _ends_without_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def _fsync_directory(path: str) -> None:
    """Make the new file's directory entry durable too (POSIX)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
