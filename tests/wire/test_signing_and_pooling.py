"""Signing with the public BCE v1 signer, endpoint settings from `get_config()`, pooling."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from evalctl._base import _api
from evalctl._base._redact import MASK, Redactor
from evalctl._wire._transport import Wire, asend, send
from evalctl.emulator import Emulator

from .support import FLAVOURS, Flavour, call, credentials_of, pointed_to


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("route", "action", "body_key"),
    [
        (_api.V1_DETAIL_ROUTE, "", "id"),
        (_api.V2_ROUTE, _api.V2_DESCRIBE_ACTION, "taskId"),
    ],
)
def test_requests_are_signed_as_the_gateway_verifies(
    flavour: Flavour, emulator: Emulator, route: str, action: str, body_key: str
) -> None:
    task_id = emulator.add_task()

    reply = call(flavour, route, action, {body_key: task_id}, credentials_of(emulator))

    assert reply.status == 200
    assert reply.body["result"] is not None
    [received] = emulator.requests
    assert (received.route, received.action, received.signature_valid) == (route, action, True)
    assert urlsplit(reply.url).path == route
    assert reply.url.endswith(f"?Action={action}")


def test_a_route_the_client_re_encodes_is_signed_over_the_path_as_sent(
    flavour: Flavour, emulator: Emulator
) -> None:
    """The gateway checks the path it received: the signature covers that one."""
    task_id = emulator.add_task()
    route = "/wenxinworkshop/modelrepo/./eval/x/../det%61il"

    reply = call(flavour, route, "", {"id": task_id}, credentials_of(emulator))

    [received] = emulator.requests
    assert received.signature_valid
    assert received.route == urlsplit(reply.url).path == _api.V1_DETAIL_ROUTE


def test_a_wrong_secret_key_is_refused_by_the_signature_check(
    flavour: Flavour, emulator: Emulator
) -> None:
    from evalctl._base._credentials import Credentials
    from evalctl._wire._transport import AttemptFailed

    task_id = emulator.add_task()

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, Credentials(emulator.ak, "x" * 32))

    assert caught.value.failure.http_status == 403
    assert [r.signature_valid for r in emulator.requests] == [False]


def test_the_host_override_replaces_the_configured_endpoint(
    flavour: Flavour, emulator: Emulator
) -> None:
    """`host=` (the SDK requestor's keyword) wins over CONSOLE_API_BASE_URL, as in the SDK."""
    task_id = emulator.add_task()

    with pointed_to("http://127.0.0.1:9"):
        reply = call(
            flavour,
            _api.V1_DETAIL_ROUTE,
            "",
            {"id": task_id},
            credentials_of(emulator),
            host=emulator.base_url,
        )

    assert reply.status == 200
    assert [r.signature_valid for r in emulator.requests] == [True]


def test_the_drop_in_reply_masks_authorization_and_keeps_the_sdk_shape(
    flavour: Flavour, emulator: Emulator
) -> None:
    task_id = emulator.add_task()

    reply = call(flavour, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, credentials_of(emulator))
    qf = reply.to_qf_response()

    assert (qf.code, qf.body) == (200, reply.body)
    assert qf.statistic.keys() == {
        "request_latency",
        "total_latency",
        "start_timestamp",
        "avg_output_tokens_per_second",
    }
    assert qf.request is not None
    assert qf.request.url == reply.url
    assert qf.request.json_body == {"id": task_id}
    headers = {k.lower(): v for k, v in qf.request.headers.items()}
    assert headers["authorization"] == MASK
    assert headers["request-source"].startswith("qianfan_py_sdk_v")
    assert "bce-auth-v1" not in repr(qf) + repr(reply)
    assert task_id not in repr(reply)  # no body in the repr (a detail holds app keys)
    assert reply.log_id == reply.body["log_id"]


def test_one_wire_reuses_one_connection_sync(emulator: Emulator) -> None:
    task_id = emulator.add_task()
    wire = Wire()
    creds = credentials_of(emulator)
    redactor = Redactor()

    for _ in range(10):
        send(wire, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, creds, None, 5.0, redactor)

    assert emulator.connections_opened == 1
    wire.close()
    send(wire, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, creds, None, 5.0, redactor)
    assert emulator.connections_opened == 2
    wire.close()


def test_one_wire_reuses_one_connection_async(emulator: Emulator) -> None:
    task_id = emulator.add_task()
    wire = Wire()
    creds = credentials_of(emulator)
    redactor = Redactor()

    async def ten() -> None:
        for _ in range(10):
            await asend(wire, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, creds, None, 5.0, redactor)

    asyncio.run(ten())  # the loop's end closes its aiohttp session (no warning)
    assert emulator.connections_opened == 1
    asyncio.run(ten())  # a new loop, a new session
    assert emulator.connections_opened == 2


async def _aread_detail(wire: Wire, emulator: Emulator, task_id: str) -> None:
    """One v1 detail read over `wire`, as the core sends it."""
    await asend(
        wire, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, credentials_of(emulator), None, 5.0,
        Redactor(),
    )


def test_aclose_closes_the_running_loops_session(emulator: Emulator) -> None:
    task_id = emulator.add_task()
    wire = Wire()

    async def one_then_close() -> bool:
        await _aread_detail(wire, emulator, task_id)
        session = await wire.aiohttp_session()
        await wire.aclose()
        return session.closed

    assert asyncio.run(one_then_close())


def test_the_shared_wire_is_one_per_process() -> None:
    assert Wire.shared() is Wire.shared()
    assert Wire() is not Wire.shared()


def test_wire_close_closes_the_session_of_a_loop_closed_without_shutdown(
    emulator: Emulator,
) -> None:
    """`loop.run_until_complete` + `loop.close()`, the older idiom: `close()` still closes it."""
    task_id = emulator.add_task()
    wire = Wire()

    async def one() -> None:
        await _aread_detail(wire, emulator, task_id)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(one())
        session = loop.run_until_complete(wire.aiohttp_session())
        assert not session.closed
    finally:
        loop.close()
    wire.close()
    assert session.closed


def test_the_signature_covers_exactly_the_headers_the_sdk_signs(emulator: Emulator) -> None:
    """Content-Type, Host, request-source, x-bce-date — not the client's hop-by-hop headers."""
    from evalctl._wire._transport import _sign_headers

    url = f"{emulator.base_url}{_api.V1_DETAIL_ROUTE}?Action="
    signed = _sign_headers(url, credentials_of(emulator), {"Connection": "keep-alive"})

    assert not isinstance(signed, str)
    headers = signed.open()
    _, ak, _, expiry, names, _ = headers["Authorization"].split("/")
    from qianfan import get_config

    assert (ak, expiry) == (emulator.ak, str(get_config().IAM_SIGN_EXPIRATION_SEC))
    assert sorted(names.split(";")) == ["content-type", "host", "request-source", "x-bce-date"]
    assert headers["Connection"] == "keep-alive"
    assert headers["Host"] == urlsplit(emulator.base_url).netloc
    assert "bce-auth-v1" not in repr(signed)


def test_one_wire_serves_many_threads(emulator: Emulator) -> None:
    """The drop-in's process-wide wire is used from any thread: every request is signed right."""
    from concurrent.futures import ThreadPoolExecutor

    task_id = emulator.add_task()
    wire = Wire()
    creds = credentials_of(emulator)

    def one(_: int) -> int:
        reply = send(wire, _api.V1_DETAIL_ROUTE, "", {"id": task_id}, creds, None, 5.0, Redactor())
        return reply.status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(80)))

    assert statuses == [200] * 80
    assert [r.signature_valid for r in emulator.requests] == [True] * 80
    assert emulator.connections_opened <= 8 + 2  # pooled: about one per thread
    wire.close()
