"""The emulator authenticates every request the way BCE does, and never leaks credentials."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]
from baidubce.utils import get_canonical_time  # type: ignore[import-untyped]
from qianfan import get_config
from qianfan.errors import RequestError
from qianfan.resources.console.utils import call_action

from evalctl._base import _api
from evalctl.emulator import Emulator

SIGNATURE_MISMATCH = "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match"
UNKNOWN_CREDENTIAL = "NotFound, cause: Could not find credential."


def signed_post(
    emulator: Emulator,
    route: str,
    action: str = "",
    data: bytes = b"{}",
    *,
    sk: str | None = None,
    timestamp: float | None = None,
    expiry_s: int = 1800,
    signed_action: str | None = None,
) -> requests.Response:
    """POST signed by hand exactly as the SDK signs (optionally dated or signed wrongly)."""
    stamp = time.time() if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "Host": f"{emulator.host}:{emulator.port}",
        "x-bce-date": get_canonical_time(stamp).decode(),
    }
    authorization = sign(
        BceCredentials(emulator.ak, sk or emulator.sk),
        b"POST",
        route.encode(),
        {name.encode(): value for name, value in headers.items()},
        {b"Action": action if signed_action is None else signed_action},
        timestamp=stamp,
        expiration_in_seconds=expiry_s,
        headers_to_sign={name.lower().encode() for name in headers},
    )
    headers["Authorization"] = authorization.decode()
    return requests.post(
        emulator.base_url + route,
        params={"Action": action},
        data=data,
        headers=headers,
        timeout=5,
    )


@pytest.fixture
def wrong_sk(qianfan_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK signs with an SK the emulator does not know.

    (qianfan 0.4.12.3's `call_action` rejects `sk=`, so the live config is switched.)
    """
    monkeypatch.setattr(get_config(), "SECRET_KEY", "not-the-sk")


@pytest.mark.usefixtures("wrong_sk")
def test_wrong_secret_key_is_signature_does_not_match() -> None:
    """An SDK call signed with another SK answers 403 with BCE's exact error header."""
    with pytest.raises(RequestError) as caught:
        call_action(_api.V1_DETAIL_ROUTE, "", {"id": "ame-x"})

    assert caught.value.status_code == 403
    assert caught.value.headers is not None
    assert caught.value.headers["X-Bce-Error-Message"] == SIGNATURE_MISMATCH


