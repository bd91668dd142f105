"""What comes back: strict JSON, error bodies in both flavours, no redirects followed."""

from __future__ import annotations

import json

import pytest

from evalctl._base import _api
from evalctl._wire._transport import AttemptFailed
from evalctl.emulator import Emulator

from .support import FLAVOURS, Flavour, call, credentials_of

DETAIL = _api.V1_DETAIL_ROUTE


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


def test_duplicate_keys_are_flagged(flavour: Flavour, emulator: Emulator) -> None:
    emulator.serve_raw(
        b'{"log_id": "dup", "result": {"evalMode": "rule", "evalMode": "manual"}}',
        route=DETAIL,
    )

    reply = call(flavour, DETAIL, "", {"id": "ame-x"}, credentials_of(emulator))

    assert reply.duplicate_keys is True
    assert reply.log_id == "dup"


def test_a_plain_body_has_no_duplicate_keys(flavour: Flavour, emulator: Emulator) -> None:
    task_id = emulator.add_task()

    reply = call(flavour, DETAIL, "", {"id": task_id}, credentials_of(emulator))

    assert reply.duplicate_keys is False


def test_a_v2_error_body_is_read_in_both_flavours(flavour: Flavour, emulator: Emulator) -> None:
    body = {"requestId": "req-v2-err", "code": "InvalidParameter", "message": "bad taskId"}
    emulator.serve_raw(json.dumps(body).encode(), status=400, route=_api.V2_ROUTE)

    with pytest.raises(AttemptFailed) as caught:
        call(
            flavour,
            _api.V2_ROUTE,
            _api.V2_DESCRIBE_ACTION,
            {"taskId": "ame-x"},
            credentials_of(emulator),
        )

    failure = caught.value.failure
    assert (failure.kind, failure.http_status, failure.error_code) == (
        "http",
        400,
        "InvalidParameter",
    )
    assert (failure.message, failure.log_id) == ("bad taskId", "req-v2-err")


def test_a_2xx_error_envelope_is_a_failure(flavour: Flavour, emulator: Emulator) -> None:
    emulator.serve_raw(
        b'{"log_id": "env", "error_code": 336000, "error_msg": "internal"}', route=DETAIL
    )

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, credentials_of(emulator))

    failure = caught.value.failure
    assert (failure.kind, failure.error_code, failure.log_id) == ("envelope", 336000, "env")


def test_retry_after_is_read(flavour: Flavour, emulator: Emulator) -> None:
    emulator.serve_raw(b"{}", status=429, headers=[("Retry-After", "7")], route=DETAIL)

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, credentials_of(emulator))

    assert (caught.value.failure.http_status, caught.value.failure.retry_after) == (429, 7.0)


def test_a_redirect_is_not_followed(flavour: Flavour, emulator: Emulator) -> None:
    """A redirect would send the request past the choke point: it is a failure instead."""
    emulator.serve_raw(
        b"",
        status=307,
        headers=[("Location", _api.V1_CANCEL_ROUTE)],
        route=DETAIL,
    )

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, credentials_of(emulator))

    assert (caught.value.failure.kind, caught.value.failure.http_status) == ("http", 307)
    assert [r.route for r in emulator.requests] == [DETAIL]


def test_an_html_page_is_not_json(flavour: Flavour, emulator: Emulator) -> None:
    emulator.serve_raw(b"<html>gateway</html>", content_type="text/html", route=DETAIL)

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, credentials_of(emulator))

    failure = caught.value.failure
    assert (failure.kind, failure.maybe_applied) == ("not_json", True)
    assert failure.message == "body is an HTML page (20 bytes)"
