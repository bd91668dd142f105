"""One request rate for many processes: the adaptive limiter's state in Redis.

`--rate-limit-url redis://host:port/db` (`EVALCTL_RATE_LIMIT_URL`,
`rate_limit_url=`) moves everything `_limits.AdaptiveRateLimiter` keeps —
the token bucket, the mirror of the server's one-second window, the limit
learned from throttles and its probing, the pause of a saturated account —
into Redis, under one key shared by every evalctl process that uses the same
URL and key. The key defaults to the console endpoint and a hash of the
access key (never the key itself): one account, one limit.

Each reservation and each answer is one Lua script run by redis-py
(`EVALSHA`), so every step is atomic across processes and timed by the
Redis server's clock (`TIME`, microseconds) — machines with different
clocks share one time line. Should that clock go back (a step of its wall
clock), the times kept are forgotten rather than waited for. The rules are
those of `_limits` (its functions are mirrored line by line in `_PRELUDE`,
with its constants passed in).
Why not a limiter library: `limits` and `pyrate-limiter` offer fixed rates
(hit or refuse, the caller polls), while this limit moves with every
throttle and the callers need the exact wait; qianfan's own
`RedisRateLimiter` counts whole seconds and starts a thread per requestor.

Failures:

- Redis unreachable when the batch starts: `RateLimitUnreachableError`
  (exit 2) before any id is read — nothing is sent; with
  `fallback="local"`, a warning and the per-process limiter instead.
- Redis failing mid-batch: an answer already received is never lost (the
  feedback is dropped, not raised). A request about to be sent is not sent:
  with `fallback="fail"` its task ends with `RateLimitUnavailableError`
  (a transport error, exit 1, retried by `--resume`); the pre-check, if it
  passed, is not followed by a stop. With `fallback="local"` the batch
  carries on with a per-process limiter, starting from the limit learned so
  far, and stays on it until it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from evalctl._base import _logging
from evalctl._base._config import Clock
from evalctl._base._errors import ConfigurationError, TransportError
from evalctl._core import _limits
from evalctl._core._limits import (
    LATE_S,
    MAX_RESERVATIONS,
    AdaptiveRateLimiter,
    RateChange,
    check_qps,
    log_change,
)

if TYPE_CHECKING:
    import redis

    from evalctl._core._runner import RateLimiter

Fallback = Literal["fail", "local"]

URL_ENV: Final = "EVALCTL_RATE_LIMIT_URL"
FALLBACKS: Final = ("fail", "local")
DEFAULT_FALLBACK: Final[Fallback] = "fail"
KEY_PREFIX: Final = "evalctl:rate"
MAX_KEY_LENGTH: Final = 200
#: Seconds to connect to Redis and to wait for one answer: a limiter that
#: cannot answer quickly is treated as down.
SOCKET_TIMEOUT_S: Final = 1.0
#: The shared state outlives the batch this long, so the next run starts
#: from the limit learned (and a key nobody uses goes away).
STATE_TTL_S: Final = 600
#: Timestamps of answers kept per log (the window needs about one second's worth).
MAX_LOG: Final = 4096

FALLBACK_EVENT: Final = "evalctl.rate_limit_fallback"
UNAVAILABLE_EVENT: Final = "evalctl.rate_limit_unavailable"


class RateLimitUnreachableError(ConfigurationError):
    """The shared rate limit's Redis could not be reached when the batch started; nothing sent."""

    kind = "rate_limit_unreachable"


class RateLimitUnavailableError(TransportError):
    """The shared rate limit failed mid-batch: this request was not sent."""


def check_fallback(fallback: object) -> Fallback:
    """`fallback` if it is "fail" or "local".

    Raises:
        ConfigurationError: anything else.
    """
    if fallback == "fail":
        return "fail"
    if fallback == "local":
        return "local"
    raise ConfigurationError(f"rate limit fallback must be 'fail' or 'local', got {fallback!r}")


def shown_url(url: str) -> str:
    """`url` without its user, password and query (which may carry a password too)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def default_key(endpoint: str, access_key: str) -> str:
    """The key of one account's limit: the console endpoint and a hash of the access key."""
    parts = urlsplit(endpoint)
    host = parts.hostname or "console"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    digest = hashlib.sha256(b"evalctl-rate-limit\0" + access_key.encode()).hexdigest()[:16]
    return f"{KEY_PREFIX}:{host}:{port}:{digest}"


def check_key(key: object) -> str:
    """A `--rate-limit-key`: non-empty printable text without spaces, at most 200 characters.

    Raises:
        ConfigurationError: anything else.
    """
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_KEY_LENGTH
        or not key.isprintable()
        or any(c.isspace() for c in key)
    ):
        raise ConfigurationError(
            f"rate limit key must be 1 to {MAX_KEY_LENGTH} printable characters without"
            " spaces"
        )
    return key


def make_limiter(
    qps: float | None,
    clock: Clock,
    *,
    url: str | None = None,
    key: str | None = None,
    fallback: object = DEFAULT_FALLBACK,
    ak: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RateLimiter:
    """The batch's limiter: shared through Redis when a URL is given (or in the env), else local.

    `ak` (default: qianfan's configured access key) and the configured
    console endpoint name the default key.

    Raises:
        ConfigurationError: a bad setting, or redis-py is not installed.
        RateLimitUnreachableError: Redis did not answer (without `fallback="local"`).
    """
    rate = check_qps(qps)
    chosen = check_fallback(fallback)
    env = os.environ if environ is None else environ
    if url is None:
        url = env.get(URL_ENV) or None
    if url is None:
        if key is not None:
            raise ConfigurationError("a rate limit key needs a rate limit URL")
        return AdaptiveRateLimiter(rate, clock)
    if not isinstance(url, str):
        raise ConfigurationError(f"rate limit URL must be a string, got {type(url).__name__}")
    shown = shown_url(url)
    name = check_key(key) if key is not None else _account_key(ak)
    del ak  # not in this frame while Redis is reached (an error's traceback holds it)
    try:
        client = _connect(url, shown)
        limiter = SharedRateLimiter(client, name, rate, clock, fallback=chosen, shown=shown)
        limiter.check()
    except RateLimitUnreachableError as error:
        if chosen == "fail":
            raise
        _logging.event(
            "warning",
            FALLBACK_EVENT,
            url=shown,
            reason=error.message,
            detail="using a per-process rate limit instead",
        )
        return AdaptiveRateLimiter(rate, clock)
    return limiter


def _account_key(ak: str | None) -> str:
    """The default key: the configured console endpoint, and a hash of `ak` (or the configured)."""
    from qianfan import get_config

    config = get_config()
    return default_key(str(config.CONSOLE_API_BASE_URL), str(ak or config.ACCESS_KEY or ""))


def _connect(url: str, shown: str) -> redis.Redis:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError(
            "a rate limit URL needs the Redis client: pip install 'evalctl[redis]'"
        ) from None
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            # One quick retry covers a pooled connection that Redis closed;
            # redis-py's default (ten, with backoff) would stall every worker.
            retry=Retry(NoBackoff(), 1),
            client_name="evalctl",
        )
    except ValueError as exc:
        # redis-py's message may quote the URL; ours never shows its password.
        reason = str(exc).replace(url, shown)
        raise ConfigurationError(f"rate limit URL {shown!r} cannot be used: {reason}") from None


