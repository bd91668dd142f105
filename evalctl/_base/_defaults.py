"""Every default and environment variable name, as one block of constants.

Imports nothing that imports the SDK, so the command line can show these in
its help without paying for qianfan at start-up.
"""

from __future__ import annotations

from typing import Final

from evalctl._base import _api

DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_INITIAL_WAIT_S: Final = 0.5
DEFAULT_MAX_WAIT_S: Final = 20.0
DEFAULT_DEADLINE_S: Final = 60.0
DEFAULT_ATTEMPT_TIMEOUT_S: Final = 10.0
DEFAULT_WAIT_TIMEOUT_S: Final = 600.0

#: A batch's tasks in flight at once: the default, and the most allowed.
DEFAULT_CONCURRENCY: Final = 4
MAX_CONCURRENCY: Final = 256

#: Polling while `wait=True`: first pause, growth factor, and cap.
WAIT_POLL_INITIAL_S: Final = 1.0
WAIT_POLL_FACTOR: Final = 1.5
WAIT_POLL_MAX_S: Final = 10.0

TRANSIENT_HTTP_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERROR_CODES: Final = frozenset(
    {
        _api.CODE_SERVICE_UNAVAILABLE,
        _api.CODE_REQUEST_LIMIT,
        _api.CODE_QPS_LIMIT,
        _api.CODE_INTERNAL_ERROR,
        _api.CODE_SERVER_HIGH_LOAD,
        _api.CODE_CONSOLE_INTERNAL_ERROR,
    }
)
#: Codes and statuses that mean "slow down", for the batch's adaptive rate.
THROTTLE_ERROR_CODES: Final = frozenset({_api.CODE_REQUEST_LIMIT, _api.CODE_QPS_LIMIT})
THROTTLE_HTTP_STATUSES: Final = frozenset({429})

ENV_MAX_ATTEMPTS: Final = "EVALCTL_MAX_ATTEMPTS"
ENV_DEADLINE_S: Final = "EVALCTL_DEADLINE_S"
ENV_TESTING: Final = "EVALCTL_TESTING"
