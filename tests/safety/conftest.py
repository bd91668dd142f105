"""The safety suite's axes (sync | async × v1 | v2) and one shared, wiped emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from core.axes import api, client, flavour

from evalctl.emulator import Emulator, pointed_at

__all__ = ["api", "client", "emu", "flavour", "shared_emulator"]


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """A started emulator for the whole module, with qianfan pointed at it."""
    with Emulator(stop_delay_s=0.0) as started, pointed_at(started):
        yield started


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The module's emulator, wiped clean for this test."""
    shared_emulator.reset()
    shared_emulator.set_stop_delay(0.0)
    return shared_emulator
