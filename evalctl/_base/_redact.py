"""Scrubbing credentials out of any text that came from outside, in any spelling.

Server messages can echo what they were sent (a gateway that reflects the
request headers, a detail that carries the judge app's keys); everything
server-provided passes through a `Redactor` before it reaches a log event,
an error message or the terminal.

Two kinds of masking:

- **By value.** Every secret evalctl has seen in the process — the access
  and secret keys, each Authorization value's signature and the signing key
  derived from the secret key, every `appAk`/`appSk` of a detail — is kept in
  the process-wide `SECRETS` registry, which every `Redactor` feeds and
  searches (the CLI's log filter included). A value is found however the
  text spells it: raw, JSON-escaped (``\\"``, ``\\/``, ``\\uXXXX``),
  percent-encoded (either hex case, ``+`` for a space), HTML/XML-escaped
  (``&amp;``, ``&#47;``, ``&#x2F;``), and up to `_DECODE_LEVELS` of these
  nested (JSON in a JSON string, a URL in JSON). The text is decoded once
  into a canonical copy with a map back to the original, the secrets are
  searched there, and the original spans are masked.
- **By shape.** A ``bce-auth-v1/…`` value, a standalone run of 64 hex
  digits (an HMAC-SHA256: a signature or a signing key), and the value of a
  secret-named field (``appSk=…``, ``"app_sk": "…"``, ``sk: …``,
  ``<appSk>…</appSk>``, an ``Authorization`` header).

Values shorter than `MIN_SECRET_LENGTH` are not searched for by value:
masking every ``"a"`` would destroy messages without protecting anything
(a real key is far longer). Signatures are kept for the last
`MAX_SIGNATURES` requests only; older ones are still masked by shape.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import html.entities
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"
#: Longest server-provided text kept in a message.
MAX_SERVER_TEXT: Final = 300
#: Secrets shorter than this are not searched for (see the module docstring).
MIN_SECRET_LENGTH: Final = 4
_MIN_SECRET_LENGTH: Final = MIN_SECRET_LENGTH  # the name earlier code imported
#: Secrets longer than this are also searched without their first character.
_MIN_TAIL: Final = 8
#: Signatures and signing keys remembered by value (each request adds one or two).
MAX_SIGNATURES: Final = 8192
#: How many layers of escaping are undone (``%255C`` is two).
_DECODE_LEVELS: Final = 3
#: The longest spelling of one character (``&#x0010FFFF;``), for cutting long texts.
_LONGEST_SPELLING: Final = 12
#: Spellings in the registry's smallest level, and how much larger each next level is.
_LEVEL_SIZE: Final = 16
_LEVEL_GROWTH: Final = 8

_AUTH_PREFIX: Final = "bce-auth-v1/"
# A BCE v1 Authorization value: everything after the prefix up to a delimiter.
# Not `;`: it separates the signed header names, and the signature follows them.
_AUTH_RE: Final = re.compile(r"(?<=bce-auth-v1/)[^\s'\",}\]<>]+", re.IGNORECASE)
# An HMAC-SHA256 in hex, standing alone: a signature or a signing key.
_HEX_RUN_RE: Final = re.compile(r"[0-9a-fA-F]{64,}")
_HEX_LENGTH: Final = 64
_FIELD_NAMES: Final = "|".join(  # names of secret fields, as a regex
    (
        r"app[_-]?(?:ak|sk|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?(?:access[_-]?)?key)?)",
        r"authorization",
        r"secret[_-]?(?:access[_-]?)?key",
        r"access[_-]?key(?:[_-]?id)?",
        r"sign(?:ing)?[_-]?key",
        r"security[_-]?token",
        r"sk",
        r"ak",
    )
)
# Keys whose values are always secret, wherever they appear as key/value text.
# (Every key starts with a or s: the lookahead lets the search skip ahead fast.)
_SECRET_FIELD_RE: Final = re.compile(
    rf"""(?=[as])(?<!\w)(?:{_FIELD_NAMES})["']?"""
    # `key: value` (JSON, YAML, headers) may have a space after the colon;
    # `key=value` may not, so prose such as "set ak= and sk=" is left alone.
    r"""(?:\s*:\s*|=)["'[]?(?P<value>[^"',;&})\]>\s]+)""",
    re.IGNORECASE,
)
# The same keys as XML elements: <appSk>value</appSk>.
_SECRET_ELEMENT_RE: Final = re.compile(
    rf"""<(?:{_FIELD_NAMES})(?:\s[^>]*)?>(?P<value>[^<]+)""", re.IGNORECASE
)
# Anything a shape rule could match starts like this: most texts need no other search.
_SHAPE_HINT_RE: Final = re.compile(rf"(?=[as])(?<!\w)(?:{_FIELD_NAMES})|bce-auth-v1", re.IGNORECASE)
# One escaped character (or a run of percent-encoded bytes, one UTF-8 text).
_BACKSLASH_ESCAPE: Final = (
    r"""\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"""
    r"""|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}|\\[/"'\\bfnrt]"""
)
_PERCENT_ESCAPE: Final = r"(?:%[0-9a-fA-F]{2})+"
_ENTITY_ESCAPE: Final = r"&\#[0-9]{1,8};|&\#[xX][0-9a-fA-F]{1,8};|&[a-zA-Z][a-zA-Z0-9]{1,31};"
_ESCAPE_RE: Final = re.compile(f"{_BACKSLASH_ESCAPE}|{_PERCENT_ESCAPE}|{_ENTITY_ESCAPE}")
#: Each kind of escaping alone, with the character that announces it: undone on its own
#: too, so that a neighbour of another kind cannot decode into a secret's first character.
_ESCAPE_KINDS: Final = (
    ("\\", re.compile(_BACKSLASH_ESCAPE)),
    ("%", re.compile(_PERCENT_ESCAPE)),
    ("&", re.compile(_ENTITY_ESCAPE)),
)
_BACKSLASHED: Final = {"/": "/", '"': '"', "'": "'", "\\": "\\", "b": "\b", "f": "\f"} | {
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


# --- the registry of seen secrets ------------------------------------------------


class SecretRegistry:
    """A thread-safe set of secret values, searchable in any spelling.

    Values are matched case-insensitively (server text may come back
    lower-cased). Their spellings are kept in levels, like an LSM tree: new
    ones go to a small level, which is merged into the next (eight times
    larger) when it fills up. Each level's search is compiled lazily, on the
    first redaction after a change, so a batch that learns a new app secret
    with every detail recompiles a small pattern, not all of them, and a
    redaction runs one search per level (one, for the few values of a CLI
    run). Signatures (64 hex digits) are kept apart, in a bounded set
    checked by the hex-run rule.
    """

    def __init__(self, max_signatures: int = MAX_SIGNATURES) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._levels: list[set[str]] = [set()]
        self._compiled: list[re.Pattern[str] | None] = [None]
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._stale: set[int] = set()
        self._longest = 0
        self._signatures: OrderedDict[str, None] = OrderedDict()
        self._max_signatures = max_signatures

    def add(self, *values: str | None) -> None:
        """Remember secret values (shorter than `MIN_SECRET_LENGTH`, or not str: ignored)."""
        fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        if not fresh <= self._values:  # the common case (already known) takes no lock
            with self._lock:
                fresh -= self._values
                self._values |= fresh
                for value in fresh:
                    self._levels[0].update(_spellings(value))
                    self._longest = max(self._longest, len(value))
                self._stale.add(0)
                self._cascade()

    def _cascade(self) -> None:
        """Merge each full level into the next (with the lock held)."""
        level = 0
        while len(self._levels[level]) > _LEVEL_SIZE * _LEVEL_GROWTH**level:
            if level + 1 == len(self._levels):
                self._levels.append(set())
                self._compiled.append(None)
            self._levels[level + 1] |= self._levels[level]
            self._levels[level] = set()
            self._stale |= {level, level + 1}
            level += 1

    def add_signature(self, *hex_values: str) -> None:
        """Remember HMAC hex digests (signatures, signing keys) of recent requests."""
        with self._lock:
            for value in hex_values:
                if len(value) == _HEX_LENGTH:
                    self._signatures[value.lower()] = None
                    self._signatures.move_to_end(value.lower())
            while len(self._signatures) > self._max_signatures:
                self._signatures.popitem(last=False)

    def add_authorization(self, authorization: str, secret_key: str | None = None) -> None:
        """Remember an Authorization value: its signature, and the signing key under it.

        BCE v1: ``bce-auth-v1/{ak}/{timestamp}/{expiry}/{signedHeaders}/{signature}``;
        the signing key is HMAC-SHA256(secret key, ``bce-auth-v1/{ak}/{timestamp}/{expiry}``).
        """
        parts = authorization.split("/")
        if len(parts) < 6 or parts[0].lower() != _AUTH_PREFIX[:-1]:
            self.add(authorization)  # not BCE v1: the value itself, whole
            return
        self.add(parts[1])
        digests = [parts[-1]]
        if secret_key:
            key_info = "/".join(parts[:4]).encode("utf-8", "surrogateescape")
            sk = secret_key.encode("utf-8", "surrogateescape")
            digests.append(hmac.new(sk, key_info, hashlib.sha256).hexdigest())
        self.add_signature(*digests)

    def knows_signature(self, hex_value: str) -> bool:
        """Whether `hex_value` (64 hex digits) is a remembered signature or signing key."""
        return hex_value.lower() in self._signatures

    def patterns(self) -> tuple[re.Pattern[str], ...]:
        """The compiled searches for every value's spellings, one per level in use."""
        if self._stale:
            with self._lock:
                for level in self._stale:
                    words = self._levels[level]
                    self._compiled[level] = (
                        re.compile(_trie_regex(words), re.IGNORECASE) if words else None
                    )
                self._stale.clear()
                self._patterns = tuple(p for p in self._compiled if p is not None)
        return self._patterns

    @property
    def longest(self) -> int:
        """The length of the longest value (0 while empty)."""
        return self._longest

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __repr__(self) -> str:
        return f"SecretRegistry(<{len(self._values)} secrets, {len(self._signatures)} signatures>)"

    def __reduce__(self) -> str:  # never pickled with the values
        raise TypeError("SecretRegistry cannot be pickled")


#: Every secret this process has seen; every `Redactor` feeds and searches it.
SECRETS: Final = SecretRegistry()


def remember(*values: str | None) -> None:
    """Add secret values to the process-wide registry."""
    SECRETS.add(*values)


def remember_authorization(authorization: str, secret_key: str | None = None) -> None:
    """Add an Authorization value (its signature, its signing key) to the registry."""
    SECRETS.add_authorization(authorization, secret_key)


# --- the redactor ----------------------------------------------------------------


class Redactor:
    """Masks known secret values, in any spelling, and anything shaped like a credential.

    Args:
        secrets: Values to mask from the start.
        registry: Where values are kept and searched; the process-wide
            `SECRETS` by default, so that what one session learns (an app
            secret in a detail) is masked in every text the process emits.
            ``None``: a standalone redactor that masks its own values only.
    """

    def __init__(
        self,
        secrets: Iterable[str | None] = (),
        *,
        registry: SecretRegistry | None = SECRETS,
    ) -> None:
        self._shared = registry
        # Searched only when standalone; with a registry, the registry holds them all.
        self._own = SecretRegistry()
        self._count = 0
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Remember more values to mask (e.g. `appAk` seen in a detail)."""
        if self._shared is None:
            self._own.add(*secrets)
            self._count = len(self._own)
        else:
            self._shared.add(*secrets)
            self._count += sum(isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH for s in secrets)

    def add_authorization(self, authorization: str, secret_key: str | None = None) -> None:
        """Remember an Authorization value that was sent (`SecretRegistry.add_authorization`)."""
        (self._own if self._shared is None else self._shared).add_authorization(
            authorization, secret_key
        )

    def __call__(self, text: str, limit: int | None = MAX_SERVER_TEXT) -> str:
        """Return `text` with credentials masked, shortened to `limit` characters."""
        # The shared registry holds every value this redactor was given.
        store = self._own if self._shared is None else self._shared
        keep = len(text)
        cut = False
        if limit is not None:
            # Cut early so a huge body costs nothing, but late enough that any
            # secret starting before `limit` is still whole (in its longest
            # spelling) and gets masked; what follows `keep` is dropped after
            # masking, as it may hold the start of a secret cut in two.
            tail = _LONGEST_SPELLING * max(store.longest, _HEX_LENGTH, 64)
            if len(text) > limit + 256 + tail:
                keep, cut = limit + 256, True
                text = text[: keep + tail]
        spans = _secret_spans(text, store)
        if spans or cut:
            text = _masked(text, spans, keep)
        if not text.isprintable():
            text = _printable(text)
        if limit is not None and len(text) > limit:
            text = _shortened(text, limit - 1) + "…"
        elif cut:
            text += "…"
        return text

    def __repr__(self) -> str:
        return f"Redactor(<{self._count} secrets>)"

    def __reduce__(self) -> str:  # never pickled with the values
        raise TypeError("Redactor cannot be pickled")


def _secret_spans(text: str, store: SecretRegistry) -> list[tuple[int, int]]:
    """The (start, end) spans of `text` to mask, in no particular order.

    Every variant is searched, the text as written included: decoding can also
    hide a secret (``%0`` + ``A…`` decodes to a line break + ``…``), plain or
    escaped another way.
    """
    found: list[tuple[int, int]] = []
    for decoded, maps in _canonical(text):
        spans: list[tuple[int, int]] = []
        for pattern in store.patterns():
            spans.extend(m.span() for m in pattern.finditer(decoded))
        prefixes: list[tuple[int, int, int]] = []
        if _SHAPE_HINT_RE.search(decoded) is not None:
            prefixes = _shape_spans(decoded, spans)
        if len(decoded) >= _HEX_LENGTH:
            _hex_spans(decoded, store, spans)
        if not spans and not prefixes:
            continue
        for level in reversed(maps):
            spans = [level.original(start, end) for start, end in spans]
            prefixes = [
                (level.original(p, start)[0], *level.original(start, end))
                for p, start, end in prefixes
            ]
        for prefix, start, end in prefixes:
            plain = text[prefix:start].lower() == _AUTH_PREFIX
            spans.append((start if plain else prefix, end))
        found.extend(spans)
    return found


def _shape_spans(decoded: str, found: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Add the shape rules' spans to `found`; return the Authorization values' (prefix, start, end).

    The prefix is kept (`bce-auth-v1/***` says what was there) only where it is
    spelled plainly: an escaped one is masked too, or a cut could leave it bare.
    """
    prefixes = [
        (m.start() - len(_AUTH_PREFIX), m.start(), m.end())
        for m in (_AUTH_RE.finditer(decoded) if _AUTH_PREFIX[:-1] in decoded.lower() else ())
    ]
    found.extend(m.span("value") for m in _SECRET_FIELD_RE.finditer(decoded))
    if "<" in decoded:
        found.extend(m.span("value") for m in _SECRET_ELEMENT_RE.finditer(decoded))
    return prefixes


def _hex_spans(decoded: str, store: SecretRegistry, found: list[tuple[int, int]]) -> None:
    """Add standalone HMACs, and known signatures inside longer hex runs, to `found`."""
    for m in _HEX_RUN_RE.finditer(decoded):
        start, end = m.span()
        if end - start == _HEX_LENGTH:
            found.append((start, end))
            continue
        run = m.group().lower()
        found.extend(
            (start + i, start + i + _HEX_LENGTH)
            for i in range(len(run) - _HEX_LENGTH + 1)
            if store.knows_signature(run[i : i + _HEX_LENGTH])
        )


def _masked(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    """`text[:keep]` with each span (merged where they overlap) replaced by `MASK`."""
    out: list[str] = []
    at = 0
    for start, end in sorted(spans):
        if start >= keep:
            break
        if end <= at:
            continue
        if start < at:  # overlaps the span just masked
            at = end
            continue
        out.append(text[at:start])
        out.append(MASK)
        at = end
    if at < keep:
        out.append(text[at:keep])
    return "".join(out)


def _shortened(text: str, length: int) -> str:
    """`text[:length]`, cut before a mask it would split (and the prefix the mask follows).

    A cut ``bce-auth-v1/*`` would look like an unmasked Authorization value.
    """
    start = text.find(MASK, max(0, length - len(MASK) + 1), length + len(MASK) - 1)
    split = start != -1 and start < length < start + len(MASK)
    shortened = text[:start] if split else text[:length]
    if shortened.lower().endswith(_AUTH_PREFIX):
        shortened = shortened[: -len(_AUTH_PREFIX)]
    return shortened


def _printable(text: str) -> str:
    # Control characters from a hostile body must not reach a terminal.
    return "".join(ch if ch.isprintable() or ch == " " else " " for ch in text)


# --- spellings --------------------------------------------------------------------


class _Level:
    """One layer of decoding: where each decoded escape came from in the text below."""

    __slots__ = ("decoded_ends", "decoded_starts", "original_ends", "original_starts")

    def __init__(self) -> None:
        self.decoded_starts: list[int] = []
        self.decoded_ends: list[int] = []
        self.original_starts: list[int] = []
        self.original_ends: list[int] = []

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the text below that the decoded span [start, end) came from."""
        return self._position(start, True), self._position(end - 1, False) + (end > start)

    def _position(self, at: int, start: bool) -> int:
        i = bisect.bisect_right(self.decoded_starts, at) - 1
        if i < 0:
            return at
        if at < self.decoded_ends[i]:  # inside one escape: all of it
            return self.original_starts[i] if start else self.original_ends[i] - 1
        return self.original_ends[i] + (at - self.decoded_ends[i])


def _canonical(text: str) -> list[tuple[str, list[_Level]]]:
    """`text`, and what undoing escapes makes of it, each with the maps back to `text`.

    Up to `_DECODE_LEVELS` layers of every kind at once, and up to two layers
    of each kind alone. A variant's maps are applied last to first.
    """
    variants: list[tuple[str, list[_Level]]] = [(text, [])]
    # Most texts hold no escape at all: three scans in C say so fastest.
    if ("\\" not in text and "%" not in text and "&" not in text) or (
        _ESCAPE_RE.search(text) is None
    ):
        return variants
    seen = {text}
    kinds: tuple[tuple[str | None, re.Pattern[str]], ...] = ((None, _ESCAPE_RE), *_ESCAPE_KINDS)
    for trigger, pattern in kinds:
        current, maps = text, list[_Level]()
        for _ in range(_DECODE_LEVELS if trigger is None else 2):
            if trigger is not None and trigger not in current:
                break
            decoded, level = _decode_once(current, pattern)
            if decoded == current:
                break
            current, maps = decoded, [*maps, level]
            if current not in seen:
                seen.add(current)
                variants.append((current, maps))
    return variants


def _decode_once(text: str, pattern: re.Pattern[str] = _ESCAPE_RE) -> tuple[str, _Level]:
    level = _Level()
    parts: list[str] = []
    last = length = 0
    for match in pattern.finditer(text):
        start = match.start()
        if start > last:
            parts.append(text[last:start])
            length += start - last
        for piece_start, piece_end, decoded in _decode_escape(match.group(), start):
            parts.append(decoded)
            level.decoded_starts.append(length)
            length += len(decoded)
            level.decoded_ends.append(length)
            level.original_starts.append(piece_start)
            level.original_ends.append(piece_end)
        last = match.end()
    parts.append(text[last:])
    return "".join(parts), level


def _decode_escape(token: str, at: int) -> list[tuple[int, int, str]]:
    """(start, end, decoded) pieces of one escape found at `at`; undecodable ones as they are."""
    end = at + len(token)
    first = token[0]
    if first == "%":
        return _percent_decoded(token, at)
    if first == "&":
        if token[1] == "#":
            digits = token[3:-1] if token[2] in "xX" else token[2:-1]
            code = int(digits, 16 if token[2] in "xX" else 10)
            return [(at, end, chr(code) if code <= 0x10FFFF else token)]
        return [(at, end, html.entities.html5.get(token[1:], token))]
    kind = token[1]
    if kind in "uUx":
        if len(token) == 12:  # a surrogate pair
            high, low = int(token[2:6], 16), int(token[8:12], 16)
            return [(at, end, chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)))]
        code = int(token[2:], 16)
        return [(at, end, chr(code) if code <= 0x10FFFF else token)]
    return [(at, end, _BACKSLASHED[kind])]


def _percent_decoded(token: str, at: int) -> list[tuple[int, int, str]]:
    """Percent-encoded bytes, one piece per UTF-8 character (a stray byte as Latin-1)."""
    data = bytes(int(token[i + 1 : i + 3], 16) for i in range(0, len(token), 3))
    pieces: list[tuple[int, int, str]] = []
    i = 0
    while i < len(data):
        lead = data[i]
        size = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        try:
            decoded = data[i : i + size].decode("utf-8")
        except UnicodeDecodeError:
            decoded, size = chr(lead), 1
        pieces.append((at + 3 * i, at + 3 * (i + size), decoded))
        i += size
    return pieces


def _spellings(value: str) -> set[str]:
    """What `value` may look like in a decoded text, lower-cased for the search.

    Its tail without the first character too (when that is still long): a
    neighbour such as ``%0`` decodes together with that character (``%0a``),
    and what is left of the secret must not show.
    """
    spelled = {value, value.replace(" ", "+")}  # `quote_plus` writes a space as +
    if len(value) > _MIN_TAIL:
        spelled |= {v[1:] for v in spelled}
    spelled |= {decoded for v in spelled for decoded, _ in _canonical(v)}
    return {v.lower() for v in spelled if len(v) >= MIN_SECRET_LENGTH}


def _trie_regex(words: Iterable[str]) -> str:
    """One regex for all `words`, as a trie: its cost grows with their length, not their number.

    Where one word is a prefix of another, the longer is preferred (a
    secret that contains another is masked whole).
    """
    root: dict[str, object] = {}
    for word in words:
        node: dict[str, object] = root
        for ch in word:
            node = node.setdefault(ch, {})  # type: ignore[assignment]
        node[""] = True
    return _node_regex(root)


def _node_regex(node: dict[str, object]) -> str:
    branches: list[str] = []
    single: list[str] = []
    for ch in sorted(k for k in node if k):
        child = node[ch]
        chain = [ch]
        # A run of nodes with one way on is one literal (and no recursion per character).
        while isinstance(child, dict) and len(child) == 1 and "" not in child:
            ((ch, child),) = child.items()
            chain.append(ch)
        assert isinstance(child, dict)
        if list(child) == [""] and len(chain) == 1:
            single.append(ch)
        elif list(child) == [""]:
            branches.append(re.escape("".join(chain)))
        else:
            branches.append(re.escape("".join(chain)) + _node_regex(child))
    if single:
        branches.append(
            re.escape(single[0])
            if len(single) == 1
            else "[" + "".join(_class_escape(ch) for ch in single) + "]"
        )
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:  # a word ends here: the rest is optional (greedy: longest wins)
        return body + "?" if _is_atom(body, branches) else "(?:" + body + ")?"
    return body


def _is_atom(body: str, branches: list[str]) -> bool:
    return (
        len(branches) > 1
        or body.startswith("[")
        or len(body) == 1
        or (len(body) == 2 and body[0] == "\\")
    )


def _class_escape(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch
