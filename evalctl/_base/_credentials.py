"""The access key and secret key, in one small type that never shows them.

Every layer passes a `Credentials` instead of two strings, so no frame, repr
or error built by evalctl holds a bare key. The keys are checked here, before
anything is signed or sent: BCE signs printable ASCII only, and a key with a
smart quote, a BOM or a trailing newline pasted from a web page must fail as
a configuration error, not as a connection failure that is retried.

A `Credentials` also hands both keys to the process-wide redaction registry
(`evalctl._base._redact.SECRETS`), so every text evalctl emits afterwards has them
masked, in any spelling.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Final

from evalctl._base._errors import ConfigurationError, MissingCredentialsError
from evalctl._base._redact import SECRETS

ENV_ACCESS_KEY: Final = "QIANFAN_ACCESS_KEY"
ENV_SECRET_KEY: Final = "QIANFAN_SECRET_KEY"  # noqa: S105 - the variable name, not a key
ARG_ACCESS_KEY: Final = "the ak argument"
ARG_SECRET_KEY: Final = "the sk argument"  # noqa: S105 - an argument's name, not a key

# Named, because "U+FEFF" alone tells an operator little.
_CHARACTER_NAMES: Final = {
    "\ufeff": "a byte-order mark (BOM)",
    "\u200b": "a zero-width space",
    "\u00a0": "a no-break space",
    "\u2018": "a smart quote",
    "\u2019": "a smart quote",
    "\u201c": "a smart quote",
    "\u201d": "a smart quote",
    "\r": "a carriage return",
    "\n": "a line break",
    "\t": "a tab",
    " ": "a space",
}


class _Hidden:
    """One key, reachable only by calling `reveal` (no attribute holds the string)."""

    __slots__ = ("reveal",)

    def __init__(self, value: str) -> None:
        self.reveal: Callable[[], str] = lambda: value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("a key cannot be pickled")


class Credentials:
    """An access key / secret key pair whose `repr` and `str` mask both.

    The keys are read with `access_key()` / `secret_key()` (methods, so that
    debuggers, `vars()`-, `dir()`- and `__slots__`-walking dumps and traceback
    locals see no value). Not picklable; copying returns the same object.

    Raises:
        ConfigurationError: a key is not printable ASCII without whitespace
            (use `resolve_credentials` for messages naming the variable).
    """

    __slots__ = ("_ak", "_sk")

    def __init__(self, ak: str, sk: str) -> None:
        error = key_error(ak, "the access key") or key_error(sk, "the secret key")
        if error is not None:
            del ak, sk  # no frame of the traceback may hold a key
            raise error
        self._ak = _Hidden(ak)
        self._sk = _Hidden(sk)
        SECRETS.add(ak, sk)

    def access_key(self) -> str:
        """The access key (AK), for signing."""
        return self._ak.reveal()

    def secret_key(self) -> str:
        """The secret key (SK), for signing."""
        return self._sk.reveal()

    def __repr__(self) -> str:
        return "Credentials(ak=***, sk=***)"

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled with the values
        raise TypeError("Credentials cannot be pickled")

    def __copy__(self) -> Credentials:
        return self

    def __deepcopy__(self, _memo: object) -> Credentials:
        return self


def check_key(value: object, variable: str) -> str:
    """`value` if it can be signed with, else a `ConfigurationError` naming `variable`.

    A key must be a non-empty string of printable ASCII without whitespace
    (``!`` to ``~``). The message names the variable (or argument), what is
    wrong and where (a position), never the value; no frame of the error's
    traceback holds the value.
    """
    error = key_error(value, variable)
    if error is not None:
        del value
        raise error
    assert isinstance(value, str)  # key_error said so
    return value


def key_error(value: object, variable: str) -> ConfigurationError | None:
    """The error `check_key` would raise for `value` (None: the key is fine); raises nothing."""
    if not isinstance(value, str):
        return ConfigurationError(f"{variable} must be a string, not {type(value).__name__}")
    if not value:
        return ConfigurationError(f"{variable} is empty")
    if value.isascii() and value.isprintable() and " " not in value:
        return None  # the common case, decided in C
    for position, ch in enumerate(value, start=1):
        if "!" <= ch <= "~":
            continue
        where = (
            "at its start"
            if position == 1
            else "at its end"
            if position == len(value)
            else f"at position {position} of {len(value)}"
        )
        return ConfigurationError(
            f"{variable} contains {_describe(ch)} {where}; a key is printable ASCII without"
            " spaces (was it pasted with a quote, a BOM or a line break?)"
        )
    return None  # pragma: no cover - the C checks above and this loop agree


def _describe(ch: str) -> str:
    """What a character that cannot be in a key is, without being a part of the key."""
    name = _CHARACTER_NAMES.get(ch)
    code = f"U+{ord(ch):04X}"
    if name is not None:
        return f"{name} ({code})"
    if ch.isspace():
        return f"whitespace ({code})"
    if unicodedata.category(ch).startswith("C"):
        return f"a control character ({code})"
    return f"a character that is not ASCII ({code})"


def resolve_credentials(
    ak: str | None, sk: str | None, config_ak: object, config_sk: object
) -> Credentials:
    """The keys to sign with: the arguments, else the SDK configuration (environment).

    Args:
        ak, sk: The caller's arguments (None or empty: not given).
        config_ak, config_sk: The SDK configuration's keys (from
            ``QIANFAN_ACCESS_KEY`` / ``QIANFAN_SECRET_KEY``).

    Raises:
        MissingCredentialsError: no key at all, or only one (the message
            names the one that is missing).
        ConfigurationError: a key cannot be signed with (the message names
            the variable or argument it came from).
    """
    ak_source = ARG_ACCESS_KEY if ak else ENV_ACCESS_KEY
    sk_source = ARG_SECRET_KEY if sk else ENV_SECRET_KEY
    use_ak = ak or config_ak or None
    use_sk = sk or config_sk or None
    error: ConfigurationError | None
    if use_ak is None and use_sk is None:
        error = MissingCredentialsError()
    elif use_sk is None:
        error = MissingCredentialsError(
            f"no secret key: set {ENV_SECRET_KEY} (or pass the sk argument);"
            f" the access key is set ({ak_source})",
            missing=(ENV_SECRET_KEY,),
        )
    elif use_ak is None:
        error = MissingCredentialsError(
            f"no access key: set {ENV_ACCESS_KEY} (or pass the ak argument);"
            f" the secret key is set ({sk_source})",
            missing=(ENV_ACCESS_KEY,),
        )
    else:
        error = key_error(use_ak, ak_source) or key_error(use_sk, sk_source)
    if error is not None:
        del ak, sk, config_ak, config_sk, use_ak, use_sk  # no frame may hold a key
        raise error
    assert isinstance(use_ak, str)  # key_error said so
    assert isinstance(use_sk, str)
    return Credentials(use_ak, use_sk)
