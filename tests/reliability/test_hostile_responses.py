"""Hostile and malformed server answers end in a typed evalctl error, never in a stop.

Two corpora. Detail answers — wrong types, missing fields, a JSON array or
a string instead of an object, ``result`` null, NaN and Infinity, non-UTF-8
bytes, JSON nested too deep to parse, huge bodies — are served by the
emulator (`detail_overrides`, or the raw-bytes test hook `serve_raw`). Each
must end in `PrecheckError` (the pre-check fails closed) with a short,
single-line message, with no foreign exception anywhere in its chain and no
request to the stop route; through the sync and async clients and through
the drop-in `call_action` on the stop route. Stop answers of the same kinds
must end in a typed error after exactly one stop request (evalctl looks at
the task instead of resending blindly).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from core.support import APIS, ApiSpec

import evalctl
from evalctl import EvalctlError
from evalctl.emulator import Emulator

MAX_MESSAGE = 600
POLICY = evalctl.RetryPolicy(max_attempts=2)
HUGE = 5 * 1024 * 1024
DEEP = 100_000


@dataclass(frozen=True)
class Hostile:
    """One hostile answer: how to make the emulator send it."""

    name: str
    #: `add_task` keywords (detail overrides), given the API generation.
    overrides: Callable[[ApiSpec], dict[str, Any]] | None = None
    #: Raw bytes for the route, given the API generation (and the task id).
    raw: Callable[[ApiSpec, str], bytes] | None = None
    status: int = 200
    content_type: str = "application/json"


def _envelope(api: ApiSpec, result: str) -> bytes:
    """A v1/v2 success envelope around `result`, given as JSON text (may be invalid JSON)."""
    key = "log_id" if api.name == "v1" else "requestId"
    return f'{{"{key}": "hostile-1", "result": {result}}}'.encode()


def _modes(api: ApiSpec, raw: object) -> dict[str, Any]:
    return api.with_modes(raw)


DETAIL_CORPUS = [
    # Wrong types where the pre-check looks.
    Hostile("state an int", lambda api: api.overrides(state=3)),
    Hostile("state a float", lambda api: api.overrides(state=1.5)),
    Hostile("state a list", lambda api: api.overrides(state=["Doing"])),
    Hostile("state an object", lambda api: api.overrides(state={"name": "Doing"})),
    Hostile("state true", lambda api: api.overrides(state=True)),
    Hostile("state empty", lambda api: api.overrides(state="")),
    Hostile("state huge", lambda api: api.overrides(state="Doing" * 200_000)),
    Hostile("evalMode a list", lambda api: _modes(api, ["rule"])),
    Hostile("evalMode an object", lambda api: _modes(api, {"rule": True})),
    Hostile("evalMode a number", lambda api: _modes(api, 0)),
    Hostile("evalMode false", lambda api: _modes(api, False)),
    Hostile("evalMode huge", lambda api: _modes(api, ",".join(f"m{i}" for i in range(20_000)))),
    Hostile(
        "evalStandardConf a string",
        lambda api: (
            api.overrides(evalStandardConf="rule")
            if api.name == "v1"
            else api.overrides(evalType=["auto"])
        ),
    ),
    Hostile(
        "evalStandardConf a list",
        lambda api: (
            api.overrides(evalStandardConf=[{"evalMode": "rule"}])
            if api.name == "v1"
            else api.overrides(evalType=7)
        ),
    ),
    Hostile("id a number", lambda api: api.describing(12345)),  # type: ignore[arg-type]
    Hostile("id an object", lambda api: api.describing({"id": 1})),  # type: ignore[arg-type]
    Hostile("name an object, state missing", lambda api: api.overrides(name={"x": 1}, state=None)),
    # Missing fields.
    Hostile("state missing", lambda api: api.overrides(state=None)),
    Hostile("modes missing", lambda api: api.without_modes()),
    # Not an object where one belongs.
    Hostile("result null", raw=lambda api, _: _envelope(api, "null")),
    Hostile("result a string", raw=lambda api, _: _envelope(api, '"Doing"')),
    Hostile("result an array", raw=lambda api, _: _envelope(api, '[{"state": "Doing"}]')),
    Hostile("result a number", raw=lambda api, _: _envelope(api, "1")),
    Hostile("result missing", raw=lambda api, _: b'{"log_id": "1", "requestId": "1"}'),
    Hostile("a JSON array", raw=lambda api, _: b'[{"result": {"state": "Doing"}}]'),
    Hostile("a JSON string", raw=lambda api, _: b'"ok"'),
    Hostile("JSON null", raw=lambda api, _: b"null"),
    Hostile("JSON true", raw=lambda api, _: b"true"),
    Hostile("an empty body", raw=lambda api, _: b""),
    # NaN and Infinity (Python reads them; they are not JSON).
    Hostile("state NaN", raw=lambda api, _: _envelope(api, '{"state": NaN, "evalMode": "rule"}')),
    Hostile(
        "evalMode Infinity",
        raw=lambda api, t: _envelope(
            api,
            '{"state": "Doing", "evalType": "auto", "evalMode": -Infinity,'
            ' "evalStandardConf": {"evalMode": Infinity}}',
        ),
    ),
    Hostile("the body NaN", raw=lambda api, _: b"NaN"),
    # Bytes that are not UTF-8 JSON.
    Hostile(
        "latin-1 bytes",
        raw=lambda api, _: _envelope(api, '{"state": "Do\xe9ing"}')[:-2] + b"\xe9}}",
    ),
    Hostile(
        "a UTF-16 body",
        raw=lambda api, _: _envelope(api, '{"state": "Doing"}').decode().encode("utf-16"),
    ),
    Hostile("binary garbage", raw=lambda api, _: bytes(range(256)) * 4),
    Hostile("a truncated body", raw=lambda api, _: _envelope(api, '{"state": "Doing", "evalMo')),
    Hostile(
        "an HTML page",
        raw=lambda api, _: b"<html><body>hello</body></html>",
        content_type="text/html",
    ),
    # Too deep, too big.
    Hostile("nested too deep", raw=lambda api, _: _envelope(api, "[" * DEEP + "]" * DEEP)),
    Hostile(
        "a huge error message",
        raw=lambda api, _: json.dumps({"error_code": 336003, "error_msg": "x" * HUGE}).encode(),
    ),
    Hostile(
        "an error code as an object",
        raw=lambda api, _: b'{"error_code": {"n": 1}, "error_msg": ["x"]}',
    ),
    Hostile("an error code NaN", raw=lambda api, _: b'{"error_code": NaN, "error_msg": null}'),
    Hostile("HTTP 599", raw=lambda api, _: b'{"code": 5, "message": 7}', status=599),
    Hostile("HTTP 418, no body", raw=lambda api, _: b"", status=418),
    Hostile(
        "a log id with control characters",
        raw=lambda api, _: _envelope(api, "null").replace(b"hostile-1", b"\\u001b[31mred\\u0007"),
    ),
]


def _serve(emulator: Emulator, api: ApiSpec, hostile: Hostile, route: str) -> str:
    """Seed a running rule-only task and make its answer on `route` hostile; return the id."""
    overrides = hostile.overrides(api) if hostile.overrides else {}
    task_id = emulator.add_task(eval_mode="rule", state=api.running_states[0], **overrides)
    if hostile.raw is not None:
        emulator.serve_raw(
            hostile.raw(api, task_id),
            status=hostile.status,
            content_type=hostile.content_type,
            route=route,
            times=POLICY.max_attempts,
        )
    return task_id


def _foreign_in_chain(error: BaseException) -> list[str]:
    """Exceptions a traceback of `error` would show that are not evalctl's."""
    foreign: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, EvalctlError):
            foreign.append(repr(current)[:200])
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return foreign


