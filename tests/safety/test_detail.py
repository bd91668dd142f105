"""Reading a detail for the pre-check: every manual signal, strict JSON, the right task.

The parser (`parse_detail`) only reads; `_precheck.assess` and `decide` judge.
These are unit tests of both halves; `test_over_http.py` drives the same
classes through the emulator.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from evalctl._base import _api
from evalctl._base._errors import ManualEvaluationError, PrecheckError
from evalctl._base._ids import TaskId
from evalctl._base._model import EvalTask
from evalctl._base._redact import Redactor
from evalctl._base._strictjson import loads
from evalctl._safety._generations import V1, V2, Generation, parse_detail
from evalctl._safety._precheck import Verdict, decide

TASK = "ame-checked001"


def v1_detail(**result: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "evaluationId": 41,
        "evaluationIdStr": TASK,
        "name": "nightly",
        "state": "Doing",
        "evalStandardConf": {"evalMode": "rule,model"},
    }
    return {"log_id": "L1", "result": _merged(base, result)}


def v2_detail(**result: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "taskId": TASK,
        "taskName": "nightly",
        "state": "Running",
        "evalType": "auto",
        "evalMode": "rule,model",
        "evalStandardConf": {"evalMode": "rule,model"},
    }
    return {"requestId": "R1", "result": _merged(base, result)}


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


DETAILS = {"v1": (V1, v1_detail), "v2": (V2, v2_detail)}


def read(
    generation: Generation,
    body: dict[str, Any],
    task_id: TaskId = TASK,
    *,
    duplicate_keys: bool = False,
) -> EvalTask:
    return parse_detail(generation, body, task_id, "L1", Redactor(), duplicate_keys=duplicate_keys)


def verdict(task: EvalTask) -> str:
    try:
        return decide(task).value
    except (ManualEvaluationError, PrecheckError) as refusal:
        return refusal.kind


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_clear_automatic_running_detail_may_be_stopped(api: str) -> None:
    """The baseline every other case changes one thing of."""
    generation, detail = DETAILS[api]
    task = read(generation, detail())

    assert (task.undecided_reason, task.includes_manual, verdict(task)) == (None, False, "stop")
    assert task.eval_modes == frozenset({"rule", "model"})


# --- every mode-bearing field -------------------------------------------------------------

MANUAL_ANYWHERE: list[tuple[str, dict[str, Any]]] = [
    ("v1", {"evalStandardConf": {"evalMode": "rule,manual"}}),
    ("v1", {"evalMode": "manual"}),  # not documented for v1: read anyway
    ("v1", {"evalType": "manual"}),
    ("v1", {"evalUnits": [{"evalMode": "manual"}]}),
    ("v1", {"evalStandardConf": {"evalMode": "rule", "EvalMode": "manual"}}),
    ("v1", {"evalStandardConf": {"evalMode": "rule", "eval_mode": "Manual"}}),
    ("v2", {"evalType": "manual"}),
    ("v2", {"evalMode": "rule,manual"}),
    ("v2", {"evalStandardConf": {"evalMode": "manual"}}),
    (
        "v2",
        {"evalType": "auto", "evalMode": "rule", "evalStandardConf": {"evalMode": "ｍａｎｕａｌ"}},
    ),
    ("v2", {"evalType": "manual,auto"}),
]


@pytest.mark.parametrize(("api", "fields"), MANUAL_ANYWHERE)
def test_manual_in_any_mode_bearing_field_refuses(api: str, fields: dict[str, Any]) -> None:
    """v1 evalStandardConf.evalMode, v2 evalType and every evalMode, nested or not."""
    generation, detail = DETAILS[api]
    task = read(generation, detail(**fields))

    assert task.includes_manual
    assert verdict(task) == "manual_evaluation"


UNREADABLE: list[tuple[str, dict[str, Any], str]] = [
    ("v1", {"evalStandardConf": None}, "does not say which evaluation modes"),
    ("v1", {"evalStandardConf": "rule"}, "does not say which evaluation modes"),
    ("v1", {"evalStandardConf": {"evalMode": ["rule"]}}, "evalMode is not a string (list)"),
    ("v1", {"evalStandardConf": {"evalMode": 1}}, "evalMode is not a string (int)"),
    ("v1", {"evalStandardConf": {"evalMode": "rule"}, "evalMode": {"x": 1}}, "(dict)"),
    ("v2", {"evalType": None}, "no evalType"),
    ("v2", {"evalType": "hybrid"}, "unknown evalType 'hybrid'"),
    ("v2", {"evalType": ["auto"]}, "evalType is not a string (list)"),
    ("v2", {"evalMode": 7}, "evalMode is not a string (int)"),
    ("v2", {"evalStandardConf": {"evalMode": "rule,judge"}}, "unknown mode(s) 'judge'"),
    ("v2", {"evalStandardConf": {"evalMode": ""}}, "evalMode is empty"),
]


@pytest.mark.parametrize(("api", "fields", "why"), UNREADABLE)
def test_a_mode_field_present_but_unreadable_fails_closed(
    api: str, fields: dict[str, Any], why: str
) -> None:
    """Missing documented field, wrong type, unknown or empty modes: PrecheckError."""
    generation, detail = DETAILS[api]
    task = read(generation, detail(**fields))

    assert why in (task.undecided_reason or "")
    assert verdict(task) == "precheck"


# --- states, in the vocabulary of the generation that answered ----------------------------

V1_ONLY = sorted(set(_api.V1_STATE_KINDS) - set(_api.V2_STATE_KINDS))
V2_ONLY = sorted(set(_api.V2_STATE_KINDS) - set(_api.V1_STATE_KINDS))


@pytest.mark.parametrize(
    ("api", "state"), [*(("v2", s) for s in V1_ONLY), *(("v1", s) for s in V2_ONLY)]
)
def test_a_state_of_the_other_generation_fails_closed(api: str, state: str) -> None:
    """A v2 answer saying "Doing" (or v1 saying "Running") is not understood."""
    generation, detail = DETAILS[api]
    task = read(generation, detail(state=state))

    assert verdict(task) in ("precheck", "manual_evaluation")
    assert task.undecided_reason == f"unknown state {state!r} for the {api} API"


@pytest.mark.parametrize(
    ("api", "state", "expected"),
    [
        *(("v1", state, kind) for state, kind in _api.V1_STATE_KINDS.items()),
        *(("v2", state, kind) for state, kind in _api.V2_STATE_KINDS.items()),
    ],
)
def test_each_state_of_each_vocabulary(api: str, state: str, expected: str) -> None:
    """running → stop, manual → refused, stopped/finished → nothing to send."""
    generation, detail = DETAILS[api]
    outcome = verdict(read(generation, detail(state=state)))

    assert (
        outcome
        == {
            "running": "stop",
            "manual": "manual_evaluation",
            "stopped": "already_stopped",
            "finished": "not_running",
        }[expected]
    )


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("state", ["DoingWithManualReview", "manual", "RunningWithMANUAL"])
def test_an_unknown_state_that_names_manual_work_counts_as_manual(api: str, state: str) -> None:
    """Refused as manual (exit 3), not only as undecided."""
    generation, detail = DETAILS[api]
    assert verdict(read(generation, detail(state=state))) == "manual_evaluation"


def test_a_unit_in_manual_annotation_makes_the_task_manual() -> None:
    """v1 evalUnits[].state DoingWithManualBegin while the task reads Doing."""
    body = v1_detail(
        evalUnits=[{"modelId": 1, "state": "Doing"}, {"state": "DoingWithManualBegin"}]
    )
    assert verdict(read(V1, body)) == "manual_evaluation"


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("state", [None, 7, ["Doing"], "doing", "Stopped "])
def test_a_missing_or_unreadable_state_fails_closed(api: str, state: object) -> None:
    generation, detail = DETAILS[api]
    fields = {"state": state} if state is not None else {"state": None}
    assert verdict(read(generation, detail(**fields))) == "precheck"


# --- the task asked for, and nothing ambiguous ---------------------------------------------

IDENTITY: list[tuple[str, dict[str, Any], TaskId, str]] = [
    ("v1", {"evaluationIdStr": None}, TASK, "does not name the task (no evaluationIdStr)"),
    ("v1", {"evaluationIdStr": "ame-another01"}, TASK, "describes another task"),
    ("v1", {"evaluationIdStr": 41}, TASK, "describes another task"),
    ("v1", {"evaluationIdStr": [TASK]}, TASK, "describes another task (evaluationIdStr a"),
    ("v1", {"evaluationId": None}, 41, "does not name the task (no evaluationId)"),
    ("v1", {"evaluationId": 42}, 41, "describes another task (evaluationId '42')"),
    ("v1", {"evaluationId": "41"}, 41, "describes another task"),
    ("v1", {"evaluationId": True}, 1, "describes another task"),
    ("v2", {"taskId": None}, TASK, "does not name the task (no taskId)"),
    ("v2", {"taskId": "ame-another01"}, TASK, "describes another task"),
    ("v2", {"taskId": TASK.upper()}, TASK, "describes another task"),
]


@pytest.mark.parametrize(("api", "fields", "asked", "why"), IDENTITY)
def test_a_detail_that_does_not_name_the_task_asked_for_fails_closed(
    api: str, fields: dict[str, Any], asked: TaskId, why: str
) -> None:
    """Id missing, null, of another type, or another task's: PrecheckError."""
    generation, detail = DETAILS[api]
    task = read(generation, detail(**fields), asked)

    assert why in (task.undecided_reason or "")
    assert verdict(task) == "precheck"


