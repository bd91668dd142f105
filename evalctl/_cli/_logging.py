"""Log rendering for the command line only: structlog to stderr, and the SDK's loggers tamed.

The library emits structlog events and never configures structlog; this
module is where the CLI does. It also stands guard over the SDK's own stdlib
loggers (``qianfan``, and ``baidubce`` under it), which print an import-time
redis warning and may echo request details (baidubce logs the signing key
and the Authorization value at DEBUG): a filter drops the warning and what
is below the chosen level, and their records reach stderr only as redacted
``sdk.log`` events, rendered like evalctl's own (console or JSON).

Every line is redacted by `redactor`, which searches the process-wide
registry of seen secrets (`evalctl._base._redact.SECRETS`): the keys from the
environment and the configuration, each request's signature, and every app
secret of every detail any session read.

Verbosity: ``-q`` errors only; default warnings (retries, errors); ``-v``
every request with its log id; ``-vv`` adds what ``-v`` leaves out: each
retry's wait (``wait_s``), evalctl's debug events, and the SDK's own debug
lines.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

from evalctl._base._redact import Redactor

ENV_LOG_FORMAT: Final = "EVALCTL_LOG_FORMAT"
LOG_FORMATS: Final = ("console", "json")

#: Verbosity (-q: -1, default: 0, -v: 1, -vv: 2) → level of evalctl's events.
_LEVELS: Final = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

QIANFAN_LOGGER: Final = "qianfan"
BAIDUBCE_LOGGER: Final = "baidubce"
#: The event an SDK log record becomes.
SDK_EVENT: Final = "sdk.log"
#: Event keys shown only at -vv.
VERBOSE_ONLY_KEYS: Final = ("wait_s",)
# The SDK warns at import when redis is missing; evalctl never uses redis.
_REDIS_NOTICE: Final = "No redis installed"

# Every credential the CLI can see is masked in every log line it lets through.
_SECRET_ENV_VARS: Final = (
    "QIANFAN_ACCESS_KEY",
    "QIANFAN_SECRET_KEY",
    "QIANFAN_AK",
    "QIANFAN_SK",
)

#: The process's redactor: env credentials at start, config ones added later.
redactor: Final = Redactor(os.environ.get(name) for name in _SECRET_ENV_VARS)

#: Held for each whole line written to stderr, by log events and by the CLI's
#: own error lines alike, so that lines from a batch's threads never interleave.
stderr_lock: Final = threading.Lock()


def write_stderr(line: str, stream: TextIO | None = None) -> None:
    """Write one line (a newline is added) to stderr, whole, and flush."""
    out = sys.stderr if stream is None else stream
    with stderr_lock:
        try:
            out.write(line + "\n")
            out.flush()
        except (BrokenPipeError, ValueError):  # nobody is reading any more
            pass


class LineWriter:
    """A structlog logger that writes each rendered event as one whole line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        write_stderr(message, self._stream)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def level_for(verbosity: int) -> int:
    """The stdlib level for a verbosity (clamped to -1..2)."""
    return _LEVELS[max(-1, min(2, verbosity))]


class LogFormatError(ValueError):
    """`EVALCTL_LOG_FORMAT` names no known format."""


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """`EVALCTL_LOG_FORMAT` (``console`` when unset).

    Raises:
        LogFormatError: any other value.
    """
    env = os.environ if environ is None else environ
    fmt = env.get(ENV_LOG_FORMAT, "").strip().lower() or "console"
    if fmt not in LOG_FORMATS:
        raise LogFormatError(
            f"{ENV_LOG_FORMAT} must be one of {', '.join(LOG_FORMATS)}, got {fmt[:40]!r}"
        )
    return fmt


def configure(verbosity: int, fmt: str = "console", *, stream: TextIO | None = None) -> None:
    """Render evalctl's structlog events to stderr at the level `verbosity` asks for.

    Args:
        verbosity: -1 (quiet: errors), 0 (warnings: retries and errors),
            1 (info: every request with its log id), 2 (debug).
        fmt: ``console`` (readable; colours only on a terminal) or ``json`` (one object a line).
        stream: where to write; stderr by default.
    """
    import structlog  # imported here: it is slow to import, and --help needs none of it

    out = sys.stderr if stream is None else stream
    renderer: Any
    if fmt == "json":
        stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        stamper = structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False)
        renderer = structlog.dev.ConsoleRenderer(
            colors=wants_color(out),
            exception_formatter=structlog.dev.plain_traceback,
        )
    # Below -v the CLI prints each failed task as its own error line (with the
    # log id), so the request event that ended in that error would say it twice.
    dedupe: list[Any] = [drop_final_request_errors] if verbosity < 1 else []
    detail: list[Any] = [drop_verbose_only_keys] if verbosity < 2 else []
    structlog.configure(
        processors=[
            *dedupe,
            *detail,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamper,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_for(verbosity)),
        # `stream`, not `out`: None means sys.stderr at each write, which a
        # progress display may have redirected to print above itself.
        logger_factory=lambda *_args: LineWriter(stream),
        cache_logger_on_first_use=False,
    )


