"""What is transient, how long to wait, when to give up — decided here only.

The strategies plug into tenacity (`Retrying` and `AsyncRetrying` share
them), so sync and async code retry by exactly the same rules.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from evalctl._config import THROTTLE_ERROR_CODES, THROTTLE_HTTP_STATUSES, Clock, RetryPolicy
from evalctl._transport import AttemptFailed, Failure

if TYPE_CHECKING:
    from tenacity.retry import retry_base


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
    """A budget shared by many operations (the batch's retry quota)."""

    def withdraw(self, failure: Failure) -> bool:
        """Pay for one retry; False when the budget cannot afford it."""
        ...

    def refund(self) -> None:
        """A request succeeded."""
        ...


class GiveUp:
    """Why a retry loop stopped: filled in by `Stop`, read when raising."""

    def __init__(self) -> None:
        self.why = "attempts"


class Wait(wait_base):
    """Tenacity wait strategy applying `backoff` to the failure just seen."""

    def __init__(self, policy: RetryPolicy, attempt_offset: int) -> None:
        self._policy = policy
        self._offset = attempt_offset

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = _failure_of(retry_state)
        retry_after = failure.retry_after if failure else None
        return backoff(
            self._policy, retry_state.attempt_number + self._offset, retry_after
        )


class Stop(stop_base):
    """Tenacity stop strategy: attempts, deadline, then the shared budget.

    Runs after the wait is chosen, so a wait that would end past the deadline
    stops the loop instead of sleeping into it.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        attempt_offset: int,
        deadline: Callable[[], float],
        clock: Clock,
        budget: RetryBudget | None,
        give_up: GiveUp,
    ) -> None:
        self._policy = policy
        self._offset = attempt_offset
        self._deadline = deadline
        self._clock = clock
        self._budget = budget
        self._give_up = give_up

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number + self._offset >= self._policy.max_attempts:
            self._give_up.why = "attempts"
            return True
        if self._clock.monotonic() + retry_state.upcoming_sleep >= self._deadline():
            self._give_up.why = "deadline"
            return True
        failure = _failure_of(retry_state)
        if self._budget is not None and failure is not None and not self._budget.withdraw(failure):
            self._give_up.why = "budget"
            return True
        return False


def retry_predicate(policy: RetryPolicy, surface_ambiguous: bool) -> retry_base:
    """Tenacity retry strategy: only transient failures, and ambiguous ones only when allowed."""
    from tenacity import retry_if_exception

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, AttemptFailed):
            return False
        failure = exc.failure
        if surface_ambiguous and failure.maybe_applied:
            return False
        return is_transient(failure, policy)

    return retry_if_exception(retryable)


def _failure_of(retry_state: RetryCallState) -> Failure | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc.failure if isinstance(exc, AttemptFailed) else None
