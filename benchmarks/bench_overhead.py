"""Per-call overhead: `evalctl.call_action` against the SDK's `call_action`, detail route.

Both clients run in this process against one in-process emulator, in
alternating blocks (ABBA) after a warm-up. Target: median ratio ≤ 1.05.
The client-CPU line is the calling thread's CPU time only (the emulator's
threads excluded): evalctl's own work per call, free of server time and of
waiting. A second set of lines repeats the measurement with INFO events rendered as
JSON into a null sink, and the last line prices one event on its own.

The pooled drop-in (issue 15): 1,000 sequential `evalctl.call_action` detail
calls against 1,000 of the raw SDK's, in four ABBA blocks of 250 so that the
process-wide pooled connection stays in use for long runs. Target: median
ratio ≤ 0.75 (the raw SDK opens a new connection for every call). Reported
with it: the client CPU per request of each side (the calling thread's, mean)
and how many TCP connections each side opened at the emulator.

The structlog configuration is not cached on first use here, so that it can
change between the two phases; that costs evalctl about 20 µs per event
more than an application that caches (under 0.5 % of a call).

    python benchmarks/bench_overhead.py [--quick] [--n N]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import _common

if TYPE_CHECKING:
    from evalctl.emulator import Emulator

TARGET: Final = 1.05
POOLED_TARGET: Final = 0.75
POOLED_BLOCKS: Final = 4
N: Final = 1000
QUICK_N: Final = 40
TASK_ID: Final = "ame-benchoverhead1"
EVENTS: Final = 20_000
QUICK_EVENTS: Final = 500


def main() -> None:
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="calls per side")
    _common.prepare("production")
    block = 10 if args.quick else 50
    warmup = 5 if args.quick else 50
    _common.header(
        "bench_overhead",
        f"call_action on the v1 detail route, {args.n} calls per side in ABBA blocks of "
        f"{block}, in-process emulator; logging: {_common.LOGGING_MODES['production']}",
    )

    from qianfan.resources.console.utils import call_action as raw_call_action

    import evalctl

    with _common.emulator() as emulator:
        emulator.add_task(TASK_ID)
        params = {"id": TASK_ID}

        def ours() -> None:
            evalctl.call_action(_common.V1_DETAIL, "", params)

        def theirs() -> None:
            raw_call_action(_common.V1_DETAIL, "", params)

        for mode in ("production", "rendered"):
            _common.configure_logging(mode)
            a, b = _common.interleaved(ours, theirs, args.n, block=block, warmup=warmup)
            target = TARGET if mode == "production" else None
            suffix = "" if mode == "production" else ", INFO logs rendered"
            _common.ratio_line(
                f"call_action detail median{suffix}",
                _common.median(a.wall),
                _common.median(b.wall),
                target=target,
            )
            _common.ratio_line(
                f"call_action detail p95{suffix}",
                _common.p95(a.wall),
                _common.p95(b.wall),
                target=None,
            )
            _common.ratio_line(
                f"call_action detail client CPU median{suffix}",
                _common.median(a.cpu),
                _common.median(b.cpu),
                target=None,
            )

        pooled(emulator, ours, theirs, args.n, warmup=warmup)

    events = QUICK_EVENTS if args.quick else EVENTS
    _common.ratio_line(
        f"one qianfan.request event ({events:,} emitted)",
        event_cost("rendered", events),
        event_cost("production", events),
        target=None,
        unit="us",
        ours_label="rendered as JSON",
        theirs_label="filtered out",
    )


def pooled(
    emulator: Emulator, ours: Callable[[], None], theirs: Callable[[], None], n: int, *, warmup: int
) -> None:
    """The pooled drop-in's figures: median latency, client CPU per request, connections."""
    _common.configure_logging("production")
    opened = {"evalctl": 0, "raw": 0}

    def counted(fn: Callable[[], None], side: str) -> Callable[[], None]:
        def call() -> None:
            before = emulator.connections_opened
            fn()
            opened[side] += emulator.connections_opened - before

        return call

    for _ in range(warmup):
        ours()
        theirs()
    a, b = _common.interleaved(
        counted(ours, "evalctl"),
        counted(theirs, "raw"),
        n,
        block=max(1, n // POOLED_BLOCKS),
    )
    _common.ratio_line(
        "pooled drop-in call_action detail median",
        _common.median(a.wall),
        _common.median(b.wall),
        target=POOLED_TARGET,
    )
    _common.ratio_line(
        "pooled drop-in client CPU per request",
        sum(a.cpu) / len(a.cpu),
        sum(b.cpu) / len(b.cpu),
        target=None,
    )
    print(
        f"# pooled drop-in connections opened for {n:,} sequential calls: "
        f"evalctl {opened['evalctl']:,}, raw {opened['raw']:,}",
        flush=True,
    )


def event_cost(mode: _common.LoggingMode, count: int) -> float:
    """Seconds to log one `qianfan.request` event (as each attempt does) under `mode`.

    Through a logger bound once, as ``cache_logger_on_first_use=True`` makes
    evalctl's module-level logger in an application configured at start-up.
    """
    import structlog

    _common.configure_logging(mode)
    logger = structlog.get_logger("evalctl").bind()
    started = time.perf_counter()
    for attempt in range(count):
        logger.info(
            "qianfan.request",
            route=_common.V1_DETAIL,
            action="",
            attempt=attempt,
            log_id="3820260237",
            http_status=200,
            error_code=None,
            duration_ms=4.2,
            outcome="ok",
            task_id=TASK_ID,
            purpose="call",
        )
    return (time.perf_counter() - started) / count


if __name__ == "__main__":
    main()
