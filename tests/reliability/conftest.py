"""One emulator per module, wiped before each test: hundreds of rows stay cheap.

Closing an emulator joins its connection threads, which can take a fifth of
a second; the fault matrix and the property tests run hundreds of cases, so
they share one server and `reset()` it instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evalctl.emulator import Emulator, pointed_at


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """A started emulator for the whole module, with qianfan pointed at it."""
    with Emulator(stop_delay_s=0.0) as started, pointed_at(started):
        yield started


def wiped(emulator: Emulator) -> Emulator:
    """`emulator` with no tasks, faults or records, and default settings."""
    emulator.reset()
    emulator.set_fault_rate(0.0)
    emulator.set_qps_limit(None)
    emulator.set_latency(0.0)
    emulator.set_stop_delay(0.0)
    return emulator


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The module's emulator, wiped clean for this test."""
    return wiped(shared_emulator)
