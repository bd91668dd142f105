"""The pure functions the behaviour rests on: ids, modes, verdicts, backoff, policy, routes."""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from typing import Any

import pytest

from evalctl import (
    APICallError,
    AuthenticationError,
    ConfigurationError,
    EvalTask,
    HTTPStatusError,
    InvalidResponseError,
    InvalidTaskIdError,
    ManualEvaluationError,
    PrecheckError,
    RetryPolicy,
    TransportError,
)
from evalctl._base import _api
from evalctl._base._ids import validate_task_id
from evalctl._base._redact import Redactor
from evalctl._core._failures import plain_error
from evalctl._core._retry import backoff, is_transient
from evalctl._safety._generations import V1, V2, parse_detail, stop_generation
from evalctl._safety._precheck import Verdict, decide, read_eval_modes
from evalctl._wire._transport import Failure, _retry_after

# --- task ids -----------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["ame-vwgs2ybhyhfv", "ame-A1", "ame-" + "a" * 60])
def test_accepts_well_formed_ids(task_id: str) -> None:
    """`ame-` plus ASCII letters and digits, up to 64 characters."""
    assert validate_task_id(task_id) == task_id
    assert validate_task_id(task_id, "v2") == task_id


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "ame-",
        "abc-123",
        "AME-abc1",
        " ame-abc1",
        "ame-abc1\n",
        "ame-ab_c",
        "ame-ab c",
        "ame-abc/../x",
        "ame-аbc",  # Cyrillic а
        "ame-ａｂｃ",  # full-width letters
        "ame-" + "a" * 61,
        None,
        1.5,
        True,
        False,
        b"ame-abc1",
        ["ame-abc1"],
        0,
        -3,
        2**63,
    ],
)
def test_refuses_malformed_ids(task_id: object) -> None:
    """Anything else is an InvalidTaskIdError (also a ValueError) naming the id."""
    with pytest.raises(InvalidTaskIdError) as caught:
        validate_task_id(task_id)

    assert isinstance(caught.value, ValueError)
    assert caught.value.task_id == task_id
    assert caught.value.reason


def test_integer_ids_are_deprecated_on_v1_and_refused_on_v2() -> None:
    """The old integer ids still work on v1 with a warning; v2 never knew them."""
    with pytest.warns(DeprecationWarning, match="ame-"):
        assert validate_task_id(42) == 42
    with pytest.raises(InvalidTaskIdError, match="v2"):
        validate_task_id(42, "v2")


# --- evalMode -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "modes", "manual"),
    [
        ("rule", {"rule"}, False),
        ("rule,model", {"rule", "model"}, False),
        (" Rule , MODEL ", {"rule", "model"}, False),
        ("model,manual,rule", {"model", "manual", "rule"}, True),
        ("MANUAL", {"manual"}, True),
        ("ｍａｎｕａｌ", {"manual"}, True),  # full-width folds (NFKC)
        ("rule,rule", {"rule"}, False),
    ],
)
def test_reads_clear_eval_modes(raw: str, modes: set[str], manual: bool) -> None:
    """Comma-joined, trimmed, lower-cased, NFKC-normalised; manual anywhere counts."""
    reading = read_eval_modes(raw)

    assert (reading.modes, reading.includes_manual, reading.problem) == (
        frozenset(modes),
        manual,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "manual"),
    [
        (None, False),
        ("", False),
        (" ", False),
        (",", False),
        ("rule,,model", False),
        ("rule,", False),
        ("rule,judge", False),
        ("mаnual", False),  # Cyrillic а: unknown, not manual, and so undecidable
        ("manual,judge", True),
        ("manual,", True),
        (1, False),
        (["manual"], False),
        ({"mode": "rule"}, False),
    ],
)
def test_flags_unclear_eval_modes(raw: object, manual: bool) -> None:
    """Missing, empty, empty tokens, unknown tokens, non-strings: a problem to fail closed on."""
    reading = read_eval_modes(raw)

    assert reading.problem
    assert reading.includes_manual is manual


# --- the verdict --------------------------------------------------------------------


def _task(
    state: str | None, modes: set[str], manual: bool, undecided: str | None = None
) -> EvalTask:
    return EvalTask("ame-t1", "t", state, frozenset(modes), manual, "L1", undecided)


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        *((s, Verdict.STOP) for s in sorted(_api.RUNNING_STATES)),
        *((s, Verdict.ALREADY_STOPPED) for s in sorted(_api.STOPPED_STATES)),
        *((s, Verdict.NOT_RUNNING) for s in sorted(_api.FINISHED_STATES)),
    ],
)
def test_the_verdict_for_each_state_of_an_automatic_task(state: str, verdict: Verdict) -> None:
    """Running → stop; Stopping/Stopped → already stopped; finished → not running."""
    assert decide(_task(state, {"rule"}, False)) is verdict


