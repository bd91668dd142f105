"""The axes of the core suite: flavour (sync | async) × api (v1 | v2).

A behaviour test asks for `client` (and `api` for the route facts); it then
runs four times, and each run talks HTTP to the emulator through the real SDK.
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
