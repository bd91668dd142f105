"""The structured events: one `qianfan.request` per attempt, the pre-check, the cancel.

Whole events are compared (only `duration_ms`, which varies, is dropped); the
log ids expected are the ones the result or error reports, which in turn are
checked against the emulator's id formats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from core.support import ApiSpec, Client, without_duration
from evalctl import ManualEvaluationError, RetryExhaustedError, RetryPolicy, TaskNotFoundError
from evalctl._base import _api, _logging
from evalctl.emulator import Emulator

NO_JITTER = RetryPolicy(initial_wait=0.5, jitter=False)
CONTRACT_KEYS = {
    "route",
    "action",
    "attempt",
    "log_id",
    "http_status",
    "error_code",
    "duration_ms",
    "outcome",
}


def test_a_cancel_logs_every_attempt_the_verdict_and_the_outcome(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """Retry, ok, pre-check, stop, cancel: whole events, with the server's log ids."""
    state = api.running_states[0]
    task_id = emulator.add_task(state=state)
    emulator.inject("code_18", route=api.detail_fault_route)

    result = client.cancel(task_id, retry=NO_JITTER)

    failed, read, stopped = result.log_ids
    assert all(api.is_log_id(log_id) for log_id in result.log_ids)
    detail = {"route": api.detail_route, "action": api.detail_action, "task_id": task_id}
    stop = {"route": api.stop_route, "action": api.stop_action, "task_id": task_id}
    assert without_duration(logs) == [
        {
            **detail,
            "attempt": 1,
            "log_id": failed,
            "http_status": 200,
            "error_code": 18,
            "outcome": "retry",
            "purpose": "detail",
            "error": "Open api qps request limit reached",
            "wait_s": 0.5,
            "event": "qianfan.request",
            "log_level": "warning",
        },
        {
            **detail,
            "attempt": 2,
            "log_id": read,
            "http_status": 200,
            "error_code": None,
            "outcome": "ok",
            "purpose": "detail",
            "event": "qianfan.request",
            "log_level": "info",
        },
        {
            "task_id": task_id,
            "state": state,
            "eval_modes": ["rule"],
            "allowed": True,
            "verdict": "stop",
            "log_id": read,
            "event": "evalctl.precheck",
            "log_level": "info",
        },
        {
            **stop,
            "attempt": 1,
            "log_id": stopped,
            "http_status": 200,
            "error_code": None,
            "outcome": "ok",
            "purpose": "stop",
            "event": "qianfan.request",
            "log_level": "info",
        },
        {
            "task_id": task_id,
            "outcome": "cancelled",
            "log_id": stopped,
            "state_before": state,
            "state_after": _api.V1_STOPPING,
            "attempts": 3,
            "event": "evalctl.cancel",
            "log_level": "info",
        },
    ]


