"""`plan_selection`: which listed tasks a selection would stop, and why the others are skipped."""

from __future__ import annotations

import pytest

from evalctl import ListedTask
from evalctl._client._listing import PlanEntry, plan_entry, plan_selection


def listed(state: str, eval_type: str = "auto") -> ListedTask:
    return ListedTask("ame-x1", "nightly", eval_type, state)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (listed("Running"), ("stop", None, None)),
        (listed("Queued"), ("stop", None, None)),
        (listed("Running", "manual"), ("skip", "manual type", "skipped")),
        (listed("Running", "Auto"), ("skip", "evalType 'Auto' is not auto", "skipped")),
        (listed("RunningWithManualBegin"), ("skip", "manual evaluation in progress", "skipped")),
        (
            listed("RunningWithMetricsCalculating"),
            ("skip", "manual evaluation in progress", "skipped"),
        ),
        (listed("Stopping"), ("skip", "already stopped", "already_stopped")),
        (listed("Stopped"), ("skip", "already stopped", "already_stopped")),
        (listed("Successed"), ("skip", "finished", "not_running")),
        (listed("Failed"), ("skip", "finished", "not_running")),
        (listed("Paused"), ("skip", "state not recognised", "skipped")),
        (listed(""), ("skip", "state not recognised", "skipped")),
    ],
    ids=lambda value: value.state + "/" + value.eval_type if isinstance(value, ListedTask) else "",
)
def test_only_automatic_running_tasks_are_planned_for_a_stop(
    task: ListedTask, expected: tuple[str, str | None, str | None]
) -> None:
    """Manual type first, then the state; an unknown state is skipped, not guessed."""
    entry = plan_entry(task)

    assert (entry.action, entry.reason, entry.outcome) == expected


def test_the_plan_keeps_the_listing_order_and_splits_it() -> None:
    """`to_stop` and `skipped` partition the entries, each in listing order."""
    tasks = [
        ListedTask("ame-a1", "a", "auto", "Running"),
        ListedTask("ame-b1", "b", "manual", "Running"),
        ListedTask("ame-c1", "c", "auto", "Queued"),
        ListedTask("ame-d1", "d", "auto", "Stopped"),
    ]

    plan = plan_selection(tasks)

    assert [entry.task for entry in plan.entries] == tasks
    assert plan.to_stop == (tasks[0], tasks[2])
    assert plan.skipped == (
        PlanEntry(tasks[1], "skip", "manual type", "skipped"),
        PlanEntry(tasks[3], "skip", "already stopped", "already_stopped"),
    )
