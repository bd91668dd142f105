"""Cancelling many tasks (interface; a sequential first implementation).

TODO(batch issue): concurrency, shared rate limit and retry budget, journal,
resume, interruption. The signature and result types below are the contract
the CLI builds on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike

from evalctl._api import ApiVersion
from evalctl._config import RetryPolicy
from evalctl._errors import EXIT_OK, EvalctlError, InvalidTaskIdError
from evalctl._facade import prepare_cancel
from evalctl._model import CancelResult
from evalctl._runner import run


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
class BatchResult:
    """What a batch did, in counts (per-task reports go to `on_report`)."""

    total: int
    counts: Mapping[str, int] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    skipped: int = 0
    duplicates: int = 0
    interrupted: bool = False
    exit_code: int = EXIT_OK


def cancel_eval_tasks(
    task_ids: Iterable[object],
    *,
    dry_run: bool = False,
    wait: bool = False,
    wait_timeout: float = 600.0,
    retry: RetryPolicy | None = None,
    api: ApiVersion = "v1",
    ak: str | None = None,
    sk: str | None = None,
    concurrency: int = 4,
    qps: float | None = None,
    journal: str | PathLike[str] | None = None,
    resume: bool = False,
    strict: bool = False,
    on_report: Callable[[TaskReport], None] | None = None,
) -> BatchResult:
    """Cancel many tasks; each ends in exactly one `TaskReport`."""
    counts: Counter[str] = Counter()
    failed: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    exit_code = EXIT_OK
    for raw in task_ids:
        key = str(raw)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        try:
            operation, session = prepare_cancel(
                raw,
                dry_run=dry_run,
                wait=wait,
                wait_timeout=wait_timeout,
                retry=retry,
                api=api,
                ak=ak,
                sk=sk,
            )
            report = TaskReport(key, result=run(operation, session))
        except InvalidTaskIdError as error:
            invalid.append(key)
            report = TaskReport(key, error=error)
        except EvalctlError as error:
            failed.append(key)
            report = TaskReport(key, error=error)
        counts[report.label] += 1
        exit_code = max(exit_code, report.exit_code)
        if on_report is not None:
            on_report(report)
    return BatchResult(
        total=len(seen),
        counts=dict(counts),
        failed=tuple(failed),
        invalid=tuple(invalid),
        duplicates=duplicates,
        exit_code=exit_code,
    )
