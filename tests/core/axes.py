"""The behaviour suites' axes as fixtures: flavour (sync | async) × api (v1 | v2).

A test that asks for `client` (and `api` for the route facts) runs four
times, and each run talks HTTP to the emulator through the real SDK. The
conftests of `tests/core` and `tests/safety` import these.
"""

from __future__ import annotations

import pytest

from core.support import APIS, ApiSpec, Client, Flavour


@pytest.fixture(params=["v1", "v2"])
def api(request: pytest.FixtureRequest) -> ApiSpec:
    """The API generation under test."""
    return APIS[request.param]


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Sync functions, or their async twins run with `asyncio.run`."""
    return Flavour(request.param)


@pytest.fixture
def client(flavour: Flavour, api: ApiSpec) -> Client:
    """The public API in one flavour, bound to one generation."""
    return Client(flavour, api)
