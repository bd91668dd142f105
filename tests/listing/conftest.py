"""Fixtures of the listing tests: an emulator with recognisable keys, and a CLI environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalctl.emulator import Emulator, sdk_environment
from listing.support import AK, SK


@pytest.fixture
def server() -> Iterator[Emulator]:
    """An emulator with recognisable keys; stops settle at once."""
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as emulator:
        yield emulator


@pytest.fixture
def env(server: Emulator, tmp_path: Path) -> dict[str, str]:
    """The environment of a console-script run pointed at `server`, in testing mode."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("QIANFAN_", "EVALCTL_"))
    }
    return {
        **base,
        **sdk_environment(server),
        "HOME": str(tmp_path),
        "EVALCTL_TESTING": "1",
        "NO_COLOR": "1",
        "COLUMNS": "160",
        "TERM": "xterm",
    }
