"""TLS verification comes from qianfan's `get_config().SSL_VERIFICATION_ENABLED`."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalctl._base._credentials import Credentials
from evalctl._wire._transport import AttemptFailed

from .support import (
    FLAVOURS,
    JSON_HEAD,
    Flavour,
    HostileServer,
    call,
    pointed_to,
    self_signed_tls,
    trickle,
)

BODY = b'{"log_id": "over-tls", "result": {}}'
ROUTE = "/wenxinworkshop/modelrepo/eval/detail"
CREDS = Credentials("tls-test-ak-000", "tls-test-sk-000")
# urllib3 warns on every unverified HTTPS request, as it does for the SDK.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return self_signed_tls(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def verification(request: pytest.FixtureRequest) -> Iterator[None]:
    from qianfan import get_config

    config = get_config()
    saved = config.SSL_VERIFICATION_ENABLED
    config.SSL_VERIFICATION_ENABLED = request.param
    try:
        yield
    finally:
        config.SSL_VERIFICATION_ENABLED = saved


def _answer(conn: socket.socket) -> None:
    conn.sendall(JSON_HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("verification", [True], indirect=True)
@pytest.mark.usefixtures("verification")
def test_an_unverifiable_certificate_is_refused_before_sending(
    flavour: Flavour, tls: ssl.SSLContext
) -> None:
    with HostileServer(_answer, tls) as server, pointed_to(server.base_url):
        base_url = server.base_url
        with pytest.raises(AttemptFailed) as caught:
            call(flavour, ROUTE, "", {"id": "ame-x"}, CREDS)

    failure = caught.value.failure
    assert failure.message == f"connection failed to {base_url}: SSLCertVerificationError"
    assert (failure.kind, failure.maybe_applied) == ("connection", False)
    assert server.heads == []  # nothing was read by the server: no request went out


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("verification", [False], indirect=True)
@pytest.mark.usefixtures("verification")
def test_verification_off_in_the_sdk_config_is_honoured(
    flavour: Flavour, tls: ssl.SSLContext
) -> None:
    with HostileServer(_answer, tls) as server, pointed_to(server.base_url):
        reply = call(flavour, ROUTE, "", {"id": "ame-x"}, CREDS)

    assert reply.log_id == "over-tls"
    assert server.heads[0].startswith(f"POST {ROUTE}?Action= HTTP/1.1".encode())


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("verification", [False], indirect=True)
@pytest.mark.usefixtures("verification")
def test_a_trickling_tls_server_is_cut_off_at_the_deadline(
    flavour: Flavour, tls: ssl.SSLContext
) -> None:
    whole = JSON_HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY
    with HostileServer(trickle(whole, 0.1), tls) as server, pointed_to(server.base_url):
        with pytest.raises(AttemptFailed) as caught:
            call(flavour, ROUTE, "", {"id": "ame-x"}, CREDS, timeout=0.4)
        assert server.finished.wait(10)

    assert (caught.value.failure.kind, caught.value.failure.message) == (
        "timeout",
        "timed out: TimeoutError",
    )
    assert server.endings != ["done"]
