"""What the secret scans look for, and every way an outcome can be shown or captured.

Shared by the scans against hostile servers (tests/secrets) and the one
against the emulator (tests/reliability/test_secrets.py).

`Needles` are the sentinel keys (any 10-character window, any letter case),
every Authorization value a server received, its signature and the signing
key under it. A text is searched as written and as the standard library
decodes it (percent-decoding, HTML entities, JSON escapes, up to three
layers), so an escaped secret counts as a leak too.

`shown` renders an outcome the way tools print one: str/repr/args/attributes
of the error and of every exception in its ``__cause__``/``__context__``
chain (and of what it carries as `last_error`, `cause` or `result`), the
traceback, the traceback with every frame's locals (the standard library's
`TracebackException(capture_locals=True)`), and structlog's dict traceback
with locals (`ExceptionRenderer(ExceptionDictTransformer(show_locals=True))`).

`capturing` collects every channel a run can write to: structlog (raw
events, and rendered by real renderers), stdlib logging at every level on
the root and the SDK's loggers (an in-process emulator's own threads left
out: it verifies signatures, and baidubce logs them), and warnings.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import io
import json
import logging
import re
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

import structlog

WINDOW: Final = 10
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_UNMASKED_AUTH: Final = re.compile(r"bce-auth-v1/(?!\*\*\*)", re.IGNORECASE)
STDLIB_LOGGERS: Final = (
    "",
    "qianfan",
    "baidubce",
    "urllib3",
    "requests",
    "aiohttp",
    "asyncio",
    "evalctl",
)
#: The threads of an in-process `evalctl.emulator.Emulator`.
_EMULATOR_THREADS: Final = "evalctl-emulator"


def signing_key(authorization: str, secret_key: str) -> str:
    """The BCE v1 signing key under an Authorization value (HMAC-SHA256 of its prefix)."""
    prefix = "/".join(authorization.split("/")[:4])
    return hmac.new(secret_key.encode(), prefix.encode(), hashlib.sha256).hexdigest()


@dataclass
class Needles:
    """Everything that must not appear."""

    sentinels: tuple[str, ...]
    secret_key: str
    authorizations: set[str] = field(default_factory=set)

    def learn(self, authorizations: Iterable[str]) -> None:
        self.authorizations.update(a for a in authorizations if a)

    def _windows(self) -> list[str]:
        return sorted(
            {s[i : i + WINDOW].lower() for s in self.sentinels for i in range(len(s) - WINDOW + 1)}
        )

    def _fragments(self) -> list[str]:
        """Each Authorization value and its signature, as written anywhere in a text."""
        fragments = {value.lower() for value in self.authorizations}
        fragments |= {
            value.rsplit("/", 1)[-1].lower()
            for value in self.authorizations
            if len(value.rsplit("/", 1)[-1]) >= 16
        }
        return sorted(fragments)

    def _digests(self) -> set[str]:
        digests = set()
        for value in self.authorizations:
            digests.add(value.rsplit("/", 1)[-1].lower())
            digests.add(signing_key(value, self.secret_key))
        return {d for d in digests if len(d) == 64}

    def leaks(self, sources: Mapping[str, str]) -> dict[str, list[str]]:
        """source name → what it leaked (with context); only the sources that did."""
        windows, digests = self._windows() + self._fragments(), self._digests()
        found: dict[str, list[str]] = {}
        for name, text in sources.items():
            hits: set[str] = set()
            for variant in decodings(text):
                lowered = variant.lower()
                for window in windows:
                    at = lowered.find(window)
                    if at != -1:
                        hits.add(_context(variant, at))
                hits.update(
                    _context(variant, m.start())
                    for m in _HEX64.finditer(variant)
                    if m.group().lower() in digests
                )
                hits.update(_context(variant, m.start()) for m in _UNMASKED_AUTH.finditer(variant))
            if hits:
                found[name] = sorted(hits)
        return found


def _context(text: str, at: int) -> str:
    return text[max(0, at - 50) : at + 40]


def decodings(text: str) -> list[str]:
    """`text`, and what undoing one, two and three layers of escaping makes of it.

    Each layer undoes percent-encoding, then HTML/XML references, then JSON
    escapes, so any nesting of up to three of them is undone; alphanumeric
    characters never change, so no decoding hides a plainly written secret.
    """
    variants = [text]
    for _ in range(3):
        last = variants[-1]
        if "%" not in last and "&" not in last and "\\" not in last:
            break
        decoded = json_unescaped(html.unescape(unquote(last)))
        if decoded == last:
            break
        variants.append(decoded)
    return variants


def json_unescaped(text: str) -> str:
    """JSON string escapes undone (\\uXXXX, \\/, \\", \\\\, \\n …), leaving other text alone."""

    def one(match: re.Match[str]) -> str:
        token = match.group()
        if token[1] == "u":
            return chr(int(token[2:], 16))
        return {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}.get(token[1], token[1])

    return re.sub(r"\\u[0-9a-fA-F]{4}|\\[\\/\"nrtbf']", one, text)


# --- how an outcome is shown -------------------------------------------------------------


def chain(error: BaseException) -> list[BaseException]:
    """The error and every exception reachable through `__cause__`/`__context__` (each once)."""
    found: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if any(current is e for e in found):
            continue
        found.append(current)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def shown(outcome: object, *, from_library: bool = False) -> list[str]:
    """Every text a caller, a logger or an error tracker could make of `outcome`.

    With `from_library`, the tracebacks with locals start at the library's first
    frame: the caller's own frames (a test's, holding what it passed) are left out.
    """
    if not isinstance(outcome, BaseException):
        return [repr(outcome), str(outcome), repr(getattr(outcome, "__dict__", None))]
    texts: list[str] = []
    for error in chain(outcome):
        texts += [str(error), repr(error), repr(error.args), repr(getattr(error, "__dict__", {}))]
    texts.append("".join(traceback.format_exception(outcome)))
    if from_library:
        tb = outcome.__traceback__
        while tb is not None and "/evalctl/" not in tb.tb_frame.f_code.co_filename:
            tb = tb.tb_next
        outcome = outcome.with_traceback(tb)
    texts.append(
        "".join(traceback.TracebackException.from_exception(outcome, capture_locals=True).format())
    )
    renderer = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=True)
    )
    rendered = renderer(None, "error", {"event": "failed", "exc_info": outcome})
    texts.append(json.dumps(rendered, default=repr))
    for name in ("last_error", "cause", "result"):
        inner = getattr(outcome, name, None)
        if inner is not None:
            texts += [str(inner), repr(inner), repr(getattr(inner, "__dict__", {}))]
    return texts


