"""The stop guard: a stop is recognised with certainty, or the request is refused.

`classify` reads the URL as the HTTP client sends it; these tests also feed
it the raw route, the URL `requests` and `yarl` would make of it, and check
it against the emulator's gateway reading (`evalctl.emulator._gateway`):
whatever some gateway could route to a stop is never passed as "not a stop".
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

import pytest
import requests
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalctl._base import _api
from evalctl._base._errors import UnsafeRequestError
from evalctl._safety._generations import V1, V2, Generation, stop_generation
from evalctl._safety._stopguard import Clearance, check_stop_body, classify, guard
from evalctl.emulator._gateway import is_stop, read_target
from safety.spellings import BASE_URL, id_values, spellings

B = BASE_URL


def _classified(url: str) -> str | None:
    """ "v1"/"v2"/None, or "refused"."""
    try:
        found = classify(url)
    except UnsafeRequestError:
        return "refused"
    return None if found is None else found.name


# --- classify: the exact spellings --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{B}{_api.V1_CANCEL_ROUTE}?Action=", "v1"),
        (f"{B}{_api.V1_CANCEL_ROUTE}", "v1"),  # Model.stop_evaluation_task sends no query
        (f"{_api.V1_CANCEL_ROUTE}?Action=", "v1"),  # a bare route reads the same
        (f"{B}/prefix{_api.V1_CANCEL_ROUTE}", "v1"),  # behind a base-URL path
        (f"{B}{_api.V1_CANCEL_ROUTE}?Action=StopEvalTask&x=1", "v1"),  # v1 ignores the query
        (f"{B}/v2/eval?Action=StopEvalTask", "v2"),
        ("https://qianfan.baidubce.com/v2/eval?Action=StopEvalTask", "v2"),
        (f"{B}{_api.V1_DETAIL_ROUTE}?Action=", None),
        (f"{B}/v2/eval?Action=DescribeEvalTask", None),
        (f"{B}/v2/eval?Action=DescribeEvalTasks", None),
        (f"{B}/v2/eval?Action=DescribeEvalTask&Action=DescribeEvalTask", None),
        (f"{B}/v2/eval", None),
        (f"{B}/v2/eval/?Action=DescribeEvalTask", None),
        (f"{B}/V2/Eval?Action=DescribeEvalTask", None),
        (f"{B}/wenxinworkshop/modelrepo/eval/cancelled", None),
        (f"{B}/v2/evaluation?Action=StopEvalTask", None),
        (f"{B}/v2/dataset//x?Action=Foo%20Bar", None),
    ],
)
def test_classify_is_certain_about_plain_spellings(url: str, expected: str | None) -> None:
    """The stop routes spelt exactly are stops; plain other routes are not."""
    assert expected == _classified(url)


REFUSED = [
    # case
    "/wenxinworkshop/modelrepo/eval/Cancel",
    "/WENXINWORKSHOP/modelrepo/eval/cancel",
    "/V2/eval?Action=StopEvalTask",
    "/v2/eval?Action=stopevaltask",
    "/v2/eval?action=StopEvalTask",
    "/v2/eval?ACTION=StopEvalTask",
    # escapes, also of unreserved characters, also twice over
    "/wenxinworkshop/modelrepo/eval/%63ancel",
    "/wenxinworkshop/modelrepo/eval/%2563ancel",
    "/wenxinworkshop/modelrepo/eval/%u0063ancel",
    "/v2/eval?Action=Stop%45valTask",
    "/v2/eval?%41ction=StopEvalTask",
    "/v2/eval%3FAction%3DStopEvalTask",
    "/wenxinworkshop/modelrepo/eval/detail%2f..%2fcancel",
    # dot segments, empty segments, a trailing slash, parameters, extensions
    "/wenxinworkshop/modelrepo/eval/./cancel",
    "/wenxinworkshop/modelrepo/eval/x/../cancel",
    "/wenxinworkshop/modelrepo/eval/detail/..;/cancel",
    "/wenxinworkshop//modelrepo/eval/cancel",
    "//wenxinworkshop/modelrepo/eval/cancel",
    "/wenxinworkshop/modelrepo/eval/cancel/",
    "/v2/eval/?Action=StopEvalTask",
    "/wenxinworkshop/modelrepo/eval/cancel;jsessionid=1",
    "/wenxinworkshop/modelrepo/eval/cancel.json",
    "/v2/eval;Action=StopEvalTask?Action=DescribeEvalTask",
    # Action twice, hidden behind ";" or "+"
    "/v2/eval?Action=DescribeEvalTask&Action=StopEvalTask",
    "/v2/eval?Action=StopEvalTask&Action=StopEvalTask",
    "/v2/eval?Action=DescribeEvalTask;Action=StopEvalTask",
    "/v2/eval?Action=Stop+EvalTask",
    # a full URL as the route, a route without its leading slash
    "/http://evil.example/wenxinworkshop/modelrepo/eval/cancel",
    "http://127.0.0.1:9http://e/wenxinworkshop/modelrepo/eval/cancel",
    "wenxinworkshop/modelrepo/eval/cancel",
]


@pytest.mark.parametrize("route", REFUSED)
@pytest.mark.parametrize("form", ["url", "route"])
def test_classify_refuses_what_could_be_a_stop_but_is_not_spelt_as_one(
    route: str, form: str
) -> None:
    """Case, escapes, dot/empty segments, odd or repeated Action, a URL in the route."""
    url = f"{B}{route}" if form == "url" and route.startswith("/") else route

    with pytest.raises(UnsafeRequestError) as caught:
        classify(url)

    message = str(caught.value)
    assert message.startswith("refusing to send request: ")
    assert "\n" not in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "url",
    [
        f"{B}{_api.V1_CANCEL_ROUTE}#frag",
        f"{B}{_api.V1_DETAIL_ROUTE}#/../cancel",
        f"{B}/wenxinworkshop/modelrepo/eval/can cel",
        f"{B}/wenxinworkshop/modelrepo/eval/cancel\t",
        f"{B}/wenxinworkshop/modelrepo/eval/canc\u00e9l",
        f"{B}/a\\..\\wenxinworkshop/modelrepo/eval/cancel",
        f"{B}{_api.V1_CANCEL_ROUTE}\r\nX: y",
    ],
)
def test_classify_refuses_a_url_no_client_would_send(url: str) -> None:
    """A fragment, whitespace, controls, a backslash or non-ASCII: never "as sent"."""
    with pytest.raises(UnsafeRequestError, match="no HTTP client sends"):
        classify(url)


@pytest.mark.parametrize("url", [None, b"/v2/eval", 7])
def test_classify_refuses_what_is_not_a_string(url: Any) -> None:
    """Only a str is a URL (bytes would be sent as something else)."""
    with pytest.raises(UnsafeRequestError, match="not a string"):
        classify(url)


def test_classify_refuses_a_route_escaped_beyond_reading() -> None:
    """Escapes nested more deeply than any reader would undo: refused, not guessed."""
    deep = "c"
    for _ in range(10):
        deep = deep.replace("%", "%25") if "%" in deep else "%63"
    with pytest.raises(UnsafeRequestError):
        classify(f"{B}/wenxinworkshop/modelrepo/eval/{deep}ancel")


# --- classify against what the clients send and the gateway reads -----------------------


def _client_urls(target: str) -> list[str]:
    """The URL `requests` and `yarl` would send for `target` (a full URL or a bare route)."""
    url = target if target.startswith("http") else BASE_URL + target
    sent: list[str] = []
    with contextlib.suppress(requests.exceptions.RequestException, ValueError):
        sent.append(requests.Request("POST", url).prepare().url or "")
    with contextlib.suppress(ValueError):
        sent.append(str(yarl.URL(url)))
    return sent


def _gateway_says_stop(url: str) -> bool:
    """Whether the emulator's gateway would route `url` (its request target) to a stop."""
    target = re.sub(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*", "", url)
    view = read_target(target)
    return is_stop(view.route, (view.action, *view.actions))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spellings())
