"""What ``evalctl list`` and ``evalctl cancel --select`` print, and the confirmation prompt.

Listed tasks go to stdout: a table on a terminal, one tab-separated line per
task otherwise (for ``cut``/``awk``), one JSON object per task with
``--json``. Server-provided text (names, states) passes the CLI's redactor
and loses its control characters on the way out: a task name must not be
able to move the cursor or colour a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, TextIO

from evalctl._cli._logging import redact_text, write_stderr

if TYPE_CHECKING:
    from evalctl._client._listing import ListedTask, PlanEntry, SelectionPlan

PROG: Final = "evalctl"
#: Longest name shown in human output (JSON carries it whole).
MAX_SHOWN_NAME: Final = 120
_ID_WIDTH: Final = 17
_TYPE_WIDTH: Final = 6
_STATE_WIDTH: Final = 14
_LABEL_WIDTH: Final = 18


def clean(text: str, limit: int | None = None) -> str:
    """`text` redacted, with every control character shown as ``?``, cut at `limit`."""
    shown = "".join(char if char.isprintable() else "?" for char in redact_text(text))
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


def task_json(task: ListedTask) -> dict[str, Any]:
    """One listed task as ``evalctl list --json`` prints it."""
    return {
        "task_id": redact_text(task.task_id),
        "name": redact_text(task.name),
        "eval_type": redact_text(task.eval_type),
        "state": redact_text(task.state),
    }


class Printer:
    """Writes lines to stdout; after a broken pipe (``| head``) the rest are dropped."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.closed = False

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def line(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            from evalctl._cli._output import _silence

            _silence(self.stream)


# --- evalctl list ------------------------------------------------------------------


def print_json_lines(tasks: Iterable[ListedTask], printer: Printer) -> int:
    """One JSON object per task, as each page arrives; returns the count."""
    count = 0
    for task in tasks:
        printer.line(json.dumps(task_json(task), ensure_ascii=False))
        count += 1
    return count


def print_plain_lines(tasks: Iterable[ListedTask], printer: Printer) -> int:
    """``task_id<TAB>eval_type<TAB>state<TAB>name`` per task, as each page arrives."""
    count = 0
    for task in tasks:
        values = (task.task_id, task.eval_type, task.state, task.name)
        printer.line("\t".join(clean(value) for value in values))
        count += 1
    return count


def print_table(tasks: Iterable[ListedTask], printer: Printer) -> int:
    """A rich table of the tasks; returns the count.

    Printed once every page is in (or, on an error, with the rows read so far).
    """
    rows: list[ListedTask] = []
    try:
        for task in tasks:
            rows.append(task)
    finally:
        _render_table(rows, printer)
    return len(rows)


def _render_table(rows: list[ListedTask], printer: Printer) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TASK ID", "TYPE", "STATE", "NAME"):
        table.add_column(column, overflow="fold" if column == "NAME" else "ellipsis")
    for task in rows:
        # Text(), not str: a name like "[red]x" is shown, not interpreted as markup.
        table.add_row(
            Text(clean(task.task_id)),
            Text(clean(task.eval_type)),
            Text(clean(task.state)),
            Text(clean(task.name, MAX_SHOWN_NAME)),
        )
    Console(file=printer.stream, highlight=False).print(table)


# --- evalctl cancel --select -------------------------------------------------------


def plan_json(entry: PlanEntry) -> dict[str, Any]:
    """One selected task of a plan (``cancel --select --json`` without ``--yes``)."""
    return {**task_json(entry.task), "plan": entry.action, "reason": entry.reason}


def print_plan(plan: SelectionPlan, printer: Printer, *, json_mode: bool) -> None:
    """The plan: a headline, then one line per selected task (stop or skip, and why)."""
    if json_mode:
        for entry in plan.entries:
            printer.line(json.dumps(plan_json(entry), ensure_ascii=False))
        return
    printer.line(f"Plan: {plan_headline(plan)}")
    for entry in plan.entries:
        task = entry.task
        what = "stop" if entry.action == "stop" else f"skip ({entry.reason})"
        printer.line(
            f"  {clean(task.task_id):<{_ID_WIDTH}} {clean(task.eval_type):<{_TYPE_WIDTH}}"
            f" {clean(task.state):<{_STATE_WIDTH}} {what:<32} {clean(task.name, MAX_SHOWN_NAME)}"
        )


def plan_headline(plan: SelectionPlan) -> str:
    """E.g. ``5 tasks selected: 3 to stop, 2 skipped (1 manual type, 1 finished)``."""
    total = len(plan.entries)
    noun = "task" if total == 1 else "tasks"
    text = f"{total} {noun} selected: {len(plan.to_stop)} to stop"
    skipped = plan.skipped
    if skipped:
        reasons: dict[str, int] = {}
        for entry in skipped:
            reasons[entry.reason or "skipped"] = reasons.get(entry.reason or "skipped", 0) + 1
        detail = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        text += f", {len(skipped)} skipped ({clean(detail)})"
    return text


def print_skipped(entries: Iterable[PlanEntry], printer: Printer, *, json_mode: bool) -> None:
    """The skipped tasks of a plan being acted on, reported from the list (no request sent)."""
    for entry in entries:
        task = entry.task
        if json_mode:
            payload: dict[str, Any] = {
                "task_id": redact_text(task.task_id),
                "outcome": entry.outcome,
                "reason": entry.reason,
                "state_before": redact_text(task.state),
                "state_after": redact_text(task.state),
                "log_ids": [],
                "source": "list",
            }
            printer.line(json.dumps(payload, ensure_ascii=False))
            continue
        printer.line(
            f"{clean(task.task_id):<{_ID_WIDTH}} {clean(task.state):<20}"
            f" {entry.outcome or 'skipped':<{_LABEL_WIDTH}} from the list: {entry.reason}"
        )


def confirm(count: int, stdin: TextIO, stderr: TextIO) -> bool:
    """Ask for the number of tasks to be stopped; True only if exactly that was typed."""
    noun = "task" if count == 1 else "tasks"
    try:
        stderr.write(f"To stop these {count} {noun}, type {count} (anything else aborts): ")
        stderr.flush()
    except (BrokenPipeError, ValueError):
        return False
    answer = stdin.readline()
    return answer.strip() == str(count)


def hint(message: str) -> None:
    """``evalctl: <message>`` on stderr."""
    write_stderr(f"{PROG}: {redact_text(message)}")