def test_a_deprecated_integer_id_is_matched_by_the_integer_field() -> None:
    """Asked by 41: evaluationId must be 41; the string id is reported for folding."""
    task = read(V1, v1_detail(), 41)

    assert (verdict(task), task.task_id, task.id_str, task.id_int) == ("stop", "41", TASK, 41)


def test_the_ids_the_detail_reports_are_kept_for_folding() -> None:
    """`id_str`/`id_int` come from the detail, and do not take part in equality."""
    v1_task = read(V1, v1_detail())
    v2_task = read(V2, v2_detail())

    assert (v1_task.id_str, v1_task.id_int) == (TASK, 41)
    assert (v2_task.id_str, v2_task.id_int) == (TASK, None)
    assert read(V1, v1_detail(evaluationId=None)) == v1_task


def test_implausible_reported_ids_are_not_kept() -> None:
    """A malformed string id or a non-positive integer is no identity to fold on."""
    task = read(V1, v1_detail(evaluationId=-3), TASK)
    assert task.id_int is None
    assert read(V1, v1_detail(evaluationIdStr="ame-x y"), 41).id_str is None


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_detail_with_a_key_twice_fails_closed(api: str) -> None:
    """Strict JSON: `"evalMode"` twice is ambiguous, whichever value came last."""
    generation, detail = DETAILS[api]
    text = json.dumps(detail()).replace('"state":', '"state": "Doing", "state":', 1)
    body, duplicates = loads(text)
    assert duplicates
    assert isinstance(body, dict)

    task = read(generation, body, duplicate_keys=duplicates)

    assert "a key twice" in (task.undecided_reason or "")
    assert verdict(task) == "precheck"


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("body", [{}, {"result": None}, {"result": []}, {"result": "Doing"}])
def test_a_detail_without_a_result_object_fails_closed(api: str, body: dict[str, Any]) -> None:
    generation, _ = DETAILS[api]
    task = read(generation, body)
    assert task.undecided_reason == "the detail has no result object"
    assert verdict(task) == "precheck"