def _assert_clear(error: EvalctlError) -> None:
    message = str(error)
    assert message, repr(error)
    assert "\n" not in message, message[:2000]
    assert len(message) <= MAX_MESSAGE, message[:2000]
    assert message.isprintable(), repr(message[:300])
    assert _foreign_in_chain(error) == []


ENTRIES = ["cancel", "async cancel", "drop-in stop"]


def _attempt(entry: str, api: ApiSpec, task_id: str) -> EvalctlError | None:
    try:
        if entry == "cancel":
            evalctl.cancel_eval_task(task_id, api=api.name, retry=POLICY)
        elif entry == "async cancel":
            asyncio.run(evalctl.acancel_eval_task(task_id, api=api.name, retry=POLICY))
        else:
            evalctl.call_action(api.stop_route, api.stop_action, api.params(task_id), retry=POLICY)
    except EvalctlError as error:
        return error
    return None


@pytest.mark.parametrize("hostile", DETAIL_CORPUS, ids=lambda h: h.name)
@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_a_hostile_detail_fails_closed_with_a_clear_error(
    api_name: str, hostile: Hostile, emu: Emulator
) -> None:
    """PrecheckError with a clear one-line message, nothing foreign in it, no stop request."""
    api = APIS[api_name]
    for entry in ENTRIES:
        task_id = _serve(emu, api, hostile, api.detail_fault_route)
        error = _attempt(entry, api, task_id)
        assert isinstance(error, evalctl.PrecheckError), f"{entry}: {error!r}"[:500]
        _assert_clear(error)
        assert emu.stop_requests(task_id) == [], entry
        assert emu.task(task_id).state == "Doing"


def test_a_huge_but_valid_detail_is_read_and_the_task_stopped(emu: Emulator) -> None:
    """A 5 MB description is no reason to fail: the task is stopped, once."""
    task_id = emu.add_task(eval_mode="rule", description="d" * HUGE)
    result = evalctl.cancel_eval_task(task_id)
    assert (result.outcome, len(emu.stop_requests(task_id))) == ("cancelled", 1)


