"""Is this request an evaluation stop? Decided at the send boundary, here only.

`classify` reads the URL *as the HTTP client will send it* (after the
normalisation `requests`/`urllib3` and `aiohttp`/`yarl` apply: dot segments
resolved, escapes of unreserved characters decoded, the fragment dropped)
plus its `Action` query value; `check_stop_body` reads the body that will be
sent. The send boundary calls `guard` for every request and sends a stop only
with a clearance issued by the pre-check for that very task id, with a body
built here from the cleared id.

Certain or refused: the stop routes are recognised only when spelt exactly
(``/wenxinworkshop/modelrepo/eval/cancel``; ``/v2/eval`` with one
``Action=StopEvalTask``), behind any base-URL prefix. Any other spelling that
a lenient gateway could still read as a stop — other case, escapes (also of
unreserved characters), dot or empty segments, a trailing slash, ``;``
parameters, an `Action` given twice or in another case, a full URL inside
the route — is refused with `UnsafeRequestError` rather than guessed. Spellings
that no reading turns into a stop pass as what they are.
"""

from __future__ import annotations

import contextlib
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

from evalctl._base import _api
from evalctl._base._errors import UnsafeRequestError
from evalctl._base._ids import TaskId, shown_id, task_id_problem
from evalctl._safety._generations import V1, V2, Generation
from evalctl._safety._precheck import fold

# What a client puts on the wire unescaped (RFC 3986 unreserved, sub-delims,
# ":", "@", "/", "?", "%"). No "#": clients never send a fragment, so a URL
# holding one is not "as sent". No whitespace, controls, "\" or non-ASCII.
_URL_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,/:;=?@\[\]%]*")
_MAX_URL: Final = 16_384
_SCHEME_AUTHORITY: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\\]*")
# A path with nothing to normalise: segments of letters, digits, "-" and "_".
_CLEAN_PATH: Final = re.compile(r"(?:/[A-Za-z0-9_\-]+)*")
_CLEAN_PAIR: Final = re.compile(r"[A-Za-z0-9_\-.]+(?:=[A-Za-z0-9_\-.]*)?")
_CLEAN_ACTION: Final = re.compile(r"[A-Za-z0-9]*")
_V1_STOP: Final = tuple(_api.V1_CANCEL_ROUTE.strip("/").split("/"))
_V2_PATH: Final = tuple(_api.V2_ROUTE.strip("/").split("/"))
_ACTION_KEY: Final = "Action"
_STOP_LETTERS: Final = _api.V2_STOP_ACTION.casefold()
_PERCENT: Final = re.compile(r"%(?:u[0-9A-Fa-f]{4}|[0-9A-Fa-f]{2})")
_PERCENT_BYTES: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_PERCENT_U: Final = re.compile(r"%u([0-9A-Fa-f]{4})")
# Overlong UTF-8 (%c0%af for "/"): broken decoders read it as the ASCII it spells.
_OVERLONG: Final = re.compile(rb"[\xc0\xc1][\x80-\xbf]")
_MAX_DECODE_ROUNDS: Final = 8
_NOT_LETTERS: Final = re.compile(r"[^a-z0-9]+")
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def classify(url: str) -> Generation | None:
    """The generation whose stop `url` is, or None for any other request.

    Args:
        url: The absolute URL exactly as the HTTP client will send it
            (scheme, host, path and query — v2's `Action=` included). A bare
            route (``/v2/eval?Action=...``) is read the same way.

    Raises:
        UnsafeRequestError: the spelling cannot be classified with certainty.
    """
    if type(url) is not str:
        raise UnsafeRequestError(f"its URL is not a string ({type(url).__name__})")
    if len(url) > _MAX_URL:
        raise UnsafeRequestError(f"its URL is longer than {_MAX_URL} characters")
    if not _URL_CHARS.fullmatch(url):
        raise UnsafeRequestError(
            f"its URL {shown_id(url)} holds characters no HTTP client sends as they are"
            " (a fragment '#', whitespace, controls, '\\' or non-ASCII)"
        )
    path, query = _path_and_query(url)
    if _CLEAN_PATH.fullmatch(path):
        segments = tuple(path.split("/")[1:])
        if segments[-len(_V1_STOP) :] == _V1_STOP:
            return V1
        if segments[-len(_V2_PATH) :] == _V2_PATH:
            action = _canonical_action(query)
            if action == _api.V2_STOP_ACTION:
                return V2
            if action is not None and _letters(action) != _STOP_LETTERS:
                return None  # one plain Action, and no spelling of the stop: certain
        elif not _ends_with(tuple(s.casefold() for s in segments), (_V1_STOP, _V2_PATH)):
            return None  # plain letters, and no case of them is a stop route
    found = stop_like(url, "")
    if found is None:
        return None
    raise UnsafeRequestError(
        f"its route {shown_id(path + ('?' + query if query else ''))} could be read as the"
        f" {found.name} stop route but is not spelt exactly as it"
        " (case, escapes, dot or empty segments, a repeated or odd Action); refusing to guess"
    )