def leaking_locals(outcome: object, needles: Needles) -> set[str]:
    """``file:function: local`` for every frame local of the outcome's tracebacks that leaks."""
    if not isinstance(outcome, BaseException):
        return set()
    reprs: dict[str, str] = {}
    for error in chain(outcome):
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            where = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"
            for name, value in frame.f_locals.items():
                try:
                    reprs[f"{where}: {name}"] = repr(value)
                except Exception:  # noqa: BLE001, S112 - a broken repr leaks nothing
                    continue
            tb = tb.tb_next
    return set(needles.leaks(reprs))


def no_error_is_its_own_cause(outcome: object) -> bool:
    """`raise e from e` makes a chain a naive `while e.__cause__` loop never leaves."""
    if not isinstance(outcome, BaseException):
        return True
    return all(e.__cause__ is not e and e.__context__ is not e for e in chain(outcome))


# --- capturing every channel ---------------------------------------------------------------


@dataclass
class Captured:
    """What a run left in structlog, in stdlib logging and in warnings."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rendered: io.StringIO = field(default_factory=io.StringIO)
    stdlib: io.StringIO = field(default_factory=io.StringIO)
    warnings: list[str] = field(default_factory=list)

    def sources(self) -> dict[str, str]:
        return {
            "structlog events": repr(self.events),
            "structlog rendered": self.rendered.getvalue(),
            "stdlib logging at DEBUG": self.stdlib.getvalue(),
            "warnings": "\n".join(self.warnings),
        }


class _NotFromTheEmulator(logging.Filter):
    """An in-process emulator verifies signatures (and baidubce logs them): not the client's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName.startswith(_EMULATOR_THREADS)


@contextlib.contextmanager
def capturing() -> Iterator[Captured]:
    """structlog events (raw and rendered as JSON and console), stdlib logging at every level."""
    captured = Captured()
    json_renderer = structlog.processors.JSONRenderer(default=repr)
    console = structlog.dev.ConsoleRenderer(colors=False)

    def collect(_logger: Any, _method: str, event: Any) -> Any:
        captured.events.append(dict(event))
        return event

    def render(logger: Any, method: str, event: Any) -> str:
        captured.rendered.write(json_renderer(logger, method, dict(event)) + "\n")
        return str(console(logger, method, event))

    saved = structlog.get_config()
    structlog.configure(
        processors=[
            collect,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        logger_factory=structlog.PrintLoggerFactory(file=captured.rendered),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(captured.stdlib)
    handler.setLevel(1)
    handler.addFilter(_NotFromTheEmulator())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in STDLIB_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(1)  # qianfan's TRACE is 5
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield captured
        captured.warnings = [str(w.message) for w in caught]
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        structlog.configure(**saved)
