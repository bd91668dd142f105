"""Shared fixtures: zero-backoff testing mode everywhere, log capture, an emulator."""

from __future__ import annotations

import logging
import os
import sys

# Where the machine sets PYTHONDONTWRITEBYTECODE, every worker would rewrite and
# compile every test module anew on each run (seconds of collection): their
# bytecode is kept in the venv instead (as the zygote's is, `forkserver`), never
# beside the sources.
if sys.dont_write_bytecode:
    sys.pycache_prefix = os.path.join(sys.prefix, "pycache")
    sys.dont_write_bytecode = False

# Before anything imports qianfan: its import-time notice about redis (which
# evalctl never uses) would otherwise end every test run's output.
logging.getLogger("qianfan").addFilter(lambda record: "No redis" not in record.getMessage())

from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from evalctl.emulator import Emulator, pointed_at
from evalctl.testing import VirtualClock, set_testing


@pytest.fixture(autouse=True)
def clock() -> Iterator[VirtualClock]:
    """Every test runs retries and polling on a virtual clock: no real backoff."""
    with set_testing(True) as virtual:
        assert virtual is not None
        yield virtual


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event emitted during the test, as dicts."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A started emulator with qianfan pointed at it; stops settle at once."""
    with Emulator(stop_delay_s=0.0) as started, pointed_at(started):
        yield started