def test_every_request_event_has_the_contract_keys_and_a_duration(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The contract's keys are always there; duration_ms is a non-negative number."""
    emulator.inject("reset", route=api.detail_fault_route)
    emulator.inject("http_429", route=api.detail_fault_route, retry_after=0)

    client.cancel(emulator.add_task())

    requests = [e for e in logs if e["event"] == "qianfan.request"]
    assert len(requests) == 4
    for event in requests:
        assert event.keys() >= CONTRACT_KEYS
        assert isinstance(event["duration_ms"], float)
        assert event["duration_ms"] >= 0
    reset = requests[0]
    assert (reset["log_id"], reset["http_status"], reset["error_code"]) == (None, None, None)


def test_an_error_answer_is_logged_with_the_log_id_from_its_body(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """Not found: one `error` event carrying the body's log_id (v2: requestId, HTTP 404)."""
    with pytest.raises(TaskNotFoundError) as caught:
        client.cancel("ame-nosuchtask")

    log_id = caught.value.log_id
    assert api.is_log_id(log_id)
    status, code = (200, 336003) if api.name == "v1" else (404, "ResourceNotFound")
    assert without_duration(logs) == [
        {
            "route": api.detail_route,
            "action": api.detail_action,
            "attempt": 1,
            "log_id": log_id,
            "http_status": status,
            "error_code": code,
            "outcome": "error",
            "task_id": "ame-nosuchtask",
            "purpose": "detail",
            "error": "eval task not found: ame-nosuchtask",
            "event": "qianfan.request",
            "log_level": "error",
        }
    ]


def test_a_refusal_logs_the_verdict_and_no_cancel(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A manual task: the pre-check event says not allowed, and why; no evalctl.cancel."""
    state = api.running_states[0]
    task_id = emulator.add_task(eval_mode="rule,manual", state=state)

    with pytest.raises(ManualEvaluationError) as caught:
        client.cancel(task_id)

    assert [e["event"] for e in logs] == ["qianfan.request", "evalctl.precheck"]
    assert logs[1] == {
        "task_id": task_id,
        "state": state,
        "eval_modes": ["rule", "manual"],
        "allowed": False,
        "verdict": "manual_evaluation",
        "log_id": caught.value.log_id,
        "event": "evalctl.precheck",
        "log_level": "info",
    }


def test_exhaustion_logs_retries_then_one_error(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """retry, retry, error (with why it gave up); each with the gateway's requestId."""
    emulator.inject("http_503", times=3, route=api.detail_fault_route)

    with pytest.raises(RetryExhaustedError) as caught:
        client.cancel(emulator.add_task(), retry=RetryPolicy(max_attempts=3, jitter=False))

    outcomes = [(e["attempt"], e["outcome"], e.get("gave_up")) for e in logs]
    assert outcomes == [(1, "retry", None), (2, "retry", None), (3, "error", "attempts")]
    assert [e["log_id"] for e in logs] == list(caught.value.log_ids)
    assert [e["http_status"] for e in logs] == [503, 503, 503]


def test_the_library_configures_neither_structlog_nor_logging(
    client: Client, api: ApiSpec, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """structlog's config is untouched, and the SDK's own logger stays quiet (no header dumps)."""
    before = structlog.get_config()
    emulator.inject("http_500", route=api.detail_fault_route)
    emulator.inject("reset", route=api.stop_fault_route)

    with caplog.at_level(logging.DEBUG, logger="qianfan"):
        client.cancel(emulator.add_task())
        with pytest.raises(TaskNotFoundError):
            client.cancel("ame-nosuchtask")

    assert structlog.get_config() == before
    sdk = [r for r in caplog.records if r.name.partition(".")[0] in ("qianfan", "baidubce")]
    assert [r.getMessage() for r in sdk if r.levelno >= logging.WARNING] == []
    assert "bce-auth-v1/" not in caplog.text


def test_a_timeout_is_logged_as_a_timeout_in_both_flavours(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """An attempt that outlives its timeout reads "timed out", never "CancelledError" (async)."""
    task_id = emulator.add_task()
    emulator.inject("slow", route=api.detail_fault_route, delay_s=2.0)

    client.describe(task_id, retry=RetryPolicy(initial_wait=0.5, jitter=False, attempt_timeout=0.2))

    assert without_duration(logs)[0] == {
        "route": api.detail_route,
        "action": api.detail_action,
        "attempt": 1,
        "log_id": None,
        "http_status": None,
        "error_code": None,
        "outcome": "retry",
        "task_id": task_id,
        "purpose": "detail",
        "error": "timed out: TimeoutError",
        "wait_s": 0.5,
        "event": "qianfan.request",
        "log_level": "warning",
    }


# --- without structlog configured: the standard `logging` module ---------------------


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as an application that never configured it leaves it (restored afterwards).

    `capture_logs()` (the `logs` fixture) configures structlog, and structlog
    keeps saying it is configured after the block ends.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.mark.usefixtures("unconfigured")
def test_unconfigured_the_events_are_stdlib_records_on_the_evalctl_logger(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same names and keys: message = event + fields, each field on the record; stdout empty."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("code_18", route=api.detail_fault_route)

    with caplog.at_level(logging.INFO, logger="evalctl"):
        result = client.cancel(task_id, retry=NO_JITTER)

    records = [r for r in caplog.records if r.name == "evalctl"]
    assert [(r.event, r.levelname) for r in records] == [  # type: ignore[attr-defined]
        ("qianfan.request", "WARNING"),
        ("qianfan.request", "INFO"),
        ("evalctl.precheck", "INFO"),
        ("qianfan.request", "INFO"),
        ("evalctl.cancel", "INFO"),
    ]
    requests = [r for r in records if r.event == "qianfan.request"]  # type: ignore[attr-defined]
    assert [r.log_id for r in requests] == list(result.log_ids)  # type: ignore[attr-defined]
    for record in requests:
        fields = record.evalctl_fields  # type: ignore[attr-defined]
        assert fields.keys() >= CONTRACT_KEYS
        assert record.getMessage().startswith("qianfan.request ")
        assert f"log_id={record.log_id}" in record.getMessage()  # type: ignore[attr-defined]
        assert record.outcome == fields["outcome"]  # type: ignore[attr-defined]
    assert records[-1].evalctl_fields == {  # type: ignore[attr-defined]
        "task_id": task_id,
        "outcome": "cancelled",
        "log_id": result.log_ids[-1],
        "state_before": api.running_states[0],
        "state_after": _api.V1_STOPPING if api.name == "v1" else _api.V2_STOPPING,
        "attempts": 3,
    }
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("unconfigured")
def test_unconfigured_info_is_silent_and_warnings_pass_at_loggings_default_level(
    client: Client, api: ApiSpec, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """At the root logger's default WARNING only the retry reaches a handler."""
    emulator.inject("http_503", route=api.detail_fault_route)

    client.cancel(emulator.add_task(), retry=NO_JITTER)

    evalctl_records = [r for r in caplog.records if r.name == "evalctl"]
    assert [(r.levelname, r.outcome) for r in evalctl_records] == [  # type: ignore[attr-defined]
        ("WARNING", "retry")
    ]


def test_configured_the_events_are_structlog_events_and_no_stdlib_records(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With structlog configured (here by capture_logs) nothing goes to the `evalctl` logger."""
    with caplog.at_level(logging.DEBUG, logger="evalctl"):
        client.cancel(emulator.add_task())

    assert [e["event"] for e in logs] == [
        "qianfan.request",
        "evalctl.precheck",
        "qianfan.request",
        "evalctl.cancel",
    ]
    assert [r for r in caplog.records if r.name == "evalctl"] == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"route": "/v2/eval", "attempt": 2}, "e route=/v2/eval attempt=2"),
        ({"action": "", "log_id": None}, 'e action="" log_id=null'),
        ({"error": 'a "b" c', "allowed": True}, 'e error="a \\"b\\" c" allowed=true'),
        ({"eval_modes": ["manual", "rule"]}, 'e eval_modes=["manual", "rule"]'),
        ({"duration_ms": 1.5}, "e duration_ms=1.5"),
    ],
)
def test_the_stdlib_message_renders_every_field(fields: dict[str, Any], expected: str) -> None:
    """Bare values stay bare; empty, None, quotes, spaces, booleans and lists read as JSON."""
    assert _logging.render("e", fields) == expected


def test_a_field_named_like_a_record_attribute_stays_in_the_message(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A `name` or `message` field cannot clobber the record (stdlib would raise)."""
    with caplog.at_level(logging.INFO, logger="evalctl"):
        _logging.event("info", "evalctl.test", name="mine", message="hello", lines=3)

    (record,) = caplog.records
    assert (record.name, record.getMessage()) == (
        "evalctl",
        "evalctl.test name=mine message=hello lines=3",
    )
    assert record.evalctl_fields == {"name": "mine", "message": "hello", "lines": 3}  # type: ignore[attr-defined]
    assert record.lines == 3  # type: ignore[attr-defined]
