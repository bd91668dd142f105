"""What every benchmark shares: quiet imports, logging as users set it up, timing, the figure line.

Each benchmark prints a one-line header, then one line per figure:

    <figure>: evalctl X, raw Y, ratio Z (target ≤ T) OK|MISS

The ratio compares evalctl with the raw qianfan SDK measured in the same
process, against the same emulator, interleaved in blocks, so a noisy machine
slows both sides alike. A missed target prints MISS; the exit code stays 0
because a benchmark is a measurement, not a test.

Import qianfan and evalctl only after `prepare()`: it hides the SDK's import
warning about redis and configures structlog.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from evalctl.emulator import Emulator

LoggingMode = Literal["production", "rendered"]

#: What each logging mode means, for headers and figure names.
LOGGING_MODES: Final[dict[LoggingMode, str]] = {
    "production": "structlog filtering at WARNING (info events dropped)",
    "rendered": "structlog INFO events rendered as JSON into a null sink",
}

# Spelled out, as a user of the bare SDK writes them.
V1_DETAIL: Final = "/wenxinworkshop/modelrepo/eval/detail"
V1_CANCEL: Final = "/wenxinworkshop/modelrepo/eval/cancel"


# --- set-up ---------------------------------------------------------------------


class _NoRedisWarning(logging.Filter):
    """Drops the SDK's import-time warning that redis is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "redis" not in str(record.msg).lower()


def arguments(
    description: str, *, n: int, quick_n: int, n_help: str, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The command line every benchmark takes: ``[--quick] [--n N]``.

    `args.n` is filled in: `--n` if given, else `quick_n` with `--quick`, else `n`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--n", type=int, default=None, help=f"{n_help} (default {n})")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = quick_n if args.quick else n
    if args.n < 1:
        parser.error("--n must be at least 1")
    return args


def prepare(mode: LoggingMode = "production") -> None:
    """Silence the SDK's import warning and configure structlog; call before importing them."""
    logging.getLogger("qianfan").addFilter(_NoRedisWarning())
    configure_logging(mode)


def configure_logging(mode: LoggingMode) -> None:
    """Configure structlog as a production user of the library would.

    "production" drops info events at the filtering wrapper, before any
    processor runs (the cheap path), and renders warnings into a null sink;
    "rendered" renders every INFO event as
    a JSON line into a null sink, so the cost of formatting logs shows.
    `cache_logger_on_first_use` stays off so the mode can change between
    phases of one benchmark (evalctl's module-level logger is a lazy proxy).
    """
    import structlog

    # Both modes render what passes the level filter into a null sink, so the
    # rendering cost counts but the output does not bury the figures.
    level = logging.WARNING if mode == "production" else logging.INFO
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=_NullSink()),
        cache_logger_on_first_use=False,
    )


class _NullSink(io.StringIO):
    """A text file that forgets what it is given (the rendering still happens)."""

    def write(self, text: str) -> int:
        return len(text)


# --- the machine and the header -------------------------------------------------


def machine() -> str:
    """Where the numbers come from: CPU, cores, load, Python, qianfan."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores (load {load:.2f}), "
        f"Python {platform.python_version()}, qianfan {_version('qianfan')}, "
        f"evalctl {_version('evalctl')}"
    )


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def header(name: str, what: str) -> None:
    """Print the benchmark's one-line header."""
    print(f"# {name}: {what} | {machine()}", flush=True)


# --- statistics and timing ------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    """The median."""
    return statistics.median(samples)


def p95(samples: Sequence[float]) -> float:
    """The 95th percentile, nearest rank (a sample that was actually observed)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Samples:
    """Per-call timings of one side: wall time, and CPU time of the calling thread."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def interleaved(
    a: Callable[[], object], b: Callable[[], object], n: int, *, block: int, warmup: int = 0
) -> tuple[Samples, Samples]:
    """Time `n` calls of `a` and of `b`, in alternating blocks A B B A A B …

    Alternating the order of each pair of blocks (ABBA) cancels a linear
    drift of the machine's speed between the two sides. The CPU time is the
    calling thread's only: an in-process emulator's threads are not in it,
    so it isolates the client's own work from the server and from waiting.
    """
    for _ in range(warmup):
        a()
        b()
    samples_a, samples_b = Samples(), Samples()
    rounds = 0
    while len(samples_a.wall) < n:
        size = min(block, n - len(samples_a.wall))
        pairs = [(a, samples_a), (b, samples_b)]
        for fn, into in pairs if rounds % 2 == 0 else reversed(pairs):
            _timed(fn, size, into)
        rounds += 1
    return samples_a, samples_b


def _timed(fn: Callable[[], object], count: int, into: Samples) -> None:
    wall, cpu = time.perf_counter, time.thread_time
    for _ in range(count):
        started_wall, started_cpu = wall(), cpu()
        fn()
        into.cpu.append(cpu() - started_cpu)
        into.wall.append(wall() - started_wall)


