"""evalctl: stop Qianfan model-evaluation tasks safely.

A task that includes human (manual) evaluation is never stopped; transient
failures are retried with backoff; every request is logged with the
server's log id. See README.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from evalctl._config import RetryPolicy
from evalctl._errors import (
    APICallError,
    AuthenticationError,
    CancelRejectedError,
    ConfigurationError,
    EvalctlError,
    HTTPStatusError,
    InvalidResponseError,
    InvalidTaskIdError,
    ManualEvaluationError,
    MissingCredentialsError,
    PrecheckError,
    RetryExhaustedError,
    ServerError,
    TaskNotFoundError,
    TransportError,
    WaitTimeoutError,
)
from evalctl._facade import (
    acall_action,
    acancel_eval_task,
    adescribe_eval_task,
    call_action,
    cancel_eval_task,
    describe_eval_task,
)
from evalctl._model import CancelResult, EvalTask

try:
    __version__ = version("evalctl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "APICallError",
    "AuthenticationError",
    "CancelRejectedError",
    "CancelResult",
    "ConfigurationError",
    "EvalTask",
    "EvalctlError",
    "HTTPStatusError",
    "InvalidResponseError",
    "InvalidTaskIdError",
    "ManualEvaluationError",
    "MissingCredentialsError",
    "PrecheckError",
    "RetryExhaustedError",
    "RetryPolicy",
    "ServerError",
    "TaskNotFoundError",
    "TransportError",
    "WaitTimeoutError",
    "__version__",
    "acall_action",
    "acancel_eval_task",
    "adescribe_eval_task",
    "call_action",
    "cancel_eval_task",
    "describe_eval_task",
]
