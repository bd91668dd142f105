"""Running operations: the effects they yield, the session they share, two drivers.

Operations (`_operations`) are generators. They hold every decision and yield
effects, each performed once by a driver:

* `Send` — one HTTP request, one attempt; answered with a `Reply`, or with
  the `Failure` of that attempt (never raised into the operation).
* `Pause` — sleep on the session's clock.
* `Throttle` — wait for the batch's shared rate limiter (nothing without one).

The sync and async drivers differ only in how they send and sleep, so the
two APIs cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from evalctl._base import _logging
from evalctl._base._config import Clock, RetryPolicy
from evalctl._base._credentials import Credentials
from evalctl._base._model import EvalTask
from evalctl._base._redact import Redactor
from evalctl._core._options import Options
from evalctl._core._retry import RetryBudget
from evalctl._safety._stopguard import Clearance
from evalctl._wire._transport import AttemptFailed, Failure, Reply, Wire, asend, send

T = TypeVar("T")


class RateLimiter(Protocol):
    """A client-side limit shared by many operations (the batch's token bucket)."""

    def acquire(self, clock: Clock) -> None:
        """Block until a request may be sent."""
        ...

    async def aacquire(self, clock: Clock) -> None:
        """Wait until a request may be sent."""
        ...

    def feedback(self, throttled: bool, *, retry_after: float | None = None) -> None:
        """Learn from one answer: throttled (429, codes 4/18) or not, and its `Retry-After`."""
        ...


@dataclass(frozen=True)
class Send:
    """Effect: send this request once, within `timeout` seconds.

    Attributes:
        clearance: For a stop, the pre-check's permission for this one send
            (the send boundary refuses a stop without it).
        purpose: "detail", "stop" or "call" (what the request is for).
        task_id: The task it names, if any (for the interrupted event).
    """

    route: str
    action: str
    body: Mapping[str, Any]
    timeout: float
    clearance: Clearance | None = None
    purpose: str = "call"
    task_id: str | None = None


@dataclass(frozen=True)
class Pause:
    """Effect: wait this many seconds (on the operation's clock)."""

    seconds: float


@dataclass(frozen=True)
class Throttle:
    """Effect: wait until the batch's rate limiter lets a request go."""


Effect = Send | Pause | Throttle
Operation = Generator[Effect, Any, T]


@dataclass(eq=False)
class Session:
    """Everything one operation's requests share: one session per task.

    Not shared between operations, except `limiter` and `budget`, which are
    thread-safe and belong to a batch.

    Attributes:
        cleared: Called with the task once the pre-check clears it for a stop,
            before the first stop is sent (also in a dry run); it may raise
            an `EvalctlError` to end the cancel with nothing sent to the stop route.
        log_ids: Every server log id seen, in order.
        attempts: Requests sent in total.
    """

    options: Options
    clock: Clock
    wire: Wire = field(repr=False)
    redactor: Redactor = field(repr=False)
    deadline: float
    limiter: RateLimiter | None = None
    budget: RetryBudget | None = None
    cleared: Callable[[EvalTask], None] | None = None
    log_ids: list[str] = field(default_factory=list)
    attempts: int = 0

    @property
    def credentials(self) -> Credentials:
        return self.options.credentials

    @property
    def policy(self) -> RetryPolicy:
        return self.options.policy

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def extend_deadline(self, until: float) -> None:
        self.deadline = max(self.deadline, until)


# --- one send -------------------------------------------------------------------


def _perform(effect: Effect, session: Session) -> Reply | Failure | None:
    if isinstance(effect, Pause):
        session.clock.sleep(effect.seconds)
    elif isinstance(effect, Throttle):
        if session.limiter is not None:
            session.limiter.acquire(session.clock)
    else:
        try:
            return send(session.wire, *_arguments(session, effect), host=session.options.host)
        except AttemptFailed as failed:
            return failed.failure
    return None


async def _aperform(effect: Effect, session: Session) -> Reply | Failure | None:
    if isinstance(effect, Pause):
        await session.clock.asleep(effect.seconds)
    elif isinstance(effect, Throttle):
        if session.limiter is not None:
            await session.limiter.aacquire(session.clock)
    else:
        try:
            host = session.options.host
            return await asend(session.wire, *_arguments(session, effect), host=host)
        except AttemptFailed as failed:
            return failed.failure
    return None


def _arguments(session: Session, effect: Send) -> tuple[Any, ...]:
    return (
        effect.route,
        effect.action,
        effect.body,
        session.credentials,
        effect.clearance,
        effect.timeout,
        session.redactor,
    )


# --- the drivers ----------------------------------------------------------------
# The answer goes straight from the send into the operation: no frame here
# keeps a raw reply (a detail carries the judge app's keys) while it runs.


def run(operation: Operation[T], session: Session) -> T:
    """Drive `operation` to its result, sending and sleeping synchronously."""
    try:
        effect = next(operation)
        while True:
            effect = operation.send(_perform(effect, session))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        operation.close()


async def arun(operation: Operation[T], session: Session) -> T:
    """Drive `operation` to its result, sending and sleeping asynchronously.

    If the awaiting task is cancelled, nothing more is sent; an
    `evalctl.interrupted` event says what was in flight.
    """
    effect: Effect | None = None
    task_id: str | None = None
    # Any stop sent so far, not only one in flight: a stop accepted (or lost
    # ambiguously) before a later detail read was interrupted still went out.
    stop_sent = False
    try:
        effect = next(operation)
        while True:
            if isinstance(effect, Send):
                task_id = task_id or effect.task_id
                stop_sent = stop_sent or effect.purpose == "stop"
            effect = operation.send(await _aperform(effect, session))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except asyncio.CancelledError:
        _logging.event(
            "warning",
            _logging.INTERRUPTED_EVENT,
            task_id=task_id,
            in_flight=effect.purpose if isinstance(effect, Send) else None,
            stop_maybe_sent=stop_sent,
            attempts=session.attempts,
            log_ids=list(session.log_ids),
        )
        raise
    finally:
        operation.close()
