"""What a batch shares between its requests: an adaptive request rate and a retry budget.

Both are thread-safe and shared by every request of one batch, pre-check
reads and stops alike (see `_runner.Session.limiter` / `.budget`).

`AdaptiveRateLimiter` — a token bucket that slows down when throttled, as
botocore's adaptive retry mode (`botocore.retries.adaptive`) does:

- Rate `qps`, capacity `max(1, BURST_S * rate)`, starting with one token.
  The console counts requests over a sliding second, and a bucket of
  capacity b at rate r can put r + b requests into one such second, so the
  burst is kept to a few requests rather than botocore's whole second.
- Acquiring reserves the next slot and sleeps until it on the caller's clock
  (`clock.sleep` / `clock.asleep`), so waiters are spaced exactly 1/rate
  apart, and the virtual clock of testing mode makes the waits free.
- A throttle answer (HTTP 429, error codes 4 and 18) lowers the rate. Once
  the batch is older than the server's one-second window, to what the
  server accepted over the last second (it has just shown its limit), and
  at most by the share of throttled answers in that second, never by more
  than `DECREASE_FACTOR` (botocore's beta, 0.7) unless the accepted rate is
  lower still: an overload lands at the server's limit in one step, and
  one stray throttle among a hundred answers costs one percent, not thirty
  (the idea of DCTCP's proportional decrease). In the batch's first second
  the accepted count says little, so the step is botocore's: x0.7.
  Throttles within `COOLDOWN_S` of a decrease are ignored: they answer
  requests sent at the old rate while the server's window drains, and
  counting each of them (as botocore does) would send the rate of a
  concurrent batch to the floor.
- After the cool-down, every other answer lets the rate recover along
  botocore's CUBIC curve (scale 0.4): quickly at first, flattening out near
  the rate the server showed it accepts, probing above it only slowly — up
  to the configured `qps`, and to twice the rate actually sent (botocore's
  cap, so an idle spell does not build up a rate nobody used). Never below
  `MIN_RATE` (or the configured qps, if lower).
- With `qps=None` there is no client-side limit until the first throttle;
  from then on the bucket is on, and recovery has no ceiling but the cap.

`RetryBudget` — botocore standard mode's retry quota, kept per route (the
detail read and the stop are two routes): a bucket of `RETRY_BUDGET` tokens
each; a retry costs `RETRY_COST` (`TIMEOUT_RETRY_COST` after a timeout,
`THROTTLE_RETRY_COST` after a throttle) from its route's bucket; every
successful request refunds `SUCCESS_REFUND` to its own route's bucket, up to
the start value. When a retry cannot be paid the operation stops retrying
(`RetryExhaustedError(why="budget")`). Per route, because successful detail
reads must not pay for retries of a stop route that is down.

Sizing: during an outage of a route nothing is refunded to it, so a batch
of n tasks sends that route n first attempts plus at most 500 / 5 = 100
retries — 1,100 requests
for 1,000 tasks instead of 5,000 with five attempts each, and after the
first hundred retries every task fails at its first answer, without
backoff. With a steady error rate p the budget holds while 5p < 1 - p,
i.e. up to about one failed request in six. Throttle retries cost 1: the
rate limiter already paces them (they cannot become a storm), and a batch
that is merely being told to slow down should not fail for it.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Final

from evalctl import _logging
from evalctl._config import Clock
from evalctl._errors import ConfigurationError
from evalctl._retry import is_throttle
from evalctl._transport import Failure

# --- rate ---------------------------------------------------------------------

#: Bucket capacity, in seconds of the current rate (at least one token).
BURST_S: Final = 0.02
#: The rate never goes below this (or below the configured qps, if lower).
MIN_RATE: Final = 0.5
#: The deepest multiplicative decrease on a throttle (botocore's beta).
DECREASE_FACTOR: Final = 0.7
#: Throttles this soon after a decrease are echoes of the old rate.
COOLDOWN_S: Final = 1.0
#: CUBIC's scale constant (botocore's): how fast the rate recovers.
CUBIC_SCALE: Final = 0.4
#: Accepted, throttled and sent requests are counted over this window (the
#: console's QPS limit counts a sliding second).
MEASURE_WINDOW_S: Final = 1.0
#: Before the first throttle without a limit, the send rate is measured over
#: at least this long.
MIN_MEASURE_SPAN_S: Final = 0.1

RATE_EVENT: Final = "evalctl.rate_limited"

# --- retries ------------------------------------------------------------------

RETRY_BUDGET: Final = 500
RETRY_COST: Final = 5
TIMEOUT_RETRY_COST: Final = 10
THROTTLE_RETRY_COST: Final = 1
SUCCESS_REFUND: Final = 1

BUDGET_EVENT: Final = "evalctl.retry_budget_exhausted"


def check_qps(qps: object) -> float | None:
    """`qps` as a float, or None for no client-side limit.

    Raises:
        ConfigurationError: not a finite number > 0.
    """
    if qps is None:
        return None
    if isinstance(qps, bool) or not isinstance(qps, int | float):
        raise ConfigurationError(f"qps must be a number, got {type(qps).__name__}")
    if not math.isfinite(qps) or qps <= 0:
        raise ConfigurationError(f"qps must be a finite number > 0, got {qps!r}")
    return float(qps)


class AdaptiveRateLimiter:
    """A token bucket that slows down when the server throttles (see the module doc).

    Args:
        qps: The configured rate and the ceiling of recovery; None for no
            limit until the server throttles.
        clock: The clock `feedback` reads; `acquire` uses the clock it is given
            (in a batch both are the same clock).
    """

    def __init__(self, qps: float | None, clock: Clock) -> None:
        self._ceiling = check_qps(qps)
        self._floor = MIN_RATE if self._ceiling is None else min(MIN_RATE, self._ceiling)
        self._clock = clock
        self._lock = threading.Lock()
        self._enabled = self._ceiling is not None
        self._rate = self._ceiling if self._ceiling is not None else math.inf
        self._tokens = 1.0
        self._stamp = clock.monotonic()
        # Requests sent, and answers that were not throttled, over the last window.
        self._sent: collections.deque[float] = collections.deque()
        self._accepted: collections.deque[float] = collections.deque()
        self._throttled: collections.deque[float] = collections.deque()
        # CUBIC: the rate at the last decrease, its time, and the time to regain it.
        self._first_send: float | None = None
        self._last_decrease: float | None = None
        self._anchor = 0.0
        self._regain_s = 0.0
        self.throttles = 0
        self.decreases = 0

    @property
    def rate(self) -> float | None:
        """The current rate, or None while there is no limit."""
        with self._lock:
            return self._rate if self._enabled else None

    def acquire(self, clock: Clock) -> None:
        """Block until a request may be sent."""
        wait = self._reserve(clock.monotonic())
        if wait > 0:
            clock.sleep(wait)

    async def aacquire(self, clock: Clock) -> None:
        """Wait until a request may be sent."""
        wait = self._reserve(clock.monotonic())
        if wait > 0:
            await clock.asleep(wait)

    def feedback(self, throttled: bool) -> None:
        """Learn from one answer: throttled (429, codes 4/18) or not."""
        now = self._clock.monotonic()
        changed: tuple[float, float] | None = None
        with self._lock:
            if throttled:
                self.throttles += 1
                self._note(self._throttled, now)
                changed = self._decrease(now)
            else:
                self._note(self._accepted, now)
                self._increase(now)
        if changed is not None:
            _logging.event(
                "warning",
                RATE_EVENT,
                qps_before=None if math.isinf(changed[0]) else round(changed[0], 2),
                qps=round(changed[1], 2),
            )

    # -- under the lock --------------------------------------------------------

    def _reserve(self, now: float) -> float:
        """Take the next slot; return how long to wait for it."""
        with self._lock:
            wait = 0.0
            if self._enabled:
                self._refill(now)
                self._tokens -= 1.0
                if self._tokens < 0:
                    wait = -self._tokens / self._rate
            if self._first_send is None:
                self._first_send = now
            self._note(self._sent, now + wait)
            return wait

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            capacity = max(1.0, self._rate * BURST_S)
            self._tokens = min(capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    @staticmethod
    def _note(events: collections.deque[float], when: float) -> None:
        events.append(when)
        horizon = when - MEASURE_WINDOW_S
        while events and events[0] <= horizon:
            events.popleft()

    @staticmethod
    def _per_second(events: collections.deque[float], now: float) -> float:
        """Events over the last window, per second.

        Counted over the whole window even when the batch is younger than
        that: what matters is what the server saw in its window, and in the
        first second of a batch that is everything the batch sent.
        """
        horizon = now - MEASURE_WINDOW_S
        while events and events[0] <= horizon:
            events.popleft()
        return len(events) / MEASURE_WINDOW_S

    def _set_rate(self, now: float, rate: float) -> None:
        self._refill(now)
        ceiling = self._ceiling if self._ceiling is not None else math.inf
        self._rate = min(ceiling, max(self._floor, rate))

    def _decrease(self, now: float) -> tuple[float, float] | None:
        if self._last_decrease is not None and now - self._last_decrease < COOLDOWN_S:
            return None
        first = now if self._first_send is None else self._first_send
        was_enabled = self._enabled
        if was_enabled:
            before = self._rate
        else:  # no limit so far: start from what was being sent
            span = min(MEASURE_WINDOW_S, max(MIN_MEASURE_SPAN_S, now - first))
            before = len(self._sent) / span
        if now - first < MEASURE_WINDOW_S:
            # Younger than the server's window: what it accepted says little yet.
            anchor = before
            target = before * DECREASE_FACTOR
        else:
            accepted = self._per_second(self._accepted, now)
            refused = self._per_second(self._throttled, now)
            anchor = min(before, accepted)
            share = refused / (accepted + refused)
            target = min(anchor, before * max(DECREASE_FACTOR, 1 - share))
        if not self._enabled:
            self._enabled = True
            self._tokens = 0.0
            self._stamp = now
        self._set_rate(now, target)
        # CUBIC regains `anchor`, the rate the server showed it takes, in this time.
        self._anchor = max(anchor, self._rate)
        self._regain_s = ((self._anchor - self._rate) / CUBIC_SCALE) ** (1 / 3)
        self._last_decrease = now
        self.decreases += 1
        return (before if was_enabled else math.inf), self._rate

    def _increase(self, now: float) -> None:
        if self._last_decrease is None:
            return
        # Held through the cool-down: the server's window still counts the old rate.
        elapsed = now - self._last_decrease - COOLDOWN_S
        if elapsed <= 0:
            return
        cubic = CUBIC_SCALE * (elapsed - self._regain_s) ** 3 + self._anchor
        cap = 2 * self._per_second(self._sent, now)
        if min(cubic, cap) > self._rate:
            self._set_rate(now, min(cubic, cap))


class RetryBudget:
    """The batch's retry quota (see the module doc): one bucket per route.

    A route's retries draw on its own bucket and only its own successes
    refill it, so a route that fails while another works (the stop route
    down, the detail reads fine) is bounded by its bucket alone.

    Args:
        capacity: Tokens of each route's bucket at the start, and the most
            refunds can restore.
    """

    def __init__(self, capacity: int = RETRY_BUDGET) -> None:
        self._capacity = capacity
        self._tokens: dict[str | None, int] = {}
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def available(self) -> int:
        """Tokens left in the bucket of requests given without a route."""
        return self.available_for(None)

    def available_for(self, route: str | None) -> int:
        """Tokens left in `route`'s bucket."""
        with self._lock:
            return self._tokens.get(route, self._capacity)

    def withdraw(self, failure: Failure, route: str | None = None) -> bool:
        """Pay for one retry on `route` after `failure`; False when its bucket cannot afford it."""
        cost = retry_cost(failure)
        first = False
        with self._lock:
            tokens = self._tokens.get(route, self._capacity)
            if tokens < cost:
                self.refused += 1
                first = self.refused == 1
                afford = False
            else:
                self._tokens[route] = tokens - cost
                afford = True
        if not afford and first:
            _logging.event(
                "warning",
                BUDGET_EVENT,
                capacity=self._capacity,
                route=route,
                detail="failing requests are no longer retried until requests succeed again",
            )
        return afford

    def refund(self, route: str | None = None) -> None:
        """A request on `route` succeeded: its bucket (only) gets `SUCCESS_REFUND` back."""
        with self._lock:
            tokens = self._tokens.get(route, self._capacity)
            self._tokens[route] = min(self._capacity, tokens + SUCCESS_REFUND)


def retry_cost(failure: Failure) -> int:
    """What retrying after `failure` costs."""
    if failure.kind == "timeout":
        return TIMEOUT_RETRY_COST
    if is_throttle(failure):
        return THROTTLE_RETRY_COST
    return RETRY_COST
