"""Each attempt is bounded in total wall time by its timeout, not per socket read.

The servers trickle one byte every 0.1 s: each read completes well within
the timeout, so only a bound on the whole attempt ends it. Nothing here
times the client; the server notes whether the client hung up before it
had sent everything (a client that waited would let it finish).
"""

from __future__ import annotations

import pytest

from evalctl._credentials import Credentials
from evalctl._transport import AttemptFailed

from .support import FLAVOURS, JSON_HEAD, Flavour, HostileServer, call, pointed_to, trickle

BODY = b'{"log_id": "trickled", "result": {"padding": "' + b"x" * 40 + b'"}}'
BYTE_EVERY_S = 0.1
TIMEOUT_S = 0.4  # four bytes' worth; the whole answer takes ~10 s
CREDS = Credentials("trickle-ak", "trickle-sk")


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


def _answer_trickling_headers() -> bytes:
    return JSON_HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_trickling_server_cannot_hold_an_attempt_past_its_timeout(
    flavour: Flavour, phase: str
) -> None:
    whole = _answer_trickling_headers()
    if phase == "headers":
        answer = trickle(whole, BYTE_EVERY_S)
    else:
        head, _, body = whole.partition(b"\r\n\r\n")

        def answer(conn: object, head: bytes = head, body: bytes = body) -> None:
            import socket

            assert isinstance(conn, socket.socket)
            conn.sendall(head + b"\r\n\r\n")
            trickle(body, BYTE_EVERY_S)(conn)

    with HostileServer(answer) as server, pointed_to(server.base_url):
        with pytest.raises(AttemptFailed) as caught:
            call(
                flavour,
                "/wenxinworkshop/modelrepo/eval/detail",
                "",
                {"id": "ame-x"},
                CREDS,
                timeout=TIMEOUT_S,
            )
        # The client hung up mid-answer: the server's next write fails.
        assert server.finished.wait(10)

    failure = caught.value.failure
    assert (failure.kind, failure.maybe_applied) == ("timeout", True)
    assert failure.message == "timed out: TimeoutError"
    assert server.endings != ["done"]
    assert server.endings[0] in {"BrokenPipeError", "ConnectionResetError"}


def test_an_answer_within_the_timeout_is_read_whole(flavour: Flavour) -> None:
    """The same server, fast enough: the deadline machinery does not cut a good answer."""
    whole = _answer_trickling_headers()

    def answer(conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        conn.sendall(whole)

    with HostileServer(answer) as server, pointed_to(server.base_url):
        reply = call(
            flavour,
            "/wenxinworkshop/modelrepo/eval/detail",
            "",
            {"id": "ame-x"},
            CREDS,
            timeout=5.0,
        )

    assert reply.body["log_id"] == "trickled"
    assert reply.log_id == "trickled"
