"""Property tests (hypothesis): the evalMode parser, the id validator, and the safety rule.

The pure-function properties run `PURE_EXAMPLES` examples each. The safety
properties run over HTTP against one shared emulator (wiped before every
example): generated tasks — any mode string, any state of either API
generation, detail fields broken in any way — and generated fault sequences
on both routes, through `cancel_eval_task` (sync and async, v1 and v2, with
and without dry run) and through the drop-in `call_action` on the stop route.
"""

from __future__ import annotations

import asyncio
import re
import string
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

from core.support import APIS, ApiSpec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import evalctl
from evalctl._base import _api
from evalctl._base._ids import validate_task_id
from evalctl._safety._precheck import read_eval_modes
from evalctl.emulator import Emulator, Fault
from evalctl.emulator._state import includes_manual
from reliability.conftest import wiped

PURE_EXAMPLES = 200
CANCEL_EXAMPLES = 50
CALL_ACTION_EXAMPLES = 25
MANUAL_EXAMPLES = 25

PURE = settings(max_examples=PURE_EXAMPLES, deadline=None)
OVER_HTTP = settings(
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KNOWN_MODES = ("rule", "model", "manual")

# --- generated evalMode strings ------------------------------------------------------

#: Things a server (or a person typing a task config) might write for "manual".
MANUAL_LOOKALIKES = (
    "manual",
    "MANUAL",
    "Manual",
    "mAnUaL",
    " manual ",
    "\tmanual\n",
    "manual\u00a0",  # no-break space: NFKC makes it a plain space
    "ｍａｎｕａｌ",  # full-width
    "𝗺𝗮𝗻𝘂𝗮𝗹",  # mathematical sans-serif bold
    "ⓜⓐⓝⓤⓐⓛ",  # circled
    "m\u0430nual",  # Cyrillic а
    "M\u0410NUAL",  # Cyrillic А
    "manu\u0430l",
    "man\u200bual",  # zero-width space
    "\u200bmanual",
    "manual\u200d",  # zero-width joiner
    "\ufeffmanual",  # byte-order mark
    "manua\u0301l",  # combining accent
    "manuaI",  # capital i for l
    "manua1",
    "rnanual",  # r + n for m
    "ᴍᴀɴᴜᴀʟ",  # small capitals
    "manuals",
    "human",
    "人工",
)
OTHER_TOKENS = ("rule", "model", "Rule", " MODEL ", "judge", "auto", "", " ", "rule model")
SEPARATORS = (",", ", ", " ,", ",,", "，", ";", "|", " ", "\n", "、", "/")

tokens = st.one_of(
    st.sampled_from(MANUAL_LOOKALIKES),
    st.sampled_from(OTHER_TOKENS),
    st.text(max_size=6),
)


@st.composite
def mode_strings(draw: st.DrawFn) -> str:
    """A comma-ish joined list of mode-like tokens, with any separators."""
    parts = draw(st.lists(tokens, max_size=5))
    out = ""
    for index, part in enumerate(parts):
        if index:
            out += draw(st.sampled_from(SEPARATORS))
        out += part
    return out


#: Letters from other scripts that a reader takes for Latin ones, and i/1 for l.
_CONFUSABLES = str.maketrans(
    {
        "\u0430": "a",
        "\u0410": "a",
        "\u0435": "e",
        "\u043e": "o",
        "\u0440": "p",
        "\u0441": "c",
        "\u0443": "y",
        "\u0445": "x",
        "\u0456": "i",
        "\u04cf": "l",
        "\u1d0d": "m",
        "\u1d00": "a",
        "\u0274": "n",
        "\u1d1c": "u",
        "\u029f": "l",
        "1": "l",
        "i": "l",
    }
)


def looks_manual(raw: str) -> bool:
    """Whether a reader could see "manual" in `raw` (letters only, look-alikes folded)."""
    folded = unicodedata.normalize("NFKC", raw).casefold()
    letters = "".join(
        ch
        for ch in unicodedata.normalize("NFKD", folded)
        if unicodedata.category(ch).startswith("L")
    )
    letters = letters.translate(_CONFUSABLES).replace("rn", "m")
    return "manual" in letters


def _clean_modes(draw: st.DrawFn) -> tuple[str, frozenset[str]]:
    chosen = draw(st.lists(st.sampled_from(KNOWN_MODES), min_size=1, max_size=4))
    pad = st.sampled_from(("", " ", "  ", "\t"))
    spelled = [
        draw(pad) + "".join(draw(st.sampled_from((c, c.upper()))) for c in mode) + draw(pad)
        for mode in chosen
    ]
    return ",".join(spelled), frozenset(chosen)


@given(st.one_of(mode_strings(), st.text()))
@PURE
def test_a_clean_reading_only_ever_holds_known_modes(raw: str) -> None:
    """No problem reported ⇒ every mode is rule, model or manual, and there is one at least."""
    reading = read_eval_modes(raw)
    if reading.problem is None:
        assert reading.modes
        assert reading.modes <= set(KNOWN_MODES)
        assert ("manual" in reading.modes) == reading.includes_manual


@given(st.one_of(mode_strings(), st.text()))
@PURE
def test_anything_that_could_read_manual_is_manual_or_undecided(raw: str) -> None:
    """The parser never calls a manual-looking string a clean, non-manual reading."""
    reading = read_eval_modes(raw)
    if looks_manual(raw) or includes_manual(raw):
        assert reading.includes_manual or reading.problem is not None


@given(st.one_of(mode_strings(), st.text()))
@PURE
def test_what_the_cloud_calls_manual_the_parser_calls_manual(raw: str) -> None:
    """The emulator's (the cloud's) notion of manual always implies the parser's."""
    if includes_manual(raw):
        reading = read_eval_modes(raw)
        assert reading.includes_manual or reading.problem is not None
        if reading.problem is None:
            assert reading.includes_manual


@given(st.data())
@PURE
def test_known_modes_in_any_case_and_spacing_read_cleanly(data: st.DataObject) -> None:
    """`rule`, `model`, `manual` in any letter case, padded with blanks, read as themselves."""
    raw, modes = _clean_modes(data.draw)
    reading = read_eval_modes(raw)
    assert (modes, "manual" in modes, None) == (
        reading.modes,
        reading.includes_manual,
        reading.problem,
    )


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


@given(anything)
@PURE
def test_the_parser_takes_any_value_without_raising(raw: object) -> None:
    """Whatever the server puts in evalMode, the answer is a reading, never an exception."""
    reading = read_eval_modes(raw)
    assert reading.problem is not None or isinstance(raw, str)
    assert reading.problem is not None or reading.modes


# --- generated task ids ---------------------------------------------------------------

_ID = re.compile(r"ame-[A-Za-z0-9]+")
ALNUM = string.ascii_letters + string.digits
HOSTILE_ID_CHARS = (
    " ",
    "\t",
    "\n",
    "\x00",
    "\u200b",
    "\ufeff",
    "\u00a0",
    "-",
    "_",
    "/",
    ".",
    "%",
    "\u0430",  # Cyrillic а
    "ａ",  # full-width a
    "é",
    "١",  # Arabic-Indic digit one (isdigit() is true)
    "²",
)


@given(st.one_of(st.text(), st.text(alphabet=ALNUM + "-_ amé\u200b", max_size=70)))
@PURE
def test_an_accepted_id_is_ame_then_ascii_letters_and_digits(task_id: str) -> None:
    """Accepted ⇒ `ame-[A-Za-z0-9]+`, at most 64 characters; refused ⇒ InvalidTaskIdError."""
    candidate = "ame-" + task_id if task_id[:1].isalnum() else task_id
    for value in (task_id, candidate):
        try:
            accepted = validate_task_id(value)
        except evalctl.InvalidTaskIdError as error:
            refused_as_given = value is error.task_id
        else:
            assert value == accepted
            assert _ID.fullmatch(value)
            assert len(value) <= 64
            continue
        assert refused_as_given


@given(st.text(alphabet=ALNUM, min_size=1, max_size=60))
@PURE
def test_every_well_formed_id_is_accepted(suffix: str) -> None:
    """`ame-` plus 1..60 ASCII letters and digits is always accepted, on both generations."""
    assert "ame-" + suffix == validate_task_id("ame-" + suffix, "v1")
    assert "ame-" + suffix == validate_task_id("ame-" + suffix, "v2")


@given(
    st.text(alphabet=ALNUM, min_size=1, max_size=40),
    st.sampled_from(HOSTILE_ID_CHARS),
    st.data(),
)
@PURE
def test_one_foreign_character_anywhere_gets_an_id_refused(
    suffix: str, foreign: str, data: st.DataObject
) -> None:
    """A space, zero-width, look-alike or punctuation character anywhere in an id: refused."""
    valid = "ame-" + suffix
    at = data.draw(st.integers(min_value=4, max_value=len(valid)))
    bad = valid[:at] + foreign + valid[at:]
    for api in ("v1", "v2"):
        try:
            validate_task_id(bad, api)
        except evalctl.InvalidTaskIdError:
            continue
        raise AssertionError(f"accepted {bad!r}")


@given(anything)
@PURE
def test_an_id_of_any_other_type_is_refused_or_a_positive_int_on_v1(value: object) -> None:
    """Non-string ids: only a positive integer passes, only on v1, and it warns."""
    for api in ("v1", "v2"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                validate_task_id(value, api)  # type: ignore[arg-type]
            except evalctl.InvalidTaskIdError:
                continue
        assert isinstance(value, str) or (
            api == "v1" and type(value) is int and value > 0 and caught
        )


# --- the safety rule over HTTP ---------------------------------------------------------

UNKNOWN_STATES = ("Paused", "doing", "DOING", "Doing ", "", "Stopped\u200b", "Running2")
ALL_STATES = sorted(
    _api.RUNNING_STATES
    | _api.MANUAL_STATES
    | _api.STOPPED_STATES
    | _api.FINISHED_STATES
    | set(_api.V2_TO_V1_STATE)
)
NOT_A_STRING = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.sampled_from(["manual", "rule"]), max_size=2),
    st.fixed_dictionaries({"evalMode": st.just("rule")}),
)

