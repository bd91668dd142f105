"""The shapes of the console's answers: v1 envelopes, v2 envelopes, BCE gateway errors.

A `Reply` is what the emulator means to answer, before it becomes bytes; the
builders here are the only place that knows which envelope carries `log_id`
(v1) and which `requestId` (v2).
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from evalctl._base import _api

JSON_TYPE: Final = "application/json"
HTML_TYPE: Final = "text/html; charset=utf-8"

Api = Literal["v1", "v2"]


@dataclass(frozen=True)
class Reply:
    """One answer: a JSON payload, or raw bytes when a fault wants a broken body."""

    status: int
    payload: object = None
    raw: bytes | None = None
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def ok(self) -> bool:
        """A 200 that carries no error envelope."""
        return (
            self.status == 200
            and isinstance(self.payload, dict)
            and "error_code" not in self.payload
        )


class IdSource:
    """Fresh v1 `log_id`s (digit strings, like the cloud's) and v2 `requestId`s (uuid4)."""

    def __init__(self) -> None:
        # itertools.count is atomic under the GIL: ids stay unique across threads.
        self._log_ids = itertools.count(random.randrange(1_000_000_000, 4_000_000_000))

    def log_id(self) -> str:
        """A new v1 log id."""
        return str(next(self._log_ids))

    @staticmethod
    def request_id() -> str:
        """A new v2 request id."""
        return str(uuid.uuid4())


def ok(api: Api, ids: IdSource, result: object) -> Reply:
    """A successful answer in `api`'s envelope."""
    if api == "v1":
        return Reply(200, {"log_id": ids.log_id(), "result": result})
    return Reply(200, {"requestId": ids.request_id(), "result": result})


def envelope_error(api: Api, ids: IdSource, code: int, message: str) -> Reply:
    """HTTP 200 with ``error_code``: how the console reports API-level errors."""
    payload: dict[str, Any] = {"error_code": code, "error_msg": message}
    if api == "v1":
        payload["log_id"] = ids.log_id()
    else:
        payload["requestId"] = ids.request_id()
    return Reply(200, payload)


def bce_error(
    status: int,
    ids: IdSource,
    code: str,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """An HTTP error in BCE's JSON form (gateway, auth and v2 errors)."""
    payload = {"requestId": ids.request_id(), "code": code, "message": message}
    return Reply(status, payload, headers=headers)


def invalid_param(api: Api, ids: IdSource, message: str) -> Reply:
    """A malformed request: v1 answers code 336003, v2 an HTTP 400."""
    if api == "v1":
        return envelope_error(api, ids, _api.CODE_INVALID_PARAM, f"invalid param: {message}")
    return bce_error(400, ids, _api.V2_INVALID_PARAMETER_CODE, message)


def not_found(api: Api, ids: IdSource, task_ref: object) -> Reply:
    """An unknown task, the way `_api`'s not-found convention says."""
    message = f"{_api.NOT_FOUND_MESSAGE}: {task_ref}"
    if api == "v1":
        return envelope_error(api, ids, _api.V1_NOT_FOUND_CODE, message)
    return bce_error(_api.V2_NOT_FOUND_STATUS, ids, _api.V2_NOT_FOUND_CODE, message)


def html(status: int, title: str) -> Reply:
    """The HTML page a gateway sends instead of JSON."""
    page = (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n"
        f"<body>\r\n<center><h1>{status} {title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Reply(status, raw=page.encode(), content_type=HTML_TYPE)


def garbage() -> Reply:
    """HTTP 200 that claims JSON but carries a truncated body, as a cut-off upstream does."""
    return Reply(200, raw=b'{"result": {"state": "Do', content_type=JSON_TYPE)
