"""Task-id validation: the first thing every operation does, before any request."""

from __future__ import annotations

import re
import warnings
from typing import Final

from evalctl._api import ApiVersion
from evalctl._errors import InvalidTaskIdError

TASK_ID_PREFIX: Final = "ame-"
MAX_TASK_ID_LENGTH: Final = 64
# ASCII only: str.isalnum() would let look-alike letters from other scripts in.
_TASK_ID_RE: Final = re.compile(r"ame-[A-Za-z0-9]+")
# Above this the server's int32 evaluationId cannot go.
_MAX_INT_ID: Final = 2**63 - 1

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
    if isinstance(task_id, bool):
        raise InvalidTaskIdError(task_id, "expected a string like 'ame-vwgs2ybhyhfv'")
    if isinstance(task_id, int):
        if task_id <= 0 or task_id > _MAX_INT_ID:
            raise InvalidTaskIdError(task_id, "integer ids must be positive")
        if api != "v1":
            raise InvalidTaskIdError(task_id, f"integer ids are not accepted by the {api} API")
        warnings.warn(
            "integer evaluation ids are deprecated by Qianfan; use the 'ame-...' id"
            " (evalIdStr) instead",
            DeprecationWarning,
            stacklevel=3,
        )
        return task_id
    if not isinstance(task_id, str):
        raise InvalidTaskIdError(
            task_id, f"expected a string like 'ame-vwgs2ybhyhfv', got {type(task_id).__name__}"
        )
    if not task_id:
        raise InvalidTaskIdError(task_id, "empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidTaskIdError(task_id, f"longer than {MAX_TASK_ID_LENGTH} characters")
    if task_id != task_id.strip():
        raise InvalidTaskIdError(task_id, "leading or trailing whitespace")
    if not task_id.startswith(TASK_ID_PREFIX):
        raise InvalidTaskIdError(task_id, "must start with 'ame-'")
    if not _TASK_ID_RE.fullmatch(task_id):
        raise InvalidTaskIdError(task_id, "after 'ame-' only ASCII letters and digits are allowed")
    return task_id
