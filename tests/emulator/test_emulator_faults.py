"""Injected faults, random faults, the QPS limit and latency — as the real SDK meets them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import requests
from qianfan.errors import APIError, RequestError
from qianfan.resources.console.utils import call_action
from qianfan.resources.typing import QfResponse

from evalctl._base import _api
from evalctl.emulator import TRANSIENT_FAULTS, Emulator, Fault, pointed_at
from evalctl.emulator._console import QpsWindow

DETAIL = _api.V1_DETAIL_ROUTE
CANCEL = _api.V1_CANCEL_ROUTE
STOP_V2 = "/v2/eval?Action=StopEvalTask"
DESCRIBE_V2 = "/v2/eval?Action=DescribeEvalTask"

# qianfan's decorator types call_action without its keyword options.
call: Callable[..., QfResponse] = cast(Callable[..., QfResponse], call_action)


def detail(task_id: str, **kwargs: Any) -> QfResponse:
    return call(DETAIL, "", {"id": task_id}, **kwargs)


def cancel(task_id: str, **kwargs: Any) -> QfResponse:
    return call(CANCEL, "", {"id": task_id}, **kwargs)


def describe_v2(task_id: str) -> QfResponse:
    return call(_api.V2_ROUTE, "DescribeEvalTask", {"taskId": task_id})


def stop_v2(task_id: str) -> QfResponse:
    return call(_api.V2_ROUTE, "StopEvalTask", {"taskId": task_id})


def outcome(action: Callable[[], object]) -> str:
    """What the SDK made of one call, as a short comparable string."""
    try:
        action()
    except APIError as error:
        return f"code {error.error_code}"
    except RequestError as error:
        return f"http {error.status_code}"
    except requests.RequestException as error:
        return type(error).__name__
    return "ok"


@pytest.fixture
def task_id(qianfan_emulator: Emulator) -> str:
    return qianfan_emulator.add_task("ame-target", "rule")


@pytest.mark.parametrize(
    ("fault", "status"),
    [("http_429", 429), ("http_500", 500), ("http_502", 502), ("http_503", 503), ("http_504", 504)],
)
def test_http_faults_raise_request_error_with_the_status(
    qianfan_emulator: Emulator, task_id: str, fault: str, status: int
) -> None:
    """HTTP faults reach the SDK as RequestError carrying the status."""
    qianfan_emulator.inject(fault)

    with pytest.raises(RequestError) as caught:
        detail(task_id)

    assert caught.value.status_code == status
    assert detail(task_id).body["result"]["state"] == "Doing"  # one time only


def test_http_429_carries_retry_after(qianfan_emulator: Emulator, task_id: str) -> None:
    """429 says Retry-After: 1 by default, or whatever the test asks for."""
    qianfan_emulator.inject("http_429")
    qianfan_emulator.inject("http_429", retry_after=7)
    seen = []
    for _ in range(2):
        with pytest.raises(RequestError) as caught:
            detail(task_id)
        assert caught.value.headers is not None
        seen.append(caught.value.headers["Retry-After"])

    assert seen == ["1", "7"]


def test_http_502_is_an_html_page(qianfan_emulator: Emulator, task_id: str) -> None:
    """502 comes as gateways send it: text/html, not JSON."""
    qianfan_emulator.inject(Fault.HTTP_502)

    with pytest.raises(RequestError) as caught:
        detail(task_id)

    assert caught.value.headers is not None
    assert caught.value.headers["Content-Type"].startswith("text/html")
    assert "<html>" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("code_2", 2),
        ("code_4", 4),
        ("code_18", 18),
        ("code_336100", 336100),
        ("code_500000", 500000),
    ],
)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_code_faults_raise_api_error_with_the_code(
    qianfan_emulator: Emulator, task_id: str, fault: str, code: int, api: str
) -> None:
    """Envelope faults are HTTP 200 with error_code; v1 carries a log_id."""
    qianfan_emulator.inject(fault)

    with pytest.raises(APIError) as caught:
        detail(task_id) if api == "v1" else describe_v2(task_id)

    assert caught.value.error_code == code
    if api == "v1":
        assert caught.value.req_id.isdigit()
    (record,) = qianfan_emulator.requests
    assert (200, fault) == (record.status, record.fault)


def test_reset_closes_the_connection_without_an_answer(
    qianfan_emulator: Emulator, task_id: str
) -> None:
    """`reset` is a TCP RST: the SDK raises requests' ConnectionError; recorded as status 0."""
    qianfan_emulator.inject("reset")

    with pytest.raises(requests.exceptions.ConnectionError):
        cancel(task_id)

    (record,) = qianfan_emulator.requests
    assert (record.status, record.fault) == (0, "reset")


