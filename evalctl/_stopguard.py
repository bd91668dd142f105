"""Is this request an evaluation stop? Decided at the send boundary, here only.

`classify` reads the URL *as the HTTP client will send it* (after the same
normalisation `requests`/`urllib3` and `aiohttp`/`yarl` apply) plus the
`Action` query value; `check_stop_body` reads the body that will be sent.
The send boundary (`_transport`) calls both for every request and sends a
stop only with a clearance issued by the pre-check for that very task id.
A spelling that cannot be classified with certainty is refused (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from evalctl._errors import UnsafeRequestError
from evalctl._generations import Generation, stop_generation
from evalctl._ids import TaskId


def classify(url: str) -> Generation | None:
    """The generation whose stop `url` is, or None for any other request.

    Args:
        url: The absolute URL exactly as the HTTP client will send it
            (scheme, host, path and query — v2's `Action=` included).

    Raises:
        UnsafeRequestError: the spelling cannot be classified with certainty.
    """
    parts = urlsplit(url)
    route = parts.path + (f"?{parts.query}" if parts.query else "")
    return stop_generation(route, "")


def check_stop_body(generation: Generation, body: Mapping[str, Any]) -> TaskId:
    """The one task id a stop body names.

    Raises:
        UnsafeRequestError: any key besides the documented id field, or an id
            that is not a single valid id.
    """
    extra = sorted(str(key) for key in body if key != generation.id_field)
    if extra:
        raise UnsafeRequestError(f"the stop body has other keys than {generation.id_field!r}")
    value = body.get(generation.id_field)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnsafeRequestError(f"the stop body's {generation.id_field!r} is not one task id")
    return value