class SharedRateLimiter:
    """`AdaptiveRateLimiter`'s rules, with the state in Redis (see the module doc).

    Args:
        client: A redis-py client.
        key: The limit's name: every process using it shares one rate.
        qps: This process's ceiling (None: none).
        clock: What `acquire` sleeps on, and what a local fallback runs on.
        fallback: What a Redis failure mid-batch does: "fail" the request or
            go on with a "local" limiter.
        shown: The URL as errors and events show it.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        qps: float | None,
        clock: Clock,
        *,
        fallback: Fallback = DEFAULT_FALLBACK,
        shown: str = "redis",
    ) -> None:
        self._client = client
        # The connections close when the limiter goes away (the batch keeps no
        # reference past its end).
        weakref.finalize(self, client.close)
        self._ceiling = check_qps(qps)
        self._clock = clock
        self._fallback = fallback
        self._shown = shown
        # One hash slot for all of them (`{...}`), so a cluster runs the script too.
        tag = "{" + key + "}"
        self._keys = [f"{tag}:{name}" for name in ("state", "sends", "ok", "throttled", "told")]
        self._reserve = client.register_script(_PRELUDE.replace("OFFSET", "0") + _RESERVE)
        self._feedback = client.register_script(_PRELUDE.replace("OFFSET", "2") + _FEEDBACK)
        self._lock = threading.Lock()
        self._local: AdaptiveRateLimiter | None = None
        self._limit: float | None = None
        self._reported = False
        self.key = key
        self.late = 0

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self._shown!r}, key={self.key!r})"

    @property
    def local(self) -> AdaptiveRateLimiter | None:
        """The per-process limiter in use since Redis failed, or None."""
        return self._local

    def check(self) -> None:
        """Reach Redis once (and load the scripts).

        Raises:
            RateLimitUnreachableError: it did not answer.
        """
        import redis

        try:
            self._client.ping()
            for script in (self._reserve, self._feedback):
                self._client.script_load(script.script)
        except redis.RedisError as exc:
            raise RateLimitUnreachableError(
                f"the shared rate limit at {self._shown} is unreachable: {_reason(exc)}"
                " (nothing was sent; --rate-limit-fallback local runs with a per-process"
                " limit instead)"
            ) from None

    def state(self) -> dict[str, float]:
        """The shared state's numbers (for tests and diagnostics)."""
        raw: dict[bytes, bytes] = self._client.hgetall(self._keys[0])  # type: ignore[assignment]
        return {k.decode(): float(v) for k, v in raw.items()}

    # -- the RateLimiter protocol ------------------------------------------------

    def acquire(self, clock: Clock) -> None:
        """Block until a request may be sent (a slot in the shared schedule).

        Raises:
            RateLimitUnavailableError: Redis failed and the fallback is "fail".
        """
        tries = 0
        while tries < MAX_RESERVATIONS:
            local = self._local
            if local is not None:
                local.acquire(clock)
                return
            now = clock.monotonic()
            reserved = self._reserve_slot()
            if reserved is None:
                continue  # fell back to the local limiter
            tries += 1
            wait, epoch, slot = reserved
            if wait <= 0:
                return
            clock.sleep(wait)
            if not self._given_up(epoch, slot, late=clock.monotonic() - (now + wait) > LATE_S):
                return

    async def aacquire(self, clock: Clock) -> None:
        """Wait until a request may be sent (as `acquire`; Redis is called in a thread)."""
        tries = 0
        while tries < MAX_RESERVATIONS:
            local = self._local
            if local is not None:
                await local.aacquire(clock)
                return
            now = clock.monotonic()
            reserved = await asyncio.to_thread(self._reserve_slot)
            if reserved is None:
                continue
            tries += 1
            wait, epoch, slot = reserved
            if wait <= 0:
                return
            await clock.asleep(wait)
            late = clock.monotonic() - (now + wait) > LATE_S
            if not await asyncio.to_thread(self._given_up, epoch, slot, late=late):
                return

    def feedback(self, throttled: bool, *, retry_after: float | None = None) -> None:
        """Learn from one answer (never raises: the answer itself must not be lost)."""
        local = self._local
        if local is not None:
            local.feedback(throttled, retry_after=retry_after)
            return
        import redis

        try:
            reply = self._feedback(
                keys=self._keys,
                args=[
                    1 if throttled else 0,
                    -1 if retry_after is None else max(0.0, retry_after),
                    *self._args(),
                ],
            )
        except redis.RedisError as exc:
            self._lost(exc, raising=False)
            return
        log_change(self._change(reply))

    # -- internals ---------------------------------------------------------------

    def _args(self) -> list[float | int]:
        return [
            0 if self._ceiling is None else self._ceiling,
            *(getattr(_limits, name) for name in _CONSTANTS),
            MAX_LOG,
            STATE_TTL_S,
        ]

    def _reserve_slot(self) -> tuple[float, int, bytes] | None:
        """(wait, epoch, slot) from Redis; None when it failed and the local limiter took over."""
        import redis

        try:
            reply = self._reserve(keys=self._keys, args=self._args())
        except redis.RedisError as exc:
            self._lost(exc, raising=True)
            return None
        wait, epoch, limit, slot = reply
        self._limit = None if limit in (b"", "") else float(limit)
        return float(wait), int(epoch), slot

    def _given_up(self, epoch: int, slot: bytes, *, late: bool) -> bool:
        """Whether the slot is given up: a decrease came since (which freed it), or it was missed.

        A missed slot is freed here: it was never used, the window must not count it.
        """
        import redis

        try:
            if late:
                self.late += 1
                self._client.lrem(self._keys[1], 1, slot.decode())
                return True
            current = self._client.hget(self._keys[0], "epoch")
        except redis.RedisError:
            return late  # the next acquire finds out
        return int(current or 0) != epoch

    def _lost(self, exc: Exception, *, raising: bool) -> None:
        """Redis failed: switch to the local limiter, or raise for this request."""
        reason = _reason(exc)
        with self._lock:
            first = not self._reported
            self._reported = True
            if self._fallback == "local" and self._local is None:
                self._local = AdaptiveRateLimiter(self._ceiling, self._clock, limit=self._limit)
        if self._fallback == "local":
            if first:
                _logging.event(
                    "warning",
                    FALLBACK_EVENT,
                    url=self._shown,
                    reason=reason,
                    detail="the batch goes on with a per-process rate limit",
                )
            return
        if first:
            _logging.event(
                "error",
                UNAVAILABLE_EVENT,
                url=self._shown,
                reason=reason,
                detail="requests are not sent while the shared rate limit is unavailable",
            )
        if raising:
            raise RateLimitUnavailableError(
                f"the shared rate limit at {self._shown} failed ({reason}); the request was"
                " not sent"
            )

    @staticmethod
    def _change(reply: Any) -> RateChange | None:
        changed, before, qps, limit, pause = reply
        if not int(changed):
            return None
        return RateChange(
            qps_before=None if before in (b"", "") else float(before),
            qps=float(qps),
            limit=float(limit),
            pause_s=float(pause),
        )


