"""The batch's progress bar: a person at a terminal sees done/total, rate, failures.

Only used when stderr is a terminal and the output is not JSON; task lines
and log lines keep printing above the bar (rich redirects sys.stdout and
sys.stderr while it is live, and the CLI's writers look them up per write).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from evalctl._cli._logging import is_terminal

if TYPE_CHECKING:
    from evalctl._batch._run import BatchProgress


class _RateColumn(ProgressColumn):
    """Tasks per second since the batch started."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:.1f} tasks/s")


class BatchProgressBar:
    """Context manager; `advance` is the batch's `on_progress` callback.

    Args:
        total: How many ids there are, when known before the first one is read
            (arguments, a regular file): shown from the first frame.
        dry_run: Label the bar "checking": a dry run stops nothing.
    """

    def __init__(self, total: int | None = None, *, dry_run: bool = False) -> None:
        self._progress = Progress(
            TextColumn("checking" if dry_run else "cancelling"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            # Results print above the bar only when they share its terminal;
            # piped or redirected results must keep going where they were sent.
            redirect_stdout=is_terminal(sys.stdout),
            redirect_stderr=True,
        )
        self._total = total
        self._task = self._progress.add_task("cancel", total=total, failed=0)

    def __enter__(self) -> BatchProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def advance(self, progress: BatchProgress) -> None:
        """Show `progress` (an unknown total stays open until every id has been read)."""
        total = progress.total if progress.total is not None else self._total
        self._progress.update(
            self._task, completed=progress.done, total=total, failed=progress.failed
        )
