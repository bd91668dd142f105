"""Settings (the defaults are in `_defaults`), and the clock that retries wait on.

The clock is swappable so that tests (ours and our users') never wait real
backoff time: `evalctl.testing.set_testing(True)` installs a virtual clock
whose sleeps return at once and advance virtual time.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

from evalctl._base._defaults import (
    DEFAULT_ATTEMPT_TIMEOUT_S,
    DEFAULT_DEADLINE_S,
    DEFAULT_INITIAL_WAIT_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_WAIT_S,
    ENV_DEADLINE_S,
    ENV_MAX_ATTEMPTS,
    ENV_TESTING,
    TRANSIENT_ERROR_CODES,
    TRANSIENT_HTTP_STATUSES,
)
from evalctl._base._errors import ConfigurationError


@dataclass(frozen=True)
class RetryPolicy:
    """How evalctl retries transient failures.

    Attributes:
        max_attempts: Attempts per request, the first one included.
        initial_wait: Backoff scale in seconds: the n-th retry waits a random
            time in [0, initial_wait * 2**(n-1)] ("full jitter"), capped at `max_wait`.
        max_wait: Cap of a single wait, also of a server's `Retry-After`.
        deadline: Seconds for a whole operation (pre-check and stop); no
            attempt starts after it, and no attempt outlives it.
        jitter: Full jitter when true; plain exponential backoff when false.
        attempt_timeout: Timeout of a single HTTP attempt.
        transient_http_statuses: HTTP statuses that are retried.
        transient_error_codes: Envelope `error_code`s that are retried.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_wait: float = DEFAULT_INITIAL_WAIT_S
    max_wait: float = DEFAULT_MAX_WAIT_S
    deadline: float = DEFAULT_DEADLINE_S
    jitter: bool = True
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT_S
    transient_http_statuses: frozenset[int] = field(default=TRANSIENT_HTTP_STATUSES)
    transient_error_codes: frozenset[int] = field(default=TRANSIENT_ERROR_CODES)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError("RetryPolicy.max_attempts must be an integer")
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        for name in ("initial_wait", "max_wait", "deadline", "attempt_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"RetryPolicy.{name} must be a number of seconds")
            if not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a finite number >= 0")
        if self.deadline <= 0 or self.attempt_timeout <= 0:
            raise ConfigurationError("RetryPolicy.deadline and attempt_timeout must be > 0")
        object.__setattr__(self, "transient_http_statuses", frozenset(self.transient_http_statuses))
        object.__setattr__(self, "transient_error_codes", frozenset(self.transient_error_codes))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The default policy, with `EVALCTL_MAX_ATTEMPTS` / `EVALCTL_DEADLINE_S` applied.

        Raises:
            ConfigurationError: an override is not a valid number.
        """
        env = os.environ if environ is None else environ
        policy = cls()
        raw_attempts = env.get(ENV_MAX_ATTEMPTS, "").strip()
        if raw_attempts:
            try:
                attempts = int(raw_attempts)
            except ValueError:
                raise ConfigurationError(
                    f"{ENV_MAX_ATTEMPTS} must be a whole number >= 1"
                ) from None
            policy = policy._with(ENV_MAX_ATTEMPTS, max_attempts=attempts)
        raw_deadline = env.get(ENV_DEADLINE_S, "").strip()
        if raw_deadline:
            try:
                deadline = float(raw_deadline)
            except ValueError:
                raise ConfigurationError(
                    f"{ENV_DEADLINE_S} must be a number of seconds > 0"
                ) from None
            policy = policy._with(ENV_DEADLINE_S, deadline=deadline)
        return policy

    def _with(self, source: str, **changes: object) -> RetryPolicy:
        try:
            return replace(self, **changes)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None


# --- clock -------------------------------------------------------------------


class Clock(Protocol):
    """What retries and polling need from time."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class VirtualClock:
    """A clock whose sleeps return at once and move virtual time forward.

    `monotonic()` is real time plus every second slept so far, so deadlines
    behave as if the sleeps had happened. `sleeps` records each wait.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._offset += max(seconds, 0.0)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)  # still yield, as a real sleep would


_SYSTEM_CLOCK: Final = SystemClock()
_state_lock = threading.Lock()
_clock: Clock = VirtualClock() if os.environ.get(ENV_TESTING, "") == "1" else _SYSTEM_CLOCK


def get_clock() -> Clock:
    """The clock in force (virtual in testing mode)."""
    return _clock


def set_clock(clock: Clock | None) -> Clock:
    """Install `clock` (None: real time) and return the one it replaces."""
    global _clock
    with _state_lock:
        previous = _clock
        _clock = _SYSTEM_CLOCK if clock is None else clock
    return previous