def test_slow_times_the_client_out_but_the_stop_takes_effect(
    qianfan_emulator: Emulator, task_id: str
) -> None:
    """`slow` applies the request, then holds the answer past the client's timeout."""
    qianfan_emulator.inject("slow", delay_s=2.0)

    with pytest.raises(requests.exceptions.ReadTimeout):
        cancel(task_id, request_timeout=0.2)

    snapshot = qianfan_emulator.task(task_id)
    assert snapshot.state in {"Stopping", "Stopped"}
    assert snapshot.stop_requests == 1


def test_slow_uses_the_emulator_default_delay() -> None:
    """Without delay_s, `slow` holds for the emulator's slow_s."""
    with Emulator(slow_s=2.0) as emulator, pointed_at(emulator):
        task_id = emulator.add_task()
        emulator.inject("slow")

        with pytest.raises(requests.exceptions.ReadTimeout):
            detail(task_id, request_timeout=0.2)


def test_not_json_is_a_request_error(qianfan_emulator: Emulator, task_id: str) -> None:
    """A 200 whose body is not JSON makes the SDK raise RequestError (no status)."""
    qianfan_emulator.inject("not_json")

    with pytest.raises(RequestError, match="invalid json"):
        detail(task_id)


@pytest.mark.parametrize(
    "fault",
    [kind for kind in Fault if kind not in {Fault.SLOW, Fault.MISSING_FIELDS}],
)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_failing_faults_never_apply_a_stop(
    qianfan_emulator: Emulator, task_id: str, fault: Fault, api: str
) -> None:
    """Every fault but `slow` leaves the task untouched by the stop it swallowed."""
    qianfan_emulator.inject(fault)

    assert outcome(lambda: cancel(task_id) if api == "v1" else stop_v2(task_id)) != "ok"

    snapshot = qianfan_emulator.task(task_id)
    assert (snapshot.state, snapshot.stop_requests) == ("Doing", 0)
    assert len(qianfan_emulator.stop_requests(task_id)) == 1


def test_missing_fields_strips_the_v1_detail(qianfan_emulator: Emulator, task_id: str) -> None:
    """v1 detail loses `state` and `evalStandardConf` but keeps its envelope."""
    qianfan_emulator.inject("missing_fields")

    body = detail(task_id).body

    assert body["log_id"].isdigit()
    assert body["result"]["evaluationIdStr"] == task_id
    assert not {"state", "evalStandardConf"} & body["result"].keys()


def test_missing_fields_strips_the_v2_describe(qianfan_emulator: Emulator, task_id: str) -> None:
    """v2 DescribeEvalTask loses `state` and `evalType`."""
    qianfan_emulator.inject("missing_fields")

    result = describe_v2(task_id).body["result"]

    assert result["taskId"] == task_id
    assert not {"state", "evalType"} & result.keys()


def test_missing_fields_on_stops_answers_without_result_and_applies_nothing(
    qianfan_emulator: Emulator, task_id: str
) -> None:
    """v1 cancel loses result.result, v2 stop loses result; neither stops the task."""
    qianfan_emulator.inject("missing_fields", times=2)

    v1_body = cancel(task_id).body
    v2_body = stop_v2(task_id).body

    assert "result" not in v1_body["result"]
    assert "result" not in v2_body
    assert "requestId" in v2_body
    assert qianfan_emulator.task(task_id).state == "Doing"


def test_route_narrowing_spares_other_routes(qianfan_emulator: Emulator, task_id: str) -> None:
    """A fault narrowed to the cancel route lets detail through and hits the cancel."""
    qianfan_emulator.inject("http_503", route=CANCEL)

    assert outcome(lambda: detail(task_id)) == "ok"
    assert outcome(lambda: describe_v2(task_id)) == "ok"
    assert outcome(lambda: cancel(task_id)) == "http 503"


def test_action_narrowing_picks_one_v2_action(qianfan_emulator: Emulator, task_id: str) -> None:
    """`/v2/eval?Action=StopEvalTask` faults stops only; `/v2/eval` faults any v2 action."""
    qianfan_emulator.inject("code_336100", route=STOP_V2)
    qianfan_emulator.inject("code_500000", route=_api.V2_ROUTE)

    results = [
        outcome(lambda: detail(task_id)),
        outcome(lambda: describe_v2(task_id)),
        outcome(lambda: stop_v2(task_id)),
        outcome(lambda: describe_v2(task_id)),
    ]

    assert results == ["ok", "code 500000", "code 336100", "ok"]