def test_a_detail_too_large_to_read_whole_fails_closed() -> None:
    """The walk is bounded; what it could not see it does not trust."""
    body = v1_detail(evalUnits=[{"a": i} for i in range(120_000)])
    assert verdict(read(V1, body)) == "precheck"


def test_nesting_deeper_than_any_real_detail_is_still_read() -> None:
    """Manual 500 levels down still refuses (the walk is iterative)."""
    nested: Any = {"evalMode": "manual"}
    for _ in range(500):
        nested = {"inner": [nested]}
    assert verdict(read(V1, v1_detail(evalUnits=nested))) == "manual_evaluation"


# --- secrets: learnt and removed as the detail is read -------------------------------------


def test_app_secrets_at_any_depth_are_learnt_and_masked_in_place() -> None:
    """appAk/appSk, app_sk, secretKey, password, accessToken: redactor learns, body masked."""
    secrets = ["AKvalue-0001", "SKvalue-0002", "SK-nested-0003", "pw-value-0004", "tok-0005"]
    body = v1_detail(
        evalStandardConf={"evalMode": "model", "appAk": secrets[0], "appSk": secrets[1]},
        evalUnits=[{"judge": {"app_sk": {"v": secrets[2]}, "Password": secrets[3]}}],
        extra={"accessToken": secrets[4], "maxTokens": 100},
    )
    redactor = Redactor()

    task = parse_detail(V1, body, TASK, "L1", redactor)

    dumped = json.dumps(body)
    assert [secret for secret in secrets if secret in dumped] == []
    assert [secret for secret in secrets if secret in repr(task)] == []
    assert redactor(" ".join(secrets)) == " ".join(["***"] * len(secrets))
    assert body["result"]["extra"]["maxTokens"] == 100  # not a secret: left alone
    assert verdict(task) == "stop"


