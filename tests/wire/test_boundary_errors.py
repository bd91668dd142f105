"""Failures at the boundary: no foreign exception escapes, none carries a secret.

Keys are validated earlier (by `_credentials`), but the boundary must be
safe on its own: these tests build `Credentials` directly.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import cast

import pytest

from evalctl import RetryPolicy, describe_eval_task
from evalctl._base._credentials import Credentials
from evalctl._base._errors import ConfigurationError, EvalctlError
from evalctl._wire._transport import AttemptFailed
from evalctl.emulator import Emulator

from .support import FLAVOURS, Flavour, call, pointed_to

SK = "SKsentinel-0123456789abcdef"


class UncheckedKeys:
    """Keys as the boundary reads them (`access_key()`/`secret_key()`), never validated."""

    def __init__(self, ak: str, sk: str) -> None:
        self._keys = (ak, sk)

    def access_key(self) -> str:
        return self._keys[0]

    def secret_key(self) -> str:
        return self._keys[1]

    def __repr__(self) -> str:
        return "UncheckedKeys(***)"


DETAIL = "/wenxinworkshop/modelrepo/eval/detail"


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _everything_shown(error: BaseException, frames_of: str) -> str:
    shown = []
    for exc in _chain(error):
        shown += [str(exc), repr(exc), repr(exc.args)]
    # The locals of the boundary's frames (the test's own frames hold the
    # sentinels; the public API's frames are the core's to keep clean).
    for exc in _chain(error):
        rendered = traceback.TracebackException.from_exception(exc, capture_locals=True)
        for frame in rendered.stack:
            if frame.filename.endswith(frames_of):
                shown.append(f"{frame.filename} {frame.name} {frame.locals}")
    return "\n".join(shown)


def _assert_no_secret(
    error: BaseException, *secrets: str, frames_of: str = "evalctl/_wire/_transport.py"
) -> None:
    text = _everything_shown(error, frames_of)
    assert "bce-auth-v1" not in text
    for secret in secrets:
        for start in range(len(secret) - 9):
            assert secret[start : start + 10] not in text


@pytest.mark.parametrize(
    "ak",
    [
        "AKsentinel\u201c0123456789",  # a smart quote pasted from a web page
        "\ufeffAKsentinel0123456789",  # a BOM
        "AKsentinel0123456789\r\n",
        "AKsentinel01234\n56789",
        "AKsentinel\x000123456789",
        "AKsentinel\u00e90123456789\u4e2d",
    ],
    ids=["smart-quote", "bom", "crlf", "lf", "nul", "non-latin-1"],
)
def test_a_key_no_header_can_carry_is_refused_unsent(
    flavour: Flavour, emulator: Emulator, ak: str
) -> None:
    # `Credentials` may refuse such a key itself; the boundary is tested on its own.
    with pytest.raises(ConfigurationError) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, cast(Credentials, UncheckedKeys(ak, SK)))

    assert str(caught.value) == (
        "the access key contains a character an HTTP header cannot carry"
        " (non-ASCII, CR, LF or NUL); nothing was sent"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    _assert_no_secret(caught.value, ak.strip(), SK)
    assert emulator.requests == []


def test_a_body_that_is_not_json_is_refused_unsent(flavour: Flavour, emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot be sent as JSON \(ValueError\)"):
        call(flavour, DETAIL, "", {"id": float("nan")}, Credentials(emulator.ak, emulator.sk))
    with pytest.raises(ConfigurationError, match=r"cannot be sent as JSON \(TypeError\)"):
        call(flavour, DETAIL, "", {"id": object()}, Credentials(emulator.ak, emulator.sk))

    assert emulator.requests == []


def test_a_refused_connection_names_the_endpoint_never_its_userinfo(flavour: Flavour) -> None:
    with (
        pointed_to("http://operator:PWsentinel-0123456789@127.0.0.1:9/"),
        pytest.raises(AttemptFailed) as caught,
    ):
        call(flavour, DETAIL, "", {"id": "ame-x"}, Credentials("AKsentinel-0123456789", SK))

    failure = caught.value.failure
    assert failure.message == "connection failed to http://127.0.0.1:9: ConnectionRefusedError"
    assert (failure.kind, failure.maybe_applied) == ("connection", False)
    assert caught.value.__context__ is None
    _assert_no_secret(caught.value, "PWsentinel-0123456789", "AKsentinel-0123456789", SK)


def test_the_public_error_names_the_endpoint() -> None:
    with (
        pointed_to("https://127.0.0.1:9"),
        pytest.raises(EvalctlError) as caught,
    ):
        describe_eval_task(
            "ame-abc",
            retry=RetryPolicy(max_attempts=1),
            ak="AKsentinel-0123456789",
            sk=SK,
        )

    assert "connection failed to https://127.0.0.1:9: ConnectionRefusedError" in str(caught.value)
    _assert_no_secret(caught.value, "AKsentinel-0123456789", SK, frames_of="no frame")


def test_a_broken_proxy_setting_is_a_failure_without_the_proxy_password(
    flavour: Flavour, emulator: Emulator
) -> None:
    """A foreign error from deep in the HTTP stack: mapped, not chained."""
    from qianfan import get_config

    config = get_config()
    saved = config.PROXY
    config.PROXY = "http://user:PXsentinel-0123456789@[::1"
    try:
        with pytest.raises((AttemptFailed, EvalctlError)) as caught:
            call(flavour, DETAIL, "", {"id": "ame-x"}, Credentials(emulator.ak, emulator.sk))
    finally:
        config.PROXY = saved

    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    _assert_no_secret(caught.value, "PXsentinel-0123456789", emulator.sk)
    assert emulator.requests == []


def test_a_failed_answer_leaves_no_frame_holding_the_raw_body(
    flavour: Flavour, emulator: Emulator
) -> None:
    """A 2xx error envelope that carries an app secret: the failure's frames do not hold it."""
    emulator.serve_raw(
        b'{"error_code": 336000, "error_msg": "x", "appSk": "APPsentinel-0123456789"}',
        route=DETAIL,
    )

    with pytest.raises(AttemptFailed) as caught:
        call(flavour, DETAIL, "", {"id": "ame-x"}, Credentials(emulator.ak, emulator.sk))

    assert caught.value.failure.kind == "envelope"
    _assert_no_secret(caught.value, "APPsentinel-0123456789", emulator.sk)


