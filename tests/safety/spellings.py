"""Hypothesis strategies: the ways a request target, a stop body and a detail can be spelt.

Shared by the unit properties (`test_stopguard.py`) and the over-HTTP
property (`test_no_unchecked_stop.py`).
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from evalctl._base import _api

BASE_URL = "http://127.0.0.1:9"

#: Routes whose exact spelling is a stop, and routes that are not.
STOP_TARGETS = (
    (_api.V1_CANCEL_ROUTE, ""),
    (_api.V2_ROUTE, _api.V2_STOP_ACTION),
)
OTHER_TARGETS = (
    (_api.V1_DETAIL_ROUTE, ""),
    (_api.V2_ROUTE, _api.V2_DESCRIBE_ACTION),
    (_api.V2_ROUTE, _api.V2_LIST_ACTION),
)


ANOMALIES = (
    "none",
    "path-case",
    "path-escape",
    "path-escape-twice",
    "dot-segment",
    "back-segment",
    "empty-segment",
    "trailing-slash",
    "param",
    "extension",
    "prefix",
    "url-in-route",
    "no-leading-slash",
    "key-case",
    "key-escape",
    "value-case",
    "value-escape",
    "action-again",
    "describe-first",
    "semicolon",
    "plus",
    "hidden-query",
    "fragment",
    "no-query",
)


def _respelt(rng: random.Random, text: str, how: str) -> str:
    """`text` with at least one character in another case or escaped."""
    chars = list(text)
    picked = rng.sample(range(len(chars)), k=rng.randint(1, len(chars))) if chars else []
    for index in picked:
        ch = chars[index]
        if how == "case":
            chars[index] = ch.swapcase()
        elif how == "escape":
            digits = f"{ord(ch):02X}"
            chars[index] = "%" + (digits if rng.random() < 0.5 else digits.lower())
        else:
            chars[index] = f"%25{ord(ch):02X}"
    return "".join(chars)


@st.composite
def spellings(
    draw: st.DrawFn, targets: tuple[tuple[str, str], ...] = STOP_TARGETS + OTHER_TARGETS
) -> str:
    """A request target (a full URL or a bare route) for a stop or another route.

    One or two anomalies of the kinds a gateway may normalise away (case,
    escapes, dot/empty segments, ``;`` parameters, a prefix, an `Action`
    re-spelt, repeated or hidden, a fragment), or none.
    """
    path, action = draw(st.sampled_from(targets))
    kinds = draw(st.lists(st.sampled_from(ANOMALIES), min_size=1, max_size=2))
    rng = random.Random(draw(st.integers(0, 2**16)))
    segments = path.strip("/").split("/")
    key, value, pairs, separator = "Action", action, [], "&"
    lead, tail, fragment, query = "/", "", "", True
    for kind in kinds:
        at = rng.randrange(len(segments))
        if kind == "path-case":
            segments[at] = _respelt(rng, segments[at], "case")
        elif kind == "path-escape":
            segments[at] = _respelt(rng, segments[at], "escape")
        elif kind == "path-escape-twice":
            segments[at] = _respelt(rng, segments[at], "twice")
        elif kind == "dot-segment":
            segments.insert(at, ".")
        elif kind == "back-segment":
            segments[at:at] = ["zz", ".."]
        elif kind == "empty-segment":
            segments.insert(at, "")
        elif kind == "trailing-slash":
            tail = "/"
        elif kind == "param":
            segments[at] += ";x=1"
        elif kind == "extension":
            tail = ".json"
        elif kind == "prefix":
            segments.insert(0, "prefix")
        elif kind == "url-in-route":
            segments[0:0] = ["http:", "", "evil.example"]
        elif kind == "no-leading-slash":
            lead = ""
        elif kind == "key-case":
            key = _respelt(rng, key, "case")
        elif kind == "key-escape":
            key = _respelt(rng, key, "escape")
        elif kind == "value-case":
            value = _respelt(rng, value, "case")
        elif kind == "value-escape":
            value = _respelt(rng, value, "escape")
        elif kind == "action-again":
            pairs.append(f"Action={rng.choice((*OTHER_ACTIONS, action))}")
        elif kind == "describe-first":
            pairs.insert(0, f"Action={_api.V2_DESCRIBE_ACTION}")
        elif kind == "semicolon":
            separator = ";"
            pairs.append(f"Action={rng.choice((*OTHER_ACTIONS, action))}")
        elif kind == "plus":
            value = value.replace("Eval", "+Eval")
        elif kind == "hidden-query":
            segments[-1] += f"%3FAction%3D{value}"
        elif kind == "fragment":
            fragment = "#" + rng.choice(("x", "/../detail", ""))
        elif kind == "no-query":
            query = False
    spelt = lead + "/".join(segments) + tail
    if query:
        spelt += "?" + separator.join([f"{key}={value}", *pairs])
    spelt += fragment
    return (BASE_URL + spelt) if lead and draw(st.booleans()) else spelt


OTHER_ACTIONS = (_api.V2_DESCRIBE_ACTION, _api.V2_LIST_ACTION, "")


def id_values() -> st.SearchStrategy[Any]:
    """Values a stop body's id field might hold: ids, ints, lists, objects, bools."""
    return st.one_of(
        st.just("ame-checked001"),
        st.just("ame-other0001"),
        st.integers(min_value=-2, max_value=10**6),
        st.booleans(),
        st.none(),
        st.lists(st.just("ame-other0001"), max_size=2),
        st.fixed_dictionaries({"id": st.just("ame-other0001")}),
        st.text(max_size=6),
    )
