"""Point the qianfan SDK at an emulator, and back.

qianfan reads its environment once, into a process-wide config singleton
(`qianfan.get_config()`), so setting env vars after its first use changes
nothing. Switching therefore sets both the env vars (for subprocesses and
fresh configs) and the live config object, and restores both afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Protocol, TypeVar

# env var → attribute of qianfan's Config (which upper-cases attribute names).
_SWITCHED: Final = {
    "QIANFAN_CONSOLE_API_BASE_URL": "CONSOLE_API_BASE_URL",
    "QIANFAN_ACCESS_KEY": "ACCESS_KEY",
    "QIANFAN_SECRET_KEY": "SECRET_KEY",
}


class Endpoint(Protocol):
    """Anything with a console base URL and credentials (an `Emulator`)."""

    @property
    def base_url(self) -> str: ...
    @property
    def ak(self) -> str: ...
    @property
    def sk(self) -> str: ...


E = TypeVar("E", bound=Endpoint)


def sdk_environment(endpoint: Endpoint) -> dict[str, str]:
    """The env vars that point qianfan (and evalctl) at `endpoint`."""
    return {
        "QIANFAN_CONSOLE_API_BASE_URL": endpoint.base_url,
        "QIANFAN_ACCESS_KEY": endpoint.ak,
        "QIANFAN_SECRET_KEY": endpoint.sk,
    }


@contextmanager
def pointed_at(endpoint: E) -> Iterator[E]:
    """Within the block, qianfan's console calls go to `endpoint` with its keys.

    Sets ``QIANFAN_CONSOLE_API_BASE_URL``, ``QIANFAN_ACCESS_KEY`` and
    ``QIANFAN_SECRET_KEY`` in `os.environ` and on the live
    `qianfan.get_config()` object; restores the previous values on exit.
    Not thread-safe against concurrent switches (the SDK config is global).

    Yields:
        `endpoint`, for ``with pointed_at(Emulator().start()) as emulator``.
    """
    from qianfan import get_config  # imported late: qianfan is slow and noisy to import

    config = get_config()
    saved_env = {name: os.environ.get(name) for name in _SWITCHED}
    saved_config = {attr: getattr(config, attr) for attr in _SWITCHED.values()}
    try:
        for name, value in sdk_environment(endpoint).items():
            os.environ[name] = value
            setattr(config, _SWITCHED[name], value)
        yield endpoint
    finally:
        for name, previous in saved_env.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        for attr, previous_value in saved_config.items():
            setattr(config, attr, previous_value)
