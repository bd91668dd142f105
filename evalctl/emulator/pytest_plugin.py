"""pytest plugin (entry point ``pytest11``): the `qianfan_emulator` fixture.

Imports stay inside the fixture so that merely having evalctl installed costs
other test suites nothing (no qianfan import at collection time).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evalctl.emulator import Emulator


@pytest.fixture
def qianfan_emulator() -> Iterator[Emulator]:
    """A started `Emulator` with qianfan (env vars and live config) pointed at it.

    Everything is restored, and the server shut down, after the test.
    """
    from evalctl.emulator import Emulator, pointed_at

    with Emulator() as emulator, pointed_at(emulator):
        yield emulator
