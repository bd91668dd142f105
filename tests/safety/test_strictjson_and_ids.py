"""Strict JSON for decisions, and the one way every message shows a task id."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalctl._base._errors import (
    InvalidTaskIdError,
    ManualEvaluationError,
    PrecheckError,
    TaskNotFoundError,
    UnsafeRequestError,
)
from evalctl._base._ids import shown_id, validate_task_id
from evalctl._base._strictjson import loads

# --- strict JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duplicates"),
    [
        ('{"a": 1, "b": 2}', False),
        ('{"a": 1, "a": 1}', True),
        ('{"result": {"evalMode": "manual", "evalMode": "rule"}}', True),
        ('[{"x": 1}, {"x": 2}]', False),
        ('[{"x": 1, "x": 2}]', True),
        ('{"a": {"b": {"c": 1, "c": 2}}}', True),
        ('{"a": 1, "A": 2}', False),
        ("[]", False),
        ('"text"', False),
    ],
)
def test_loads_reports_whether_any_object_had_a_key_twice(text: str, duplicates: bool) -> None:
    """At any depth; the value is what json.loads gives (the last one wins)."""
    assert loads(text) == (json.loads(text), duplicates)


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]", "{", "", "{'a': 1}"])
def test_loads_refuses_what_is_not_json(text: str) -> None:
    """NaN and Infinity are Python's, not JSON's; broken text is a ValueError too."""
    with pytest.raises(ValueError, match=r"is not JSON|Expecting|Extra data"):
        loads(text)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_loads_agrees_with_json_on_every_document_without_duplicates(value: object) -> None:
    """Property: same value as json.loads, and no duplicates claimed."""
    assert loads(json.dumps(value)) == (value, False)


# --- shown ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("ame-vwgs2ybhyhfv", "ame-vwgs2ybhyhfv"),
        (12345, "12345"),
        ("abc", "'abc'"),
        ("", "''"),
        ("ame-a\nb", r"'ame-a\nb'"),
        ("ame-a\tb\rc", r"'ame-a\tb\rc'"),
        ("\x1b[31mame-x", r"'\x1b[31mame-x'"),
        ("ame-\u202eevil", r"'ame-\u202eevil'"),
        (None, "None"),
        (["ame-a"], "['ame-a']"),
        (True, "True"),
    ],
)
def test_an_id_is_shown_escaped_and_quoted_unless_it_is_a_valid_one(
    raw: object, shown: str
) -> None:
    """Valid ids as they are; anything else quoted, with control characters escaped."""
    assert shown_id(raw) == shown


def test_a_long_id_is_cut_once() -> None:
    """A 300-character id: shown once, cut, with one ellipsis, on one line."""
    raw = "x" * 300
    shown = shown_id(raw)

    assert shown == "'" + "x" * 60 + "…'"
    message = str(InvalidTaskIdError(raw, "longer than 64 characters"))
    assert message == f"invalid task id {shown}: longer than 64 characters"
    assert message.count("x" * 60) == 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_every_shown_id_is_one_printable_line(raw: str) -> None:
    """Property: no newline, no control or invisible character, bounded length."""
    shown = shown_id(raw)

    assert shown.isprintable()
    assert len(shown) <= 64 * 10 + 3


@pytest.mark.parametrize(
    "error",
    [
        InvalidTaskIdError("ame-a\nb", "bad"),
        ManualEvaluationError("ame-a\nb", {"manual"}, "Doing", None),
        PrecheckError("ame-a\nb", "why"),
        TaskNotFoundError("ame-a\nb"),
        UnsafeRequestError("why", "ame-a\nb"),
    ],
)
def test_every_message_naming_an_id_uses_the_one_formatter(error: Exception) -> None:
    """The id appears once, escaped, and the message stays on one line."""
    message = str(error)

    assert "\n" not in message
    assert message.count(r"'ame-a\nb'") == 1


def test_the_integer_id_deprecation_names_the_id() -> None:
    """The warning says which id, and what to use instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert validate_task_id(4242, "v1") == 4242

    assert [str(w.message) for w in caught] == [
        "integer evaluation id 4242 is deprecated by Qianfan; use its 'ame-...' id (evalIdStr)"
        " instead"
    ]
    assert caught[0].category is DeprecationWarning


@pytest.mark.parametrize("raw", [0, -1, 2**63, True, 1.5, "ame-a b", "AME-abc", "ame-abc\n"])
def test_malformed_ids_are_refused_before_anything_is_sent(raw: object) -> None:
    with pytest.raises(InvalidTaskIdError) as caught:
        validate_task_id(raw)
    assert "\n" not in str(caught.value)
