"""What the command line prints: one line per task, for people or as JSON.

Results go to stdout as each task finishes (a batch reports in completion
order, so there is no table to wait for); errors and the closing summary go
to stderr. Every piece of text that came from a server or an exception passes
the CLI's redactor on the way out.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from evalctl._base._api import ordered_modes
from evalctl._cli._logging import redact_text, wants_color, write_stderr

if TYPE_CHECKING:
    # Types only: the library imports qianfan, which the CLI defers until a
    # command needs it (a usage error should not pay for it).
    from evalctl._base._errors import EvalctlError
    from evalctl._base._model import EvalTask
    from evalctl._batch._run import BatchResult, TaskReport

PROG: Final = "evalctl"

# Column widths of the human lines; longer values push the rest right.
_ID_WIDTH: Final = 17
_STATES_WIDTH: Final = 20
_LABEL_WIDTH: Final = 18
_MODES_WIDTH: Final = 14
# The summary names at most this many failed ids.
_MAX_FAILED_SHOWN: Final = 10

_GREEN: Final = "32"
_YELLOW: Final = "33"
_RED: Final = "31"
_COLOR_OF: Final = {
    "cancelled": _GREEN,
    "dry_run": _GREEN,
    "already_stopped": _YELLOW,
    "not_running": _YELLOW,
    "duplicate": _YELLOW,
}


@dataclass(frozen=True)
class TaskView:
    """One task's line, whatever produced it: the fields both renderings share.

    `facts` are the task's ``--json`` fields, the very ones the journal records
    (`_batch._run.task_facts`); the human line is drawn from them too.
    """

    task_id: str
    label: str
    facts: Mapping[str, Any]
    error: EvalctlError | None = None

    @classmethod
    def of(cls, report: TaskReport) -> TaskView:
        return cls(report.task_id, report.label, report.facts(), report.error)

    @classmethod
    def of_error(cls, task_id: str, error: EvalctlError) -> TaskView:
        from evalctl._batch._run import task_facts

        return cls(task_id, error.kind, task_facts(task_id, None, error), error)

    @property
    def state_before(self) -> str | None:
        return self.facts.get("state_before")

    @property
    def state_after(self) -> str | None:
        return self.facts.get("state_after")

    @property
    def log_ids(self) -> tuple[str, ...]:
        return tuple(self.facts.get("log_ids", ()))

    @property
    def exit_code(self) -> int:
        return int(self.facts.get("exit_code", 0))

    @property
    def is_failure(self) -> bool:
        """Printed as an error line (anything with an ``error`` field)."""
        return "error" in self.facts


class Output:
    """Writes results and errors; safe to call from a batch's worker threads.

    Args:
        json_mode: one JSON object per task on stdout, nothing else there.
        quiet: no warnings and no summary on stderr (errors still print).
        inline_errors: failed tasks as rows on stdout with the others (the
            demo's narrative) instead of ``evalctl: error:`` lines on stderr.
        stdout, stderr: where to write; the process's streams by default.
        indent: put before every task row.
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        inline_errors: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        indent: str = "",
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.inline_errors = inline_errors
        # None: the process's stream, looked up at each write, so that a
        # progress display that redirects sys.stdout/err gets the lines.
        self._out_stream = stdout
        self._err = stderr
        self._indent = indent
        self._color = not json_mode and wants_color(self._out)
        self._lock = threading.Lock()
        self._out_closed = False

    # -- cancel --------------------------------------------------------------

    def task(self, view: TaskView) -> None:
        """One finished task."""
        if self.json_mode:
            # stdout has the task's one line; stderr the error's, as without --json.
            self._stdout(json.dumps(_task_json(view), ensure_ascii=False))
            if view.is_failure:
                self.error(_task_error_text(view))
        elif not view.is_failure:
            self._stdout(self._task_row(view, _row_detail(view)))
        elif self.inline_errors:
            self._stdout(self._task_row(view, _task_error_text(view)))
        else:
            self.error(_task_error_text(view))

    def summary(self, result: BatchResult) -> None:
        """The closing line on stderr: counts per outcome and the failed ids."""
        if self.quiet:
            return
        self._stderr(f"{PROG}: {summary_text(result)}")

    # -- status --------------------------------------------------------------

    def status(self, task: EvalTask, verdict: str, allowed: bool, reason: str | None) -> None:
        """A task read by ``evalctl status``, with what a cancel would do."""
        if self.json_mode:
            self._stdout(
                json.dumps(
                    {
                        "task_id": task.task_id,
                        "name": _clean(task.name),
                        "state": _clean(task.state),
                        "eval_modes": ordered_modes(task.eval_modes),
                        "includes_manual": task.includes_manual,
                        "stop_allowed": allowed,
                        "verdict": verdict,
                        "reason": _clean(reason),
                        "log_id": task.log_id,
                    },
                    ensure_ascii=False,
                )
            )
            return
        modes = ",".join(ordered_modes(task.eval_modes)) or "-"
        if allowed:
            would = "stop allowed"
        elif verdict in ("already_stopped", "not_running"):
            would = f"{verdict}: nothing to stop"
        else:
            would = f"stop refused ({verdict}): {reason}"
        name = f'  "{task.name}"' if task.name else ""
        row = (
            f"{task.task_id:<{_ID_WIDTH}} {task.state or '-':<{_STATES_WIDTH}}"
            f" {modes:<{_MODES_WIDTH}} {redact_text(would)}{redact_text(name)}"
        )
        self._stdout(self._indent + row)

    def status_error(self, task_id: str, error: EvalctlError) -> None:
        """A task ``evalctl status`` could not read."""
        view = TaskView.of_error(task_id, error)
        if self.json_mode:
            payload = _task_json(view)
            del payload["state_before"], payload["state_after"]
            self._stdout(json.dumps(payload, ensure_ascii=False))
        self.error(_task_error_text(view))

    # -- plain text ----------------------------------------------------------

    def line(self, text: str = "") -> None:
        """A line of prose on stdout (the demo's narrative); never in JSON mode."""
        if not self.json_mode:
            self._stdout(text)

    def error(self, message: str) -> None:
        """``evalctl: error: <message>`` on stderr."""
        self._stderr(f"{PROG}: error: {redact_text(message)}")

    def warning(self, message: str) -> None:
        """``evalctl: warning: <message>`` on stderr, unless quiet."""
        if not self.quiet:
            self._stderr(f"{PROG}: warning: {redact_text(message)}")

    # -- plumbing ------------------------------------------------------------

    def _task_row(self, view: TaskView, detail: str) -> str:
        states = _states_text(view.state_before, view.state_after)
        label = f"{view.label:<{_LABEL_WIDTH}}"
        if self._color:
            code = _COLOR_OF.get(view.label, _RED)
            label = f"\x1b[{code}m{label}\x1b[0m"
        return (
            f"{self._indent}{view.task_id:<{_ID_WIDTH}} {states:<{_STATES_WIDTH}}"
            f" {label} {redact_text(detail)}".rstrip()
        )

    @property
    def _out(self) -> TextIO:
        return sys.stdout if self._out_stream is None else self._out_stream

    def _stdout(self, text: str) -> None:
        with self._lock:
            if self._out_closed:
                return
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except BrokenPipeError:
                # The reader went away (`| head`); the batch still finishes and
                # the exit code still tells how. Later writes are dropped.
                self._out_closed = True
                _silence(self._out)

    def _stderr(self, text: str) -> None:
        write_stderr(text, self._err)


def _task_json(view: TaskView) -> dict[str, Any]:
    """The task's facts, every server-provided text redacted."""
    payload = dict(view.facts)
    for name in ("error", "state_before", "state_after"):
        if name in payload:
            payload[name] = _clean(payload[name])
    return payload


def _task_error_text(view: TaskView) -> str:
    """The error line: the same text as the ``error`` of ``--json`` and the journal."""
    return str(view.facts["error"])


def _row_detail(view: TaskView) -> str:
    """What follows the label on a task's human line."""
    parts = []
    if "duplicate_of" in view.facts:
        parts.append(f"same task as {view.facts['duplicate_of']}: handled once")
    if "by" in view.facts:
        parts.append(f"stopped by an {view.facts['by']}")
    if view.log_ids:
        parts.append(_log_ids_text(view.log_ids))
    return "; ".join(parts)


def summary_text(result: BatchResult) -> str:
    """E.g. ``3 tasks: 1 cancelled, 1 manual_evaluation, 1 not_found; failed: ame-b, ame-c``."""
    noun = "task" if result.total == 1 else "tasks"
    parts = [f"{result.total} {noun}: {_counts_text(result.counts) or 'none finished'}"]
    failed = [*result.invalid, *result.failed]
    if failed:
        shown = ", ".join(failed[:_MAX_FAILED_SHOWN])
        more = len(failed) - _MAX_FAILED_SHOWN
        parts.append(f"failed: {shown}" + (f" (+{more} more)" if more > 0 else ""))
    if result.duplicates:
        parts.append(f"{result.duplicates} repeated id(s) ignored")
    if result.skipped:
        parts.append(f"{result.skipped} skipped (settled in the journal)")
    if result.interrupted:
        parts.append("interrupted")
    if result.aborted:
        parts.append(f"stopped early: {result.aborted}")
    return redact_text("; ".join(parts))


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {label}" for label, count in sorted(counts.items()) if count)


def _states_text(before: str | None, after: str | None) -> str:
    before_text = _clean(before) or "-"
    if after is None or after == before:
        return before_text
    return f"{before_text} → {_clean(after)}"


def _log_ids_text(log_ids: tuple[str, ...]) -> str:
    if not log_ids:
        return ""
    return ("log_id " if len(log_ids) == 1 else "log_ids ") + ", ".join(log_ids)


def _clean(text: str | None) -> str | None:
    return None if text is None else redact_text(text)


def _silence(stream: TextIO) -> None:
    """Point the closed stdout's file descriptor at /dev/null so exit does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
