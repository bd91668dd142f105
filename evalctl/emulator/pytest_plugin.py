"""pytest plugin (entry point ``pytest11``): the `qianfan_emulator` fixture; ``EVALCTL_GUARD=1``.

Imports stay inside the fixture and hooks so that merely having evalctl
installed costs other test suites nothing (no qianfan import at collection
time). Loading the plugin imports the `evalctl` package, which filters the
SDK's import-time redis notice out of the run's output (nothing else of the
suite's logging changes).

With ``EVALCTL_GUARD=1`` in the environment the whole test session runs under
`evalctl.guard()`: every evaluation stop the suite issues through the SDK
(``Model.stop_evaluation_task``, ``call_action``) gets evalctl's pre-check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evalctl.emulator import Emulator


def pytest_configure(config: pytest.Config) -> None:
    """Guard the session when ``EVALCTL_GUARD=1``; remember to undo it at the end."""
    from evalctl._client import _sdkguard

    if _sdkguard.guard_from_environment():
        config.add_cleanup(_sdkguard.unguard)


@pytest.fixture
def qianfan_emulator() -> Iterator[Emulator]:
    """A started `Emulator` with qianfan (env vars and live config) pointed at it.

    Everything is restored, and the server shut down, after the test.
    """
    from evalctl.emulator import Emulator, pointed_at

    with Emulator() as emulator, pointed_at(emulator):
        yield emulator
