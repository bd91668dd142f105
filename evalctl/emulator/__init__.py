"""A local stand-in for the Qianfan console API: a real HTTP server on loopback.

It verifies BCE v1 signatures, serves the evaluation routes of both API
generations with the real response shapes, keeps tasks and their states,
refuses what the cloud refuses, and injects faults on demand. Use it through
the `qianfan_emulator` pytest fixture, `pointed_at`, or ``evalctl emulator``.

May import: `_base` (the API's facts), never the client it stands in for the
server of; its pytest plugin (`pytest_plugin`) also the client's guard.
"""

from evalctl.emulator._defaults import DEFAULT_AK, DEFAULT_SK
from evalctl.emulator._demo import DEMO_TASKS, DemoTask, run_foreground, seed_demo
from evalctl.emulator._emulator import Emulator
from evalctl.emulator._faults import TRANSIENT_FAULTS, Fault
from evalctl.emulator._records import RecordedRequest
from evalctl.emulator._sdk import pointed_at, sdk_environment
from evalctl.emulator._state import TaskSnapshot

__all__ = [
    "DEFAULT_AK",
    "DEFAULT_SK",
    "DEMO_TASKS",
    "TRANSIENT_FAULTS",
    "DemoTask",
    "Emulator",
    "Fault",
    "RecordedRequest",
    "TaskSnapshot",
    "pointed_at",
    "run_foreground",
    "sdk_environment",
    "seed_demo",
]
