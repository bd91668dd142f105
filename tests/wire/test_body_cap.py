"""A body larger than `MAX_BODY_BYTES` is refused without being read into memory.

The client runs in a fresh interpreter that reports its own peak RSS
growth (`ru_maxrss`) across one request to a server offering 300 MB.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from evalctl._base._credentials import Credentials
from evalctl._wire._transport import MAX_BODY_BYTES, AttemptFailed

from .support import FLAVOURS, JSON_HEAD, Flavour, HostileServer, call, pointed_to

HUGE = 300 * 1024 * 1024
MAX_GROWTH_KB = 50 * 1024
CHUNK = b'{"x": "' + b"a" * (64 * 1024 - 7)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from qianfan import get_config
    from evalctl._base._credentials import Credentials
    from evalctl._base._redact import Redactor
    from evalctl._wire._transport import AttemptFailed, Wire, asend, send

    config = get_config()
    creds, wire, redactor = Credentials("ak-huge", "sk-huge"), Wire(), Redactor()

    def once(flavour):
        args = (wire, "/wenxinworkshop/modelrepo/eval/detail", "", {"id": "ame-x"},
                creds, None, 30.0, redactor)
        if flavour == "sync":
            return send(*args)
        async def run():
            return await asend(*args)
        return asyncio.run(run())

    def outcome(flavour, base_url):
        config.CONSOLE_API_BASE_URL = base_url
        try:
            once(flavour)
            return {"kind": None}
        except AttemptFailed as failed:
            f = failed.failure
            return {"kind": f.kind, "message": f.message, "maybe_applied": f.maybe_applied}

    # Warm up every code path on a closed port, then measure the huge answers.
    for flavour in ("sync", "async"):
        outcome(flavour, "http://127.0.0.1:9")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {
        f"{flavour} {name}": outcome(flavour, base_url)
        for name, base_url in zip(("content-length", "until-close"), sys.argv[1:])
        for flavour in ("sync", "async")
    }
    growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"outcomes": outcomes, "growth_kb": growth_kb}))
    """
)


def _huge(declared: bool) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        length = f"Content-Length: {HUGE}\r\n" if declared else "Connection: close\r\n"
        conn.sendall(JSON_HEAD + length.encode() + b"\r\n")
        sent = 0
        while sent < HUGE:
            conn.sendall(CHUNK)
            sent += len(CHUNK)

    return answer


def test_huge_bodies_are_refused_with_bounded_memory() -> None:
    """Sync and async, with and without a Content-Length: 4 answers of 300 MB, < 50 MB RSS."""
    with HostileServer(_huge(True)) as declared, HostileServer(_huge(False)) as until_close:
        ran = subprocess.run(
            [sys.executable, "-c", CLIENT, declared.base_url, until_close.base_url],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    refused = {
        "kind": "malformed",
        "message": f"body is larger than {MAX_BODY_BYTES} bytes, not read",
        "maybe_applied": True,
    }
    assert result["outcomes"] == {
        "sync content-length": refused,
        "async content-length": refused,
        "sync until-close": refused,
        "async until-close": refused,
    }
    assert result["growth_kb"] < MAX_GROWTH_KB
    # Neither server got to send it all: the client hung up each time.
    assert "done" not in declared.endings + until_close.endings
    assert len(declared.endings + until_close.endings) == 4


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_body_just_under_the_cap_is_read(flavour: Flavour) -> None:
    payload = json.dumps({"log_id": "big", "pad": "p" * (MAX_BODY_BYTES - 100)}).encode()
    assert len(payload) <= MAX_BODY_BYTES

    def answer(conn: socket.socket) -> None:
        conn.sendall(JSON_HEAD + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)

    with HostileServer(answer) as server, pointed_to(server.base_url):
        reply = call(
            flavour,
            "/wenxinworkshop/modelrepo/eval/detail",
            "",
            {"id": "ame-x"},
            Credentials("ak-big", "sk-big"),
        )

    assert reply.log_id == "big"
    assert len(reply.body["pad"]) == MAX_BODY_BYTES - 100


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_huge_error_answer_keeps_its_status(flavour: Flavour) -> None:
    """A 503 with a huge body is still a 503 (retryable), its body unread."""

    def answer(conn: socket.socket) -> None:
        head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        conn.sendall(head + f"Content-Length: {HUGE}\r\n\r\n".encode() + CHUNK)

    with (
        HostileServer(answer) as server,
        pointed_to(server.base_url),
        pytest.raises(AttemptFailed) as caught,
    ):
        call(
            flavour,
            "/wenxinworkshop/modelrepo/eval/detail",
            "",
            {"id": "ame-x"},
            Credentials("ak-big", "sk-big"),
        )

    assert (caught.value.failure.kind, caught.value.failure.http_status) == ("http", 503)
