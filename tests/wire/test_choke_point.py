"""The choke point at the send function: no stop reaches the socket unless cleared.

Every test sends through `send`/`asend` over real HTTP to the emulator and
then looks at what the emulator received (`Emulator.requests`).
"""

from __future__ import annotations

from typing import Any

import pytest

from evalctl._base import _api
from evalctl._base._errors import UnsafeRequestError
from evalctl._safety._generations import V1, V2, Generation
from evalctl._safety._stopguard import Clearance
from evalctl.emulator import Emulator

from .support import FLAVOURS, Flavour, call, credentials_of

GENERATIONS = {"v1": V1, "v2": V2}


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=["v1", "v2"])
def gen(request: pytest.FixtureRequest) -> Generation:
    return GENERATIONS[request.param]


def _stop(
    flavour: Flavour,
    emulator: Emulator,
    gen: Generation,
    body: dict[str, Any],
    clearance: Clearance | None,
    route: str | None = None,
) -> Any:
    return call(
        flavour,
        route or gen.stop_route,
        gen.stop_action,
        body,
        credentials_of(emulator),
        clearance,
    )


def test_a_cleared_stop_is_sent_once_with_a_fresh_body(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    """With its clearance, exactly one stop goes out, its body built from the cleared id."""
    task_id = emulator.add_task()
    caller_body: dict[str, Any] = gen.body(task_id)

    reply = _stop(flavour, emulator, gen, caller_body, Clearance(gen, task_id))

    assert reply.status == 200
    assert reply.sent_body == {gen.id_field: task_id}
    assert reply.sent_body is not caller_body
    stops = emulator.stop_requests()
    assert [(r.task_id, r.body, r.signature_valid) for r in stops] == [
        (task_id, {gen.id_field: task_id}, True)
    ]


def test_a_stop_without_clearance_is_refused_unsent(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    task_id = emulator.add_task()

    with pytest.raises(UnsafeRequestError, match="no pre-check cleared it"):
        _stop(flavour, emulator, gen, gen.body(task_id), None)

    assert emulator.requests == []


def test_a_clearance_for_another_task_is_refused_unsent(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    checked = emulator.add_task()
    other = emulator.add_task(eval_mode="manual")

    with pytest.raises(UnsafeRequestError):
        _stop(flavour, emulator, gen, gen.body(other), Clearance(gen, checked))

    assert emulator.requests == []


def test_a_clearance_for_the_other_generation_is_refused_unsent(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    task_id = emulator.add_task()
    other_gen = V2 if gen is V1 else V1

    with pytest.raises(UnsafeRequestError):
        _stop(flavour, emulator, gen, gen.body(task_id), Clearance(other_gen, task_id))

    assert emulator.requests == []


def test_a_used_clearance_is_refused_unsent(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    task_id = emulator.add_task()
    clearance = Clearance(gen, task_id)
    _stop(flavour, emulator, gen, gen.body(task_id), clearance)

    with pytest.raises(UnsafeRequestError, match="already used"):
        _stop(flavour, emulator, gen, gen.body(task_id), clearance)

    assert len(emulator.stop_requests()) == 1
    assert len(emulator.requests) == 1


@pytest.mark.parametrize("extra", ["int-id", "other-id-field", "unrelated"])
def test_a_stop_body_with_extra_keys_is_refused_unsent(
    flavour: Flavour, gen: Generation, emulator: Emulator, extra: str
) -> None:
    task_id = emulator.add_task()
    other_field = "taskId" if gen is V1 else "id"
    extras = {"int-id": {"evaluationId": 1}, "other-id-field": {other_field: "ame-other"}}
    body = {**extras.get(extra, {"note": "x"}), gen.id_field: task_id}

    with pytest.raises(UnsafeRequestError):
        _stop(flavour, emulator, gen, body, Clearance(gen, task_id))

    assert emulator.requests == []


@pytest.mark.parametrize(
    "spelling",
    [
        "/wenxinworkshop/modelrepo/eval/detail/../cancel",
        "/wenxinworkshop/modelrepo/./eval/cancel",
        "/wenxinworkshop/modelrepo/eval/cancel#fragment",
        "/wenxinworkshop/modelrepo/eval/canc%65l",
    ],
)
def test_v1_stop_spellings_the_client_normalises_are_guarded(
    flavour: Flavour, emulator: Emulator, spelling: str
) -> None:
    """Classified by the URL as sent: a dot segment or a fragment does not hide a stop."""
    task_id = emulator.add_task()

    with pytest.raises(UnsafeRequestError):
        call(flavour, spelling, "", {"id": task_id}, credentials_of(emulator), None)

    assert emulator.requests == []


@pytest.mark.parametrize(
    ("route", "action"),
    [
        ("/v2/eval?Action=StopEvalTask", ""),
        ("/v2/eval?Action=StopEvalTask", "DescribeEvalTask"),
        ("/v2/x/../eval", "StopEvalTask"),
    ],
)
def test_v2_stop_spellings_are_guarded(
    flavour: Flavour, emulator: Emulator, route: str, action: str
) -> None:
    task_id = emulator.add_task()

    with pytest.raises(UnsafeRequestError):
        call(flavour, route, action, {"taskId": task_id}, credentials_of(emulator), None)

    assert emulator.requests == []


def test_a_read_passes_the_guard_with_a_copy_of_the_callers_body(
    flavour: Flavour, gen: Generation, emulator: Emulator
) -> None:
    task_id = emulator.add_task(eval_mode="manual")
    body: dict[str, Any] = gen.body(task_id)

    reply = call(flavour, gen.detail_route, gen.detail_action, body, credentials_of(emulator))

    assert reply.sent_body == body
    assert reply.sent_body is not body
    assert [(r.route, r.action, r.signature_valid) for r in emulator.requests] == [
        (gen.detail_route, gen.detail_action, True)
    ]
    assert emulator.stop_requests() == []


def test_the_stop_route_constants_are_what_the_emulator_calls_a_stop() -> None:
    """The spellings above are variants of these two routes."""
    assert _api.V1_CANCEL_ROUTE == "/wenxinworkshop/modelrepo/eval/cancel"
    assert (_api.V2_ROUTE, _api.V2_STOP_ACTION) == ("/v2/eval", "StopEvalTask")