def _reason(exc: Exception) -> str:
    """A Redis error, in one line, without anything the URL held."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


#: The constants of `_limits` the scripts use, in the order of ARGV[2...].
_CONSTANTS: Final = (
    "BURST_S",
    "MIN_RATE",
    "HEADROOM",
    "DECREASE_FACTOR",
    "COOLDOWN_S",
    "PROBE_SCALE",
    "MAX_PROBE",
    "SLOW_START_QPS",
    "DOUBLING_S",
    "SLOW_START_MAX_QPS",
    "MIN_EVIDENCE",
    "CONFIRM_THROTTLES",
    "SATURATION_THROTTLES",
    "SATURATION_SHARE",
    "MAX_PAUSE_S",
    "WINDOW_S",
    "MAX_SENDS",
)

# KEYS: state hash, sends list, accepted list, throttled list, told list
# (newest first). ARGV (after the script's own): ceiling (0: none), the
# constants above, MAX_LOG, STATE_TTL_S; OFFSET is the number of the
# script's own arguments. Numbers are stored with %.17g:
# Redis would otherwise keep 14 digits of a Unix time (0.1 ms).
_PRELUDE: Final = """
local function num(s, default)
  local v = tonumber(s)
  if v == nil then return default end
  return v
end
local function fmt(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local a = OFFSET
local ceiling = tonumber(ARGV[a + 1]); if ceiling <= 0 then ceiling = math.huge end
local BURST_S, MIN_RATE = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
local HEADROOM = tonumber(ARGV[a + 4])
local DECREASE_FACTOR, COOLDOWN_S = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
local PROBE_SCALE, MAX_PROBE = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
local SLOW_START_QPS, DOUBLING_S = tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
local SLOW_START_MAX_QPS, MIN_EVIDENCE = tonumber(ARGV[a + 11]), tonumber(ARGV[a + 12])
local CONFIRM_THROTTLES, SATURATION_THROTTLES = tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14])
local SATURATION_SHARE, MAX_PAUSE_S = tonumber(ARGV[a + 15]), tonumber(ARGV[a + 16])
local WINDOW_S, MAX_SENDS = tonumber(ARGV[a + 17]), tonumber(ARGV[a + 18])
local MAX_LOG, TTL_S = tonumber(ARGV[a + 19]), tonumber(ARGV[a + 20])
local never = -1e300

