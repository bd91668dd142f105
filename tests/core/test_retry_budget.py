"""The batch's retry budget bounds every route, also when only one of them is down.

A stop route that fails while the detail reads succeed must not be paid for
by those successes: for n tasks the stop route receives at most n first
attempts plus the budget's retries (RETRY_BUDGET / RETRY_COST = 100).
"""

from __future__ import annotations

import pytest

from core.support import APIS, ApiSpec
from evalctl import cancel_eval_tasks
from evalctl._core._limits import RETRY_BUDGET, RETRY_COST, RetryBudget
from evalctl._wire._transport import Failure
from evalctl.emulator import Emulator

HTTP_503 = Failure("http", "Service Unavailable", http_status=503)
BUDGET_RETRIES = RETRY_BUDGET // RETRY_COST


@pytest.fixture(params=["v1", "v2"])
def api(request: pytest.FixtureRequest) -> ApiSpec:
    return APIS[request.param]


@pytest.mark.parametrize(("fault", "tasks"), [("http_503", 120), ("reset", 60)])
def test_a_stop_route_outage_costs_one_stop_per_task_plus_the_budget(
    emulator: Emulator, api: ApiSpec, fault: str, tasks: int
) -> None:
    """Only the stop route down: n + 100 stops exactly, however many detail reads succeed."""
    ids = [emulator.add_task() for _ in range(tasks)]
    emulator.inject(fault, times=100_000, route=api.stop_fault_route)

    result = cancel_eval_tasks(ids, api=api.name, concurrency=4)

    stops = len(emulator.requests_to(api.stop_route, api.stop_action or None))
    assert stops == len(emulator.stop_requests())
    assert tasks + BUDGET_RETRIES == stops
    assert {"retry_exhausted": tasks} == dict(result.counts)
    # A reset may have been applied: each one is followed by a verification read.
    reads = tasks if fault == "http_503" else tasks + stops
    assert reads == len(emulator.requests) - stops
    assert [0] * tasks == [emulator.task(task_id).stop_requests for task_id in ids]


def test_successes_on_one_route_do_not_refill_another() -> None:
    """Refunds go to the route that succeeded; the failing route's bucket stays spent."""
    budget = RetryBudget()
    stop, detail = "/stop", "/detail"

    paid = [budget.withdraw(HTTP_503, stop) for _ in range(BUDGET_RETRIES + 1)]
    for _ in range(50):
        budget.refund(detail)

    assert paid == [True] * BUDGET_RETRIES + [False]
    assert (budget.available_for(stop), budget.available_for(detail)) == (0, RETRY_BUDGET)
    assert budget.withdraw(HTTP_503, stop) is False
    budget.refund(stop)
    assert budget.available_for(stop) == 1