def test_deep_but_parsable_nesting_in_a_detail_is_harmless(emu: Emulator) -> None:
    """Nesting Python can parse, inside fields evalctl does not read, changes nothing."""
    nested: Any = "leaf"
    for _ in range(400):
        nested = {"appAk": None, "inner": [nested]}
    task_id = emu.add_task(eval_mode="rule,model", detail_overrides={"evalUnits": nested})
    result = evalctl.cancel_eval_task(task_id)
    assert (result.outcome, len(emu.stop_requests(task_id))) == ("cancelled", 1)


# --- hostile answers to the stop ----------------------------------------------------------


@dataclass(frozen=True)
class HostileStop:
    name: str
    raw: Callable[[ApiSpec], bytes]
    error: type[EvalctlError]
    status: int = 200


STOP_CORPUS = [
    HostileStop("a JSON array", lambda api: b"[]", evalctl.InvalidResponseError),
    HostileStop("result null", lambda api: _envelope(api, "null"), evalctl.InvalidResponseError),
    HostileStop(
        "result a string", lambda api: _envelope(api, '"true"'), evalctl.InvalidResponseError
    ),
    HostileStop("non-UTF-8 bytes", lambda api: b"\xff\xfe\x00{", evalctl.InvalidResponseError),
    HostileStop("NaN", lambda api: b"NaN", evalctl.InvalidResponseError),
    HostileStop(
        "nested too deep",
        lambda api: _envelope(api, "[" * DEEP + "]" * DEEP),
        evalctl.InvalidResponseError,
    ),
    HostileStop(
        "an error code as an object",
        lambda api: b'{"error_code": {"n": 1}, "error_msg": "no"}',
        evalctl.CancelRejectedError,
    ),
    HostileStop("HTTP 599", lambda api: b"<html>", evalctl.CancelRejectedError, status=599),
]
V1_STOP_CORPUS = [
    HostileStop(
        "accepted as a string",
        lambda api: _envelope(api, '{"result": "true"}'),
        evalctl.InvalidResponseError,
    ),
    HostileStop(
        "accepted as 1", lambda api: _envelope(api, '{"result": 1}'), evalctl.InvalidResponseError
    ),
    HostileStop(
        "accepted NaN", lambda api: _envelope(api, '{"result": NaN}'), evalctl.InvalidResponseError
    ),
    HostileStop(
        "refused with a huge message",
        lambda api: _envelope(api, json.dumps({"result": False, "errorMessage": "x" * HUGE})),
        evalctl.CancelRejectedError,
    ),
]
STOP_ROWS = [
    pytest.param(api_name, hostile, id=f"{api_name}-{hostile.name}")
    for api_name in ("v1", "v2")
    for hostile in STOP_CORPUS + (V1_STOP_CORPUS if api_name == "v1" else [])
]


@pytest.mark.parametrize(("api_name", "hostile"), STOP_ROWS)
def test_a_hostile_stop_answer_is_a_typed_error_after_one_stop(
    api_name: str, hostile: HostileStop, emu: Emulator
) -> None:
    """A typed error with a clear message; the stop was sent once and not blindly resent."""
    api = APIS[api_name]
    task_id = emu.add_task(eval_mode="rule", state=api.running_states[0])
    emu.serve_raw(hostile.raw(api), status=hostile.status, route=api.stop_fault_route, times=5)

    error = _attempt("cancel", api, task_id)

    assert isinstance(error, hostile.error), repr(error)[:500]
    _assert_clear(error)
    assert len(emu.stop_requests(task_id)) == 1


def test_the_raw_answer_hook_sends_exactly_its_bytes_and_applies_nothing(emu: Emulator) -> None:
    """`serve_raw` (the test hook behind these corpora): exact bytes, once per use, recorded."""
    api = APIS["v1"]
    task_id = emu.add_task()
    emu.serve_raw(b"\xff[1, 2", status=202, content_type="text/x-odd", route=api.stop_fault_route)
    reply = evalctl.call_action(api.detail_route, "", api.params(task_id))  # not the stop route

    with pytest.raises(evalctl.InvalidResponseError):
        evalctl.call_action("/wenxinworkshop/modelrepo/eval/cancel", "", api.params(task_id))

    assert reply.body["result"]["state"] == "Doing"
    assert [r.fault for r in emu.requests] == [None, None, "raw"]  # detail, pre-check, stop
    assert emu.task(task_id).state == "Doing"  # the raw answer applied nothing
    with pytest.raises(ValueError, match="status"):
        emu.serve_raw(b"", status=42)
    with pytest.raises(ValueError, match="route"):
        emu.serve_raw(b"", route="/nowhere")
    with pytest.raises(ValueError, match="times"):
        emu.serve_raw(b"", times=0)