local st = redis.call('HMGET', KEYS[1], 'limit', 'peak', 'dec', 'tat', 'first', 'pause', 'epoch',
  'streak', 'seen')
local limit = tonumber(st[1])
local peak = num(st[2], 0)
local dec = num(st[3], never)
local tat = num(st[4], never)
local first = tonumber(st[5])
local pause = num(st[6], never)
local epoch = num(st[7], 0)
local streak = num(st[8], 0)
local seen = num(st[9], never)
if now < seen - 1 then
  -- The Redis server's clock went back: every time kept lies in its future.
  tat, pause, first = never, never, now
  if limit ~= nil then dec = now - COOLDOWN_S end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[1], 'tat', fmt(tat), 'pause', fmt(pause), 'first', fmt(first),
    'dec', fmt(dec))
end
redis.call('HSET', KEYS[1], 'seen', fmt(now))

-- _limits.probe / target / slow_start / learned
local function probe(lim, pk, since)
  local scale = PROBE_SCALE * pk
  local regain = (math.max(0, pk - lim) / scale) ^ (1 / 3)
  local est = pk + scale * (since - regain) ^ 3
  return math.min(pk * MAX_PROBE, math.max(lim, est))
end
local function target(lim, pk, since)
  return math.min(ceiling, math.max(MIN_RATE, probe(lim, pk, since) * (1 - HEADROOM)))
end
local function slow_start(since)
  local r = SLOW_START_QPS * 2 ^ (math.max(0, since) / DOUBLING_S)
  if r > SLOW_START_MAX_QPS then return math.huge end
  return r
end
local function rate_at(when)
  if limit ~= nil then return target(limit, peak, when - dec) end
  if ceiling ~= math.huge then return ceiling end
  if first == nil then return slow_start(0) end
  return slow_start(when - first)
end
local function count(key)
  local horizon = now - WINDOW_S
  local items = redis.call('LRANGE', key, 0, MAX_LOG - 1)
  local n = 0
  for i = 1, #items do
    if tonumber(items[i]) > horizon then n = n + 1 else break end
  end
  return n
end
local function note(key)
  redis.call('LPUSH', key, fmt(now))
  redis.call('LTRIM', key, 0, MAX_LOG - 1)
  redis.call('EXPIRE', key, TTL_S)
end
local function shown(x) if x == math.huge then return '' end return fmt(x) end
"""

# _limits.AdaptiveRateLimiter._reserve. Returns {wait, epoch, limit or '', slot}.
_RESERVE: Final = """
if first == nil then first = now end
local start = math.max(now, pause)
if limit ~= nil and probe(limit, peak, start - dec) >= peak * MAX_PROBE then
  limit = peak * MAX_PROBE
  peak = limit
  dec = start
  redis.call('HSET', KEYS[1], 'limit', fmt(limit), 'peak', fmt(peak), 'dec', fmt(dec))
