"""The HTTP side: framing, keep-alive, crashes, and a shutdown that leaks nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import BinaryIO

import pytest
import requests
from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]
from baidubce.utils import get_canonical_time  # type: ignore[import-untyped]
from qianfan.errors import RequestError
from qianfan.resources.console.utils import call_action

from evalctl._base import _api
from evalctl.emulator import Emulator, pointed_at


def raw_request(
    emulator: Emulator, route: str, action: str, body: bytes, method: str = "POST"
) -> bytes:
    """The bytes of one keep-alive request signed exactly like the SDK signs."""
    stamp = time.time()
    headers = {
        "Content-Type": "application/json",
        "Host": f"{emulator.host}:{emulator.port}",
        "x-bce-date": get_canonical_time(stamp).decode(),
    }
    authorization = sign(
        BceCredentials(emulator.ak, emulator.sk),
        method.encode(),
        route.encode(),
        {name.encode(): value for name, value in headers.items()},
        {b"Action": action},
        timestamp=stamp,
        expiration_in_seconds=1800,
        headers_to_sign={name.lower().encode() for name in headers},
    )
    headers["Authorization"] = authorization.decode()
    headers["Content-Length"] = str(len(body))
    head = f"{method} {route}?Action={action} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode() + body


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a binary file object."""
    status_line = stream.readline()
    headers: dict[str, str] = {}
    while True:
        line = stream.readline().decode()
        if line in ("\r\n", ""):
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def connect(emulator: Emulator) -> socket.socket:
    return socket.create_connection((emulator.host, emulator.port), timeout=5)


@pytest.mark.parametrize(
    ("route", "action"),
    [(_api.V1_DETAIL_ROUTE, ""), (_api.V2_ROUTE, "DescribeEvalTask")],
)
@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b"", b'"ame-x"'])
def test_body_that_is_not_a_json_object_is_invalid_param(
    qianfan_emulator: Emulator, route: str, action: str, body: bytes
) -> None:
    """v1 answers code 336003 in the envelope; v2 answers HTTP 400 InvalidParameter."""
    with connect(qianfan_emulator) as sock, sock.makefile("rb") as stream:
        sock.sendall(raw_request(qianfan_emulator, route, action, body))
        status, _, payload = read_response(stream)

    answer = json.loads(payload)
    if route == _api.V2_ROUTE:
        assert (status, answer["code"]) == (400, _api.V2_INVALID_PARAMETER_CODE)
    else:
        assert (status, answer["error_code"]) == (200, _api.CODE_INVALID_PARAM)
        assert answer["log_id"].isdigit()


def test_keep_alive_serves_many_requests_on_one_connection(qianfan_emulator: Emulator) -> None:
    """HTTP/1.1 keep-alive: three requests, three JSON answers, one TCP connection."""
    task_id = qianfan_emulator.add_task()
    request = raw_request(
        qianfan_emulator, _api.V1_DETAIL_ROUTE, "", json.dumps({"id": task_id}).encode()
    )

    with connect(qianfan_emulator) as sock, sock.makefile("rb") as stream:
        answers = []
        for _ in range(3):
            sock.sendall(request)
            answers.append(read_response(stream))

    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert {"application/json"} == {headers["content-type"] for _, headers, _ in answers}
    assert "close" not in {headers.get("connection") for _, headers, _ in answers}


def test_non_post_methods_are_405(qianfan_emulator: Emulator) -> None:
    """Console routes take POST only (the check runs after authentication)."""
    response = requests.get(qianfan_emulator.base_url + _api.V1_DETAIL_ROUTE, timeout=5)

    assert response.status_code == 401  # unauthenticated first
    with connect(qianfan_emulator) as sock, sock.makefile("rb") as stream:
        sock.sendall(raw_request(qianfan_emulator, _api.V1_DETAIL_ROUTE, "", b"{}", "GET"))
        status, _, _ = read_response(stream)
    assert status == 405


