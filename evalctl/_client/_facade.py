"""The public entry points: argument checks, then an operation on a driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from qianfan.resources.typing import QfResponse

from evalctl._base._api import ApiVersion
from evalctl._base._config import RetryPolicy, get_clock
from evalctl._base._errors import ConfigurationError, ManualEvaluationError, PrecheckError
from evalctl._base._ids import TaskId, validate_task_id
from evalctl._base._model import CancelResult, EvalTask
from evalctl._base._redact import Redactor
from evalctl._core import _operations
from evalctl._core._options import GivenKeys, Options, check_options, check_policy
from evalctl._core._retry import RetryBudget
from evalctl._core._runner import Operation, RateLimiter, Session, arun, run
from evalctl._safety._precheck import decide
from evalctl._wire._transport import Wire

#: The SDK's per-call retry keywords, translated onto a `RetryPolicy` so that
#: the SDK itself always makes exactly one attempt.
_SDK_RETRY_KWARGS: Final = frozenset(
    {
        "retry_count",
        "request_timeout",
        "backoff_factor",
        "retry_jitter",
        "retry_err_codes",
        "retry_max_wait_interval",
        "max_wait_interval",
        "retry_err_handler",
    }
)


# --- drop-in call_action --------------------------------------------------------


def call_action(
    base_url_route: str, action: str, params: dict[str, Any], **kwargs: Any
) -> QfResponse:
    """Drop-in for `qianfan.resources.console.utils.call_action`.

    Same arguments and return value. Adds retries with backoff, one
    `qianfan.request` log event per attempt, and — when the call is an
    evaluation stop (v1 cancel route, or v2 `StopEvalTask`) — the manual-mode
    pre-check before anything is sent to the stop route.

    Args:
        base_url_route: e.g. "/wenxinworkshop/modelrepo/eval/cancel" or "/v2/eval".
        action: The `Action` query value; "" for v1 routes.
        params: The JSON body.
        **kwargs: `retry=RetryPolicy(...)`; `ak`/`sk` for this call; the SDK's
            `request_timeout`, `retry_count`, `backoff_factor`,
            `retry_max_wait_interval`, `retry_err_codes` (mapped onto the
            policy); `host` (scheme://host[:port]) as the SDK's requestor takes
            it; any other keyword is accepted and ignored.

    Raises:
        ManualEvaluationError, PrecheckError, TaskNotFoundError: a stop refused
            by the pre-check; nothing was sent to the stop route.
        UnsafeRequestError: a stop body with other keys than the id field.
        StopUnconfirmedError: a stop failed ambiguously and the detail read
            after it failed too (a stop may have been sent).
        RetryExhaustedError: transient failures outlasted the policy.
        APICallError, HTTPStatusError, InvalidResponseError: other failures
            (also qianfan `APIError` / `RequestError`).
    """
    return run(*_prepare_call(base_url_route, action, params, kwargs))


async def acall_action(
    base_url_route: str, action: str, params: dict[str, Any], **kwargs: Any
) -> QfResponse:
    """`call_action`, awaitable (aiohttp, as the SDK's async console requests)."""
    return await arun(*_prepare_call(base_url_route, action, params, kwargs))


def _prepare_call(
    route: object, action: object, params: object, kwargs: dict[str, Any]
) -> tuple[Operation[QfResponse], Session]:
    # Popped first: the caller's `kwargs` dict keeps no key once checked.
    keys = GivenKeys(kwargs.pop("ak", None), kwargs.pop("sk", None))
    if not isinstance(route, str) or not isinstance(action, str):
        raise ConfigurationError("base_url_route and action must be strings")
    if not isinstance(params, Mapping):
        raise ConfigurationError(f"params must be a dict, got {type(params).__name__}")
    policy = check_policy(kwargs.pop("retry", None))
    sdk_retry = {key: kwargs.pop(key) for key in list(kwargs) if key in _SDK_RETRY_KWARGS}
    options = check_options(
        keys=keys, retry=_policy_with_sdk_kwargs(policy, sdk_retry), host=kwargs.get("host")
    )
    session = new_session(options)
    return _operations.call_action(route, action, params, session), session


def _policy_with_sdk_kwargs(policy: RetryPolicy, sdk: Mapping[str, Any]) -> RetryPolicy:
    changes: dict[str, Any] = {}
    if "retry_count" in sdk:
        changes["max_attempts"] = sdk["retry_count"]
    if "request_timeout" in sdk:
        changes["attempt_timeout"] = sdk["request_timeout"]
    if sdk.get("backoff_factor"):
        changes["initial_wait"] = sdk["backoff_factor"]
    for key in ("retry_max_wait_interval", "max_wait_interval"):
        if key in sdk:
            changes["max_wait"] = sdk[key]
    if sdk.get("retry_err_codes"):
        try:
            extra = frozenset(int(code) for code in sdk["retry_err_codes"])
        except (TypeError, ValueError):
            raise ConfigurationError("retry_err_codes must be integers") from None
        changes["transient_error_codes"] = policy.transient_error_codes | extra
    # retry_jitter and retry_err_handler are accepted and ignored: evalctl
    # always uses full jitter and its own notion of transient.
    if not changes:
        return policy
    try:
        return replace(policy, **changes)
    except TypeError as exc:  # a non-numeric value reached a numeric field
        raise ConfigurationError(str(exc)) from None


# --- the main job -------------------------------------------------------------


def cancel_eval_task(
    task_id: TaskId,
    *,
    dry_run: bool = False,
    wait: bool = False,
    wait_timeout: float = 600.0,
    retry: RetryPolicy | None = None,
    api: ApiVersion = "v1",
    ak: str | None = None,
    sk: str | None = None,
) -> CancelResult:
    """Stop an evaluation task, safely.

    Reads the task detail first and refuses, before anything is sent to the
    stop route, when the task includes manual evaluation or when the detail
    does not say clearly; then stops it and optionally waits until Stopped.

    Args:
        task_id: "ame-..." (or a deprecated integer id, v1 only).
        dry_run: Run the pre-check only.
        wait: Poll until the task is Stopped (or finished).
        wait_timeout: Seconds to wait for that.
        retry: Retry settings; default `RetryPolicy.from_env()`.
        api: "v1" (the cancel route) or "v2" (`StopEvalTask`).
        ak: Access key for this call (default: `QIANFAN_ACCESS_KEY`).
        sk: Secret key for this call (default: `QIANFAN_SECRET_KEY`).

    Returns:
        How it ended: `cancelled`, `already_stopped`, `not_running` or `dry_run`.

    Raises:
        InvalidTaskIdError: malformed id; nothing sent.
        ManualEvaluationError: the task includes manual evaluation.
        PrecheckError: the detail could not be understood (fail closed).
        TaskNotFoundError: the server does not know the id.
        CancelRejectedError: the stop route refused.
        StopUnconfirmedError: a stop failed ambiguously and the detail read
            after it failed too (a stop may have been sent).
        RetryExhaustedError: transient failures outlasted the policy.
        WaitTimeoutError: `wait=True` and the task was not Stopped in time.

        Errors raised after the pre-check read carry `.state`, the state it read.
    """
    keys = GivenKeys(ak, sk)
    del ak, sk  # no frame keeps a bare key (see `_options`)
    options = check_options(
        keys=keys, api=api, retry=retry, dry_run=dry_run, wait=wait, wait_timeout=wait_timeout
    )
    return run(*prepare_cancel(_checked_id(task_id, options), options))


async def acancel_eval_task(
    task_id: TaskId,
    *,
    dry_run: bool = False,
    wait: bool = False,
    wait_timeout: float = 600.0,
    retry: RetryPolicy | None = None,
    api: ApiVersion = "v1",
    ak: str | None = None,
    sk: str | None = None,
) -> CancelResult:
    """`cancel_eval_task`, awaitable.

    Cancelling the awaiting task sends nothing more; an `evalctl.interrupted`
    event records whether a stop was in flight.
    """
    keys = GivenKeys(ak, sk)
    del ak, sk  # no frame keeps a bare key (see `_options`)
    options = check_options(
        keys=keys, api=api, retry=retry, dry_run=dry_run, wait=wait, wait_timeout=wait_timeout
    )
    return await arun(*prepare_cancel(_checked_id(task_id, options), options))


def describe_eval_task(
    task_id: TaskId,
    *,
    api: ApiVersion = "v1",
    retry: RetryPolicy | None = None,
    ak: str | None = None,
    sk: str | None = None,
) -> EvalTask:
    """Read a task's detail: state, evaluation modes, whether it includes manual.

    Raises:
        InvalidTaskIdError, TaskNotFoundError, PrecheckError (the detail could
        not be read), RetryExhaustedError.
    """
    keys = GivenKeys(ak, sk)
    del ak, sk  # no frame keeps a bare key (see `_options`)
    return run(*prepare_describe(task_id, check_options(keys=keys, api=api, retry=retry)))


async def adescribe_eval_task(
    task_id: TaskId,
    *,
    api: ApiVersion = "v1",
    retry: RetryPolicy | None = None,
    ak: str | None = None,
    sk: str | None = None,
) -> EvalTask:
    """`describe_eval_task`, awaitable."""
    keys = GivenKeys(ak, sk)
    del ak, sk  # no frame keeps a bare key (see `_options`)
    return await arun(*prepare_describe(task_id, check_options(keys=keys, api=api, retry=retry)))


def prepare_cancel(
    task_id: TaskId,
    options: Options,
    *,
    limiter: RateLimiter | None = None,
    budget: RetryBudget | None = None,
    wire: Wire | None = None,
    cleared: Callable[[EvalTask], None] | None = None,
) -> tuple[Operation[CancelResult], Session]:
    """The cancel operation for an already validated id, on its own session (the batch's too).

    `cleared`: see `Session.cleared` (the batch writes its intent record there).
    """
    session = new_session(options, limiter=limiter, budget=budget, wire=wire, cleared=cleared)
    return _operations.cancel(options.generation, task_id, session), session


def prepare_describe(task_id: object, options: Options) -> tuple[Operation[EvalTask], Session]:
    """The detail read of `task_id` (validated here), on its own session."""
    session = new_session(options)
    return _operations.describe(options.generation, _checked_id(task_id, options), session), session


@dataclass(frozen=True)
class TaskStatus:
    """What `evalctl status` shows: the detail and what the pre-check would say.

    Attributes:
        verdict: "stop", "already_stopped", "not_running", or the refusal's
            kind ("manual_evaluation", "precheck").
        reason: Why a stop would be refused, or None.
    """

    task: EvalTask
    verdict: str
    reason: str | None

    @property
    def allowed(self) -> bool:
        return self.verdict == "stop"


def task_status(task_id: object, options: Options) -> TaskStatus:
    """Read `task_id`'s detail and run the pre-check on it; nothing is sent to the stop route.

    Raises:
        InvalidTaskIdError, TaskNotFoundError, PrecheckError (unreadable),
        RetryExhaustedError: as `describe_eval_task`.
    """
    task = run(*prepare_describe(task_id, options))
    try:
        return TaskStatus(task, decide(task).value, None)
    except ManualEvaluationError as refusal:
        return TaskStatus(task, refusal.kind, "includes manual evaluation")
    except PrecheckError as refusal:
        return TaskStatus(task, refusal.kind, refusal.reason)


def environment_options(*, retry: RetryPolicy, api: str = "v1") -> Options:
    """The checked options of a call given no keys: the environment's or the SDK config's.

    The command line's one options check: bad settings end the command here,
    before anything is sent.

    Raises:
        MissingCredentialsError, ConfigurationError: exit 2.
    """
    return check_options(keys=GivenKeys(), api=api, retry=retry)


def _checked_id(task_id: object, options: Options) -> TaskId:
    return validate_task_id(task_id, options.generation.name)


def new_session(
    options: Options,
    *,
    limiter: RateLimiter | None = None,
    budget: RetryBudget | None = None,
    wire: Wire | None = None,
    cleared: Callable[[EvalTask], None] | None = None,
) -> Session:
    """One operation's `Session` (nothing is checked here: `check_options` did it).

    `wire` lets a caller use its own connection pool (a batch worker); by
    default every operation shares the process-wide `Wire.shared()`.
    """
    clock = get_clock()
    keys = options.credentials
    return Session(
        options=options,
        clock=clock,
        wire=wire or Wire.shared(),
        redactor=Redactor([keys.access_key(), keys.secret_key()]),
        deadline=clock.monotonic() + options.policy.deadline,
        limiter=limiter,
        budget=budget,
        cleared=cleared,
    )
