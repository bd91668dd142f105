"""Task ids: validated before any request, and shown the same way in every message."""

from __future__ import annotations

import re
import warnings
from typing import Final

from evalctl._base._api import ApiVersion

TASK_ID_PREFIX: Final = "ame-"
MAX_TASK_ID_LENGTH: Final = 64
# ASCII only: str.isalnum() would let look-alike letters from other scripts in.
_TASK_ID_RE: Final = re.compile(r"ame-[A-Za-z0-9]+")
# Above this the server's int32 evaluationId cannot go.
_MAX_INT_ID: Final = 2**63 - 1
#: How much of a malformed id a message shows (characters of the id, before escaping).
MAX_SHOWN_ID: Final = 60

TaskId = str | int


def validate_task_id(task_id: object, api: ApiVersion = "v1") -> TaskId:
    """Return `task_id` if the server could know it, else raise.

    Args:
        task_id: `ame-` followed by ASCII letters and digits; or, deprecated
            and v1 only, a positive integer (warns with `DeprecationWarning`).
        api: The API generation the id will be sent to.

    Raises:
        InvalidTaskIdError: the id is empty, of another type, or malformed.
    """
    # Imported here: `_errors` formats ids with `shown_id` from this module.
    from evalctl._base._errors import InvalidTaskIdError

    problem = task_id_problem(task_id, api)
    if problem is not None:
        raise InvalidTaskIdError(task_id, problem)
    if isinstance(task_id, int):
        warnings.warn(
            f"integer evaluation id {task_id} is deprecated by Qianfan;"
            " use its 'ame-...' id (evalIdStr) instead",
            DeprecationWarning,
            stacklevel=3,
        )
    return task_id  # type: ignore[return-value]  # task_id_problem checked the type


def task_id_problem(task_id: object, api: ApiVersion = "v1") -> str | None:
    """Why `task_id` is not an id the `api` generation accepts, or None (no warning)."""
    if isinstance(task_id, bool):
        return "expected a string like 'ame-vwgs2ybhyhfv'"
    if isinstance(task_id, int):
        if type(task_id) is not int:
            return f"expected a string like 'ame-vwgs2ybhyhfv', got {type(task_id).__name__}"
        if task_id <= 0 or task_id > _MAX_INT_ID:
            return "integer ids must be positive"
        if api != "v1":
            return f"integer ids are not accepted by the {api} API"
        return None
    # Exactly str: a subclass could compare equal to one id and print as another.
    if type(task_id) is not str:
        return f"expected a string like 'ame-vwgs2ybhyhfv', got {type(task_id).__name__}"
    if not task_id:
        return "empty"
    if len(task_id) > MAX_TASK_ID_LENGTH:
        return f"longer than {MAX_TASK_ID_LENGTH} characters"
    if task_id != task_id.strip():
        return "leading or trailing whitespace"
    if not task_id.startswith(TASK_ID_PREFIX):
        return "must start with 'ame-'"
    if not _TASK_ID_RE.fullmatch(task_id):
        return "after 'ame-' only ASCII letters and digits are allowed"
    return None


def shown_id(raw: object) -> str:
    """How every message shows a task id: once, on one line, cut, escaped.

    A valid id is shown as it is (``ame-vwgs2ybhyhfv``, ``12345``); anything
    else is quoted with control and invisible characters escaped (``'a\\nb'``,
    ``'\\x1b[31m'``) and cut after `MAX_SHOWN_ID` characters (``'aaa…'``).
    """
    if type(raw) is int:
        return str(raw)
    if type(raw) is str and len(raw) <= MAX_TASK_ID_LENGTH and _TASK_ID_RE.fullmatch(raw):
        return raw
    if isinstance(raw, str):
        text = str.__str__(raw)  # an exact str: a subclass's __repr__ is not trusted
        if len(text) <= MAX_SHOWN_ID:
            return repr(text)
        quoted = repr(text[:MAX_SHOWN_ID])
        return f"{quoted[:-1]}…{quoted[-1]}"
    try:
        text = repr(raw)
    except Exception:  # noqa: BLE001 (a caller's object with a broken __repr__)
        text = f"<{type(raw).__name__}>"
    text = repr(text)[1:-1]  # escapes what a hostile __repr__ may hold (newlines, ESC)
    return text if len(text) <= MAX_SHOWN_ID else text[: MAX_SHOWN_ID - 1] + "…"
