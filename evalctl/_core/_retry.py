"""What is transient, and how long to wait before trying again — decided here only.

The retry loop itself is `_operations.request`: it applies these rules, the
policy's attempts and deadline, and the batch's `RetryBudget`, in one place
for sync and async alike.
"""

from __future__ import annotations

import random
from typing import Final, Protocol

from evalctl._base._config import RetryPolicy
from evalctl._base._defaults import THROTTLE_ERROR_CODES, THROTTLE_HTTP_STATUSES
from evalctl._wire._transport import Failure


def is_transient(failure: Failure, policy: RetryPolicy) -> bool:
    """Whether retrying `failure` can help."""
    if failure.kind in ("timeout", "connection"):
        return True
    if failure.kind == "http":
        return failure.http_status in policy.transient_http_statuses
    if failure.kind == "envelope":
        return isinstance(failure.error_code, int) and (
            failure.error_code in policy.transient_error_codes
        )
    return False


def is_throttle(failure: Failure) -> bool:
    """Whether the server asked us to slow down (HTTP 429, error codes 4 and 18)."""
    if failure.kind == "http":
        return failure.http_status in THROTTLE_HTTP_STATUSES
    return failure.kind == "envelope" and failure.error_code in THROTTLE_ERROR_CODES


# One generator for every wait: a single `uniform()` call is atomic under the
# GIL, so threads can share it.
_JITTER: Final = random.Random()


def backoff(
    policy: RetryPolicy,
    retry_number: int,
    retry_after: float | None,
    rng: random.Random = _JITTER,
) -> float:
    """Seconds to wait before retry number `retry_number` (1-based).

    Exponential from `initial_wait`, full jitter, capped at `max_wait`; a
    server's `Retry-After` is a floor, itself capped at `max_wait`.
    """
    ceiling = min(policy.max_wait, policy.initial_wait * 2 ** min(retry_number - 1, 62))
    wait = rng.uniform(0.0, ceiling) if policy.jitter else ceiling
    if retry_after is not None:
        wait = max(wait, min(retry_after, policy.max_wait))
    return wait


class RetryBudget(Protocol):
    """A retry quota shared by many operations (the batch's), accounted per route."""

    def withdraw(self, failure: Failure, route: str | None = None) -> bool:
        """Pay for one retry on `route` after `failure`; False when it cannot be afforded."""
        ...

    def refund(self, route: str | None = None) -> None:
        """A request on `route` succeeded."""
        ...
