"""The access key and secret key, in one small type that never shows them.

Every layer passes a `Credentials` instead of two strings, so no frame, repr
or error built by evalctl holds a bare key. The keys are checked here, before
anything is signed or sent: BCE signs printable ASCII only, and a key with a
smart quote, a BOM or a trailing newline pasted from a web page must fail as
a configuration error, not as a connection failure that is retried.
"""

from __future__ import annotations

from typing import Final

from evalctl._errors import ConfigurationError, MissingCredentialsError

ENV_ACCESS_KEY: Final = "QIANFAN_ACCESS_KEY"
ENV_SECRET_KEY: Final = "QIANFAN_SECRET_KEY"  # noqa: S105 - the variable name, not a key


class Credentials:
    """An access key / secret key pair whose `repr` and `str` mask both.

    Attributes are read with `access_key()` / `secret_key()` (methods, so that
    debuggers and `vars()`-based dumps that walk attributes see no value).
    """

    __slots__ = ("__ak", "__sk")

    def __init__(self, ak: str, sk: str) -> None:
        self.__ak = ak
        self.__sk = sk

    def access_key(self) -> str:
        return self.__ak

    def secret_key(self) -> str:
        return self.__sk

    def __repr__(self) -> str:
        return "Credentials(ak=***, sk=***)"

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled with the values
        raise TypeError("Credentials cannot be pickled")


def check_key(value: object, variable: str) -> str:
    """`value` if it can be signed with, else a `ConfigurationError` naming `variable`.

    The message names the variable (or argument) and what is wrong, never the value.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{variable} must be a string")
    if value != value.strip():
        raise ConfigurationError(f"{variable} has leading or trailing whitespace")
    for ch in value:
        if not ("!" <= ch <= "~"):
            what = "whitespace" if ch.isspace() else "a character that is not printable ASCII"
            raise ConfigurationError(f"{variable} contains {what}")
    return value


def resolve_credentials(
    ak: str | None, sk: str | None, config_ak: object, config_sk: object
) -> Credentials:
    """The keys to sign with: the arguments, else the SDK configuration (environment).

    Raises:
        MissingCredentialsError: neither gives a key (the message names which is missing).
        ConfigurationError: a key cannot be signed with.
    """
    ak_source = "the ak argument" if ak else ENV_ACCESS_KEY
    sk_source = "the sk argument" if sk else ENV_SECRET_KEY
    use_ak = ak or config_ak
    use_sk = sk or config_sk
    if not use_ak or not use_sk:
        raise MissingCredentialsError()
    return Credentials(check_key(use_ak, ak_source), check_key(use_sk, sk_source))
