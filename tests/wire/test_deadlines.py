"""Each attempt is bounded in total wall time by its timeout, not per socket read.

The servers trickle one byte every 0.1 s: each read completes well within
the timeout, so only a bound on the whole attempt ends it. Nothing here
times the client; the server notes whether the client hung up before it
had sent everything (a client that waited would let it finish).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from evalctl._base._credentials import Credentials
from evalctl._wire._transport import AttemptFailed

from .support import FLAVOURS, JSON_HEAD, Flavour, HostileServer, call, pointed_to, trickle

BODY = b'{"log_id": "trickled", "result": {"padding": "' + b"x" * 40 + b'"}}'
BYTE_EVERY_S = 0.1
TIMEOUT_S = 0.4  # four bytes' worth; the whole answer takes ~10 s
CREDS = Credentials("trickle-ak", "trickle-sk")


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


WHOLE = JSON_HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY


def _trickling(phase: str) -> Callable[[socket.socket], None]:
    """Trickle the whole answer, or send the headers at once and trickle the body."""
    if phase == "headers":
        return trickle(WHOLE, BYTE_EVERY_S)
    head, _, body = WHOLE.partition(b"\r\n\r\n")

    def answer(conn: socket.socket) -> None:
        conn.sendall(head + b"\r\n\r\n")
        trickle(body, BYTE_EVERY_S)(conn)

    return answer


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_trickling_server_cannot_hold_an_attempt_past_its_timeout(
    flavour: Flavour, phase: str
) -> None:
    with HostileServer(_trickling(phase)) as server, pointed_to(server.base_url):
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

    def answer(conn: socket.socket) -> None:
        conn.sendall(WHOLE)

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