#: Every fault kind; `slow` costs real time, so an example gets one at most.
ALL_FAULTS = tuple(fault.value for fault in Fault)
POLICY = evalctl.RetryPolicy(max_attempts=3, attempt_timeout=0.3)
SLOW_HOLD_S = 1.0


@dataclass(frozen=True)
class Modes:
    """A stored evalMode and what a careful reader must make of it."""

    raw: str
    #: "clean" (known modes only), "malformed" (the pre-check cannot decide) or "any".
    label: str


@st.composite
def stored_modes(draw: st.DrawFn) -> Modes:
    kind = draw(st.sampled_from(("clean", "clean", "malformed", "any")))
    if kind == "clean":
        raw, _ = _clean_modes(draw)
        return Modes(raw, "clean")
    if kind == "malformed":
        raw, _ = _clean_modes(draw)
        defect = draw(
            st.sampled_from(
                (
                    ",",
                    ",,rule",
                    ",judge",
                    ",m\u0430nual",
                    ",man\u200bual",
                    ",rnanual",
                    ", ",
                )
            )
        )
        return Modes(raw + defect if draw(st.booleans()) else defect + "," + raw, "malformed")
    return Modes(draw(mode_strings()), "any")


@dataclass(frozen=True)
class Breakage:
    """Overrides of the detail that never lie about the task, only make it unreadable."""

    fields: dict[str, Any]
    #: Whether the pre-check cannot decide from the detail any more.
    undecidable: bool
    #: The detail no longer shows the stored modes (v2 without evalMode: evalType decides).
    hides_modes: bool = False


