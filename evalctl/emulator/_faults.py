"""The faults the emulator can inject, and the queue that hands them out."""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from evalctl._base import _api
from evalctl.emulator._defaults import DEFAULT_RETRY_AFTER


class Fault(enum.StrEnum):
    """A fault kind accepted by `Emulator.inject` (plain strings work too).

    A fault decides what one request gets back instead of the normal answer.
    Whether the request still takes effect differs per kind, on purpose:

    ==================  =============================================  ==========
    fault               what the client sees                           applied?
    ==================  =============================================  ==========
    ``http_429``        HTTP 429 + ``Retry-After``, BCE JSON error     no
    ``http_500``,       HTTP 500 / 503 / 504, BCE JSON error           no
    ``http_503``,
    ``http_504``
    ``http_502``        HTTP 502 with an HTML page (``text/html``)     no
    ``code_N``          HTTP 200 envelope ``{"error_code": N, ...}``   no
                        (``log_id`` on v1 routes, ``requestId`` on v2)
    ``reset``           TCP RST before any byte of an answer           no
    ``not_json``        HTTP 200 with a truncated, unparsable body     no
    ``missing_fields``  HTTP 200 envelope without the fields that      reads only
                        matter (detail: ``state``/``evalStandardConf``;
                        v2: ``state``/``evalType``; stops: ``result``)
    ``slow``            the normal answer, held for ``delay_s``        **yes**
    ==================  =============================================  ==========

    ``slow`` is the ambiguous one: the stop takes effect, but a client with a
    shorter timeout sees only a timeout. Tests of "did my timed-out stop
    happen?" rely on exactly that.
    """

    HTTP_429 = "http_429"
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    HTTP_504 = "http_504"
    CODE_2 = "code_2"
    CODE_4 = "code_4"
    CODE_18 = "code_18"
    CODE_336100 = "code_336100"
    CODE_500000 = "code_500000"
    RESET = "reset"
    SLOW = "slow"
    NOT_JSON = "not_json"
    MISSING_FIELDS = "missing_fields"


# What a well-behaved client retries: the default kinds of random faults.
TRANSIENT_FAULTS: Final[tuple[Fault, ...]] = (
    Fault.HTTP_429,
    Fault.HTTP_500,
    Fault.HTTP_502,
    Fault.HTTP_503,
    Fault.HTTP_504,
    Fault.CODE_18,
    Fault.CODE_336100,
    Fault.CODE_500000,
)

# HTTP faults: status and the BCE error code of their JSON body.
HTTP_FAULTS: Final[dict[Fault, tuple[int, str]]] = {
    Fault.HTTP_429: (429, "TooManyRequests"),
    Fault.HTTP_500: (500, "InternalError"),
    Fault.HTTP_502: (502, "BadGateway"),
    Fault.HTTP_503: (503, "ServiceUnavailable"),
    Fault.HTTP_504: (504, "GatewayTimeout"),
}

# Envelope faults: the error code and the message the cloud sends with it.
CODE_FAULTS: Final[dict[Fault, tuple[int, str]]] = {
    Fault.CODE_2: (_api.CODE_SERVICE_UNAVAILABLE, "Service temporarily unavailable"),
    Fault.CODE_4: (_api.CODE_REQUEST_LIMIT, "Open api request limit reached"),
    Fault.CODE_18: (_api.CODE_QPS_LIMIT, "Open api qps request limit reached"),
    Fault.CODE_336100: (_api.CODE_SERVER_HIGH_LOAD, "server high load, please retry later"),
    Fault.CODE_500000: (_api.CODE_CONSOLE_INTERNAL_ERROR, "console internal error"),
}

# Faults after which the request still takes effect (see the module docstring).
APPLYING_FAULTS: Final = frozenset({Fault.SLOW})

_V1_ROUTES: Final = frozenset({_api.V1_DETAIL_ROUTE, _api.V1_CANCEL_ROUTE, _api.V1_CREATE_ROUTE})
_ACTION_QUERY: Final = "?Action="


