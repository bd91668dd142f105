"""Keeps the SDK's import-time "No redis installed" notice out of the user's output.

qianfan warns, on the ``qianfan`` logger, the moment it is imported without
redis — which evalctl never uses. `import evalctl` (and so the pytest plugin)
puts one filter on that logger that drops exactly that record; every other
record, handler and level of the application's logging is left as it was.
Kept apart from `_logging` so that `import evalctl` stays cheap.
"""

from __future__ import annotations

import logging
from typing import Final

QIANFAN_LOGGER: Final = "qianfan"
#: Lower-cased: 0.4.8.1–0.4.11 say "no redis installed", 0.4.12.x "No redis installed".
REDIS_NOTICE: Final = "no redis installed"


class RedisNoticeFilter(logging.Filter):
    """Drops the SDK's redis notice; lets every other record through untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == QIANFAN_LOGGER and REDIS_NOTICE in str(record.msg).lower())


def install() -> None:
    """Put the filter on the ``qianfan`` logger once (before the SDK is imported)."""
    target = logging.getLogger(QIANFAN_LOGGER)
    if not any(isinstance(existing, RedisNoticeFilter) for existing in target.filters):
        target.addFilter(RedisNoticeFilter())