@st.composite
def breakages(draw: st.DrawFn, api: ApiSpec) -> Breakage:
    # Half the details are intact: a broken one can only be refused, an intact
    # one is where a wrong "yes" would show.
    if draw(st.booleans()):
        return Breakage({}, undecidable=False)
    choice = draw(
        st.sampled_from(
            ("state", "state-gone", "conf", "mode-type", "other-task", "type", "v2-mode-gone")
        )
    )
    if choice == "state":
        value = draw(st.one_of(NOT_A_STRING, st.sampled_from(UNKNOWN_STATES)))
        return Breakage({"state": value}, undecidable=True)
    if choice == "state-gone":
        return Breakage({"state": None}, undecidable=True)
    if choice == "other-task":
        key = "evaluationIdStr" if api.name == "v1" else "taskId"
        other = draw(st.one_of(st.just("ame-someoneelse1"), st.integers(), NOT_A_STRING))
        return Breakage({key: other}, undecidable=True)
    if api.name == "v1":
        if choice == "conf":
            # Anything but an object holding an evalMode string (that would be a lie).
            value = draw(
                st.one_of(
                    st.none(),
                    st.integers(),
                    st.text(max_size=5),
                    st.lists(st.just("manual"), max_size=2),
                    st.just({"resultDatasetId": 1}),
                )
            )
            return Breakage({"evalStandardConf": value}, undecidable=True)
        if choice == "mode-type":
            return Breakage({"evalStandardConf": {"evalMode": draw(NOT_A_STRING)}}, True)
        return Breakage({}, undecidable=False)
    if choice in ("conf", "type"):
        value = draw(st.one_of(st.none(), NOT_A_STRING, st.sampled_from(("", "human", "AUTO "))))
        # "AUTO " normalises to auto: readable, so only an unknown type is undecidable.
        return Breakage({"evalType": value}, undecidable=value != "AUTO ")
    if choice == "mode-type":
        return Breakage({"evalMode": draw(NOT_A_STRING)}, undecidable=True)
    # Without any evalMode (v2 may carry one at the top and one in evalStandardConf),
    # v2's evalType (derived from the stored modes) still decides.
    return Breakage(
        {"evalMode": None, "evalStandardConf": None}, undecidable=False, hides_modes=True
    )