def validate_narrowing(route: str) -> None:
    """Reject a `route=` narrowing that can never match, so typos fail loudly.

    Raises:
        ValueError: `route` is not a v1 route, ``/v2/eval`` or
            ``/v2/eval?Action=<name>``.
    """
    if route in _V1_ROUTES or route == _api.V2_ROUTE:
        return
    prefix = _api.V2_ROUTE + _ACTION_QUERY
    if route.startswith(prefix) and len(route) > len(prefix):
        return
    raise ValueError(
        f"route must be one of {sorted(_V1_ROUTES)}, {_api.V2_ROUTE!r} or"
        f" '{prefix}<Action>', not {route!r}"
    )


def narrowing_matches(narrowing: str | None, path: str, action: str) -> bool:
    """Whether a fault narrowed to `narrowing` applies to a request to `path`/`action`."""
    if narrowing is None or narrowing == path:
        return True
    return path == _api.V2_ROUTE and narrowing == f"{_api.V2_ROUTE}{_ACTION_QUERY}{action}"


@dataclass(frozen=True)
class FaultHit:
    """One fault handed to one request."""

    kind: Fault
    retry_after: str
    delay_s: float


@dataclass
class _Pending:
    kind: Fault
    route: str | None
    remaining: int
    retry_after: str
    delay_s: float | None


class FaultPlan:
    """Injected faults (FIFO per matching route) and seeded random faults. Thread-safe."""

    def __init__(
        self, *, rate: float, kinds: Iterable[str], seed: int | None, slow_s: float
    ) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._slow_s = _non_negative("slow_s", slow_s)
        self._rate = 0.0
        self._kinds: tuple[Fault, ...] = ()
        self._rng = random.Random(seed)
        self.set_rate(rate, kinds, seed)

    def inject(
        self,
        fault: str,
        times: int,
        route: str | None,
        retry_after: str,
        delay_s: float | None,
    ) -> None:
        """Queue `times` occurrences of `fault` (validated here, so misuse fails at the call)."""
        kind = Fault(fault)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive integer, not {times!r}")
        if route is not None:
            validate_narrowing(route)
        if delay_s is not None:
            _non_negative("delay_s", delay_s)
        with self._lock:
            self._pending.append(_Pending(kind, route, times, retry_after, delay_s))

    def set_rate(self, rate: float, kinds: Iterable[str] | None, seed: int | None) -> None:
        """Change the random-fault probability, and optionally the kinds and the seed."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], not {rate!r}")
        new_kinds = None if kinds is None else tuple(Fault(kind) for kind in kinds)
        if new_kinds is not None and not new_kinds and rate > 0:
            raise ValueError("fault_kinds must not be empty when fault_rate > 0")
        with self._lock:
            self._rate = rate
            if new_kinds is not None:
                self._kinds = new_kinds
            if seed is not None:
                self._rng = random.Random(seed)

    def take(self, path: str, action: str) -> FaultHit | None:
        """The fault for one authenticated request, if any; injected ones first."""
        with self._lock:
            for index, pending in enumerate(self._pending):
                if narrowing_matches(pending.route, path, action):
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        del self._pending[index]
                    delay = self._slow_s if pending.delay_s is None else pending.delay_s
                    return FaultHit(pending.kind, pending.retry_after, delay)
            if self._rate > 0 and self._rng.random() < self._rate:
                return FaultHit(self._rng.choice(self._kinds), DEFAULT_RETRY_AFTER, self._slow_s)
        return None

    def pending(self) -> int:
        """How many injected fault occurrences are still waiting for a request."""
        with self._lock:
            return sum(pending.remaining for pending in self._pending)

    def clear(self) -> None:
        """Drop every injected fault (the random settings stay)."""
        with self._lock:
            self._pending.clear()


def _non_negative(name: str, value: float) -> float:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return value
