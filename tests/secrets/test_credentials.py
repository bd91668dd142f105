"""`Credentials` never shows its keys; the key checks name what is wrong, never the key."""

from __future__ import annotations

import copy
import inspect
import pickle
import traceback

import pytest
import structlog

from evalctl import ConfigurationError, MissingCredentialsError
from evalctl._base._credentials import Credentials, check_key, resolve_credentials
from evalctl._base._redact import SECRETS

AK = "AKc4Wq9Lm2Tx7Rb5"
SK = "SKn8Fz3Hv6Pd1Gk0"
_HINT = (
    "; a key is printable ASCII without spaces (was it pasted with a quote, a BOM or a line break?)"
)


def _windows(secret: str) -> list[str]:
    return [secret[i : i + 10] for i in range(len(secret) - 9)]


def _everything_shown(error: BaseException) -> str:
    """The error as every tool that prints one would: with locals, as structlog's dict too.

    The test's own frame (which holds the bad value it passed) is left out.
    """
    tb = error.__traceback__
    while tb is not None and "/evalctl/" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    assert tb is not None
    error = error.with_traceback(tb)
    texts = [str(error), repr(error), repr(error.args), repr(vars(error))]
    texts.append(
        "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    )
    transform = structlog.tracebacks.ExceptionDictTransformer(show_locals=True)
    texts.append(repr(transform((type(error), error, error.__traceback__))))
    return "\n".join(texts)


def test_credentials_show_no_key_however_they_are_dumped() -> None:
    """repr, str, f-strings, attribute walks (dir, getmembers, __slots__) and copies: no key."""
    credentials = Credentials(AK, SK)

    dumps = [
        repr(credentials),
        str(credentials),
        f"{credentials} {credentials!r}",
        repr({name: getattr(credentials, name, None) for name in dir(credentials)}),
        repr(inspect.getmembers(credentials)),
        repr([getattr(credentials, slot) for slot in Credentials.__slots__]),
    ]

    assert repr(credentials) == "Credentials(ak=***, sk=***)"
    assert (credentials.access_key(), credentials.secret_key()) == (AK, SK)
    assert not hasattr(credentials, "__dict__")
    for dump in dumps:
        assert all(window not in dump for window in _windows(AK) + _windows(SK)), dump
    assert copy.copy(credentials) is credentials
    assert copy.deepcopy(credentials) is credentials


def test_credentials_cannot_be_pickled() -> None:
    """Pickling (multiprocessing, caches) is refused rather than writing the keys out."""
    with pytest.raises(TypeError, match="Credentials cannot be pickled"):
        pickle.dumps(Credentials(AK, SK))


def test_credentials_teach_the_process_registry_both_keys() -> None:
    """Every text redacted after a session's credentials exist has the keys masked."""
    ak, sk = "AKreg-Wq9Lm2Tx7", "SKreg-Fz3Hv6Pd1"

    Credentials(ak, sk)

    assert ak in SECRETS
    assert sk in SECRETS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "\u201cAKc4Wq9Lm2Tx7Rb5\u201d",
            "QIANFAN_ACCESS_KEY contains a smart quote (U+201C) at its start",
        ),
        (
            "\ufeffAKc4Wq9Lm2Tx7Rb5",
            "QIANFAN_ACCESS_KEY contains a byte-order mark (BOM) (U+FEFF) at its start",
        ),
        ("AKc4Wq9Lm2Tx7Rb5\n", "QIANFAN_ACCESS_KEY contains a line break (U+000A) at its end"),
        (
            "AKc4Wq9Lm2Tx7Rb5\r\n",
            "QIANFAN_ACCESS_KEY contains a carriage return (U+000D) at position 17 of 18",
        ),
        ("AKc4Wq9Lm2Tx7Rb5 ", "QIANFAN_ACCESS_KEY contains a space (U+0020) at its end"),
        ("AKc4Wq9L\tm2Tx7Rb5", "QIANFAN_ACCESS_KEY contains a tab (U+0009) at position 9 of 17"),
        (
            "AKc4Wq9L\u00e9m2Tx7Rb5",
            "QIANFAN_ACCESS_KEY contains a character that is not ASCII (U+00E9)"
            " at position 9 of 17",
        ),
        (
            "AKc4Wq9L\x7fm2Tx7Rb5",
            "QIANFAN_ACCESS_KEY contains a control character (U+007F) at position 9 of 17",
        ),
    ],
    ids=["smart quotes", "BOM", "LF", "CRLF", "trailing space", "tab", "accent", "DEL"],
)
def test_a_key_that_cannot_be_signed_is_named_never_shown(value: str, expected: str) -> None:
    """One line naming the variable, the character and where; no part of the key."""
    with pytest.raises(ConfigurationError) as raised:
        check_key(value, "QIANFAN_ACCESS_KEY")

    assert str(raised.value) == expected + _HINT
    assert raised.value.exit_code == 2
    shown = _everything_shown(raised.value)
    assert "\n" not in str(raised.value)
    assert all(window not in shown for window in _windows(AK)), shown


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "the sk argument is empty"), (b"SK", "the sk argument must be a string, not bytes")],
)
def test_an_empty_or_non_string_key_is_named(value: object, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{expected}$"):
        check_key(value, "the sk argument")


def test_a_good_key_is_returned_as_is() -> None:
    assert check_key("AK-._~!#$%&'()*+,/:;<=>?@[]^`{|}\"\\", "ak") == (
        "AK-._~!#$%&'()*+,/:;<=>?@[]^`{|}\"\\"
    )


def test_resolve_prefers_the_arguments_over_the_configuration() -> None:
    credentials = resolve_credentials(AK, SK, "AKfrom-config-1", "SKfrom-config-1")

    assert (credentials.access_key(), credentials.secret_key()) == (AK, SK)
    from_config = resolve_credentials(None, "", AK, SK)
    assert (from_config.access_key(), from_config.secret_key()) == (AK, SK)


@pytest.mark.parametrize(
    ("ak", "sk", "config_ak", "config_sk", "expected"),
    [
        (
            None,
            None,
            None,
            "",
            "no credentials: set QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY"
            " (or pass the ak and sk arguments)",
        ),
        (
            None,
            None,
            AK,
            None,
            "no secret key: set QIANFAN_SECRET_KEY (or pass the sk argument);"
            " the access key is set (QIANFAN_ACCESS_KEY)",
        ),
        (
            AK,
            None,
            None,
            None,
            "no secret key: set QIANFAN_SECRET_KEY (or pass the sk argument);"
            " the access key is set (the ak argument)",
        ),
        (
            None,
            SK,
            "",
            None,
            "no access key: set QIANFAN_ACCESS_KEY (or pass the ak argument);"
            " the secret key is set (the sk argument)",
        ),
        (
            None,
            None,
            None,
            SK,
            "no access key: set QIANFAN_ACCESS_KEY (or pass the ak argument);"
            " the secret key is set (QIANFAN_SECRET_KEY)",
        ),
    ],
    ids=[
        "none",
        "only the env AK",
        "only the ak argument",
        "only the sk argument",
        "only the env SK",
    ],
)
def test_a_missing_key_is_named(
    ak: str | None, sk: str | None, config_ak: object, config_sk: object, expected: str
) -> None:
    """With one key set, the message says which one is missing (and where the other came from)."""
    with pytest.raises(MissingCredentialsError) as raised:
        resolve_credentials(ak, sk, config_ak, config_sk)

    assert str(raised.value) == expected
    assert raised.value.exit_code == 2
    assert len(raised.value.missing) == (2 if expected.startswith("no credentials") else 1)
    shown = _everything_shown(raised.value)
    assert all(window not in shown for window in _windows(AK) + _windows(SK)), shown


@pytest.mark.parametrize(
    ("ak", "sk", "config_ak", "config_sk", "named"),
    [
        (None, None, AK + "\r", SK, "QIANFAN_ACCESS_KEY contains a carriage return"),
        (None, None, AK, "\u201c" + SK, "QIANFAN_SECRET_KEY contains a smart quote"),
        (AK, SK + " ", "AKcfg-unused-1", "SKcfg-unused-1", "the sk argument contains a space"),
        (" " + AK, SK, None, None, "the ak argument contains a space"),
    ],
)
def test_a_bad_key_names_where_it_came_from_and_no_frame_holds_a_key(
    ak: str | None, sk: str | None, config_ak: object, config_sk: object, named: str
) -> None:
    """Traceback locals (TracebackException, structlog's show_locals) hold neither key."""
    with pytest.raises(ConfigurationError) as raised:
        resolve_credentials(ak, sk, config_ak, config_sk)

    assert str(raised.value).startswith(named)
    shown = _everything_shown(raised.value)
    assert all(window not in shown for window in _windows(AK) + _windows(SK)), shown


def test_constructing_credentials_with_a_bad_key_keeps_no_key_in_its_frames() -> None:
    """`Credentials(ak, sk)` checks too; its frame's locals are gone before the error leaves."""
    with pytest.raises(ConfigurationError) as raised:
        Credentials(AK, SK + "\n")

    assert str(raised.value).startswith("the secret key contains a line break (U+000A) at its end")
    shown = _everything_shown(raised.value)
    assert all(window not in shown for window in _windows(AK) + _windows(SK)), shown