def stop_like(route: str, action: str) -> Generation | None:
    """The generation whose stop `route` + `action` could be under a lenient reading.

    Reads as the most lenient gateway would: escapes decoded (repeatedly,
    ``%uXXXX`` and overlong UTF-8 too), NFKC and case folded, invisible
    characters dropped, ``\\`` as ``/``, ``;`` parameters, dot and empty
    segments and file extensions removed, any base-URL prefix, an `Action` in
    any case, in the query, in the path's parameters or in `action`.

    Raises:
        UnsafeRequestError: escapes nested too deeply to read.
    """
    path, query = _path_and_query(route)
    path_text = _lenient_text(path)
    extra_queries: list[str] = []
    if "?" in path_text:  # an escaped "?" a gateway may decode before splitting
        path_text, hidden = path_text.split("?", 1)
        extra_queries.append(hidden)
    candidates = [path_text]
    if "#" in path_text:  # an escaped "#": a gateway may cut there
        candidates.append(path_text.split("#", 1)[0])
    found: Generation | None = None
    for candidate in candidates:
        segments, parameters = _lenient_segments(candidate)
        extra_queries.extend(parameters)
        if segments[-len(_V1_STOP) :] == _V1_STOP:
            return V1
        if segments[-len(_V2_PATH) :] == _V2_PATH:
            found = V2
    if found is None:
        return None
    actions = [_letters(_lenient_text(action))] if action else []
    for text in (query, *extra_queries):
        actions.extend(_lenient_actions(text))
    return V2 if _STOP_LETTERS in actions else None


