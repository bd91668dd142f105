"""Scrubbing credentials out of any text that came from outside.

Server messages can echo what they were sent (a gateway that reflects the
request headers, a detail that carries the judge app's keys); everything
server-provided passes through a `Redactor` before it reaches a log event,
an error message or the terminal.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"
#: Longest server-provided text kept in a message.
MAX_SERVER_TEXT: Final = 300
# A BCE v1 Authorization value: everything after the prefix up to a delimiter.
# Not `;`: it separates the signed header names, and the signature follows them.
_AUTH_RE: Final = re.compile(r"bce-auth-v1/[^\s'\",}\]]*", re.IGNORECASE)
# Keys whose values are always secret, wherever they appear as key/value text.
_SECRET_FIELD_RE: Final = re.compile(
    r"""(?P<key>(?<!\w)["']?(?:appAk|appSk|authorization|secret[_-]?key|access[_-]?key|sk|ak)["']?"""
    # `key: value` (JSON, headers) may have a space after the colon; `key=value` may not,
    # so prose such as "set ak= and sk=" is left alone.
    r"""(?:\s*:\s*|=))(?P<q>["']?)(?P<value>[^"',;})\]>\s]+)""",
    re.IGNORECASE,
)
# Secrets shorter than this are not searched for: masking every "a" would
# destroy messages without protecting anything.
_MIN_SECRET_LENGTH: Final = 4


class Redactor:
    """Masks known secret values and anything shaped like a credential."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Remember more values to mask (e.g. `appAk` seen in a detail)."""
        fresh = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LENGTH}
        if fresh - self._secrets:
            with self._lock:
                self._secrets = self._secrets | fresh
                # Longest first, so a secret that contains another is masked whole;
                # any case, as server text may come back lower-cased (evalMode).
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)
                self._longest = len(ordered[0])

    def __call__(self, text: str, limit: int | None = MAX_SERVER_TEXT) -> str:
        """Return `text` with credentials masked, shortened to `limit` characters."""
        if limit is not None:
            # Cut early so a huge body costs nothing, but late enough that any
            # secret starting before `limit` is still whole and gets masked.
            text = text[: limit + max(self._longest, 256)]
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _AUTH_RE.sub("bce-auth-v1/" + MASK, text)
        text = _SECRET_FIELD_RE.sub(_mask_field, text)
        text = _printable(text)
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        return text

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secrets>)"


def _mask_field(match: re.Match[str]) -> str:
    return f"{match['key']}{match['q']}{MASK}"


def _printable(text: str) -> str:
    # Control characters from a hostile body must not reach a terminal.
    return "".join(ch if ch.isprintable() or ch == " " else " " for ch in text)