def test_unknown_access_key_is_could_not_find_credential(
    qianfan_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK call with another AK answers 401 'Could not find credential'."""
    monkeypatch.setattr(get_config(), "ACCESS_KEY", "someone-else")

    with pytest.raises(RequestError) as caught:
        call_action(_api.V1_DETAIL_ROUTE, "", {"id": "ame-x"})

    assert caught.value.status_code == 401
    assert caught.value.headers is not None
    assert caught.value.headers["X-Bce-Error-Message"] == UNKNOWN_CREDENTIAL


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer abc",
        "bce-auth-v1/emulator-ak",
        "bce-auth-v1/emulator-ak/not-a-date/1800/host/abc",
        "bce-auth-v1/emulator-ak/2024-01-01T00:00:00Z/-5/host/abc",
    ],
)
def test_missing_or_garbled_authorization_is_401(
    qianfan_emulator: Emulator, authorization: str | None
) -> None:
    """No usable Authorization header answers 401 with a JSON body."""
    headers = {} if authorization is None else {"Authorization": authorization}

    url = qianfan_emulator.base_url + _api.V1_DETAIL_ROUTE
    response = requests.post(url, json={"id": "x"}, headers=headers, timeout=5)

    assert response.status_code == 401
    assert {"requestId", "code", "message"} == response.json().keys()


@pytest.mark.parametrize("offset_s", [-3600, 3600])
def test_expired_or_far_future_signature_is_request_expired(
    qianfan_emulator: Emulator, offset_s: int
) -> None:
    """A correct signature dated past its expiry, or > 15 min ahead, answers 403 RequestExpired."""
    response = signed_post(
        qianfan_emulator, _api.V1_DETAIL_ROUTE, timestamp=time.time() + offset_s, expiry_s=1800
    )

    assert response.status_code == 403
    assert response.headers["X-Bce-Error-Message"].startswith("RequestExpired, ")
    assert response.json()["code"] == "RequestExpired"


def test_expiry_check_can_be_switched_off() -> None:
    """With sign_expiry_check=False an old but correct signature passes."""
    with Emulator(sign_expiry_check=False) as emulator:
        task_id = emulator.add_task()

        response = signed_post(
            emulator,
            _api.V1_DETAIL_ROUTE,
            data=f'{{"id": "{task_id}"}}'.encode(),
            timestamp=time.time() - 86_400,
        )

    assert response.status_code == 200
    assert response.json()["result"]["state"] == "Doing"


def test_hand_signed_request_like_the_sdk_passes(qianfan_emulator: Emulator) -> None:
    """The test helper signs like the SDK (guards the other tests in this file)."""
    task_id = qianfan_emulator.add_task()

    body = f'{{"id": "{task_id}"}}'.encode()

    response = signed_post(qianfan_emulator, _api.V1_DETAIL_ROUTE, data=body)

    assert response.status_code == 200


def test_action_is_covered_by_the_signature(qianfan_emulator: Emulator) -> None:
    """A request signed for DescribeEvalTask but sent as StopEvalTask is refused."""
    task_id = qianfan_emulator.add_task()

    response = signed_post(
        qianfan_emulator,
        _api.V2_ROUTE,
        action="StopEvalTask",
        signed_action="DescribeEvalTask",
        data=f'{{"taskId": "{task_id}"}}'.encode(),
    )

    assert response.status_code == 403
    assert qianfan_emulator.task(task_id).state == "Doing"


@pytest.mark.usefixtures("wrong_sk")
def test_badly_signed_stop_is_recorded_but_changes_nothing(qianfan_emulator: Emulator) -> None:
    """A stop with a bad signature is recorded as invalid and never reaches the task."""
    task_id = qianfan_emulator.add_task()

    with pytest.raises(RequestError):
        call_action(_api.V1_CANCEL_ROUTE, "", {"id": task_id})

    (record,) = qianfan_emulator.stop_requests(task_id)
    assert (record.signature_valid, record.status) == (False, 403)
    snapshot = qianfan_emulator.task(task_id)
    assert (snapshot.state, snapshot.stop_requests) == ("Doing", 0)


@pytest.mark.usefixtures("wrong_sk")
def test_authentication_failures_never_consume_faults(qianfan_emulator: Emulator) -> None:
    """An injected fault waits for an authenticated request."""
    qianfan_emulator.inject("http_500")

    with pytest.raises(RequestError) as caught:
        call_action(_api.V1_DETAIL_ROUTE, "", {"id": "ame-x"})

    assert caught.value.status_code == 403
    assert qianfan_emulator.faults_pending == 1


@pytest.mark.parametrize("sk", [None, "wrong-sk"])
def test_answers_never_echo_credentials(qianfan_emulator: Emulator, sk: str | None) -> None:
    """No answer, good or bad, contains the SK or the Authorization value."""
    task_id = qianfan_emulator.add_task(eval_mode="rule")

    response = signed_post(
        qianfan_emulator, _api.V1_DETAIL_ROUTE, data=f'{{"id": "{task_id}"}}'.encode(), sk=sk
    )

    sent_authorization = str(response.request.headers["Authorization"])
    everything: Any = response.content + repr(dict(response.headers)).encode()
    assert qianfan_emulator.sk.encode() not in everything
    assert sent_authorization.encode() not in everything
    assert sent_authorization.rsplit("/", 1)[-1].encode() not in everything