# --- decide: allowed means a stop would be sent --------------------------------------------


@pytest.mark.parametrize(
    ("state", "allowed"),
    [("Doing", True), ("Stopping", False), ("Stopped", False), ("Done", False)],
)
def test_the_precheck_event_says_allowed_only_when_a_stop_would_be_sent(
    state: str, allowed: bool
) -> None:
    """`allowed` agrees with `status --json`'s `stop_allowed` (a verdict of stop)."""
    with capture_logs() as captured:
        outcome = decide(read(V1, v1_detail(state=state)))

    assert [(event["allowed"], event["verdict"]) for event in captured] == [
        (allowed, outcome.value)
    ]
    assert allowed is (outcome is Verdict.STOP)


def test_modes_are_shown_in_one_order_everywhere() -> None:
    """rule, model, manual — in the refusal and in the event."""
    with capture_logs() as captured, pytest.raises(ManualEvaluationError) as caught:
        decide(read(V1, v1_detail(evalStandardConf={"evalMode": "manual,model,rule"})))

    assert "(modes rule,model,manual, state Doing)" in str(caught.value)
    assert captured[0]["eval_modes"] == ["rule", "model", "manual"]


# --- a property over details --------------------------------------------------------------

MODE_FIELDS = (
    ("evalStandardConf", "evalMode"),
    (None, "evalMode"),
    (None, "evalType"),
    ("evalUnits", "evalMode"),
)
MODE_VALUES = st.sampled_from(
    (
        "rule",
        "model",
        "rule,model",
        "manual",
        "rule,manual",
        "MANUAL",
        "auto",
        "",
        None,
        3,
        ["manual"],
    )
)


@st.composite
def details(draw: st.DrawFn) -> tuple[str, dict[str, Any], bool]:
    """(api, detail, whether a manual signal is in it)."""
    api = draw(st.sampled_from(("v1", "v2")))
    _, detail = DETAILS[api]
    states = [*sorted(_api.STATE_KINDS[api]), "Doing", "Running"]
    body = detail(state=draw(st.sampled_from(states)))
    result = body["result"]
    for parent, key in draw(st.lists(st.sampled_from(MODE_FIELDS), max_size=3)):
        value = draw(MODE_VALUES)
        if parent == "evalUnits":
            result.setdefault("evalUnits", []).append({key: value})
        elif parent is not None:
            result.setdefault(parent, {})[key] = value
        else:
            result[key] = value
    conf = result.get("evalStandardConf", {})
    units = [unit.get("evalMode") for unit in result.get("evalUnits", [])]
    manual = any(
        isinstance(v, str) and "manual" in v.lower()
        for v in (result.get("evalMode"), result.get("evalType"), conf.get("evalMode"), *units)
    )
    kind = _api.STATE_KINDS[api].get(result["state"])
    return api, body, manual or kind == "manual"


@settings(max_examples=150, deadline=None)
@given(details(), st.booleans())
def test_no_detail_with_a_manual_signal_or_a_doubt_is_ever_cleared(
    case: tuple[str, dict[str, Any], bool], duplicated: bool
) -> None:
    """Property: stop only for a detail with no manual signal, readable in every field."""
    api, body, manual = case
    generation, _ = DETAILS[api]
    original = copy.deepcopy(body)

    task = read(generation, body, duplicate_keys=duplicated)
    outcome = verdict(task)

    if manual:
        assert outcome == "manual_evaluation"
    if outcome == "stop":
        assert not duplicated
        assert task.undecided_reason is None
        assert _api.STATE_KINDS[api][original["result"]["state"]] == "running"
