"""Redaction cost: 30,000 planted secret values, today's redactor against the round-1 one.

The round-1 redactor (copied below, as it was: one alternation of the
known values, the Authorization shape, the secret-field shape, and a
per-character printable pass) is the baseline, measured in the same run on
the same corpus: 30,000 server messages of about 200 characters, each with
one known secret planted raw (the only spelling the baseline can find),
redacted at the default length limit. Both sides search the same four
known values (as a CLI run has: AK, SK, appAk, appSk) and `--known` more
(a batch that read many details; the round-1 alternation slows down with
each, today's trie does not). Target: ratio ≤ 2.0. Both sides must mask
every planted value; a miss is an error, not a figure.

A second, informational line times the new redactor on the same messages
with each value planted in a rotating escaped spelling (JSON, ``\\/``,
``\\uXXXX``, percent-encoded, HTML), which the baseline cannot find at all.

    python benchmarks/bench_redact.py [--quick] [--n N] [--known N]
"""

from __future__ import annotations

import html
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import quote, quote_plus

import _common

TARGET: Final = 2.0
N: Final = 30_000
QUICK_N: Final = 600
ROUNDS: Final = 3
#: The values planted (and known): AK, SK, appAk, appSk.
PLANTED: Final = 4


class RoundOneRedactor:
    """The redactor as round 1 shipped it (the baseline; not used by evalctl)."""

    _AUTH_RE = re.compile(r"bce-auth-v1/[^\s'\",}\]]*", re.IGNORECASE)
    _SECRET_FIELD_RE = re.compile(
        r"""(?P<key>(?<!\w)["']?(?:appAk|appSk|authorization|secret[_-]?key|access[_-]?key|sk|ak)["']?"""
        r"""(?:\s*:\s*|=))(?P<q>["']?)(?P<value>[^"',;})\]>\s]+)""",
        re.IGNORECASE,
    )

    def __init__(self, secrets: Iterable[str]) -> None:
        self._lock = threading.Lock()
        ordered = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)
        self._longest = len(ordered[0])

    def __call__(self, text: str, limit: int | None = 300) -> str:
        if limit is not None:
            text = text[: limit + max(self._longest, 256)]
        text = self._pattern.sub("***", text)
        text = self._AUTH_RE.sub("bce-auth-v1/***", text)
        text = self._SECRET_FIELD_RE.sub(lambda m: f"{m['key']}{m['q']}***", text)
        text = "".join(ch if ch.isprintable() or ch == " " else " " for ch in text)
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


def _secret(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(32))


_SPELLINGS: Final[tuple[Callable[[str], str], ...]] = (
    lambda s: json.dumps(s + '"/')[1:-1],
    lambda s: (s + "/").replace("/", "\\/"),
    lambda s: "".join(f"\\u{ord(c):04x}" for c in s),
    lambda s: quote(s + "/ ", safe=""),
    lambda s: quote_plus(s + " ").lower(),
    lambda s: html.escape(s + "&<"),
)


def corpus(n: int, secrets: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """`n` messages with one planted value each: raw, and in a rotating escaped spelling."""
    raw, escaped = [], []
    for i in range(n):
        secret = secrets[i % len(secrets)]
        before = f"error 336003 (log_id {rng.randrange(10**12)}): request for task ame-{i:08d} "
        after = " was denied by the gateway; the request headers were reflected; " + "x" * 60
        raw.append(before + secret + after)
        escaped.append(before + _SPELLINGS[i % len(_SPELLINGS)](secret) + after)
    return raw, escaped


def _known_more() -> int:
    """`--known N` (default 0), read apart from the common arguments."""
    import sys

    if "--known" not in sys.argv:
        return 0
    at = sys.argv.index("--known")
    value = int(sys.argv[at + 1])
    del sys.argv[at : at + 2]
    return value


def main() -> None:
    known_more = _known_more()
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="planted values")
    _common.header(
        "bench_redact",
        f"{args.n} messages of ~200 characters with one of {PLANTED} known values planted in"
        f" each, {known_more} more known values, best of {ROUNDS} rounds per side (ABBA)",
    )
    from evalctl._base._redact import MASK, Redactor, SecretRegistry

    rng = random.Random(20261201)  # the same corpus every run
    planted = [_secret(rng) for _ in range(PLANTED)]
    known = planted + [_secret(rng) for _ in range(known_more)]
    raw, escaped = corpus(args.n, planted, rng)
    baseline = RoundOneRedactor(known)
    ours = Redactor(known, registry=SecretRegistry())  # standalone: this run's values only
    ours("warm-up: compiles the search")

    def timed(redact: Callable[[str], str], texts: list[str]) -> float:
        started = time.perf_counter()
        for text in texts:
            out = redact(text)
            if MASK not in out:
                raise SystemExit(f"a planted value was not masked: {text[:120]!r}")
        return time.perf_counter() - started

    best_ours, best_theirs = float("inf"), float("inf")
    for i in range(ROUNDS):
        sides = [("ours", ours), ("theirs", baseline)]
        for name, redact in sides if i % 2 == 0 else reversed(sides):
            elapsed = timed(redact, raw)
            if name == "ours":
                best_ours = min(best_ours, elapsed)
            else:
                best_theirs = min(best_theirs, elapsed)
    _common.ratio_line(
        f"redact {args.n} planted values",
        best_ours,
        best_theirs,
        target=TARGET,
        unit="s",
        theirs_label="round 1",
    )
    escaped_time = min(timed(ours, escaped) for _ in range(ROUNDS))
    _common.ratio_line(
        f"redact {args.n} planted values, escaped spellings",
        escaped_time,
        best_theirs,
        target=None,
        unit="s",
        theirs_label="round 1 (raw)",
    )


if __name__ == "__main__":
    main()
