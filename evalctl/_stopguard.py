"""Is this request an evaluation stop? Decided at the send boundary, here only.

`classify` reads the URL *as the HTTP client will send it* (after the same
normalisation `requests`/`urllib3` and `aiohttp`/`yarl` apply) plus the
`Action` query value; `check_stop_body` reads the body that will be sent.
The send boundary (`_transport`) calls both for every request and sends a
stop only with a clearance issued by the pre-check for that very task id.
A spelling that cannot be classified with certainty is refused (fail closed).
"""

from __future__ import annotations

import threading
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


class Clearance:
    """Permission, issued after a pre-check allowed it, to send one stop for one task.

    Single use: `guard` consumes it, so a resend needs a fresh pre-check and
    a fresh clearance.
    """

    __slots__ = ("_lock", "_used", "generation", "task_id")

    def __init__(self, generation: Generation, task_id: TaskId) -> None:
        self.generation = generation
        self.task_id = task_id
        self._used = False
        self._lock = threading.Lock()

    def _consume(self) -> None:
        with self._lock:
            if self._used:
                raise UnsafeRequestError("its clearance was already used", str(self.task_id))
            self._used = True

    def __repr__(self) -> str:
        return f"Clearance({self.generation.name}, {self.task_id!r}, used={self._used})"


def guard(url: str, body: Mapping[str, Any], clearance: Clearance | None) -> dict[str, Any]:
    """The body to send for a request to `url`: the choke point every request passes.

    Not a stop: a shallow copy of `body`. A stop: only with an unused
    `clearance` for the same generation and task, and then a fresh body built
    from the cleared id (never the caller's object).

    Raises:
        UnsafeRequestError: a stop without a matching clearance, a stop body
            that is not exactly one id, or a URL that cannot be classified.
    """
    generation = classify(url)
    if generation is None:
        return dict(body)
    task_id = check_stop_body(generation, body)
    if clearance is None:
        raise UnsafeRequestError("no pre-check cleared it", str(task_id))
    if clearance.generation is not generation or clearance.task_id != task_id:
        raise UnsafeRequestError(
            f"the pre-check cleared {clearance.task_id!r} on {clearance.generation.name}",
            str(task_id),
        )
    clearance._consume()
    return generation.body(clearance.task_id)
