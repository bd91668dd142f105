"""evalctl: stop Qianfan model-evaluation tasks safely.

A task that includes human (manual) evaluation is never stopped; transient
failures are retried with backoff; every request is logged with the
server's log id. See README.md.

The names are re-exported lazily (PEP 562): importing the package, or one
of its submodules such as the command line, does not import the qianfan
SDK until a name that needs it is first used. That keeps ``evalctl --help``
fast and lets the CLI set up qianfan's logger before the SDK's import-time
warnings fire.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from evalctl._client import _sdknotice

# Before the SDK is first imported, wherever that happens: its redis notice
# (evalctl never uses redis) would otherwise top every user's output.
_sdknotice.install()

if TYPE_CHECKING:
    from evalctl._base._config import RetryPolicy
    from evalctl._base._errors import (
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
        StopUnconfirmedError,
        TaskNotFoundError,
        TransportError,
        UnsafeRequestError,
        WaitTimeoutError,
    )
    from evalctl._base._model import CancelResult, EvalTask
    from evalctl._batch._run import BatchProgress, BatchResult, TaskReport, cancel_eval_tasks
    from evalctl._client._facade import (
        acall_action,
        acancel_eval_task,
        adescribe_eval_task,
        call_action,
        cancel_eval_task,
        describe_eval_task,
    )
    from evalctl._client._listing import ListedTask, alist_eval_tasks, list_eval_tasks
    from evalctl._client._sdkguard import guard, unguard

    __version__: str

# public name → the private module that defines it.
_EXPORTS: Final = {
    "RetryPolicy": "evalctl._base._config",
    **dict.fromkeys(
        ("BatchProgress", "BatchResult", "TaskReport", "cancel_eval_tasks"), "evalctl._batch._run"
    ),
    **dict.fromkeys(
        (
            "APICallError",
            "AuthenticationError",
            "CancelRejectedError",
            "ConfigurationError",
            "EvalctlError",
            "HTTPStatusError",
            "InvalidResponseError",
            "InvalidTaskIdError",
            "ManualEvaluationError",
            "MissingCredentialsError",
            "PrecheckError",
            "RetryExhaustedError",
            "ServerError",
            "StopUnconfirmedError",
            "TaskNotFoundError",
            "TransportError",
            "UnsafeRequestError",
            "WaitTimeoutError",
        ),
        "evalctl._base._errors",
    ),
    **dict.fromkeys(
        (
            "acall_action",
            "acancel_eval_task",
            "adescribe_eval_task",
            "call_action",
            "cancel_eval_task",
            "describe_eval_task",
        ),
        "evalctl._client._facade",
    ),
    "CancelResult": "evalctl._base._model",
    "EvalTask": "evalctl._base._model",
    "guard": "evalctl._client._sdkguard",
    "unguard": "evalctl._client._sdkguard",
    **dict.fromkeys(
        ("ListedTask", "alist_eval_tasks", "list_eval_tasks"), "evalctl._client._listing"
    ),
}


# Hidden from type checkers: with a module `__getattr__` in sight they would
# accept any misspelt name; the TYPE_CHECKING imports above give them the real ones.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Import a re-exported name on first use, then keep it as a module global."""
        if name == "__version__":
            value: Any = _version()
        elif name in _EXPORTS:
            value = getattr(importlib.import_module(_EXPORTS[name]), name)
        else:
            raise AttributeError(f"module 'evalctl' has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evalctl")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


__all__ = [
    "APICallError",
    "AuthenticationError",
    "BatchProgress",
    "BatchResult",
    "CancelRejectedError",
    "CancelResult",
    "ConfigurationError",
    "EvalTask",
    "EvalctlError",
    "HTTPStatusError",
    "InvalidResponseError",
    "InvalidTaskIdError",
    "ListedTask",
    "ManualEvaluationError",
    "MissingCredentialsError",
    "PrecheckError",
    "RetryExhaustedError",
    "RetryPolicy",
    "ServerError",
    "StopUnconfirmedError",
    "TaskNotFoundError",
    "TaskReport",
    "TransportError",
    "UnsafeRequestError",
    "WaitTimeoutError",
    "__version__",
    "acall_action",
    "acancel_eval_task",
    "adescribe_eval_task",
    "alist_eval_tasks",
    "call_action",
    "cancel_eval_task",
    "cancel_eval_tasks",
    "describe_eval_task",
    "guard",
    "list_eval_tasks",
    "unguard",
]
