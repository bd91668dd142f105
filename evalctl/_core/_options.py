"""Every setting of a call, checked once into a frozen `Options`.

The public API, the batch (once per batch) and the CLI (as its credential
probe) build their `Options` with `check_options`; sessions are built from
it without checking anything again.

Keys: callers hand over what they were given as `GivenKeys` (masked in every
repr) and drop their own references, so that no frame holds a bare key when
an error passes through it (a traceback rendered with its locals shows
every frame's variables). `check_options` resolves them once, with the SDK
configuration's keys as the fallback, into `Credentials`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qianfan import get_config

from evalctl._base._config import RetryPolicy
from evalctl._base._credentials import Credentials, resolve_credentials
from evalctl._base._defaults import DEFAULT_WAIT_TIMEOUT_S
from evalctl._base._errors import ConfigurationError
from evalctl._safety._generations import Generation, generation


class GivenKeys:
    """The `ak`/`sk` a caller passed (possibly None), unchecked, masked in its repr."""

    __slots__ = ("__ak", "__sk")

    def __init__(self, ak: object = None, sk: object = None) -> None:
        self.__ak = ak
        self.__sk = sk

    def values(self) -> tuple[Any, Any]:
        """The keys given; a blank one counts as not given."""
        return _given(self.__ak), _given(self.__sk)

    def __repr__(self) -> str:
        return "GivenKeys(***)"


@dataclass(frozen=True)
class Options:
    """The checked settings of one call (or of every task of a batch).

    Attributes:
        generation: The API generation (`api="v1"` or `"v2"`).
        policy: The retry policy in force.
        credentials: The keys to sign with (masked in every repr).
        dry_run, wait, wait_timeout: As `cancel_eval_task` takes them.
        host: The drop-in's `host=` (scheme://host[:port]) replacing the
            endpoint's, as the SDK's requestor takes it; None: the endpoint's.
    """

    generation: Generation
    policy: RetryPolicy
    credentials: Credentials
    dry_run: bool = False
    wait: bool = False
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S
    host: str | None = None


def check_options(
    *,
    keys: GivenKeys,
    api: object = "v1",
    retry: object = None,
    dry_run: object = False,
    wait: object = False,
    wait_timeout: object = DEFAULT_WAIT_TIMEOUT_S,
    host: object = None,
) -> Options:
    """Check every setting once; the one place that does.

    Raises:
        ConfigurationError: an unknown `api`, a `retry` that is not a
            `RetryPolicy`, a bad `wait_timeout`, the endpoint variable is not
            an http(s) URL, or a key cannot be signed with.
        MissingCredentialsError: no keys given nor configured.
    """
    chosen = generation(api)
    policy = check_policy(retry)
    timeout = check_wait_timeout(wait_timeout)
    _check_endpoint(str(get_config().CONSOLE_API_BASE_URL))
    try:
        credentials = resolve_credentials(*keys.values(), *_configured_keys())
    except ConfigurationError as error:
        # The frames below hold the keys they were checking: not kept.
        raise error.with_traceback(None) from None
    return Options(
        generation=chosen,
        policy=policy,
        credentials=credentials,
        dry_run=bool(dry_run),
        wait=bool(wait),
        wait_timeout=timeout,
        host=host if isinstance(host, str) and host else None,
    )


def check_policy(retry: object) -> RetryPolicy:
    """`retry` itself, or the default policy (`RetryPolicy.from_env()`) for None."""
    if retry is None:
        return RetryPolicy.from_env()
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    return retry


def check_wait_timeout(value: object) -> float:
    """`wait_timeout` as seconds.

    Raises:
        ConfigurationError: not a finite number >= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"wait_timeout must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _given(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _configured_keys() -> tuple[object, object]:
    # The SDK config object's repr shows both keys: never kept in a frame that may raise.
    config = get_config()
    return config.ACCESS_KEY, config.SECRET_KEY


def _check_endpoint(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Userinfo (user:password@) is dropped from what is shown.
        shown = parts._replace(netloc=parts.hostname or "").geturl() if parts.netloc else base_url
        raise ConfigurationError(
            f"QIANFAN_CONSOLE_API_BASE_URL must be an http:// or https:// URL, got {shown[:100]!r}"
        )
