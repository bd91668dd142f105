"""The property of issue 12, over real HTTP: no unchecked stop is ever received.

Over generated route spellings, stop-body shapes, detail answers (duplicate
keys, modes in any mode-bearing field, missing or foreign ids, the other
generation's states) and a caller changing its params while the pre-check
runs, in both generations and both flavours: no request that a gateway could
route to a stop (`RecordedRequest.is_stop`) names a task that is manual,
undecided, or not the checked one — and at most one stop reaches any task.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from core.support import APIS, ApiSpec, Client, Flavour
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evalctl
from evalctl._base import _api
from evalctl.emulator import Emulator, pointed_at
from safety.spellings import BASE_URL, spellings
from safety.stops import answer_detail, detail_text, named_ids, stops

DETAIL_KINDS = (
    "intact",
    "duplicate-manual-last",
    "duplicate-manual-first",
    "no-id",
    "another-id",
    "other-vocabulary",
    "manual-elsewhere",
    "unreadable-mode",
)
BODY_KINDS = ("documented", "second-id", "listed", "nested", "integer", "bool")
MUTATIONS = ("none", "switch-id", "add-id")


@dataclass(frozen=True)
class Case:
    api: ApiSpec
    flavour: Flavour
    modes: str
    state: str
    detail: str
    route: str
    action: str
    body: str
    mutation: str

    @property
    def clear(self) -> bool:
        """Whether this task, answered this way, is one a stop may be sent for."""
        return "manual" not in self.modes and self.state == "running" and self.detail == "intact"

    @property
    def canonical(self) -> bool:
        return (
            (self.route, self.action) == (self.api.stop_route, self.api.stop_action)
            and self.body == "documented"
            and self.mutation == "none"
        )


@st.composite
def routes(draw: st.DrawFn, api: ApiSpec) -> tuple[str, str]:
    """The stop route as documented, or spelt any other way (route, action)."""
    if draw(st.booleans()):
        return api.stop_route, api.stop_action
    target = draw(spellings(((api.stop_route, api.stop_action),)))
    target = target.removeprefix(BASE_URL)
    path, _, query = target.partition("?")
    if api.name == "v2" and query.startswith("Action=") and "&" not in query and "#" not in query:
        return path, query.removeprefix("Action=")
    return target, ""


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """One attack at a time (route, body, detail or the caller's change), or all at once."""
    api = APIS[draw(st.sampled_from(("v1", "v2")))]
    axis = draw(st.sampled_from(("route", "body", "detail", "mutation", "none", "all")))
    route, action = (
        draw(routes(api)) if axis in ("route", "all") else (api.stop_route, api.stop_action)
    )
    return Case(
        api=api,
        flavour=Flavour(draw(st.sampled_from(("sync", "async")))),
        modes=draw(st.sampled_from(("rule", "rule,model", "manual", "rule,manual"))),
        state=draw(st.sampled_from(("running", "running", "manual-begin"))),
        detail=draw(st.sampled_from(DETAIL_KINDS)) if axis in ("detail", "all") else "intact",
        route=route,
        action=action,
        body=draw(st.sampled_from(BODY_KINDS)) if axis in ("body", "all") else "documented",
        mutation=draw(st.sampled_from(MUTATIONS)) if axis in ("mutation", "all") else "none",
    )


def _detail(case: Case, task_id: str, other: str) -> str | None:
    """The detail answer to serve by hand, or None for the emulator's own."""
    api, kind = case.api, case.detail
    state = api.state(case.state)
    if kind == "intact":
        return None
    if kind == "duplicate-manual-last":
        return detail_text(api, task_id, modes="rule", state=state).replace(
            '"evalMode": "rule"', '"evalMode": "rule", "evalMode": "manual"', 1
        )
    if kind == "duplicate-manual-first":
        return detail_text(api, task_id, modes="rule", state=state).replace(
            '"evalMode": "rule"', '"evalMode": "manual", "evalMode": "rule"', 1
        )
    if kind == "no-id":
        key = "evaluationIdStr" if api.name == "v1" else "taskId"
        return detail_text(api, task_id, state=state, **{key: None})
    if kind == "another-id":
        return detail_text(api, other, state=state)
    if kind == "other-vocabulary":
        foreign = _api.V2_RUNNING if api.name == "v1" else _api.V1_DOING
        return detail_text(api, task_id, state=foreign)
    if kind == "manual-elsewhere":
        extra = (
            {"evalUnits": [{"state": _api.V1_DOING_MANUAL}]}
            if api.name == "v1"
            else {"evalStandardConf": {"evalMode": "rule,manual"}}
        )
        return detail_text(api, task_id, state=state, **extra)
    return detail_text(api, task_id, state=state, evalStandardConf={"evalMode": ["rule"]})


def _body(case: Case, task_id: str, integer_id: int, other: str) -> dict[str, Any]:
    field = case.api.id_field
    second = "taskId" if field == "id" else "id"
    return {
        "documented": {field: task_id},
        "second-id": {field: task_id, second: other},
        "listed": {field: [task_id]},
        "nested": {field: task_id, "more": {field: other}},
        "integer": {field: integer_id},
        "bool": {field: True},
    }[case.body]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(stop_delay_s=0.0) as started, pointed_at(started):
        yield started


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases())
def test_no_stop_reaches_a_task_that_is_manual_undecided_or_not_the_checked_one(
    emulator: Emulator, case: Case
) -> None:
    """Property: every stop received names the checked, clear task only; at most one."""
    emulator.reset()
    api = case.api
    task_id = emulator.add_task(eval_mode=case.modes, state=api.state(case.state))
    integer_id = emulator.task(task_id).evaluation_id
    other = emulator.add_task(eval_mode="rule,manual", state=api.running_states[0])
    params = _body(case, task_id, integer_id, other)

    def mutate() -> None:
        if case.mutation == "switch-id":
            params[api.id_field] = other
        elif case.mutation == "add-id":
            params["evaluationId" if api.name == "v1" else "id"] = other

    text = _detail(case, task_id, other)
    if text is not None:
        answer_detail(emulator, api, text, then=mutate, times=2)
    elif case.mutation != "none":
        # The truth, as the emulator would say it, with the caller's change on the side.
        truth = detail_text(api, task_id, modes=case.modes, state=api.state(case.state))
        answer_detail(emulator, api, truth, then=mutate, times=2)

    with warnings.catch_warnings(), contextlib.suppress(evalctl.EvalctlError):
        warnings.simplefilter("ignore", DeprecationWarning)
        Client(case.flavour, api).call_action(
            case.route, case.action, params, retry=evalctl.RetryPolicy(max_attempts=1)
        )

    received = stops(emulator)
    assert len(received) <= 1, case
    for stop in received:
        assert case.clear, (case, stop.body)
        assert named_ids(stop.body) in ({task_id}, {str(integer_id)}), (case, stop.body)
    assert emulator.task(other).stop_requests == 0
    if case.canonical and case.clear:
        assert len(received) == 1, case  # the property is not met by sending nothing