faults = st.lists(
    st.tuples(
        st.sampled_from(ALL_FAULTS),
        st.sampled_from(("detail", "stop")),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=3,
).map(lambda seq: [(fault, where, 1 if fault == "slow" else times) for fault, where, times in seq])
faults = faults.filter(lambda seq: sum(fault == "slow" for fault, _, _ in seq) <= 1)


@dataclass(frozen=True)
class Scenario:
    api: ApiSpec
    modes: Modes
    state: str
    breakage: Breakage
    faults: list[tuple[str, str, int]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    api = APIS[draw(st.sampled_from(("v1", "v2")))]
    # Weighted towards states a stop is sent in, where the rule matters most.
    state = draw(
        st.one_of(
            st.sampled_from(sorted(_api.RUNNING_STATES)),
            st.sampled_from(sorted(_api.MANUAL_STATES)),
            st.sampled_from(ALL_STATES),
            st.sampled_from(UNKNOWN_STATES[:4]),
        )
    )
    return Scenario(api, draw(stored_modes()), state, draw(breakages(api)), draw(faults))


def _seed(emulator: Emulator, scenario: Scenario) -> tuple[str, bool, bool]:
    """Add the task and queue the faults; return (id, truly manual, undecidable)."""
    api = scenario.api
    task_id = emulator.add_task(
        eval_mode=scenario.modes.raw,
        state=scenario.state,
        **api.overrides(**scenario.breakage.fields) if scenario.breakage.fields else {},
    )
    stored = emulator.task(task_id)
    # The emulator's own truth: what the cloud would refuse to stop.
    manual = includes_manual(stored.eval_mode) or stored.state in _api.MANUAL_STATES
    undecidable = (
        (scenario.modes.label == "malformed" and not scenario.breakage.hides_modes)
        or scenario.breakage.undecidable
        or scenario.state in UNKNOWN_STATES
    )
    for fault, where, times in scenario.faults:
        route = api.detail_fault_route if where == "detail" else api.stop_fault_route
        emulator.inject(fault, times=times, route=route, delay_s=SLOW_HOLD_S)
    return task_id, manual, undecidable


def _stop_attempts_follow_an_allowing_precheck(
    captured: list[dict[str, Any]], *, verdict_stop: bool
) -> None:
    """Before every stop attempt, the latest pre-check did not refuse (and said "stop").

    `allowed` is true only for the verdict "stop"; the drop-in also forwards a
    stop for a task the pre-check found stopped or finished (the server answers).
    """
    latest: dict[str, Any] | None = None
    for event in captured:
        if event["event"] == "evalctl.precheck":
            latest = event
        elif event["event"] == "qianfan.request" and event.get("purpose") == "stop":
            assert latest is not None, "a stop attempt without any pre-check"
            assert latest["verdict"] in ("stop", "already_stopped", "not_running"), (
                f"stop after a refusing pre-check {latest}"
            )
            assert latest["allowed"] is (latest["verdict"] == "stop")
            if verdict_stop:
                assert (latest["verdict"], latest["allowed"]) == ("stop", True)


def _applied_stops(emulator: Emulator, task_id: str) -> int:
    """Stop requests that reached the task (not swallowed by a fault)."""
    return sum(1 for record in emulator.stop_requests(task_id) if record.fault in (None, "slow"))


@given(
    scenario=scenarios(),
    entry=st.sampled_from(("cancel", "dry_run", "async_cancel", "wait")),
)
@settings(OVER_HTTP, max_examples=CANCEL_EXAMPLES)
def test_cancel_never_stops_a_manual_or_undecidable_task(
    shared_emulator: Emulator, scenario: Scenario, entry: str
) -> None:
    """Whatever the task and the faults: no stop for manual or undecidable tasks, ≤ 1 applied."""
    emulator = wiped(shared_emulator)
    task_id, manual, undecidable = _seed(emulator, scenario)
    kwargs: dict[str, Any] = {"api": scenario.api.name, "retry": POLICY}
    result: evalctl.CancelResult | None = None
    with capture_logs() as captured:
        try:
            if entry == "async_cancel":
                result = asyncio.run(evalctl.acancel_eval_task(task_id, **kwargs))
            else:
                result = evalctl.cancel_eval_task(
                    task_id, dry_run=entry == "dry_run", wait=entry == "wait", **kwargs
                )
        except evalctl.EvalctlError:
            pass

    stops = emulator.stop_requests(task_id)
    if manual or undecidable or entry == "dry_run":
        assert stops == []
    _stop_attempts_follow_an_allowing_precheck(captured, verdict_stop=True)
    assert _applied_stops(emulator, task_id) <= 1
    if result is not None and result.outcome == "cancelled":
        assert emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)
    if result is not None and result.outcome in ("already_stopped", "dry_run"):
        assert stops == []


@given(scenario=scenarios(), flavour=st.sampled_from(("sync", "async")))
@settings(OVER_HTTP, max_examples=CALL_ACTION_EXAMPLES)
def test_the_drop_in_never_sends_a_stop_for_a_manual_or_undecidable_task(
    shared_emulator: Emulator, scenario: Scenario, flavour: str
) -> None:
    """`call_action` on the stop route: the same rule, whatever the task and the faults."""
    emulator = wiped(shared_emulator)
    task_id, manual, undecidable = _seed(emulator, scenario)
    api = scenario.api
    args = (api.stop_route, api.stop_action, api.params(task_id))
    with capture_logs() as captured:
        try:
            if flavour == "sync":
                evalctl.call_action(*args, retry=POLICY)
            else:
                asyncio.run(evalctl.acall_action(*args, retry=POLICY))
        except evalctl.EvalctlError:
            pass

    if manual or undecidable:
        assert emulator.stop_requests(task_id) == []
    _stop_attempts_follow_an_allowing_precheck(captured, verdict_stop=False)


@st.composite
def manual_modes(draw: st.DrawFn) -> str:
    """Clean modes with manual among them, spelled as the cloud still reads it."""
    raw, modes = _clean_modes(draw)
    if "manual" in modes:
        return raw
    return draw(st.sampled_from(("manual", " MANUAL", "Manual "))) + "," + raw


@given(
    api_name=st.sampled_from(("v1", "v2")),
    modes=manual_modes(),
    state=st.sampled_from(sorted(_api.RUNNING_STATES)),
    fault_sequence=faults,
    entry=st.sampled_from(("cancel", "async_cancel", "call_action")),
)
@settings(OVER_HTTP, max_examples=MANUAL_EXAMPLES)
def test_a_running_task_with_manual_among_its_modes_never_gets_a_stop(
    shared_emulator: Emulator,
    api_name: str,
    modes: str,
    state: str,
    fault_sequence: list[tuple[str, str, int]],
    entry: str,
) -> None:
    """The case the rule exists for — stoppable by state, manual by mode — under any faults."""
    emulator = wiped(shared_emulator)
    api = APIS[api_name]
    scenario = Scenario(api, Modes(modes, "clean"), state, Breakage({}, False), fault_sequence)
    task_id, manual, _ = _seed(emulator, scenario)
    assert manual
    with capture_logs() as captured:
        try:
            if entry == "cancel":
                evalctl.cancel_eval_task(task_id, api=api_name, retry=POLICY)
            elif entry == "async_cancel":
                asyncio.run(evalctl.acancel_eval_task(task_id, api=api_name, retry=POLICY))
            else:
                evalctl.call_action(
                    api.stop_route, api.stop_action, api.params(task_id), retry=POLICY
                )
        except (evalctl.ManualEvaluationError, evalctl.PrecheckError, evalctl.RetryExhaustedError):
            pass
    assert emulator.stop_requests(task_id) == []
    assert all(
        event["allowed"] is False for event in captured if event["event"] == "evalctl.precheck"
    )
