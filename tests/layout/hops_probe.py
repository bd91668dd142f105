"""Run `evalctl cancel ID` on an emulator and print, as JSON, the path of each send.

Run as a script (its own process: the CLI configures logging for the
process). For every call of the wire's `send`, a profiler records the evalctl
functions on the way there: the frames of the thread that handed the task to
the batch's pool, the worker thread's frames, and the chain of operation
generators the driver is running (suspended at their `yield`, so on no stack).
"""

from __future__ import annotations

import json
import sys
import threading
from types import FrameType, GeneratorType
from typing import Any

from evalctl._cli import _app
from evalctl._core import _runner
from evalctl._wire import _transport
from evalctl.emulator import Emulator, pointed_at
from evalctl.testing import set_testing

sends: list[dict[str, Any]] = []
handed_over: list[list[str]] = []


def _evalctl_frames(frame: FrameType | None) -> list[str]:
    names = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("evalctl.") and not module.startswith("evalctl.emulator"):
            names.append(f"{module}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return names[::-1]


def _generator_chain(frame: FrameType | None) -> list[str]:
    """The operation the driver in this stack runs, and every generator it delegates to."""
    while frame is not None and frame.f_code is not _runner.run.__code__:
        frame = frame.f_back
    chain: list[str] = []
    generator = None if frame is None else frame.f_locals.get("operation")
    while isinstance(generator, GeneratorType):
        code = generator.gi_code
        chain.append(f"{generator.gi_frame.f_globals['__name__']}.{code.co_qualname}")
        generator = generator.gi_yieldfrom
    return chain


def _profile(frame: FrameType, event: str, arg: object) -> None:
    if event != "call":
        return
    if frame.f_code is _transport.send.__code__:
        session = frame.f_back.f_locals["session"] if frame.f_back else None  # `_perform`'s
        sends.append(
            {
                "route": frame.f_locals["route"],
                "stop": frame.f_locals["clearance"] is not None,
                "frames": _evalctl_frames(frame),
                "generators": _generator_chain(frame),
                "session": None if session is None else id(session),
            }
        )
    elif frame.f_code.co_name == "submit" and "concurrent" in frame.f_code.co_filename:
        handed_over.append(_evalctl_frames(frame.f_back))


with set_testing(True), Emulator() as emulator, pointed_at(emulator):
    task_id = emulator.add_task()
    sys.setprofile(_profile)
    threading.setprofile(_profile)
    code = _app.run(["cancel", task_id, "--quiet"])
    sys.setprofile(None)
    threading.setprofile(None)
    stopped = emulator.task(task_id).state

print(json.dumps({"exit": code, "state": stopped, "sends": sends, "handed_over": handed_over}))
