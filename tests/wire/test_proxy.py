"""The proxy comes from qianfan's `get_config().PROXY` (and, sync, the environment)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from evalctl._base._credentials import Credentials

from .support import FLAVOURS, JSON_HEAD, Flavour, HostileServer, call, pointed_to

BODY = b'{"log_id": "via-proxy", "result": {}}'
ROUTE = "/wenxinworkshop/modelrepo/eval/detail"
CREDS = Credentials("proxy-test-ak", "proxy-test-sk")


def _answer(conn: socket.socket) -> None:
    conn.sendall(JSON_HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY)


@pytest.fixture
def proxy() -> Iterator[HostileServer]:
    with HostileServer(_answer) as server:
        yield server


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_configured_proxy_carries_the_request(flavour: Flavour, proxy: HostileServer) -> None:
    from qianfan import get_config

    config = get_config()
    saved = config.PROXY
    config.PROXY = proxy.base_url
    try:
        # The console host is never resolved: only the proxy is contacted.
        with pointed_to("http://console.invalid"):
            reply = call(flavour, ROUTE, "", {"id": "ame-x"}, CREDS)
    finally:
        config.PROXY = saved

    assert reply.log_id == "via-proxy"
    [head] = proxy.heads
    assert head.startswith(f"POST http://console.invalid{ROUTE}?Action= HTTP/1.1".encode())


def test_the_environments_proxy_is_honoured_on_the_sync_path(
    proxy: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `requests` (and so the SDK) does; `NO_PROXY` is honoured too."""
    monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with pointed_to("http://console.invalid"):
        reply = call("sync", ROUTE, "", {"id": "ame-x"}, CREDS)

    assert reply.log_id == "via-proxy"
    assert proxy.heads[0].startswith(b"POST http://console.invalid/")
