"""BCE signature v1 verification, by recomputing the SDK's own signature.

The qianfan SDK signs with `baidubce.auth.bce_v1_signer.sign` over the route
path (no base URL), the query (``{"Action": action}``, blank values kept) and
every header it set; the Authorization value names the timestamp, expiry and
signed headers it used. Recomputing with the same function and the known SK,
then comparing in constant time, accepts exactly what the cloud would.
"""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# bce-python-sdk ships no type information; `sign` is called with the exact
# argument types the qianfan SDK uses, so its results are treated as bytes.
from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]

from evalctl.emulator._defaults import MAX_CLOCK_SKEW_S

_PREFIX: Final = "bce-auth-v1"
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was not authenticated, as BCE says it."""

    status: int
    code: str
    cause: str

    @property
    def header(self) -> str:
        """The ``X-Bce-Error-Message`` value (the SDK matches these strings exactly)."""
        return f"{self.code}, cause: {self.cause}"


MISSING: Final = AuthFailure(401, "AccessDenied", "Missing or malformed Authorization header.")
UNKNOWN_AK: Final = AuthFailure(401, "NotFound", "Could not find credential.")
BAD_SIGNATURE: Final = AuthFailure(
    403, "SignatureDoesNotMatch", "Fail to authn user: Signature does not match"
)
EXPIRED: Final = AuthFailure(
    403, "RequestExpired", "Request has expired or is dated in the future."
)


@dataclass(frozen=True)
class _Authorization:
    ak: str
    timestamp: int
    expiry_s: int
    signed_headers: tuple[str, ...]
    signature: str


class Verifier:
    """Checks Authorization values against one AK/SK pair."""

    def __init__(self, ak: str, sk: str, *, check_expiry: bool) -> None:
        self._ak = ak
        self._credentials = BceCredentials(ak, sk)
        self._check_expiry = check_expiry

    def verify(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        now: float,
    ) -> AuthFailure | None:
        """None when the request is signed by our AK/SK and fresh; else the failure.

        Args:
            method: the HTTP method.
            path: the request path exactly as sent, without the query.
            query: the query pairs, blank values kept.
            headers: the request headers, names lower-cased.
            now: wall-clock seconds, for the expiry check.
        """
        auth = _parse(headers.get("authorization", ""))
        if auth is None:
            return MISSING
        if not hmac.compare_digest(auth.ak.encode(), self._ak.encode()):
            return UNKNOWN_AK
        expected = sign(
            self._credentials,
            method.encode(),
            path.encode(),
            {name.encode(): value for name, value in headers.items()},
            {name.encode(): value for name, value in query},
            timestamp=auth.timestamp,
            expiration_in_seconds=auth.expiry_s,
            headers_to_sign={name.encode() for name in auth.signed_headers},
        )
        expected_signature: bytes = expected.rsplit(b"/", 1)[-1]
        if not hmac.compare_digest(expected_signature, auth.signature.encode()):
            return BAD_SIGNATURE
        if self._check_expiry and (
            now > auth.timestamp + auth.expiry_s or auth.timestamp > now + MAX_CLOCK_SKEW_S
        ):
            return EXPIRED
        return None


def _parse(value: str) -> _Authorization | None:
    parts = value.strip().split("/")
    if len(parts) != 6 or parts[0] != _PREFIX or not parts[1] or not parts[5]:
        return None
    _, ak, stamp, expiry, signed, signature = parts
    try:
        timestamp = calendar.timegm(time.strptime(stamp, _TIME_FORMAT))
        expiry_s = int(expiry)
    except ValueError:
        return None
    if expiry_s < 0 or not signature.isascii():
        return None
    names = tuple(name.strip().lower() for name in signed.split(";") if name.strip())
    return _Authorization(ak, timestamp, expiry_s, names, signature)
