"""What a batch shares between its requests: an adaptive request rate and a retry budget.

Both are thread-safe and shared by every request of one batch, pre-check
reads and stops alike (see `_runner.Session.limiter` / `.budget`). With
`rate_limit_url=` the rate lives in Redis instead (`_sharedlimit`), shared
by every process using the same key; the rules are the same, written once
more in Lua there (same constants, passed to the script).

`AdaptiveRateLimiter` — a token bucket that learns the server's limit from
its throttles (HTTP 429, error codes 4 and 18) and stays just under it:

- The console counts requests over a sliding second and refuses the ones
  beyond its limit L. So when it refuses one, it has just admitted L in the
  last second, and the answers accepted over the last second (`accepted`)
  are L (a little less while some are still in flight): the server has told
  its limit. The limiter then aims at `(1 - HEADROOM) * L` — just under it,
  so arrival jitter does not cross the line.
- Two guards pace requests: a token bucket at the target rate (capacity
  `max(1, BURST_S * rate)`, so a burst is a few requests, not a second's
  worth), and a mirror of the server's window: at most `rate` requests in
  any sliding second of send times. The mirror is what makes learning
  cheap: the second before the first throttle holds L requests, and the
  next ones wait until they slide out, instead of being refused as echoes.
- Until the first throttle: the configured `qps`, if any (a qps set too
  high converges the same way at the first throttle); without `qps`, a slow
  start — `SLOW_START_QPS`, doubling every `DOUBLING_S` — so the limit is
  crossed at a moderate rate and only a few requests are refused. The
  first limit is learned only from `CONFIRM_THROTTLES` throttled answers in
  a row: a crossed sliding window refuses everything, a random throttle is
  followed by accepted answers.
- Once the limit is known, a throttle lowers it to what the server
  accepted over the last second, by at most `DECREASE_FACTOR` (botocore's
  beta) in one step. Throttles within `COOLDOWN_S` of a decrease are echoes
  of the old rate and are ignored.
- A decrease frees the slots reserved ahead: their holders, asleep until
  then, reserve again at the new rate. A holder woken more than `LATE_S`
  after its slot (a stalled process) frees it too and reserves again, so a
  backlog is not sent at once.
- Then the estimate follows CUBIC's curve (botocore's adaptive mode uses
  it too): back quickly towards the peak it had before the decrease, flat
  around it, then above it slowly (`PROBE_SCALE`: +1 % after 1.7 s), and
  from `MAX_PROBE` times the peak the curve starts again from there — a
  limit that was raised is found again, and a probe that crosses the limit
  costs one throttle. Never above the configured `qps`; never below
  `MIN_RATE` (or the configured qps, if lower).
- `Retry-After` (an HTTP 429 that carries one) concerns the request it
  answers: that request's retry waits for it (`_retry.backoff`), the batch
  does not. Only when `SATURATION_THROTTLES` such answers arrive within a
  second, and make up `SATURATION_SHARE` of that second's answers, does the
  account count as saturated: every request then waits until the
  Retry-After has passed (at most `MAX_PAUSE_S`), and the limit is learned
  as from any throttle.

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
import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Final

from evalctl._base import _logging
from evalctl._base._config import Clock
from evalctl._base._errors import ConfigurationError
from evalctl._core._retry import is_throttle
from evalctl._wire._transport import Failure

# --- rate ---------------------------------------------------------------------

#: Bucket capacity, in seconds of the current rate (at least one token).
BURST_S: Final = 0.02
#: The rate never goes below this (or below the configured qps, if lower).
MIN_RATE: Final = 0.5
#: The target stays this share under the learned limit.
HEADROOM: Final = 0.05
#: The deepest decrease on one throttle once the limit is known (botocore's beta).
DECREASE_FACTOR: Final = 0.7
#: Throttles this soon after a decrease are echoes of the old rate.
COOLDOWN_S: Final = 1.0
#: CUBIC's scale, relative to the limit: t seconds from the peak, the
#: estimate is PROBE_SCALE * t**3 of it away.
PROBE_SCALE: Final = 0.002
#: Once the estimate is this many times the peak, the curve starts again from
#: there (an idle spell does not build up more than this).
MAX_PROBE: Final = 2.0
#: Without qps and before any throttle: the starting rate, doubled every DOUBLING_S.
SLOW_START_QPS: Final = 50.0
DOUBLING_S: Final = 0.75
#: ... and past this rate, no limit at all.
SLOW_START_MAX_QPS: Final = 10_000.0
#: Fewer answers accepted in the last second than this say little about the limit.
MIN_EVIDENCE: Final = 3
#: Before a limit is known, it is learned only from this many throttled answers
#: in a row: a sliding-window limit refuses everything once crossed, a random
#: throttle is followed by accepted answers.
CONFIRM_THROTTLES: Final = 2
#: Retry-After throttles within a second that say the account is saturated ...
SATURATION_THROTTLES: Final = 3
#: ... when they are at least this share of the second's answers.
SATURATION_SHARE: Final = 0.25
#: The longest a saturated account pauses every request.
MAX_PAUSE_S: Final = 30.0
#: Accepted, throttled and sent requests are counted over this window (the
#: console's QPS limit counts a sliding second).
WINDOW_S: Final = 1.0
#: A request that wakes up this much later than its slot takes a new one
#: (a stalled process must not send its backlog at once) ...
LATE_S: Final = 0.05
#: ... at most this many times.
MAX_RESERVATIONS: Final = 3
#: Send times kept for the window mirror (a limit above this is paced by the bucket only).
MAX_SENDS: Final = 4096

RATE_EVENT: Final = "evalctl.rate_limited"
PAUSE_EVENT: Final = "evalctl.rate_paused"

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


@dataclass(frozen=True)
class RateChange:
    """What one piece of feedback changed, for the log events.

    Attributes:
        qps_before: The rate before (None: no limit).
        qps: The rate after.
        limit: The server limit now believed in.
        pause_s: How long every request now waits (a saturated account), or 0.
    """

    qps_before: float | None
    qps: float
    limit: float
    pause_s: float = 0.0


def log_change(change: RateChange | None) -> None:
    """The warning events of a decrease and of a pause (shared with `_sharedlimit`)."""
    if change is None:
        return
    if change.pause_s > 0:
        _logging.event(
            "warning",
            PAUSE_EVENT,
            pause_s=round(change.pause_s, 3),
            detail="several throttles with Retry-After: the account is saturated",
        )
    _logging.event(
        "warning",
        RATE_EVENT,
        qps_before=None if change.qps_before is None else round(change.qps_before, 2),
        qps=round(change.qps, 2),
        limit=round(change.limit, 2),
    )


#: Past this many seconds since a decrease the probe is at its cap anyway.
_MAX_PROBE_S: Final = 1e6


def probe(limit: float, peak: float, since_decrease: float) -> float:
    """The limit estimate `since_decrease` seconds after a decrease to `limit` from `peak`.

    CUBIC's curve: back towards `peak` quickly, flat near it, then above it slowly.
    """
    scale = PROBE_SCALE * peak
    regain_s = (max(0.0, peak - limit) / scale) ** (1 / 3)
    # Bounded so that a batch running for days cannot overflow the cube.
    elapsed = min(since_decrease, _MAX_PROBE_S) - regain_s
    estimate: float = peak + scale * elapsed**3
    return min(peak * MAX_PROBE, max(limit, estimate))


def target(limit: float, peak: float, since_decrease: float, ceiling: float) -> float:
    """The rate to send at, once the limit is known."""
    aim = max(MIN_RATE, probe(limit, peak, since_decrease) * (1.0 - HEADROOM))
    return min(ceiling, aim)


def slow_start(since_first: float) -> float:
    """The rate before any throttle, without a configured qps (inf past the ceiling)."""
    doublings = max(0.0, since_first) / DOUBLING_S
    # Past the ceiling early: 2.0 ** doublings overflows a float after ~13 minutes.
    if doublings > math.log2(SLOW_START_MAX_QPS / SLOW_START_QPS):
        return math.inf
    rate: float = SLOW_START_QPS * 2.0**doublings
    return rate


def learned(estimate: float | None, current: float, accepted: int) -> float:
    """The new limit after a throttle (see the module doc).

    Args:
        estimate: The probed estimate of the limit now, or None when none is known.
        current: The rate being sent at (inf: no limit).
        accepted: Answers accepted over the last second.
    """
    if estimate is None:
        if accepted >= MIN_EVIDENCE or math.isinf(current):
            new = float(max(accepted, 1))
        else:
            new = max(float(accepted), current * DECREASE_FACTOR)
    else:
        new = min(estimate, max(float(accepted), estimate * DECREASE_FACTOR))
    return max(MIN_RATE, new)


class AdaptiveRateLimiter:
    """A token bucket that learns the server's limit from throttles (see the module doc).

    Args:
        qps: The configured rate and the ceiling of every estimate; None for
            a slow start and no ceiling.
        clock: The clock `feedback` reads; `acquire` uses the clock it is given
            (in a batch both are the same clock).
        limit: A server limit already known (a shared limiter falling back
            to this one hands over what it had learned).
    """

    def __init__(self, qps: float | None, clock: Clock, *, limit: float | None = None) -> None:
        configured = check_qps(qps)
        self._ceiling = math.inf if configured is None else configured
        self._clock = clock
        self._lock = threading.Lock()
        now = clock.monotonic()
        self._limit = limit
        self._peak = limit if limit is not None else 0.0
        self._last_decrease = now if limit is not None else -math.inf
        self._streak = 0
        self._tat = -math.inf
        self._first: float | None = None
        self._pause_until = -math.inf
        self._sends: collections.deque[float] = collections.deque(maxlen=MAX_SENDS)
        self._accepted: collections.deque[float] = collections.deque()
        self._throttled: collections.deque[float] = collections.deque()
        self._told: collections.deque[float] = collections.deque()
        self.throttles = 0
        self.decreases = 0
        self.pauses = 0
        self.late = 0

    @property
    def rate(self) -> float | None:
        """The current rate, or None while there is no limit."""
        with self._lock:
            rate = self._rate(self._clock.monotonic())
        return None if math.isinf(rate) else rate

    @property
    def limit(self) -> float | None:
        """The server limit learned so far, or None."""
        with self._lock:
            return self._limit

    def acquire(self, clock: Clock) -> None:
        """Block until a request may be sent.

        A slot reserved before a decrease is given up when the wait for it
        ends (it was paced by a rate the server has just refused), and so is
        one woken up more than `LATE_S` after it (a stalled process must not
        send a bunch at once): a new one is reserved, up to `MAX_RESERVATIONS`
        times in all.
        """
        for _ in range(MAX_RESERVATIONS):
            now = clock.monotonic()
            slot, wait, epoch = self._reserve(now)
            if wait <= 0:
                return
            clock.sleep(wait)
            if not self._given_up(epoch, slot, late=clock.monotonic() - (now + wait) > LATE_S):
                return

    async def aacquire(self, clock: Clock) -> None:
        """Wait until a request may be sent (as `acquire`)."""
        for _ in range(MAX_RESERVATIONS):
            now = clock.monotonic()
            slot, wait, epoch = self._reserve(now)
            if wait <= 0:
                return
            await clock.asleep(wait)
            if not self._given_up(epoch, slot, late=clock.monotonic() - (now + wait) > LATE_S):
                return

    def feedback(self, throttled: bool, *, retry_after: float | None = None) -> None:
        """Learn from one answer: throttled (429, codes 4/18) or not.

        `retry_after`: the answer's `Retry-After`, in seconds, if it had one.
        """
        now = self._clock.monotonic()
        with self._lock:
            change = self._learn(now, throttled, retry_after)
        log_change(change)

    # -- under the lock --------------------------------------------------------

    def _rate(self, now: float) -> float:
        if self._limit is not None:
            if probe(self._limit, self._peak, now - self._last_decrease) >= self._peak * MAX_PROBE:
                # Twice the peak without a throttle: the curve starts again from there.
                self._limit = self._peak = self._peak * MAX_PROBE
                self._last_decrease = now
            return target(self._limit, self._peak, now - self._last_decrease, self._ceiling)
        if math.isfinite(self._ceiling):
            return self._ceiling
        return slow_start(0.0 if self._first is None else now - self._first)

    def _given_up(self, epoch: int, slot: float, *, late: bool) -> bool:
        """Whether the slot is given up: a decrease came since (which freed it), or it was missed.

        A missed slot is freed here: it was never used, the window must not count it.
        """
        with self._lock:
            if epoch != self.decreases:
                return True
            if late:
                self.late += 1
                with contextlib.suppress(ValueError):
                    self._sends.remove(slot)
            return late

    def _reserve(self, now: float) -> tuple[float, float, int]:
        """Take the next slot; return it, how long to wait for it, and the decreases so far."""
        with self._lock:
            if self._first is None:
                self._first = now
            start = max(now, self._pause_until)
            rate = self._rate(start)
            slot = start
            spacing = 0.0
            if math.isfinite(rate):
                spacing = 1.0 / rate
                burst = max(1.0, rate * BURST_S)
                slot = max(slot, self._tat - (burst - 1.0) * spacing)
                if self._limit is not None or math.isfinite(self._ceiling):
                    # The window mirror: at most `rate` sends in any sliding second.
                    room = max(1, math.floor(rate * WINDOW_S))
                    if len(self._sends) >= room:
                        slot = max(slot, self._sends[-room] + WINDOW_S)
            if self._sends:
                slot = max(slot, self._sends[-1])
            self._tat = max(self._tat, slot) + spacing
            self._sends.append(slot)
            return slot, slot - now, self.decreases

    def _learn(self, now: float, throttled: bool, retry_after: float | None) -> RateChange | None:
        if not throttled:
            self._streak = 0
            _note(self._accepted, now)
            return None
        self.throttles += 1
        pause = 0.0
        if retry_after is not None:
            _note(self._told, now)
            told = _count(self._told, now)
            answers = _count(self._accepted, now) + _count(self._throttled, now) + 1
            if told < SATURATION_THROTTLES or told < SATURATION_SHARE * answers:
                # This request's own retry waits for the Retry-After; the batch goes on.
                return None
            pause = min(max(retry_after, 0.0), MAX_PAUSE_S)
            if now + pause > self._pause_until:
                self._pause_until = now + pause
                self.pauses += 1
            else:
                pause = 0.0
        self._streak += 1
        _note(self._throttled, now)
        if now - self._last_decrease < COOLDOWN_S or (
            self._limit is None and self._streak < CONFIRM_THROTTLES and pause == 0
        ):
            return None if pause == 0 else self._change(self._rate(now), pause)
        before = self._rate(now)
        estimate = (
            None
            if self._limit is None
            else probe(self._limit, self._peak, now - self._last_decrease)
        )
        self._limit = learned(estimate, before, _count(self._accepted, now))
        self._peak = max(self._limit, estimate or 0.0)
        self._last_decrease = now
        self.decreases += 1
        # The slots reserved ahead are given up (their holders reserve again when
        # they wake up); the bucket restarts at the new rate, and the window
        # mirror holds back what the server's window still counts.
        while self._sends and self._sends[-1] > now:
            self._sends.pop()
        self._tat = min(self._tat, now)
        return self._change(before, pause)

    def _change(self, before: float, pause: float) -> RateChange:
        assert self._limit is not None
        return RateChange(
            qps_before=None if math.isinf(before) else before,
            qps=self._rate(self._clock.monotonic()),
            limit=self._limit,
            pause_s=pause,
        )


def _note(events: collections.deque[float], when: float) -> None:
    events.append(when)
    horizon = when - WINDOW_S
    while events and events[0] <= horizon:
        events.popleft()


def _count(events: collections.deque[float], now: float) -> int:
    horizon = now - WINDOW_S
    while events and events[0] <= horizon:
        events.popleft()
    return len(events)


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
