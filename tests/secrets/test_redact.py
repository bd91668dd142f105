"""The redactor masks every secret it has seen, in every spelling a server may echo it in.

Spellings are produced here by the standard library (json, urllib, html),
never by the code under test; the registry is a private one per test where
the process-wide one would make the test depend on the others.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secret_hostile import HostileServer
from secret_scan import signing_key

from evalctl._base._redact import (
    MASK,
    MIN_SECRET_LENGTH,
    SECRETS,
    Redactor,
    SecretRegistry,
    remember,
    remember_authorization,
)
from evalctl._cli import _logging as _cli_logging

AK = "AKr2Tm8Vq4Lw6Xz0"
SK = "SKp9Hd3Nf7Bc1Gy5"
# An app secret with every character that escaping changes: / " \ + space & < é.
APP_SK = 'ap/"\\+ &<é-Sk7Qx'
SIGNATURE = "0f" * 32
AUTHORIZATION = f"bce-auth-v1/{AK}/2026-12-01T09:20:00Z/1800/host;x-bce-date/{SIGNATURE}"


def _every_char_u(value: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in value)


def _every_char_u_upper(value: str) -> str:
    return "".join(f"\\u{ord(ch):04X}" for ch in value)


#: name → how a server may spell a value.
SPELLINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "upper case": str.upper,
    "JSON-escaped": lambda v: json.dumps(v)[1:-1],
    "JSON-escaped, not ASCII-only": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "JSON with \\/": lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    "\\uXXXX every character": _every_char_u,
    "\\uXXXX every character, upper hex": _every_char_u_upper,
    "JSON in a JSON string": lambda v: json.dumps(json.dumps(v))[1:-1],
    "percent-encoded": lambda v: quote(v, safe=""),
    "percent-encoded, / kept": quote,
    "quote_plus": lambda v: quote_plus(v, safe=""),
    "percent-encoded twice": lambda v: quote(quote(v, safe=""), safe=""),
    "percent-encoded in JSON": lambda v: json.dumps(quote(v, safe=""))[1:-1],
    "HTML-escaped": html.escape,
    "XML decimal references": lambda v: "".join(f"&#{ord(ch)};" for ch in v),
    "XML hex references": lambda v: "".join(f"&#x{ord(ch):X};" for ch in v),
    "HTML-escaped JSON": lambda v: html.escape(json.dumps(v)),
}


def _lower_hex(value: str) -> str:
    """`quote` with lower-case hex digits (the letters of the value itself unchanged)."""
    out = []
    for ch in value:
        encoded = quote(ch, safe="")
        out.append(encoded.lower() if encoded.startswith("%") else encoded)
    return "".join(out)


SPELLINGS["percent-encoded, lower hex"] = _lower_hex


def _decodings(text: str) -> set[str]:
    """`text` and what the standard library makes of it, undoing up to three escapings."""
    found = {text}
    for _ in range(3):
        found |= {
            decoded
            for t in found
            for decoded in (unquote(t), unquote_plus(t), html.unescape(t), _json_unescaped(t))
        }
    return found


def _json_unescaped(text: str) -> str:
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)
    return re.sub(r"\\([\\/\"])", r"\1", text)


@pytest.fixture
def redactor() -> Redactor:
    """A redactor on a private registry that knows AK, SK, an app secret and one request."""
    made = Redactor([AK, SK, APP_SK], registry=SecretRegistry())
    made.add_authorization(AUTHORIZATION, SK)
    return made


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize(
    "secret",
    [AK, SK, APP_SK, AUTHORIZATION, SIGNATURE, signing_key(AUTHORIZATION, SK)],
    ids=["ak", "sk", "app secret", "authorization", "signature", "signing key"],
)
def test_a_known_secret_is_masked_in_every_spelling(
    redactor: Redactor, secret: str, spelling: str
) -> None:
    """No spelling of a seen secret survives; the words around it do."""
    spelled = SPELLINGS[spelling](secret)

    shown = redactor(f"gateway said: <{spelled}> (denied)", limit=None)

    assert shown.startswith("gateway said: <")
    assert shown.endswith("> (denied)")
    assert MASK in shown
    secret_part = secret.removeprefix("bce-auth-v1/")  # the prefix is no secret
    for text in _decodings(shown):
        for i in range(len(secret_part) - 9):
            assert secret_part[i : i + 10].lower() not in text.lower(), text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app_sk: 'x9Yq2Lm4Pz'", "app_sk: '***'"),
        ('appSk: "x9Yq2Lm4Pz"', 'appSk: "***"'),
        ("appSk=x9Yq2Lm4Pz&state=Doing", "appSk=***&state=Doing"),
        ("appAk%3Dx9Yq2Lm4Pz", "appAk%3D***"),
        ('{\\"appSk\\": \\"x9Yq2Lm4Pz\\"}', '{\\"appSk\\": \\"***\\"}'),
        ("<appSk>x9Yq2Lm4Pz</appSk>", "<appSk>***</appSk>"),
        ("&lt;appSk&gt;x9Yq2Lm4Pz&lt;/appSk&gt;", "&lt;appSk&gt;***&lt;/appSk&gt;"),
        ("  secret_access_key: x9Yq2Lm4Pz", "  secret_access_key: ***"),
        ("Authorization: bce-auth-v1/AKunknown/2026/1800/host/ab12", "Authorization: ***"),
        ("auth=bce-auth-v1%2FAKunknown%2F2026%2F1800%2Fhost%2Fab12", "auth=***"),
        ("v bce-auth-v1/AKunknown/2026/1800/host/ab12", "v bce-auth-v1/***"),
        ("v bce-auth-v1\\/AKunknown\\/2026", "v ***"),
        (f"sig {'ab' * 32} end", "sig *** end"),
        ("sign_key=[Zq81Lx0Pw3] sign_string=[9 bytes]", "sign_key=[***] sign_string=[9 bytes]"),
        ("set ak= and sk= first", "set ak= and sk= first"),
        ("the task ran 100% of its cases &more", "the task ran 100% of its cases &more"),
    ],
)
def test_secret_shapes_are_masked_unseen(text: str, expected: str) -> None:
    """Fields named like secrets (in any spelling), Authorization values, HMACs: never seen."""
    assert expected == Redactor(registry=SecretRegistry())(text, limit=None)


def test_a_session_redactor_feeds_the_process_registry_and_the_cli_filter_masks_it() -> None:
    """What one session learns (an app secret in a detail) is masked by the CLI's filter too."""
    learned = "appsecret-Zq81Lx0Pw3"
    session = Redactor()

    session.add(learned)

    assert learned in SECRETS
    assert _cli_logging.redact_text(f"x {learned} y") == f"x {MASK} y"
    assert _cli_logging.redactor(quote(learned, safe="").lower()) == MASK


