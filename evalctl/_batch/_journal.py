"""The batch journal: append-only JSON lines, each record fsynced before the batch moves on.

One JSON object per line (UTF-8), two kinds of record::

    {"record": "intent", "task_id": "ame-…", "id_str": "ame-…", "id_int": 42,
     "api": "v1", "time": "2025-…Z"}
    {"record": "final", "task_id": "ame-…", "outcome": "cancelled", "exit_code": 0,
     "state_before": "Doing", "state_after": "Stopping", "log_ids": ["…", "…"],
     "attempts": 2, "api": "v1", "time": "2025-…Z"}

An intent is written (and fsynced) once the pre-check has cleared a task,
right before its first stop request is sent, so after a crash the journal
tells which stops may have reached the server; it names the task as the
detail did (`id_str`, `id_int`) as well as the id given. A final record is
written when a task finishes; its fields are those of the task's ``--json``
line (a failed task has ``"error"``, ``"error_kind"`` and ``"exit_code"``
instead of ``"outcome"``), plus ``attempts``, ``api`` and ``time``.
No record carries a credential: error messages are redacted where they are
made, and nothing else from a request is written.

Resume by fact: a final record settles its task only when it states a fact
about the task (`SETTLING_OUTCOMES`, `SETTLING_ERRORS`); everything else (a
refused key, an undecided pre-check, an invalid response, exhausted retries,
a lost connection, a dry run, an unconfirmed stop, not started, ...) says
nothing about the task, and `--resume` runs it again.

Only one process writes a journal at a time (an exclusive ``flock`` where the
platform has it). A crash (``kill -9``) can tear the last line: readers skip
lines that are not JSON objects, and the writer starts on a fresh line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import Any, Final

from evalctl._base import _logging
from evalctl._base._errors import ConfigurationError

INTENT: Final = "intent"
FINAL: Final = "final"
#: Final records that settle a task: they state a fact about it. Any other
#: record (see the module docstring) leaves the task to a resumed run.
SETTLING_OUTCOMES: Final = frozenset({"cancelled", "already_stopped", "not_running", "duplicate"})
SETTLING_ERRORS: Final = frozenset({"manual_evaluation", "not_found"})

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
        intents: Every name of the tasks with an intent record (the id given,
            and the detail's `id_str`/`id_int`): a stop may have been sent.
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
                state.intents.update(
                    str(record[name])
                    for name in ("id_str", "id_int")
                    if isinstance(record.get(name), str | int)
                    and not isinstance(record.get(name), bool)
                )
    if state.unreadable:
        _logging.event("warning", UNREADABLE_EVENT, path=os.fspath(path), lines=state.unreadable)
    return state


def settles(record: Mapping[str, Any]) -> bool:
    """Whether a final record states a fact about its task, so a resumed run skips it."""
    if "outcome" in record:
        return record["outcome"] in SETTLING_OUTCOMES
    return record.get("error_kind") in SETTLING_ERRORS


def intent_record(
    task_id: str, api: str, *, id_str: str | None = None, id_int: int | None = None
) -> dict[str, Any]:
    """The record written once the pre-check cleared a task, right before its first stop."""
    return {
        "record": INTENT,
        "task_id": task_id,
        "id_str": id_str,
        "id_int": id_int,
        "api": api,
        "time": _now(),
    }


def final_record(fields: Mapping[str, Any], *, attempts: int, api: str) -> dict[str, Any]:
    """The record of a finished task: `fields` (those of its ``--json`` line) and bookkeeping."""
    return {"record": FINAL, **fields, "attempts": attempts, "api": api, "time": _now()}


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
        self._unsynced = False

    def write(self, record: Mapping[str, Any], *, sync: bool = True) -> None:
        """Append one record and fsync it (with `sync=False`: at `close`).

        Records that guard no stop (ids never started) need not cost an fsync each.

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
            if sync:
                os.fsync(self._fd)
            self._unsynced = not sync

    def close(self) -> None:
        """Fsync what is left, release the lock and close the file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._unsynced:
                    os.fsync(self._fd)
            finally:
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