@pytest.mark.parametrize("state", [*sorted(_api.RUNNING_STATES), *sorted(_api.MANUAL_STATES)])
def test_manual_is_refused_in_every_state(state: str) -> None:
    """includes_manual wins over everything, also over an otherwise unclear detail."""
    with pytest.raises(ManualEvaluationError) as caught:
        decide(_task(state, {"manual"}, True, "unknown mode"))

    assert (caught.value.state, caught.value.log_id) == (state, "L1")


@pytest.mark.parametrize("state", [None, "Paused", "doing", "Stopped "])
def test_an_unknown_state_is_undecidable(state: str | None) -> None:
    """States are matched exactly; anything unknown fails closed."""
    with pytest.raises(PrecheckError):
        decide(_task(state, {"rule"}, False))


def test_an_undecided_detail_is_refused_even_when_finished() -> None:
    """A reason to doubt the detail blocks every verdict, not only a stop."""
    with pytest.raises(PrecheckError, match="no modes"):
        decide(_task(_api.V1_DONE, set(), False, "no modes"))


@pytest.mark.parametrize("generation", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize(
    "body",
    [{}, {"log_id": "1"}, {"result": None}, {"result": []}, {"result": "Doing"}],
    ids=["empty", "no result", "null", "list", "string"],
)
def test_a_detail_without_a_result_object_is_undecidable(
    generation: Any, body: dict[str, Any]
) -> None:
    """No `result` object: the parse says why, and the verdict is PrecheckError."""
    task = parse_detail(generation, body, "ame-t1", None, Redactor())

    assert task.undecided_reason == "the detail has no result object"
    with pytest.raises(PrecheckError):
        decide(task)


def test_parsing_a_detail_remembers_the_app_secrets_to_mask() -> None:
    """appAk/appSk seen in a detail are masked in anything redacted afterwards."""
    redactor = Redactor()
    body = {
        "result": {
            "state": "Doing",
            "evalStandardConf": {"evalMode": "model", "appAk": "ak-123456", "appSk": "sk-654321"},
        }
    }

    task = parse_detail(V1, body, "ame-t1", "L", redactor)

    assert "ak-123456" not in repr(task)
    assert redactor("echo ak-123456 and sk-654321") == "echo *** and ***"


# --- the stop routes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "action", "expected"),
    [
        (_api.V1_CANCEL_ROUTE, "", "v1"),
        ("/wenxinworkshop/modelrepo/eval/cancel/", "", "v1"),
        ("//wenxinworkshop//modelrepo/eval/cancel", "", "v1"),
        ("/WENXINWORKSHOP/modelrepo/eval/Cancel", "x", "v1"),
        (" /wenxinworkshop/modelrepo/eval/cancel ", "", "v1"),
        ("/wenxinworkshop/modelrepo/eval/cancel?x=1", "", "v1"),
        (_api.V2_ROUTE, _api.V2_STOP_ACTION, "v2"),
        ("/v2/eval", " stopevaltask ", "v2"),
        ("/V2/EVAL/", "StopEvalTask", "v2"),
        ("/v2/eval?Action=StopEvalTask", "", "v2"),
        ("/v2/eval?action=stopevaltask", "DescribeEvalTask", "v2"),
        (_api.V1_DETAIL_ROUTE, "", None),
        (_api.V2_ROUTE, _api.V2_DESCRIBE_ACTION, None),
        (_api.V2_ROUTE, "", None),
        ("/v2/evaluation", "StopEvalTask", None),
        ("/wenxinworkshop/modelrepo/eval/cancelled", "", None),
    ],
)
def test_recognises_the_stop_route_however_it_is_spelled(
    route: str, action: str, expected: str | None
) -> None:
    """The drop-in guards every spelling that could reach a stop, and nothing else."""
    found = stop_generation(route, action)

    assert (found.name if found else None) == expected


# --- retry: transient, backoff, Retry-After ------------------------------------------


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        (Failure("timeout", "t"), True),
        (Failure("connection", "c"), True),
        *((Failure("http", "h", http_status=s), True) for s in (408, 429, 500, 502, 503, 504)),
        *((Failure("http", "h", http_status=s), False) for s in (400, 401, 403, 404, 501)),
        *(
            (Failure("envelope", "e", error_code=c), True)
            for c in (2, 4, 18, 336000, 336100, 500000)
        ),
        *((Failure("envelope", "e", error_code=c), False) for c in (17, 19, 14, 100, 336003)),
        (Failure("envelope", "e", error_code="18"), False),
        (Failure("not_json", "n"), False),
        (Failure("malformed", "m"), False),
    ],
)
def test_only_transient_failures_are_retried(failure: Failure, transient: bool) -> None:
    """Timeouts, connection errors, 408/429/5xx gateways, and codes 2/4/18/336000/336100/500000."""
    assert is_transient(failure, RetryPolicy()) is transient


