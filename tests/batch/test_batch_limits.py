"""The batch's shared limits on their own: the qps setting and the retry budget.

(The adaptive rate limiter's own tests are in tests/ratelimit/test_adaptive.py.)
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import events

from evalctl import ConfigurationError
from evalctl._core._limits import (
    BUDGET_EVENT,
    RETRY_BUDGET,
    RETRY_COST,
    RetryBudget,
    check_qps,
    retry_cost,
)
from evalctl._wire._transport import Failure

HTTP_503 = Failure("http", "Service Unavailable", http_status=503)
HTTP_429 = Failure("http", "Too Many Requests", http_status=429)
CODE_18 = Failure("envelope", "QPS limit reached", error_code=18)
TIMEOUT = Failure("timeout", "timed out", maybe_applied=True)


@pytest.mark.parametrize("qps", [0, -1, math.inf, math.nan, "10", True])
def test_qps_must_be_a_positive_finite_number(qps: Any) -> None:
    """A qps that cannot pace requests is a configuration error."""
    with pytest.raises(ConfigurationError, match="qps"):
        check_qps(qps)


def test_retry_costs_follow_botocore_with_cheap_throttles() -> None:
    """5 per retry, 10 after a timeout, 1 after a throttle (the limiter paces those)."""
    assert [retry_cost(f) for f in (HTTP_503, TIMEOUT, HTTP_429, CODE_18)] == [5, 10, 1, 1]


def test_the_budget_pays_for_a_hundred_retries_when_nothing_succeeds(
    logs: list[dict[str, Any]],
) -> None:
    """500 tokens at 5 per retry: the 101st retry of an outage is refused, and logged once."""
    budget = RetryBudget()

    paid = [budget.withdraw(HTTP_503) for _ in range(RETRY_BUDGET // RETRY_COST + 5)]

    assert paid == [True] * 100 + [False] * 5
    assert len(events(logs, BUDGET_EVENT)) == 1


def test_successes_refill_the_budget_up_to_its_capacity() -> None:
    """Each success refunds one token; the budget never grows past where it started."""
    budget = RetryBudget()
    budget.withdraw(HTTP_503)
    budget.withdraw(TIMEOUT)

    for _ in range(3):
        budget.refund()
    assert budget.available == RETRY_BUDGET - 15 + 3

    for _ in range(100):
        budget.refund()
    assert budget.available == RETRY_BUDGET