def test_no_spelling_a_gateway_routes_to_a_stop_passes_as_something_else(target: str) -> None:
    """Raw, and as `requests`/`yarl` send it: a gateway's stop is a stop or refused."""
    for url in (target, *_client_urls(target)):
        if _gateway_says_stop(url):
            assert _classified(url) in ("v1", "v2", "refused"), url


@settings(max_examples=60, deadline=None)
@given(spellings())
def test_the_tolerant_check_covers_everything_the_guard_would_call_a_stop(target: str) -> None:
    """`stop_generation` (which routes a drop-in call to the pre-check) misses no stop."""
    for url in (target, *_client_urls(target)):
        if _classified(url) in ("v1", "v2"):
            # Refused (UnsafeRequestError) before anything is sent is as safe.
            with contextlib.suppress(UnsafeRequestError):
                assert stop_generation(url, "") is not None, url


# --- stop bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(("generation", "field"), [(V1, "id"), (V2, "taskId")])
def test_a_stop_body_is_exactly_the_documented_field_with_one_id(
    generation: Generation, field: str
) -> None:
    """`{id: "ame-…"}` on v1, `{taskId: "ame-…"}` on v2."""
    assert check_stop_body(generation, {field: "ame-abc123"}) == "ame-abc123"


def test_a_v1_stop_body_may_carry_the_deprecated_integer_id() -> None:
    """The integer id is still one id on v1 (and not on v2)."""
    assert check_stop_body(V1, {"id": 12345}) == 12345
    with pytest.raises(UnsafeRequestError, match="integer ids are not accepted"):
        check_stop_body(V2, {"taskId": 12345})