end
local rate = rate_at(start)
local slot = start
local spacing = 0
if rate ~= math.huge then
  spacing = 1 / rate
  local burst = math.max(1, rate * BURST_S)
  slot = math.max(slot, tat - (burst - 1) * spacing)
  if limit ~= nil or ceiling ~= math.huge then
    local room = math.max(1, math.floor(rate * WINDOW_S))
    if room <= MAX_SENDS then
      local nth = redis.call('LINDEX', KEYS[2], room - 1)
      if nth then slot = math.max(slot, tonumber(nth) + WINDOW_S) end
    end
  end
end
local last = redis.call('LINDEX', KEYS[2], 0)
if last then slot = math.max(slot, tonumber(last)) end
tat = math.max(tat, slot) + spacing
redis.call('LPUSH', KEYS[2], fmt(slot))
redis.call('LTRIM', KEYS[2], 0, MAX_SENDS - 1)
redis.call('HSET', KEYS[1], 'tat', fmt(tat), 'first', fmt(first))
redis.call('EXPIRE', KEYS[1], TTL_S)
redis.call('EXPIRE', KEYS[2], TTL_S)
local shown_limit = ''
if limit ~= nil then shown_limit = fmt(limit) end
return {fmt(slot - now), epoch, shown_limit, fmt(slot)}
"""

# _limits.AdaptiveRateLimiter._learn; ARGV[1] throttled (0/1), ARGV[2]
# Retry-After (-1: none). Returns {changed, qps_before or '', qps, limit, pause}.
_FEEDBACK: Final = """
local throttled = tonumber(ARGV[1]) == 1
local retry_after = tonumber(ARGV[2])
local function done(changed, before, paused)
  redis.call('EXPIRE', KEYS[1], TTL_S)
  if changed == 0 then return {0, '', '0', '0', '0'} end
  return {1, shown(before), fmt(rate_at(now)), fmt(limit), fmt(paused)}
end
if not throttled then
  redis.call('HSET', KEYS[1], 'streak', 0)
  note(KEYS[3])
  return done(0)
end
local paused = 0
if retry_after >= 0 then
  note(KEYS[5])
  local told = count(KEYS[5])
  local answers = count(KEYS[3]) + count(KEYS[4]) + 1
  if told < SATURATION_THROTTLES or told < SATURATION_SHARE * answers then
    return done(0)
  end
  paused = math.min(retry_after, MAX_PAUSE_S)
  if now + paused > pause then
    pause = now + paused
    redis.call('HSET', KEYS[1], 'pause', fmt(pause))
  else
    paused = 0
  end
end
streak = streak + 1
redis.call('HSET', KEYS[1], 'streak', streak)
note(KEYS[4])
if now - dec < COOLDOWN_S or (limit == nil and streak < CONFIRM_THROTTLES and paused == 0) then
  if paused == 0 then return done(0) end
  return done(1, rate_at(now), paused)
end
local before = rate_at(now)
local accepted = count(KEYS[3])
local estimate = nil
if limit ~= nil then estimate = probe(limit, peak, now - dec) end
local new
if estimate == nil then
  if accepted >= MIN_EVIDENCE or before == math.huge then
    new = math.max(accepted, 1)
  else
    new = math.max(accepted, before * DECREASE_FACTOR)
  end
else
  new = math.min(estimate, math.max(accepted, estimate * DECREASE_FACTOR))
end
limit = math.max(MIN_RATE, new)
peak = math.max(limit, estimate or 0)
dec = now
epoch = epoch + 1
-- Slots reserved ahead are given up; the bucket restarts at the new rate.
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if head and tonumber(head) > now then redis.call('LPOP', KEYS[2]) else break end
end
tat = math.min(tat, now)
redis.call('HSET', KEYS[1], 'limit', fmt(limit), 'peak', fmt(peak), 'dec', fmt(dec),
  'epoch', epoch, 'tat', fmt(tat))
return done(1, before, paused)
"""