@pytest.mark.parametrize(
    "route",
    [
        "@127.0.0.2/wenxinworkshop/modelrepo/eval/detail",
        ":1/wenxinworkshop/modelrepo/eval/detail",
        ".evil.example/wenxinworkshop/modelrepo/eval/detail",
    ],
    ids=["userinfo", "port", "host-suffix"],
)
def test_a_route_cannot_move_the_signed_request_to_another_host(
    flavour: Flavour, emulator: Emulator, route: str
) -> None:
    """The SDK concatenates base URL and route; evalctl refuses a route that changes the host."""
    with pytest.raises(ConfigurationError, match=r"another host than|cannot build a URL"):
        call(flavour, route, "", {"id": "ame-x"}, Credentials(emulator.ak, emulator.sk))

    assert emulator.requests == []


@pytest.mark.parametrize("route", [".evil.example/v2/eval", "@evil.example/v2/eval"])
def test_a_route_cannot_extend_a_portless_host(flavour: Flavour, route: str) -> None:
    """`https://qianfan.baidubce.com` + `.evil.example/...` would be another host: refused."""
    with (
        pointed_to("https://qianfan.baidubce.com"),
        pytest.raises(
            ConfigurationError, match=r"another host than https://qianfan\.baidubce\.com:443"
        ),
    ):
        call(flavour, route, "DescribeEvalTask", {"taskId": "ame-x"}, Credentials("a" * 20, SK))


class _Hostile(dict[str, object]):
    """A caller's mapping that fails while it is read."""

    def keys(self) -> object:  # type: ignore[override]
        raise RuntimeError(f"dictionary changed size during iteration {SK}")

    def __iter__(self) -> object:  # type: ignore[override]
        raise RuntimeError(f"dictionary changed size during iteration {SK}")


def test_a_body_that_fails_while_read_is_an_evalctl_error_unsent(
    flavour: Flavour, emulator: Emulator
) -> None:
    body = _Hostile(id="ame-x")

    with pytest.raises(ConfigurationError) as caught:
        call(flavour, DETAIL, "", body, Credentials(emulator.ak, emulator.sk))

    assert str(caught.value) == (
        "the request body could not be read (RuntimeError); nothing was sent"
    )
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    _assert_no_secret(caught.value, SK)
    assert emulator.requests == []