BAD_BODIES: list[tuple[Generation, Any, str]] = [
    (V1, {"id": "ame-a1", "taskId": "ame-b2"}, "also 'taskId'"),
    (V2, {"taskId": "ame-a1", "id": "ame-b2"}, "also 'id'"),
    (V1, {"id": "ame-a1", "evaluationId": 7}, "also 'evaluationId'"),
    (V1, {"id": "ame-a1", "ids": ["ame-b2"]}, "also 'ids'"),
    (V1, {"id": "ame-a1", "x": 1, "y": 2, "z": 3, "w": 4}, "and 1 more"),
    (V2, {"id": "ame-a1"}, "also 'id'"),
    (V1, {}, "has no 'id'"),
    (V1, {"id": ["ame-a1"]}, "got list"),
    (V1, {"id": {"id": "ame-a1"}}, "got dict"),
    (V1, {"id": True}, "not one task id"),
    (V1, {"id": None}, "got NoneType"),
    (V1, {"id": "ame-a1 "}, "whitespace"),
    (V1, {"id": "ame-a1\nX"}, r"'ame-a1\\nX'"),
    (V1, {"id": 0}, "positive"),
    (V1, {"id": 1.0}, "got float"),
    (V2, ["ame-a1"], "not a JSON object"),
    (V2, None, "not a JSON object"),
]


@pytest.mark.parametrize(("generation", "body", "why"), BAD_BODIES)
def test_any_other_stop_body_is_refused_in_one_line(
    generation: Generation, body: Any, why: str
) -> None:
    """Other keys, a second id, nested/list/bool/null values, malformed ids."""
    with pytest.raises(UnsafeRequestError, match=why) as caught:
        check_stop_body(generation, body)

    assert "\n" not in str(caught.value)


def test_a_stop_body_key_that_only_looks_like_the_field_is_another_key() -> None:
    """A str subclass equal to "id" is not the documented key."""

    class Sly(str):
        __slots__ = ()

    with pytest.raises(UnsafeRequestError):
        check_stop_body(V1, {Sly("id"): "ame-a1"})


def test_a_stop_id_that_only_looks_like_a_string_is_refused() -> None:
    """A str subclass could print as one id and compare equal to another."""

    class Sly(str):
        __slots__ = ()

        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with pytest.raises(UnsafeRequestError, match="got Sly"):
        check_stop_body(V1, {"id": Sly("ame-a1")})


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(("id", "taskId", "evaluationId", "ids", "task_id", "x")),
        id_values(),
        max_size=3,
    ),
    st.sampled_from((V1, V2)),
)
def test_a_stop_body_passes_only_when_it_names_exactly_one_valid_id(
    body: dict[str, Any], generation: Generation
) -> None:
    """Property: the checked id is the body's only value, under the documented key."""
    try:
        task_id = check_stop_body(generation, body)
    except UnsafeRequestError:
        return
    assert {generation.id_field: task_id} == body
    assert type(task_id) in (str, int)


# --- the choke point ------------------------------------------------------------------------

STOP_URL = {"v1": f"{B}{_api.V1_CANCEL_ROUTE}?Action=", "v2": f"{B}/v2/eval?Action=StopEvalTask"}


