"""JSON for decisions: parsed as the standard says, with duplicate keys reported.

`json.loads` keeps the last of two equal keys without a word, so a detail that
says ``"evalMode": "manual"`` and then ``"evalMode": "rule"`` reads as rule.
`loads` parses with the C parser and an `object_pairs_hook` that only counts
(about 1.6x the plain parse of a detail, some 15 µs: nothing next to signing
and a round trip), and refuses what is not JSON at all (NaN, Infinity).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["loads"]


def loads(text: str) -> tuple[object, bool]:
    """Parse one JSON document.

    Args:
        text: The whole document.

    Returns:
        The value, and whether any object in it had the same key twice (the
        value then holds the last one, as `json.loads` would).

    Raises:
        ValueError: not JSON (`json.JSONDecodeError`), or NaN/Infinity.
        RecursionError: nested too deeply for the parser.
    """
    duplicates = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates = True
        return obj

    value = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=_not_json)
    return value, duplicates


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")