def drop_final_request_errors(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> Any:
    """structlog processor: drop `qianfan.request` events with outcome ``error``."""
    import structlog

    if event.get("event") == "qianfan.request" and event.get("outcome") == "error":
        raise structlog.DropEvent
    return event


def drop_verbose_only_keys(_logger: object, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: remove the keys only -vv shows (each retry's wait)."""
    for key in VERBOSE_ONLY_KEYS:
        event.pop(key, None)
    return event


def redact_event(_logger: object, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: the last line of defence against a credential in a log line."""
    for key, value in event.items():
        event[key] = _redacted(value)
    return event


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def redact_text(text: str) -> str:
    """`text` with credentials masked, line breaks kept, never shortened."""
    return "\n".join(redactor(line, limit=None) for line in text.split("\n"))


# --- the SDK's own logger --------------------------------------------------------


class QianfanLogFilter(logging.Filter):
    """Drops the SDK's redis notice and records below `min_level`; redacts the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.min_level = logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return False
        message = record.getMessage()
        if _REDIS_NOTICE in message:
            return False
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.msg = redact_text(message)
        record.args = None
        return True


class SdkLogForwarder(logging.Handler):
    """Re-emits the SDK's stdlib records as structlog ``sdk.log`` events (then redacted).

    So they are rendered like evalctl's events (one whole line, JSON with
    ``EVALCTL_LOG_FORMAT=json``) and pass through `redact_event`.
    """

    def emit(self, record: logging.LogRecord) -> None:
        import structlog

        try:
            message = redact_text(record.getMessage())
            structlog.get_logger("evalctl.sdk").log(
                record.levelno, SDK_EVENT, logger=record.name, message=message
            )
        except Exception:  # noqa: BLE001, S110 - a log line must never break a command
            pass  # logging.Handler.handleError would print the record: not here


_qianfan_filter: Final = QianfanLogFilter()
_forwarder: Final = SdkLogForwarder()
_forwarder.addFilter(_qianfan_filter)


def guard_qianfan_logger() -> None:
    """Put the filter on the ``qianfan`` logger; call before qianfan is imported.

    The SDK adds its own StreamHandler to that logger at import and sets it to
    INFO; filters on the logger object survive both, so its import-time
    warning never prints.
    """
    logger = logging.getLogger(QIANFAN_LOGGER)
    if _qianfan_filter not in logger.filters:
        logger.addFilter(_qianfan_filter)


def tame_qianfan_logger(verbosity: int) -> None:
    """Route the SDK's loggers (``qianfan``, ``baidubce``) through redaction to stderr.

    Call after qianfan is imported. Their level is WARNING, DEBUG at -vv
    (never qianfan's TRACE, which is the Authorization header itself). The
    SDK's own stream handler is replaced by the forwarder; records of child
    loggers, which skip the parent logger's own filters, meet the filter on
    the forwarder.
    """
    level = logging.DEBUG if verbosity >= 2 else max(logging.WARNING, level_for(verbosity))
    _qianfan_filter.min_level = level
    guard_qianfan_logger()
    for name in (QIANFAN_LOGGER, BAIDUBCE_LOGGER):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # the SDK's, to stderr
                logger.removeHandler(handler)
            elif _qianfan_filter not in handler.filters:
                handler.addFilter(_qianfan_filter)
        if _forwarder not in logger.handlers:
            logger.addHandler(_forwarder)
        # Nothing reaches the root logger (or logging's last-resort printer) unredacted.
        logger.propagate = False


def is_terminal(stream: object) -> bool:
    """Whether a person watches `stream`, as rich decides it (isatty, FORCE_COLOR, TTY_*).

    The CLI's one terminal check: colours, the progress bar and where results go use it.
    """
    from rich.console import Console  # imported here: --help needs none of it

    return Console(file=stream).is_terminal  # type: ignore[arg-type]  # any file-like object


def wants_color(stream: object) -> bool:
    """Whether to colour what goes to `stream`: a terminal, and neither NO_COLOR nor TERM=dumb."""
    if "NO_COLOR" in os.environ:  # set at all, even empty (rich needs a value)
        return False
    from rich.console import Console

    console = Console(file=stream)  # type: ignore[arg-type]  # any file-like object
    return console.is_terminal and console.color_system is not None
