"""Every error evalctl raises, each carrying its context and its CLI exit code.

The tree::

    qianfan.errors.QianfanError
     └── EvalctlError                        exit 1  anything not below
          ├── ConfigurationError (ValueError) exit 2  bad settings, env or credentials
          │    └── MissingCredentialsError    exit 2  (also qianfan InvalidArgumentError)
          ├── InvalidTaskIdError (ValueError) exit 2  malformed id, nothing sent
          ├── ManualEvaluationError           exit 3  task includes manual evaluation
          ├── TaskNotFoundError               exit 4  the server does not know the id
          ├── RetryExhaustedError             exit 5  transient failures outlasted the policy
          ├── CancelRejectedError             exit 6  the stop route refused
          ├── PrecheckError                   exit 7  the detail could not be understood
          ├── StopUnconfirmedError            exit 8  a stop may have been sent; could not verify
          ├── UnsafeRequestError              exit 2  a stop without a clearance, refused unsent
          ├── WaitTimeoutError                exit 1  stop accepted, not Stopped in time
          ├── TransportError                  exit 1  timeout or lost connection
          ├── ServerError                     exit 1  a non-transient server error
          │    ├── APICallError                       envelope `error_code` (also qianfan APIError)
          │    └── HTTPStatusError                    HTTP >= 400 (also qianfan RequestError)
          │         └── AuthenticationError           HTTP 401/403: keys or clock
          └── InvalidResponseError            exit 1  an answer that is not the expected JSON

The qianfan base classes are kept where the SDK raises the same kind of
failure, so code written against the raw SDK (`except APIError`,
`e.status_code`) keeps working after swapping the import.

No message or repr carries a credential: server-provided text is redacted at
the boundary (`_transport`) before it reaches an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

import qianfan.errors as qf_errors

from evalctl._base._api import ordered_modes
from evalctl._base._ids import shown_id

if TYPE_CHECKING:
    from evalctl._base._model import CancelResult

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MANUAL = 3
EXIT_NOT_FOUND = 4
EXIT_RETRY_EXHAUSTED = 5
EXIT_REJECTED = 6
EXIT_PRECHECK = 7
EXIT_STOP_UNCONFIRMED = 8
EXIT_INTERRUPTED = 130


class EvalctlError(qf_errors.QianfanError):
    """Base of every evalctl error; a `qianfan.errors.QianfanError`."""

    exit_code: ClassVar[int] = EXIT_ERROR
    #: Short machine-readable name, used by the CLI's `--json` output.
    kind: ClassVar[str] = "error"
    #: The state the pre-check read, on errors raised after that read (None if unknown).
    state: str | None = None

    def __init__(self, message: str) -> None:
        # Not super(): the qianfan bases mixed in below have incompatible
        # __init__ signatures; their attributes are set by each subclass.
        Exception.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(EvalctlError, ValueError):
    """A setting, environment variable or argument cannot be used."""

    exit_code = EXIT_USAGE
    kind = "configuration"


class MissingCredentialsError(ConfigurationError, qf_errors.InvalidArgumentError):
    """No access key / secret key were given or found in the environment."""

    def __init__(
        self,
        message: str | None = None,
        *,
        missing: tuple[str, ...] = ("QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY"),
    ) -> None:
        super().__init__(
            message
            or "no credentials: set QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY"
            " (or pass the ak and sk arguments)"
        )
        #: The variables not set (one, when only the other key was given).
        self.missing = missing


class InvalidTaskIdError(EvalctlError, ValueError):
    """The task id is malformed; raised before any request is sent."""

    exit_code = EXIT_USAGE
    kind = "invalid_task_id"

    def __init__(self, task_id: object, reason: str) -> None:
        super().__init__(f"invalid task id {shown_id(task_id)}: {reason}")
        self.task_id = task_id
        self.reason = reason


class ManualEvaluationError(EvalctlError):
    """The task includes human evaluation: it must not be stopped, so nothing was sent."""

    exit_code = EXIT_MANUAL
    kind = "manual_evaluation"

    def __init__(
        self,
        task_id: str,
        eval_modes: Iterable[str],
        state: str | None,
        log_id: str | None,
    ) -> None:
        modes = frozenset(eval_modes)
        shown = ",".join(ordered_modes(modes)) or "-"
        super().__init__(
            f"refusing to stop {shown_id(task_id)}: it includes manual evaluation"
            f" (modes {shown}, state {state or '-'}); tasks with human evaluation"
            " must not be stopped"
        )
        self.task_id = task_id
        self.eval_modes = modes
        self.state = state
        self.log_id = log_id


class PrecheckError(EvalctlError):
    """The pre-check could not tell whether the task includes manual evaluation.

    evalctl fails closed: nothing was sent to the stop route.
    """

    exit_code = EXIT_PRECHECK
    kind = "precheck"

    def __init__(self, task_id: str, reason: str, log_id: str | None = None) -> None:
        super().__init__(
            f"pre-check for {shown_id(task_id)} could not decide, nothing was stopped: {reason}"
        )
        self.task_id = task_id
        self.reason = reason
        self.log_id = log_id


class StopUnconfirmedError(EvalctlError):
    """A stop went out ambiguously (timeout, reset) and could not be verified.

    A stop *may* have been sent: the task may be Stopping. `--resume` verifies it again.
    """

    exit_code = EXIT_STOP_UNCONFIRMED
    kind = "stop_unconfirmed"

    def __init__(
        self, task_id: str, reason: str, log_ids: Iterable[str] = (), *, state: str | None = None
    ) -> None:
        super().__init__(
            f"a stop for {shown_id(task_id)} may have been sent but could not be confirmed:"
            f" {reason}"
        )
        self.task_id = task_id
        self.state = state
        self.reason = reason
        self.log_ids = tuple(log_ids)
        self.log_id = self.log_ids[-1] if self.log_ids else None


class UnsafeRequestError(EvalctlError):
    """A request classified as an evaluation stop had no clearance: refused, nothing sent.

    Raised at the send boundary for a stop that the pre-check did not clear
    for exactly that task, a stop body with keys other than the documented
    id field, or a route whose spelling cannot be classified with certainty.
    """

    exit_code = EXIT_USAGE
    kind = "unsafe_request"

    def __init__(self, reason: str, task_id: str | int | None = None) -> None:
        subject = "request" if task_id is None else f"stop of {shown_id(task_id)}"
        super().__init__(f"refusing to send {subject}: {reason}")
        self.task_id = task_id
        self.reason = reason


class TaskNotFoundError(EvalctlError):
    """The server says the task does not exist."""

    exit_code = EXIT_NOT_FOUND
    kind = "not_found"

    def __init__(self, task_id: str, log_id: str | None = None) -> None:
        super().__init__(f"task {shown_id(task_id)} not found" + _log_suffix(log_id))
        self.task_id = task_id
        self.log_id = log_id


class CancelRejectedError(EvalctlError):
    """The stop route answered but refused to stop the task."""

    exit_code = EXIT_REJECTED
    kind = "rejected"

    def __init__(
        self,
        task_id: str,
        error_code: int | str | None,
        error_message: str,
        log_id: str | None = None,
    ) -> None:
        code = f" (code {error_code})" if error_code is not None else ""
        super().__init__(
            f"the server refused to stop {shown_id(task_id)}{code}:"
            f" {error_message or 'no reason given'}" + _log_suffix(log_id)
        )
        self.task_id = task_id
        self.error_code = error_code
        self.error_message = error_message
        self.log_id = log_id


class RetryExhaustedError(EvalctlError):
    """Transient failures outlasted `max_attempts`, the deadline or the batch's budget.

    Attributes:
        attempts: Requests sent for the one request that gave up (a stop's
            resends included, the detail reads between them not); 0 when the
            deadline had passed before its first attempt.
        last_error: The public error of its last failure (None if none was sent).
        why: "attempts", "deadline" or "budget".
    """

    exit_code = EXIT_RETRY_EXHAUSTED
    kind = "retry_exhausted"

    def __init__(
        self,
        attempts: int,
        last_error: Exception | None,
        log_ids: Iterable[str] = (),
        *,
        why: str = "attempts",
    ) -> None:
        last = f": last error: {last_error}" if last_error is not None else ""
        limit = "the deadline passed" if why == "deadline" else "no attempts left"
        if why == "budget":
            limit = "the batch retry budget is spent"
        super().__init__(f"gave up after {attempts} attempt(s), {limit}{last}")
        self.attempts = attempts
        self.last_error = last_error
        self.log_ids = tuple(log_ids)
        self.why = why


class WaitTimeoutError(EvalctlError):
    """The stop was accepted but the task was not seen Stopped within the wait timeout.

    Also raised when polling itself failed (`cause` says how): the stop was
    accepted either way, and `result` reports it.
    """

    kind = "wait_timeout"

    def __init__(
        self, result: CancelResult, timeout: float, cause: EvalctlError | None = None
    ) -> None:
        if cause is None:
            why = f"still {result.state_after or 'unknown'} after waiting {timeout:g}s"
        else:
            why = f"could not confirm it is Stopped: {cause}"
        super().__init__(f"{shown_id(result.task_id)}: stop accepted, but {why}")
        self.result = result
        self.timeout = timeout
        self.cause = cause


class TransportError(EvalctlError):
    """The request did not complete: it timed out or the connection was lost."""

    kind = "transport"

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class ServerError(EvalctlError):
    """The server answered with an error that retrying will not fix."""

    kind = "server_error"

    def __init__(
        self,
        message: str,
        *,
        error_code: int | str | None = None,
        error_message: str = "",
        http_status: int | None = None,
        log_id: str | None = None,
    ) -> None:
        EvalctlError.__init__(self, message + _log_suffix(log_id))
        self.error_code = error_code
        self.error_message = error_message
        self.http_status = http_status
        self.log_id = log_id


# ServerError.error_code is `int | str | None` (v2 codes are strings); here it
# is always the int that qianfan's APIError declares.
class APICallError(ServerError, qf_errors.APIError):
    """An error envelope (`error_code` in the body); also a qianfan `APIError`."""

    error_code: int

    def __init__(self, error_code: int, error_message: str, log_id: str | None) -> None:
        ServerError.__init__(
            self,
            f"api error {error_code}: {error_message}",
            error_code=error_code,
            error_message=error_message,
            log_id=log_id,
        )
        # The attribute names of qianfan.errors.APIError, for drop-in callers.
        self.error_msg = error_message
        self.req_id = log_id


class HTTPStatusError(ServerError, qf_errors.RequestError):
    """HTTP status >= 400; also a qianfan `RequestError` (with `.status_code`).

    Unlike the SDK's `RequestError`, the message never embeds request headers.
    """

    def __init__(
        self,
        http_status: int,
        error_code: int | str | None,
        error_message: str,
        log_id: str | None,
    ) -> None:
        code = f" {error_code}" if error_code is not None else ""
        detail = f": {error_message}" if error_message else ""
        ServerError.__init__(
            self,
            f"HTTP {http_status}{code}{detail}",
            error_code=error_code,
            error_message=error_message,
            http_status=http_status,
            log_id=log_id,
        )
        # The attribute names of qianfan.errors.RequestError, for drop-in callers.
        self.status_code = http_status
        self.body = None
        self.headers = None


class AuthenticationError(HTTPStatusError):
    """HTTP 401/403: the keys are wrong, unknown, or the clock is off."""

    kind = "authentication"

    def __init__(
        self,
        http_status: int,
        error_code: int | str | None,
        error_message: str,
        log_id: str | None,
    ) -> None:
        super().__init__(http_status, error_code, error_message, log_id)
        self.message = (
            f"authentication failed (HTTP {http_status}"
            f"{': ' + error_message if error_message else ''});"
            " check QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY and the system clock"
            + _log_suffix(log_id)
        )


class InvalidResponseError(EvalctlError, qf_errors.RequestError):
    """The server's answer was not the JSON object the route promises."""

    kind = "invalid_response"

    def __init__(self, reason: str, log_id: str | None = None) -> None:
        super().__init__(f"invalid response: {reason}" + _log_suffix(log_id))
        self.reason = reason
        self.log_id = log_id
        self.status_code = None
        self.body = None
        self.headers = None


def _log_suffix(log_id: str | None) -> str:
    return f" [log_id {log_id}]" if log_id else ""