def check_stop_body(generation: Generation, body: Mapping[str, Any]) -> TaskId:
    """The one task id a stop body names.

    The body must be exactly ``{id_field: one valid id}`` (v1 ``id``, v2
    ``taskId``): an exact `str` key, an exact `str` (or, on v1, positive
    `int`) value; read once, so a caller changing it meanwhile cannot slip
    another id in.

    Raises:
        UnsafeRequestError: any other key, a second id, or a value that is not
            one valid id (a list, an object, a bool, a malformed id).
    """
    if not isinstance(body, Mapping):
        raise UnsafeRequestError(f"the stop body is not a JSON object ({type(body).__name__})")
    try:
        items = list(body.items())
    except RuntimeError:  # "dictionary changed size during iteration"
        raise UnsafeRequestError("the stop body changed while it was read") from None
    field = generation.id_field
    ids = [value for key, value in items if type(key) is str and key == field]
    others = [key for key, _ in items if not (type(key) is str and key == field)]
    if others:
        shown = ", ".join(shown_id(str(key)) for key in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise UnsafeRequestError(
            f"a stop body holds only {field!r}, this one also {shown}{more}",
            _valid_or_none(ids, generation),
        )
    if len(ids) != 1:
        raise UnsafeRequestError(f"the stop body has no {field!r}")
    value = ids[0]
    problem = task_id_problem(value, generation.name)
    if problem is not None:
        raise UnsafeRequestError(
            f"the stop body's {field!r} is not one task id ({shown_id(value)}: {problem})"
        )
    return value  # type: ignore[no-any-return]  # task_id_problem checked it


class Clearance:
    """Permission, issued after a pre-check allowed it, to send one stop for one task.

    Single use: `guard` consumes it, so a resend needs a fresh pre-check and
    a fresh clearance.
    """

    __slots__ = ("_lock", "_used", "generation", "task_id")

    def __init__(self, generation: Generation, task_id: TaskId) -> None:
        if generation is not V1 and generation is not V2:
            raise UnsafeRequestError(f"a clearance is for v1 or v2, not {generation!r}")
        problem = task_id_problem(task_id, generation.name)
        if problem is not None:
            raise UnsafeRequestError(f"a clearance names one valid task id: {problem}")
        self.generation = generation
        self.task_id = task_id
        self._used = False
        self._lock = threading.Lock()

    def _consume(self) -> None:
        with self._lock:
            if self._used:
                raise UnsafeRequestError("its clearance was already used", self.task_id)
            self._used = True

    @property
    def used(self) -> bool:
        """Whether a stop was let through with it."""
        return self._used

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
    try:
        generation = classify(url)
    except UnsafeRequestError as refused:
        # The same refusal, naming the task the body is about when it says so plainly.
        raise UnsafeRequestError(refused.reason, _named(body)) from None
    if generation is None:
        return dict(body)
    task_id = check_stop_body(generation, body)
    if clearance is None:
        raise UnsafeRequestError("no pre-check cleared it", task_id)
    if type(clearance) is not Clearance:
        raise UnsafeRequestError(f"{type(clearance).__name__} is not a Clearance", task_id)
    if (
        clearance.generation is not generation
        or type(clearance.task_id) is not type(task_id)
        or clearance.task_id != task_id
    ):
        raise UnsafeRequestError(
            f"the pre-check cleared {shown_id(clearance.task_id)} on"
            f" {clearance.generation.name}, not this task",
            task_id,
        )
    clearance._consume()
    return generation.body(clearance.task_id)


def _path_and_query(url: str) -> tuple[str, str]:
    """The path and the query of an absolute URL or of a bare route."""
    if not url.startswith("/"):  # "//x" is a path here: the SDK prepends the base URL
        match = _SCHEME_AUTHORITY.match(url)
        if match is not None:
            url = url[match.end() :]
    path, _, query = url.partition("?")
    return path, query


def _canonical_action(query: str) -> str | None:
    """The one plain `Action` of a plain query ("" when none), or None if unsure."""
    if not query:
        return ""
    pairs = query.split("&")
    if not all(_CLEAN_PAIR.fullmatch(pair) for pair in pairs):
        return None
    actions = [
        pair.partition("=") for pair in pairs if _letters(pair.partition("=")[0]) == "action"
    ]
    if not actions:
        return ""
    if len(actions) != 1:
        return None
    key, _, value = actions[0]
    if key != _ACTION_KEY or not _CLEAN_ACTION.fullmatch(value):
        return None
    return value


def _ends_with(segments: tuple[str, ...], routes: Iterable[tuple[str, ...]]) -> bool:
    return any(segments[-len(route) :] == route for route in routes)


def _lenient_text(text: str) -> str:
    """`text` as the most lenient reader sees it: decoded, folded, invisibles dropped."""
    text = _decoded(text)
    text = fold(text).replace("\\", "/")
    return "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)


def _lenient_segments(path: str) -> tuple[tuple[str, ...], list[str]]:
    """Path segments after `;` parameters, dot segments, extensions and empties go."""
    segments: list[str] = []
    parameters: list[str] = []
    for raw in path.split("/"):
        segment, *params = raw.split(";")
        parameters.extend(params)
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segment = segment.split(".", 1)[0]  # also "." and "...": nothing left
        if segment:
            segments.append(segment)
    return tuple(segments), parameters


def _lenient_actions(query: str) -> list[str]:
    """Every value an `Action`-like key has, however the query is split or decoded."""
    found: list[str] = []
    for text in (query, _decoded(query)):
        for pair in re.split(r"[&;]", text.replace("+", " ")):
            key, _, value = pair.partition("=")
            if _letters(_lenient_text(key)) == "action":
                found.append(_letters(_lenient_text(value)))
    return found


def _letters(text: str) -> str:
    return _NOT_LETTERS.sub("", fold(text))


def _decoded(text: str) -> str:
    """`text` with percent-escapes decoded until none is left.

    Raises:
        UnsafeRequestError: still escaped after `_MAX_DECODE_ROUNDS` rounds.
    """
    for _ in range(_MAX_DECODE_ROUNDS):
        if not _PERCENT.search(text):
            return text
        text = _PERCENT_U.sub(lambda match: chr(int(match[1], 16)), text)
        text = _PERCENT_BYTES.sub(_decode_bytes, text)
    if _PERCENT.search(text):
        raise UnsafeRequestError(
            f"its route {shown_id(text)} is escaped too many times over to be read"
        )
    return text


def _decode_bytes(match: re.Match[str]) -> str:
    data = bytes(int(match[0][index + 1 : index + 3], 16) for index in range(0, len(match[0]), 3))
    data = _OVERLONG.sub(lambda m: bytes([((m[0][0] & 0x1F) << 6) | (m[0][1] & 0x3F)]), data)
    return data.decode("utf-8", errors="replace")


def _valid_or_none(ids: list[object], generation: Generation) -> TaskId | None:
    if len(ids) == 1 and task_id_problem(ids[0], generation.name) is None:
        return ids[0]  # type: ignore[return-value]  # task_id_problem checked it
    return None


def _named(body: object) -> TaskId | None:
    """The task a request body plainly names (`id` or `taskId`, a valid id), or None."""
    if not isinstance(body, Mapping):
        return None
    with contextlib.suppress(Exception):  # a caller's mapping may raise anything
        for generation in (V1, V2):
            value = body.get(generation.id_field)
            if task_id_problem(value, generation.name) is None:
                return cast(TaskId, value)  # task_id_problem checked it
    return None