def test_times_and_fifo_order(qianfan_emulator: Emulator, task_id: str) -> None:
    """Faults hit `times` requests each, oldest injection first, then requests pass."""
    qianfan_emulator.inject("http_500", times=2)
    qianfan_emulator.inject("code_18")

    results = [outcome(lambda: detail(task_id)) for _ in range(4)]

    assert results == ["http 500", "http 500", "code 18", "ok"]
    assert qianfan_emulator.faults_pending == 0


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("explode",), {}),
        (("http_500",), {"times": 0}),
        (("http_500",), {"route": "/wenxinworkshop/modelrepo/eval/cancle"}),
        (("http_500",), {"route": "/v2/eval?Action="}),
        (("slow",), {"delay_s": -1}),
    ],
)
def test_inject_refuses_what_could_never_match(args: tuple[str], kwargs: dict[str, Any]) -> None:
    """Typos in fault names and routes fail at the call, not silently later."""
    with pytest.raises(ValueError, match=r"\w"):
        Emulator().inject(*args, **kwargs)


def run_soak(seed: int, n: int = 20) -> list[str]:
    with Emulator(fault_rate=0.5, seed=seed) as emulator, pointed_at(emulator):
        task_id = emulator.add_task()
        for _ in range(n):
            outcome(lambda: detail(task_id))
        return [record.fault or "-" for record in emulator.requests]


def test_random_faults_with_a_seed_are_reproducible() -> None:
    """Same seed, same sequence of faults; only transient kinds by default."""
    first, second = run_soak(seed=11), run_soak(seed=11)

    assert first == second
    assert {"-"} < set(first) <= {"-", *TRANSIENT_FAULTS}


def test_fault_rate_can_change_after_construction(qianfan_emulator: Emulator, task_id: str) -> None:
    """set_fault_rate switches random faults on (with chosen kinds) and off."""
    qianfan_emulator.set_fault_rate(1.0, kinds=["code_4"], seed=3)
    faulted = [outcome(lambda: detail(task_id)) for _ in range(3)]
    qianfan_emulator.set_fault_rate(0.0)

    assert faulted == ["code 4"] * 3
    assert outcome(lambda: detail(task_id)) == "ok"


def test_qps_limit_answers_code_18_beyond_the_limit() -> None:
    """Requests beyond the limit within one second get code 18 and are not applied."""
    with Emulator(qps_limit=3) as emulator, pointed_at(emulator):
        task_id = emulator.add_task()
        results = [outcome(lambda: cancel(task_id)) for _ in range(3)]
        results += [outcome(lambda: detail(task_id)) for _ in range(3)]
        emulator.set_qps_limit(None)
        results.append(outcome(lambda: detail(task_id)))
        snapshot = emulator.task(task_id)
        faults = [record.fault for record in emulator.requests]

    assert results == ["ok", "ok", "ok", "code 18", "code 18", "code 18", "ok"]
    assert faults == [None, None, None, "qps_limit", "qps_limit", "qps_limit", None]
    assert snapshot.stop_requests == 3


def test_qps_window_slides() -> None:
    """The window forgets requests older than one second (unit level, no sleeping)."""
    window = QpsWindow(2)

    admitted = [window.admit(now) for now in (10.0, 10.1, 10.5, 11.05, 11.2, 11.3)]

    assert admitted == [True, True, False, True, True, False]


def test_latency_delays_every_answer() -> None:
    """latency_s holds answers: a client with a shorter timeout times out."""
    with Emulator(latency_s=2.0) as emulator, pointed_at(emulator):
        task_id = emulator.add_task()
        with pytest.raises(requests.exceptions.ReadTimeout):
            detail(task_id, request_timeout=0.2)
        emulator.set_latency(0.0)
        assert detail(task_id, request_timeout=5).body["result"]["evaluationIdStr"] == task_id


@pytest.fixture
def no_faults_leak(qianfan_emulator: Emulator) -> Iterator[None]:
    yield
    assert qianfan_emulator.faults_pending == 0


@pytest.mark.usefixtures("no_faults_leak")
def test_unknown_routes_do_not_consume_faults(qianfan_emulator: Emulator, task_id: str) -> None:
    """A 404 leaves the queued fault for the next real route."""
    qianfan_emulator.inject("http_500")

    assert outcome(lambda: call("/wenxinworkshop/modelrepo/eval/nope", "", {})) == "http 404"
    assert outcome(lambda: detail(task_id)) == "http 500"