def test_a_standalone_redactor_masks_only_its_own_values() -> None:
    """`registry=None`: nothing it is given leaves it, and the registry's values are not its own."""
    remember("registered-Qv72Mn0Tb4")
    standalone = Redactor(["own-Hd52Kc9Ws1"], registry=None)

    assert "own-Hd52Kc9Ws1" not in SECRETS
    assert standalone("own-Hd52Kc9Ws1 registered-Qv72Mn0Tb4") == f"{MASK} registered-Qv72Mn0Tb4"


def test_an_authorization_teaches_its_signature_and_signing_key() -> None:
    """`remember_authorization`: the signature and the derived signing key, even inside hex runs."""
    signature = "1a" * 32
    authorization = f"bce-auth-v1/AKsig-Tq3Wn/2026-12-01T09:20:00Z/1800/host/{signature}"
    key = signing_key(authorization, "SKsig-Hx8Pf")

    remember_authorization(authorization, "SKsig-Hx8Pf")

    assert SECRETS.knows_signature(signature)
    assert SECRETS.knows_signature(key)
    # Standing alone, any 64 hex digits go; glued into a longer run, the known ones still do.
    assert Redactor()(f"ff{signature}ff {key}0") == f"ff{MASK}ff {MASK}0"


def test_signatures_are_remembered_for_the_most_recent_requests_only() -> None:
    """The signature set is bounded; an evicted one is still masked by shape, standing alone."""
    registry = SecretRegistry(max_signatures=2)
    first, second, third = ("a1" * 32, "b2" * 32, "c3" * 32)

    registry.add_signature(first, second, third)

    assert [registry.knows_signature(s) for s in (first, second, third)] == [False, True, True]
    assert Redactor(registry=registry)(f"x {first}") == f"x {MASK}"


def test_values_shorter_than_the_minimum_are_not_searched() -> None:
    """A 3-character "secret" would mask every word containing it; 4 characters are masked."""
    registry = SecretRegistry()
    short, long_enough = "q" * (MIN_SECRET_LENGTH - 1), "w" * MIN_SECRET_LENGTH

    Redactor([short, long_enough], registry=registry)

    assert len(registry) == 1
    assert Redactor(registry=registry)(f"{short} {long_enough}") == f"{short} {MASK}"


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    """Longest first: no tail of the longer secret is left beside the mask."""
    redact = Redactor(["Qz4kW8", "Qz4kW8-and-more-Tr5"], registry=SecretRegistry())

    assert redact("<Qz4kW8-and-more-Tr5> <Qz4kW8>") == f"<{MASK}> <{MASK}>"


def test_a_secret_cut_by_the_length_limit_leaves_no_fragment() -> None:
    """A long text is cut before masking; what could hold half a secret is dropped with it."""
    secret = "LongSecret-Vn38Qa1Lp7Wc5Zx2"
    redact = Redactor([secret], registry=SecretRegistry())
    # Many masked copies first: masking shortens the text, which must not pull in the cut piece.
    text = (secret + " ") * 60 + "x" * 2000 + secret

    for cut in range(len(text) - 40, len(text) + 1, 3):
        shown = redact(text[:cut], limit=300)
        assert len(shown) <= 300
        assert all(secret[i : i + 10] not in shown for i in range(len(secret) - 9)), cut


