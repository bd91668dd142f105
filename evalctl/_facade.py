"""The public entry points: argument checks, then an operation on a driver."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, cast
from urllib.parse import urlsplit

from qianfan import get_config
from qianfan.resources.typing import QfResponse

from evalctl import _operations
from evalctl._api import ApiVersion
from evalctl._config import RetryPolicy, get_clock
from evalctl._credentials import resolve_credentials
from evalctl._errors import ConfigurationError, MissingCredentialsError
from evalctl._generations import Generation, generation
from evalctl._ids import TaskId, validate_task_id
from evalctl._model import CancelResult, EvalTask
from evalctl._redact import Redactor
from evalctl._retry import RetryBudget
from evalctl._runner import Operation, RateLimiter, Session, arun, run
from evalctl._transport import Wire

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
            policy); anything else is passed to the SDK's requestor (`host`, ...).

    Raises:
        ManualEvaluationError, PrecheckError, TaskNotFoundError: a stop refused
            by the pre-check; nothing was sent to the stop route.
        RetryExhaustedError: transient failures outlasted the policy.
        APICallError, HTTPStatusError, InvalidResponseError: other failures
            (also qianfan `APIError` / `RequestError`).
    """
    session = _call_session(base_url_route, action, params, kwargs)
    return run(_operations.call_action(base_url_route, action, params, session), session)


async def acall_action(
    base_url_route: str, action: str, params: dict[str, Any], **kwargs: Any
) -> QfResponse:
    """`call_action`, awaitable (aiohttp, as the SDK's async console requests)."""
    session = _call_session(base_url_route, action, params, kwargs)
    return await arun(_operations.call_action(base_url_route, action, params, session), session)


def _call_session(route: object, action: object, params: object, kwargs: dict[str, Any]) -> Session:
    if not isinstance(route, str) or not isinstance(action, str):
        raise ConfigurationError("base_url_route and action must be strings")
    if not isinstance(params, Mapping):
        raise ConfigurationError(f"params must be a dict, got {type(params).__name__}")
    kwargs = dict(kwargs)
    policy = kwargs.pop("retry", None)
    ak = kwargs.pop("ak", None)
    sk = kwargs.pop("sk", None)
    sdk_retry = {key: kwargs.pop(key) for key in list(kwargs) if key in _SDK_RETRY_KWARGS}
    policy = _policy_with_sdk_kwargs(_policy(policy), sdk_retry)
    return new_session(policy, ak, sk, kwargs)


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
        RetryExhaustedError: transient failures outlasted the policy.
        WaitTimeoutError: `wait=True` and the task was not Stopped in time.
    """
    operation, session = prepare_cancel(
        task_id,
        dry_run=dry_run,
        wait=wait,
        wait_timeout=wait_timeout,
        retry=retry,
        api=api,
        ak=ak,
        sk=sk,
    )
    return run(operation, session)


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
    operation, session = prepare_cancel(
        task_id,
        dry_run=dry_run,
        wait=wait,
        wait_timeout=wait_timeout,
        retry=retry,
        api=api,
        ak=ak,
        sk=sk,
    )
    return await arun(operation, session)


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
    operation, session = _prepare_describe(task_id, api, retry, ak, sk)
    return run(operation, session)


async def adescribe_eval_task(
    task_id: TaskId,
    *,
    api: ApiVersion = "v1",
    retry: RetryPolicy | None = None,
    ak: str | None = None,
    sk: str | None = None,
) -> EvalTask:
    """`describe_eval_task`, awaitable."""
    operation, session = _prepare_describe(task_id, api, retry, ak, sk)
    return await arun(operation, session)


def prepare_cancel(
    task_id: object,
    *,
    dry_run: bool = False,
    wait: bool = False,
    wait_timeout: float = 600.0,
    retry: RetryPolicy | None = None,
    api: object = "v1",
    ak: str | None = None,
    sk: str | None = None,
    limiter: RateLimiter | None = None,
    budget: RetryBudget | None = None,
    wire: Wire | None = None,
    id_checked: bool = False,
) -> tuple[Operation[CancelResult], Session]:
    """Check every argument and build the cancel operation (used by the batch too).

    `id_checked`: the caller already ran `validate_task_id` on `task_id` for
    this `api` (the batch does, as it reads ids), so it is not checked, nor
    its deprecation warned about, a second time.
    """
    gen = generation(api)
    checked_id = cast(TaskId, task_id) if id_checked else validate_task_id(task_id, gen.name)
    timeout = _operations.check_wait_timeout(wait_timeout)
    session = new_session(
        _policy(retry), ak, sk, {}, limiter=limiter, budget=budget, wire=wire
    )
    operation = _operations.cancel(
        gen, checked_id, session, dry_run=bool(dry_run), wait=bool(wait), wait_timeout=timeout
    )
    return operation, session


def _prepare_describe(
    task_id: object, api: object, retry: RetryPolicy | None, ak: str | None, sk: str | None
) -> tuple[Operation[EvalTask], Session]:
    gen, checked_id = _checked(task_id, api)
    session = new_session(_policy(retry), ak, sk, {})
    return _operations.describe(gen, checked_id, session), session


def _checked(task_id: object, api: object) -> tuple[Generation, TaskId]:
    gen = generation(api)
    return gen, validate_task_id(task_id, gen.name)


def _policy(retry: object) -> RetryPolicy:
    if retry is None:
        return RetryPolicy.from_env()
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    return retry


def new_session(
    policy: RetryPolicy,
    ak: str | None,
    sk: str | None,
    requestor_kwargs: Mapping[str, Any],
    *,
    limiter: RateLimiter | None = None,
    budget: RetryBudget | None = None,
    wire: Wire | None = None,
) -> Session:
    """A `Session` with credentials resolved and the endpoint checked.

    `wire` lets a caller use its own connection pool (a batch worker); by
    default every operation shares the process-wide `Wire.shared()`.
    `requestor_kwargs` are the SDK requestor's keyword arguments the drop-in
    accepts: `host` (scheme://host[:port]) is honoured, the rest ignored.
    """
    config = get_config()
    ak = ak or config.ACCESS_KEY
    sk = sk or config.SECRET_KEY
    if not isinstance(ak, str) or not isinstance(sk, str) or not ak.strip() or not sk.strip():
        raise MissingCredentialsError()
    credentials = resolve_credentials(ak, sk, None, None)
    _check_endpoint(str(config.CONSOLE_API_BASE_URL))
    clock = get_clock()
    host = requestor_kwargs.get("host")
    return Session(
        policy=policy,
        clock=clock,
        credentials=credentials,
        wire=wire or Wire.shared(),
        redactor=Redactor([credentials.access_key(), credentials.secret_key()]),
        deadline=clock.monotonic() + policy.deadline,
        attempt_timeout=policy.attempt_timeout,
        limiter=limiter,
        budget=budget,
        host=host if isinstance(host, str) and host else None,
    )


def _check_endpoint(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Userinfo (user:password@) is dropped from what is shown.
        shown = parts._replace(netloc=parts.hostname or "").geturl() if parts.netloc else base_url
        raise ConfigurationError(
            f"QIANFAN_CONSOLE_API_BASE_URL must be an http:// or https:// URL, got {shown[:100]!r}"
        )
