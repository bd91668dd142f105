"""Demo tasks, and the emulator as a foreground process (``evalctl emulator``)."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final, TextIO

from evalctl._base import _api
from evalctl.emulator._defaults import (
    DEFAULT_AK,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_SK,
    FOREGROUND_WAKE_S,
)
from evalctl.emulator._emulator import Emulator
from evalctl.emulator._sdk import sdk_environment


@dataclass(frozen=True)
class DemoTask:
    """One seeded demo task."""

    role: str
    task_id: str
    eval_mode: str
    state: str
    name: str


# Stable, readable ids (all of the form ame-[a-z0-9]+), one per situation.
DEMO_TASKS: Final[tuple[DemoTask, ...]] = (
    DemoTask("auto", "ame-demoauto01", "rule,model", _api.V1_DOING, "demo: automatic, running"),
    DemoTask(
        "manual", "ame-demomanual1", "rule,manual", _api.V1_DOING, "demo: includes manual, running"
    ),
    DemoTask("stopped", "ame-demostopped", "rule", _api.V1_STOPPED, "demo: already stopped"),
    DemoTask("done", "ame-demodone001", "model", _api.V1_DONE, "demo: finished"),
)


def seed_demo(emulator: Emulator) -> dict[str, str]:
    """Seed the demo tasks; returns role (auto, manual, stopped, done) → task id."""
    for task in DEMO_TASKS:
        emulator.add_task(task.task_id, task.eval_mode, task.state, name=task.name)
    return {task.role: task.task_id for task in DEMO_TASKS}


def run_foreground(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    demo: bool = False,
    ak: str = DEFAULT_AK,
    sk: str = DEFAULT_SK,
    out: TextIO | None = None,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Serve until Ctrl-C, SIGTERM or `stop` is set, then shut down cleanly.

    Prints the base URL, the demo tasks when seeded, and the ``export`` lines
    that point qianfan and evalctl at the emulator (its keys are fake).

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one.
        demo: seed `DEMO_TASKS`.
        ak: access key to accept.
        sk: secret key to verify with.
        out: where to print; stdout by default.
        stop: set it to stop from another thread (tests).
    """
    out = sys.stdout if out is None else out
    stop = threading.Event() if stop is None else stop
    restore_sigterm = _on_sigterm()
    try:
        _serve(host, port, demo, ak, sk, out, stop)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C before the serving loop began
        pass
    finally:
        restore_sigterm()
    out.write("Emulator stopped.\n")
    out.flush()


def _serve(
    host: str, port: int, demo: bool, ak: str, sk: str, out: TextIO, stop: threading.Event
) -> None:
    """The body of `run_foreground`: start, announce, serve until told to stop."""
    with Emulator(ak, sk, host=host, port=port) as emulator:
        out.write(f"Qianfan console emulator listening on {emulator.base_url}\n")
        if demo:
            seed_demo(emulator)
            out.write("Demo tasks:\n")
            for task in DEMO_TASKS:
                modes = ",".join(_api.ordered_modes(task.eval_mode.split(",")))
                out.write(f"  {task.role:<8} {task.task_id:<16} {modes:<12} {task.state}\n")
        out.write("Point qianfan / evalctl at it:\n")
        for name, value in sdk_environment(emulator).items():
            out.write(f"  export {name}={shlex.quote(value)}\n")
        out.write("Press Ctrl-C to stop.\n")
        out.flush()
        while not stop.wait(FOREGROUND_WAKE_S):
            pass


def _on_sigterm() -> Callable[[], None]:
    """Let SIGTERM stop serving as Ctrl-C does (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        # Raise rather than `stop.set()`: the handler runs in the main thread,
        # possibly while `stop.wait()` holds the event's lock, and setting the
        # event from here would then deadlock on that same lock.
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if previous is not None:  # None: installed outside Python, nothing to put back
            signal.signal(signal.SIGTERM, previous)

    return restore
