"""No frame of a raised error's traceback holds a key, the SDK config or a raw detail.

Production loggers render tracebacks with every frame's locals (structlog's
`dict_tracebacks` with `show_locals`, Sentry, `pytest -l`): each error
evalctl raises is rendered here the same way, with
`traceback.TracebackException.from_exception(e, capture_locals=True)`, its
whole `__cause__`/`__context__` chain included, and searched for the access
key, the secret key and the judge app's `appAk`/`appSk` (which every detail
of a `model` task carries). Only the test's own frames are left out: they
hold the keys the test passes.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from qianfan import get_config

from core.support import ApiSpec, Client, cancel_with_hook
from evalctl import (
    ConfigurationError,
    EvalctlError,
    ManualEvaluationError,
    MissingCredentialsError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    StopUnconfirmedError,
)
from evalctl._wire._transport import Reply
from evalctl.emulator import Emulator, pointed_at
from evalctl.emulator._defaults import DEFAULT_APP_AK, DEFAULT_APP_SK

AK = "AKsentinel7f3e9a1c5b2d8e4f"
SK = "SKsentinel0c9b8a7d6e5f4a3b"
BAD_SK = "SKsentinel\u201cpasted-quote-42"  # a smart quote: cannot be signed
SECRETS = (AK, SK, BAD_SK, DEFAULT_APP_AK, DEFAULT_APP_SK)
MODEL = "rule,model"  # details of `model` tasks carry appAk / appSk
TESTS_DIR = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def keyed() -> Iterator[Emulator]:
    """An emulator whose keys are the sentinels, with qianfan pointed at it."""
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0) as started, pointed_at(started):
        yield started


def _rendered(error: BaseException) -> list[str]:
    """Every local of every non-test frame, as a traceback with locals shows it."""
    shown: list[str] = []
    pending: list[traceback.TracebackException | None] = [
        traceback.TracebackException.from_exception(error, capture_locals=True)
    ]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        for frame in current.stack:
            if not str(Path(frame.filename).resolve()).startswith(TESTS_DIR):
                shown.extend(
                    f"{frame.filename}:{name}={value}"
                    for name, value in (frame.locals or {}).items()
                )
        shown.extend(current.format_exception_only())
        pending.extend([current.__cause__, current.__context__])
    return shown


def _held(value: object, depth: int = 0) -> Iterator[str]:
    """Every string reachable from `value` through containers and dataclass fields."""
    if depth > 6:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Reply):
        yield "<a raw Reply>"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _held(key, depth + 1)
            yield from _held(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _held(item, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _held(getattr(value, f.name), depth + 1)


def _frame_values(error: BaseException) -> Iterator[str]:
    """What the frames of the error chain hold, whatever their reprs show."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not str(Path(frame.f_code.co_filename).resolve()).startswith(TESTS_DIR):
                for value in frame.f_locals.values():
                    yield from _held(value)
            tb = tb.tb_next
        pending.extend([current.__cause__, current.__context__])


def _assert_clean(error: BaseException) -> None:
    text = "\n".join(_rendered(error))
    for secret in SECRETS:
        assert secret[:10] not in text, f"{secret[:4]}… in a frame of {type(error).__name__}"
    held = list(_frame_values(error))
    assert "<a raw Reply>" not in held, "a frame keeps a raw reply"
    for secret in SECRETS:
        assert not any(secret[:10] in value for value in held), f"a frame holds {secret[:4]}…"
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None:
        assert id(current) not in seen, "an error is its own cause"
        seen.add(id(current))
        current = current.__cause__


def _raised(call: Callable[[], object], expected: type[EvalctlError]) -> EvalctlError:
    with pytest.raises(expected) as caught:
        call()
    return caught.value


def test_a_manual_refusal_keeps_no_app_secret_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator
) -> None:
    """ManualEvaluationError: the detail (appAk/appSk) was parsed and dropped."""
    task_id = keyed.add_task(eval_mode="model,manual")

    error = _raised(lambda: client.cancel(task_id), ManualEvaluationError)

    _assert_clean(error)
    assert keyed.stop_requests() == []


def test_a_drop_in_manual_refusal_keeps_no_app_secret_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator
) -> None:
    """The drop-in's pre-check read is parsed and dropped the same way."""
    task_id = keyed.add_task(eval_mode="model,manual")

    error = _raised(lambda: client.stop_action(task_id), ManualEvaluationError)

    _assert_clean(error)


def test_an_undecided_precheck_keeps_no_app_secret_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator
) -> None:
    """PrecheckError on an unreadable state of a `model` task (which carries appSk)."""
    task_id = keyed.add_task(eval_mode=MODEL, **api.overrides(state="Paused"))

    error = _raised(lambda: client.cancel(task_id), PrecheckError)

    _assert_clean(error)
    assert error.state == "Paused"


def test_exhausted_retries_keep_no_key_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator
) -> None:
    """RetryExhaustedError after the stop failed every time (the detail read was fine)."""
    task_id = keyed.add_task(eval_mode=MODEL)
    keyed.inject("http_503", times=10, route=api.stop_fault_route)

    error = _raised(
        lambda: client.cancel(task_id, retry=RetryPolicy(max_attempts=2)), RetryExhaustedError
    )

    _assert_clean(error)
    assert isinstance(error.last_error, EvalctlError)
    _assert_clean(error.last_error)


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_key_that_cannot_be_signed_is_refused_with_no_key_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ConfigurationError for a smart-quoted SK: neither key nor the SDK config in a frame."""
    task_id = keyed.add_task(eval_mode=MODEL)
    if where == "argument":
        error = _raised(lambda: client.cancel(task_id, ak=AK, sk=BAD_SK), ConfigurationError)
    else:
        monkeypatch.setattr(get_config(), "SECRET_KEY", BAD_SK)
        error = _raised(lambda: client.cancel(task_id), ConfigurationError)

    _assert_clean(error)
    assert keyed.requests == []


def test_missing_credentials_keep_no_key_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MissingCredentialsError: the access key that was there is in no frame."""
    monkeypatch.setattr(get_config(), "SECRET_KEY", None)

    error = _raised(lambda: client.cancel(keyed.add_task()), MissingCredentialsError)

    _assert_clean(error)
    assert keyed.requests == []


def test_an_unconfirmed_stop_keeps_no_secret_in_any_frame(
    client: Client, api: ApiSpec, keyed: Emulator
) -> None:
    """StopUnconfirmedError: the stop timed out, then the verification read kept failing."""
    task_id = keyed.add_task(eval_mode=MODEL)
    keyed.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    def detail_down(_task: object) -> None:
        keyed.inject("http_503", times=20, route=api.detail_fault_route)

    error = _raised(
        lambda: cancel_with_hook(client, task_id, detail_down, attempt_timeout=0.2),
        StopUnconfirmedError,
    )

    _assert_clean(error)
    assert isinstance(error.__cause__, RetryExhaustedError)
    assert len(keyed.stop_requests()) == 1