def test_chunked_bodies_are_refused_with_411(qianfan_emulator: Emulator) -> None:
    """Bodies must come with Content-Length (every SDK sends one)."""
    with connect(qianfan_emulator) as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"POST /v2/eval?Action=DescribeEvalTask HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        status, headers, _ = read_response(stream)

    assert (status, headers.get("connection")) == (411, "close")


def test_a_crash_while_answering_is_http_500_with_json(qianfan_emulator: Emulator) -> None:
    """An answer that cannot be built becomes a JSON 500, and the server keeps serving."""
    broken = qianfan_emulator.add_task(detail_overrides={"name": object()})
    fine = qianfan_emulator.add_task()

    with pytest.raises(RequestError) as caught:
        call_action(_api.V1_DETAIL_ROUTE, "", {"id": broken})

    assert caught.value.status_code == 500
    assert "InternalError" in str(caught.value)
    assert call_action(_api.V1_DETAIL_ROUTE, "", {"id": fine}).body["result"]["state"] == "Doing"
    assert [record.status for record in qianfan_emulator.requests] == [500, 200]


def test_close_leaks_no_thread_and_frees_the_port() -> None:
    """After close, every emulator thread is gone and the port refuses connections."""
    before = set(threading.enumerate())
    emulator = Emulator().start()
    with pointed_at(emulator):
        task_id = emulator.add_task()
        for _ in range(3):
            call_action(_api.V1_DETAIL_ROUTE, "", {"id": task_id})
    idle = connect(emulator)  # a keep-alive connection, idle at close
    idle.sendall(raw_request(emulator, _api.V1_DETAIL_ROUTE, "", b'{"id": "ame-x"}'))
    with idle.makefile("rb") as stream:
        read_response(stream)
    port = emulator.port

    emulator.close()

    assert set(threading.enumerate()) == before
    assert idle.recv(1) == b""  # the server closed it
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_close_cuts_a_slow_answer_short() -> None:
    """A handler holding a `slow` answer wakes up on close instead of sleeping on."""
    emulator = Emulator().start()
    emulator.inject("slow", delay_s=60)
    outcome: list[BaseException | int] = []
    request = raw_request(emulator, _api.V1_DETAIL_ROUTE, "", b'{"id": "ame-x"}')

    def client() -> None:
        with connect(emulator) as sock, sock.makefile("rb") as stream:
            sock.settimeout(30)
            sock.sendall(request)
            try:
                outcome.append(len(stream.readline()))
            except OSError as error:
                outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    while not emulator.requests:  # the request is being held
        time.sleep(0.01)
    emulator.close()
    thread.join(10)

    assert not thread.is_alive()
    assert outcome == [0]  # the connection closed without an answer


def test_lifecycle_misuse_is_refused() -> None:
    """An emulator starts once; base_url needs a running server; close is idempotent."""
    emulator = Emulator()
    with pytest.raises(RuntimeError):
        _ = emulator.base_url
    with emulator as started:
        assert started is emulator
        assert emulator.running
        with pytest.raises(RuntimeError):
            emulator.start()
    emulator.close()
    assert not emulator.running
    with pytest.raises(RuntimeError):
        emulator.start()


def test_repr_shows_where_but_never_the_secret_key() -> None:
    """The repr names the URL and AK, never the SK."""
    with Emulator(ak="visible-ak", sk="hidden-sk-123") as emulator:
        text = repr(emulator)
        base_url = emulator.base_url

    assert "visible-ak" in text
    assert base_url in text
    assert "hidden-sk-123" not in text
    assert "hidden-sk-123" not in repr(Emulator(sk="hidden-sk-123"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fault_rate": 1.5},
        {"qps_limit": 0},
        {"latency_s": -1},
        {"stop_delay_s": -0.1},
        {"fault_kinds": ["boom"]},
        {"sk": ""},
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, object]) -> None:
    """Settings are validated before anything binds."""
    with pytest.raises(ValueError, match=r"\w"):
        Emulator(**kwargs)  # type: ignore[arg-type]