def test_a_huge_secret_and_many_secrets_compile() -> None:
    """A 20,000-character value (a hostile detail) and 5,000 values are searched without error."""
    huge = "H" + "u" * 20_000
    many = [f"v{i:05d}-Kq8Lz" for i in range(5000)]
    redact = Redactor([huge, *many], registry=SecretRegistry())

    assert redact(f"{many[4321]} {huge[:30]}", limit=None) == f"{MASK} {huge[:30]}"
    assert redact(huge, limit=None) == MASK


@pytest.mark.parametrize("at", range(1, 16))
def test_the_length_limit_never_splits_a_mask(at: int) -> None:
    """A cut through ``bce-auth-v1/***`` would look unmasked: the cut goes before it."""
    text = "x" * (20 - at) + "bce-auth-v1/AKzz9Wq2Lm/2026/1800/host/ab12 tail"

    shown = Redactor(registry=SecretRegistry())(text, limit=20)

    assert len(shown) <= 20
    assert shown.endswith("…")
    assert "bce-auth-v1/" not in shown or "bce-auth-v1/***" in shown, shown
    assert "*" not in shown.replace(MASK, ""), shown


@pytest.mark.parametrize("before", ["%0", "%2", "\\x5", "%\\u0041", "&#6", "%25"])
def test_a_plain_secret_is_masked_even_where_its_neighbour_would_decode_into_it(
    redactor: Redactor, before: str
) -> None:
    """``%0`` + ``AK…`` decodes to a line break + ``K…``: the text as written is searched too."""
    shown = redactor(f"x{before}{AK} y", limit=None)

    assert AK[:10].lower() not in shown.lower()
    assert shown.endswith(f"{MASK} y")


def test_control_characters_never_reach_the_output() -> None:
    """A hostile body's escape sequences and line breaks are spaces in the result."""
    assert Redactor(registry=SecretRegistry())("a\x1b[2Jb\nc\u2028d") == "a [2Jb c d"


def test_concurrent_additions_and_redactions_lose_nothing() -> None:
    """Eight threads adding and redacting 60 values each at once: every value added is masked."""
    registry = SecretRegistry()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        redact = Redactor(registry=registry)
        try:
            for i in range(60):
                value = f"t{n}-v{i:03d}-Mx"
                redact.add(value)
                assert redact(f"<{value}>") == f"<{MASK}>"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(registry) == 8 * 60
    everything = " ".join(f"t{n}-v{i:03d}-Mx" for n in range(8) for i in range(60))
    assert set(Redactor(registry=registry)(everything, limit=None).split()) == {MASK}


def test_redactors_and_the_registry_cannot_be_pickled_and_show_no_value() -> None:
    """Their reprs count values; pickling them is refused."""
    import pickle

    registry = SecretRegistry()
    redact = Redactor([AK], registry=registry)

    assert repr(redact) == "Redactor(<1 secrets>)"
    assert repr(registry) == "SecretRegistry(<1 secrets, 0 signatures>)"
    for thing in (redact, registry):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(thing)


def test_every_request_signed_teaches_the_registry_its_signature() -> None:
    """Over real HTTP: the signature and signing key of each request sent are known afterwards."""
    import evalctl
    from evalctl.emulator import pointed_at

    with HostileServer(AK, SK, "APreg-Kw9Qz5Lm7", "APreg-Tj1Vn4Hc8") as server, pointed_at(server):
        evalctl.describe_eval_task(server.plan("ame-signed1"))
        sent = server.authorizations()

    assert len(sent) == 1
    assert SECRETS.knows_signature(sent[0].rsplit("/", 1)[-1])
    assert SECRETS.knows_signature(signing_key(sent[0], SK))


_NEIGHBOURS = st.lists(
    st.sampled_from(
        [
            *"ab%25&#;x\\u0/\"'<>=: AKSKq7",
            *("%2F", "\\u0041", "&amp;", "&#x2F;", "\\/", "%0", "\\x5", "&#6", "é", "\n"),
            "bce-auth-v1/",
        ]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(before=_NEIGHBOURS, after=_NEIGHBOURS, spelling=st.sampled_from(sorted(SPELLINGS)))
def test_no_neighbourhood_and_no_spelling_lets_a_secret_through(
    before: str, after: str, spelling: str
) -> None:
    """Any text around any spelling of a known secret: no decoding of the result shows it."""
    redact = Redactor([AK, SK, APP_SK], registry=SecretRegistry())

    shown = redact(before + SPELLINGS[spelling](APP_SK) + after, limit=None)

    for text in _decodings(shown):
        assert all(APP_SK[i : i + 10].lower() not in text.lower() for i in range(7)), text