@pytest.mark.parametrize("generation", [V1, V2], ids=["v1", "v2"])
def test_guard_sends_a_cleared_stop_once_with_a_fresh_body(generation: Generation) -> None:
    """The body sent is built from the clearance, never the caller's object; single use."""
    caller = {generation.id_field: "ame-checked1"}
    clearance = Clearance(generation, "ame-checked1")

    sent = guard(STOP_URL[generation.name], caller, clearance)
    caller[generation.id_field] = "ame-another1"

    assert {generation.id_field: "ame-checked1"} == sent
    assert sent is not caller
    assert clearance.used
    with pytest.raises(UnsafeRequestError, match="already used"):
        guard(STOP_URL[generation.name], {generation.id_field: "ame-checked1"}, clearance)


@pytest.mark.parametrize("generation", [V1, V2], ids=["v1", "v2"])
def test_guard_refuses_a_stop_without_a_matching_clearance(generation: Generation) -> None:
    """No clearance, one for another task, for the other generation, or a look-alike."""
    url = STOP_URL[generation.name]
    body = {generation.id_field: "ame-checked1"}
    other = V2 if generation is V1 else V1

    class FakeClearance(Clearance):
        __slots__ = ()

    cases: list[tuple[Any, str]] = [
        (None, "no pre-check cleared it"),
        (Clearance(generation, "ame-another1"), "cleared ame-another1"),
        (Clearance(other, "ame-checked1"), f"on {other.name}"),
        (FakeClearance(generation, "ame-checked1"), "not a Clearance"),
    ]
    for clearance, why in cases:
        with pytest.raises(UnsafeRequestError, match=why) as caught:
            guard(url, body, clearance)
        assert str(caught.value).startswith("refusing to send stop of ame-checked1: ")
        if isinstance(clearance, Clearance):
            assert not clearance.used


def test_guard_tells_an_integer_clearance_from_a_string_one() -> None:
    """12 cleared is not "12": the types must match as well."""
    with pytest.raises(UnsafeRequestError):
        guard(STOP_URL["v1"], {"id": 12}, Clearance(V1, "ame-12"))
    assert guard(STOP_URL["v1"], {"id": 12}, Clearance(V1, 12)) == {"id": 12}


def test_guard_passes_other_requests_as_a_copy() -> None:
    """Not a stop: a copy of the body, with or without a clearance, which stays unused."""
    body = {"id": "ame-any1"}
    clearance = Clearance(V1, "ame-any1")

    sent = guard(f"{B}{_api.V1_DETAIL_ROUTE}?Action=", body, clearance)

    assert (body, False) == (sent, clearance.used)
    assert sent is not body


def test_a_clearance_names_one_valid_id_of_a_known_generation() -> None:
    """Clearances cannot be made for malformed ids."""
    for bad in ("", "ame-", ["ame-a1"], True, None):
        with pytest.raises(UnsafeRequestError):
            Clearance(V1, bad)  # type: ignore[arg-type]
    with pytest.raises(UnsafeRequestError):
        Clearance(V2, 5)


def test_a_clearance_is_used_once_even_by_racing_threads() -> None:
    """Two threads sending the same cleared stop: exactly one gets the body."""
    clearance = Clearance(V1, "ame-checked1")
    results: list[object] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        try:
            results.append(guard(STOP_URL["v1"], {"id": "ame-checked1"}, clearance))
        except UnsafeRequestError as error:
            results.append(error)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(isinstance(result, dict) for result in results) == 1
    assert sum(isinstance(result, UnsafeRequestError) for result in results) == 7


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (f"{B}/wenxinworkshop/modelrepo/eval/Cancel", {"id": "ame-named1"}),
        (f"{B}/v2/eval?action=StopEvalTask", {"taskId": "ame-named1"}),
    ],
)
def test_a_refused_spelling_names_the_task_in_its_one_line(url: str, body: dict[str, Any]) -> None:
    """The refusal says which task and why, with or without a clearance."""
    for clearance in (None, Clearance(V1, "ame-named1")):
        with pytest.raises(UnsafeRequestError) as caught:
            guard(url, body, clearance)

        message = str(caught.value)
        assert message.startswith("refusing to send stop of ame-named1: its route ")
        assert "\n" not in message