def test_the_transient_sets_are_configurable() -> None:
    """A policy can add or remove statuses and codes."""
    policy = RetryPolicy(
        transient_http_statuses=frozenset({400}), transient_error_codes=frozenset({17})
    )

    assert is_transient(Failure("http", "h", http_status=400), policy)
    assert not is_transient(Failure("http", "h", http_status=503), policy)
    assert is_transient(Failure("envelope", "e", error_code=17), policy)


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (Failure("timeout", "t"), TransportError),
        (Failure("connection", "c"), TransportError),
        (Failure("http", "h", http_status=401), AuthenticationError),
        (Failure("http", "h", http_status=403), AuthenticationError),
        (Failure("http", "h", http_status=503), HTTPStatusError),
        (Failure("envelope", "e", error_code=18), APICallError),
        (Failure("not_json", "n"), InvalidResponseError),
        (Failure("malformed", "m"), InvalidResponseError),
    ],
)
def test_every_failure_kind_maps_to_a_public_error(
    failure: Failure, error_type: type[Exception]
) -> None:
    """The boundary turns each kind of failure into exactly one typed error."""
    assert type(plain_error(failure)) is error_type


def test_jittered_backoff_stays_within_its_bounds() -> None:
    """The n-th wait lies in [0, min(max_wait, initial_wait * 2**(n-1))]."""
    policy = RetryPolicy(initial_wait=0.5, max_wait=4.0)
    rng = random.Random(7)

    for retry in range(1, 80):
        ceiling = min(4.0, 0.5 * 2 ** (retry - 1))
        waits = [backoff(policy, retry, None, rng) for _ in range(50)]
        assert all(0.0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling / 2  # really spread, not stuck at 0


def test_backoff_without_jitter_is_exponential_and_capped() -> None:
    """Plain exponential: initial_wait, doubled each time, never above max_wait."""
    policy = RetryPolicy(initial_wait=0.5, max_wait=3.0, jitter=False)
    rng = random.Random(0)

    assert [backoff(policy, n, None, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(3.0, 3.0), (100.0, 5.0), (0.0, 0.5), (0.2, 0.5)]
)
def test_retry_after_is_a_floor_capped_at_max_wait(retry_after: float, expected: float) -> None:
    """The server's Retry-After lifts the wait, up to max_wait."""
    policy = RetryPolicy(initial_wait=0.5, max_wait=5.0, jitter=False)

    assert backoff(policy, 1, retry_after, random.Random(0)) == expected


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no extra wait
    ],
)
def test_parses_retry_after(header: str | None, seconds: float | None) -> None:
    """Delta-seconds or an HTTP date; nonsense is ignored."""
    assert _retry_after(header) == seconds


def test_parses_a_retry_after_date_in_the_future() -> None:
    """An HTTP date counts from now."""
    header = email.utils.formatdate(time.time() + 60, usegmt=True)

    parsed = _retry_after(header)

    assert parsed is not None
    assert 57.0 <= parsed <= 60.5


# --- RetryPolicy --------------------------------------------------------------------


def test_the_default_policy_is_the_contracts() -> None:
    """5 attempts, 0.5 s initial wait, 20 s max wait, 60 s deadline, jitter on."""
    policy = RetryPolicy()

    assert (
        policy.max_attempts,
        policy.initial_wait,
        policy.max_wait,
        policy.deadline,
        policy.jitter,
    ) == (5, 0.5, 20.0, 60.0, True)


def test_the_policy_is_frozen() -> None:
    """Settings cannot change under a running operation."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    "settings",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"max_attempts": 1.5},
        {"max_attempts": True},
        {"max_attempts": "3"},
        {"initial_wait": -0.1},
        {"initial_wait": float("nan")},
        {"max_wait": float("inf")},
        {"max_wait": "20"},
        {"deadline": 0},
        {"deadline": -1},
        {"attempt_timeout": 0},
        {"attempt_timeout": True},
    ],
)
def test_refuses_a_nonsensical_policy(settings: dict[str, Any]) -> None:
    """A ConfigurationError (a ValueError) at construction, not a surprise later."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**settings)


def test_env_overrides_attempts_and_deadline() -> None:
    """EVALCTL_MAX_ATTEMPTS and EVALCTL_DEADLINE_S override the defaults, blanks ignored."""
    policy = RetryPolicy.from_env({"EVALCTL_MAX_ATTEMPTS": " 7 ", "EVALCTL_DEADLINE_S": "12.5"})

    assert (policy.max_attempts, policy.deadline) == (7, 12.5)
    assert RetryPolicy.from_env({"EVALCTL_MAX_ATTEMPTS": "", "EVALCTL_DEADLINE_S": " "}) == (
        RetryPolicy()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EVALCTL_MAX_ATTEMPTS", "x"),
        ("EVALCTL_MAX_ATTEMPTS", "0"),
        ("EVALCTL_MAX_ATTEMPTS", "2.5"),
        ("EVALCTL_DEADLINE_S", "soon"),
        ("EVALCTL_DEADLINE_S", "0"),
        ("EVALCTL_DEADLINE_S", "-3"),
        ("EVALCTL_DEADLINE_S", "nan"),
        ("EVALCTL_DEADLINE_S", "inf"),
    ],
)
def test_a_bad_env_override_names_the_variable(name: str, value: str) -> None:
    """A typo in the environment fails loudly, saying which variable."""
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy.from_env({name: value})