def run_wall(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one subprocess run, in seconds; it must exit 0."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}"
        )
    return elapsed


# --- figures --------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """OK or MISS."""
    return "OK" if ok else "MISS"


def ratio_line(
    figure: str,
    ours: float,
    theirs: float,
    *,
    target: float | None,
    unit: str = "ms",
    ours_label: str = "evalctl",
    theirs_label: str = "raw",
) -> str:
    """Print and return ``<figure>: evalctl X, raw Y, ratio Z (target ≤ T) OK|MISS``.

    Values are seconds, shown in `unit` (us, ms or s). Without a target, the line
    ends with ``(info)`` instead of a verdict.
    """
    ratio = ours / theirs if theirs > 0 else float("inf")
    tail = "(info)" if target is None else f"(target ≤ {target:g}) {verdict(ratio <= target)}"
    line = (
        f"{figure}: {ours_label} {_seconds(ours, unit)}, {theirs_label} {_seconds(theirs, unit)}, "
        f"ratio {ratio:.3f} {tail}"
    )
    print(line, flush=True)
    return line


def _seconds(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value * 1e6:.1f} µs"
    if unit == "ms":
        return f"{value * 1000:.3f} ms"
    return f"{value:.3f} s"


# --- the emulator ---------------------------------------------------------------


@contextmanager
def emulator(**settings: Any) -> Iterator[Emulator]:
    """A started emulator (stops settle at once) with qianfan pointed at it."""
    from evalctl.emulator import Emulator, pointed_at

    settings.setdefault("stop_delay_s", 0.0)
    with Emulator(**settings) as started, pointed_at(started):
        yield started


#: The faults of a request the server (or a fault) told to slow down.
THROTTLED_FAULTS: Final = frozenset({"qps_limit", "http_429", "code_18"})


class RemoteEmulator:
    """An emulator in its own process, as the real console is: the client's
    threads and the server's never share an interpreter lock, so arrival
    times at the server's QPS window are not skewed by the client's work.

    `settings` are the `Emulator`'s (`qps_limit`, `latency_s`, ...); stops
    settle at once.
    """

    def __init__(self, **settings: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end, settings), daemon=True)
        self.base_url = self.ak = self.sk = ""

    def __enter__(self) -> RemoteEmulator:
        self._process.start()
        self.base_url, self.ak, self.sk = self._conn.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._conn.send(("close",))
        self._process.join(10)

    def fresh(
        self,
        prefix: str,
        count: int,
        *,
        names: str | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] | None = None,
        fault_seed: int = 0,
    ) -> list[str]:
        """Forget everything; seed `count` running tasks ``ame-<prefix>NNNNNN``
        (named ``<names>-NNNNNN`` when given); set the random faults."""
        self._conn.send(("fresh", prefix, count, names, fault_rate, fault_kinds, fault_seed))
        ids: list[str] = self._conn.recv()
        return ids

    def restart_window(self) -> None:
        """A fresh QPS window and no records (the tasks stay)."""
        self._conn.send(("restart",))
        self._conn.recv()

    def set_limit(self, qps_limit: int) -> None:
        """The QPS limit of the next runs."""
        self._conn.send(("limit", qps_limit))
        self._conn.recv()

    def counts(self) -> tuple[int, int]:
        """(requests received, how many of them were throttled)."""
        self._conn.send(("counts",))
        counts: tuple[int, int] = self._conn.recv()
        return counts


def _serve(conn: Any, settings: dict[str, Any]) -> None:
    """The emulator process: answers `RemoteEmulator`'s commands until told to close."""
    prepare("production")
    from evalctl.emulator import Emulator

    limit = settings.get("qps_limit")
    with Emulator(**{"stop_delay_s": 0.0, **settings}) as emulator:
        conn.send((emulator.base_url, emulator.ak, emulator.sk))
        while True:
            command, *rest = conn.recv()
            if command == "close":
                return
            if command == "fresh":
                prefix, count, names, fault_rate, fault_kinds, fault_seed = rest
                emulator.reset()
                emulator.set_qps_limit(limit)  # a fresh sliding window
                ids = [
                    emulator.add_task(
                        f"ame-{prefix}{index:06d}",
                        name=None if names is None else f"{names}-{index:06d}",
                    )
                    for index in range(count)
                ]
                emulator.set_fault_rate(fault_rate, kinds=fault_kinds, seed=fault_seed)
                conn.send(ids)
            elif command == "restart":
                emulator.set_qps_limit(limit)
                emulator.clear_requests()
                conn.send(None)
            elif command == "limit":
                (limit,) = rest
                conn.send(None)
            elif command == "counts":
                records = emulator.requests
                conn.send((len(records), sum(1 for r in records if r.fault in THROTTLED_FAULTS)))


def evalctl_command() -> list[str]:
    """The installed ``evalctl`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("evalctl")
    if not script.exists():
        raise SystemExit(f"{script} not found: install the project (make test installs it)")
    return [str(script)]
