"""How a gateway reads a request target before it picks a route.

Gateways normalise the path before routing: nginx decodes escapes, resolves
dot segments and merges slashes; Tomcat drops ``;`` parameters. The emulator
routes and records by that reading, so a stop is served as a stop however it
was spelt. Whether a request *could* be a stop (`is_stop`) is judged more
leniently still — any case of the route, any `Action` key or value that reads
as the stop — so that tests see every stop a gateway somewhere might take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote

from evalctl._base import _api

_ACTION_KEY: Final = "Action"


@dataclass(frozen=True)
class GatewayView:
    """A request target as the gateway reads it.

    Attributes:
        route: The normalised path (case kept, as nginx routes).
        action: The `Action` it routes by: the first ``Action`` value,
            decoded; "" when there is none.
        actions: The value of every key that reads as ``Action`` in any
            case, decoded, in order.
    """

    route: str
    action: str
    actions: tuple[str, ...]


def read_target(target: str) -> GatewayView:
    """Normalise a request target (path and query) as a lenient gateway would."""
    path, _, query = target.partition("#")[0].partition("?")
    segments: list[str] = []
    for raw in unquote(path, errors="replace").split("/"):
        segment = raw.split(";", 1)[0]
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    pairs = parse_qsl(query, keep_blank_values=True)
    action = next((value for key, value in pairs if key == _ACTION_KEY), "")
    actions = tuple(value for key, value in pairs if _folded(key) == _folded(_ACTION_KEY))
    return GatewayView("/" + "/".join(segments), action, actions)


def is_stop(route: str, actions: tuple[str, ...]) -> bool:
    """Whether some gateway could route this to a stop.

    The v1 cancel route, or ``/v2/eval`` with any `Action` that reads as
    StopEvalTask; the route in any case.
    """
    if _folded(route) == _folded(_api.V1_CANCEL_ROUTE):
        return True
    stop = _folded(_api.V2_STOP_ACTION)
    return _folded(route) == _folded(_api.V2_ROUTE) and any(
        _folded(action) == stop for action in actions
    )


def _folded(text: str) -> str:
    return text.strip().casefold()
