"""What the core suite's axes are made of: API generations, flavours, and small helpers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from qianfan.resources.typing import QfResponse

import evalctl
from evalctl._base import _api

T = TypeVar("T")

_V1_LOG_ID = re.compile(r"\d+")
_V2_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class ApiSpec:
    """What differs between the two API generations, as far as the tests care."""

    name: _api.ApiVersion
    detail_route: str
    detail_action: str
    stop_route: str
    stop_action: str
    id_field: str
    #: `Emulator.inject(route=...)` narrowing of the detail and the stop.
    detail_fault_route: str
    stop_fault_route: str
    running_states: tuple[str, ...]
    manual_states: tuple[str, ...]
    stopping_states: tuple[str, ...]
    finished_states: tuple[str, ...]
    #: The add_task keyword that overrides this generation's detail `result`.
    overrides_kwarg: str
    log_id_pattern: re.Pattern[str]

    def params(self, task_id: object) -> dict[str, Any]:
        """The request body naming `task_id`."""
        return {self.id_field: task_id}

    def overrides(self, **fields: Any) -> dict[str, Any]:
        """`add_task` keywords that replace `fields` of this generation's detail result."""
        return {self.overrides_kwarg: fields}

    def with_modes(self, raw: object) -> dict[str, Any]:
        """`add_task` keywords making the detail spell its modes as `raw`."""
        if self.name == "v1":
            return self.overrides(evalStandardConf={"evalMode": raw})
        # v2 may spell the modes twice: every mode-bearing field says `raw`.
        return self.overrides(evalMode=raw, evalStandardConf={"evalMode": raw})

    def without_modes(self) -> dict[str, Any]:
        """`add_task` keywords making the detail say nothing about its modes."""
        if self.name == "v1":
            return self.overrides(evalStandardConf={"resultDatasetId": 1})
        return self.overrides(evalType=None, evalMode=None, evalStandardConf=None)

    def automatic_detail(self) -> dict[str, Any]:
        """`add_task` keywords making the detail claim a rule-only task, whatever is stored."""
        if self.name == "v1":
            return self.with_modes("rule")
        return self.overrides(
            evalType="auto", evalMode="rule", evalStandardConf={"evalMode": "rule"}
        )

    def describing(self, other_id: str) -> dict[str, Any]:
        """`add_task` keywords making the detail describe another task."""
        key = "evaluationIdStr" if self.name == "v1" else "taskId"
        return self.overrides(**{key: other_id})

    def state(self, which: str) -> str:
        """A state by role: "running", "manual-begin" or "metrics"."""
        return {
            "running": self.running_states[0],
            "manual-begin": self.manual_states[0],
            "metrics": self.manual_states[1],
        }[which]

    def is_log_id(self, value: object) -> bool:
        """Whether `value` looks like this generation's server log id."""
        return isinstance(value, str) and bool(self.log_id_pattern.fullmatch(value))


V1 = ApiSpec(
    name="v1",
    detail_route=_api.V1_DETAIL_ROUTE,
    detail_action="",
    stop_route=_api.V1_CANCEL_ROUTE,
    stop_action="",
    id_field="id",
    detail_fault_route=_api.V1_DETAIL_ROUTE,
    stop_fault_route=_api.V1_CANCEL_ROUTE,
    running_states=(_api.V1_DOING, _api.V1_PENDING),
    manual_states=(_api.V1_DOING_MANUAL, _api.V1_DOING_METRICS),
    stopping_states=(_api.V1_STOPPING, _api.V1_STOPPED),
    finished_states=(_api.V1_DONE, _api.V1_PARTLY_DONE, _api.V1_FAIL, _api.V1_FAILED),
    overrides_kwarg="detail_overrides",
    log_id_pattern=_V1_LOG_ID,
)
V2 = ApiSpec(
    name="v2",
    detail_route=_api.V2_ROUTE,
    detail_action=_api.V2_DESCRIBE_ACTION,
    stop_route=_api.V2_ROUTE,
    stop_action=_api.V2_STOP_ACTION,
    id_field="taskId",
    detail_fault_route=f"{_api.V2_ROUTE}?Action={_api.V2_DESCRIBE_ACTION}",
    stop_fault_route=f"{_api.V2_ROUTE}?Action={_api.V2_STOP_ACTION}",
    running_states=(_api.V2_RUNNING, _api.V2_QUEUED),
    manual_states=(_api.V2_RUNNING_MANUAL, _api.V2_RUNNING_METRICS),
    stopping_states=(_api.V2_STOPPING, _api.V2_STOPPED),
    finished_states=(_api.V2_SUCCESSED, _api.V2_FAILED),
    overrides_kwarg="describe_overrides",
    log_id_pattern=_V2_REQUEST_ID,
)
APIS = {"v1": V1, "v2": V2}


@dataclass(frozen=True)
class Flavour:
    """Calls the sync function, or runs the async one to completion."""

    name: str

    def run(
        self, sync: Callable[..., T], coro: Callable[..., Awaitable[T]], /, *args: Any, **kw: Any
    ) -> T:
        if self.name == "sync":
            return sync(*args, **kw)
        return asyncio.run(_awaited(coro(*args, **kw)))


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


@dataclass(frozen=True)
class Client:
    """One flavour bound to one API generation: the public functions, as a test calls them."""

    flavour: Flavour
    api: ApiSpec

    def cancel(self, task_id: object, **kw: Any) -> evalctl.CancelResult:
        """`cancel_eval_task(task_id, api=..., **kw)` in this flavour."""
        kw.setdefault("api", self.api.name)
        return self.flavour.run(evalctl.cancel_eval_task, evalctl.acancel_eval_task, task_id, **kw)

    def describe(self, task_id: object, **kw: Any) -> evalctl.EvalTask:
        """`describe_eval_task(task_id, api=..., **kw)` in this flavour."""
        kw.setdefault("api", self.api.name)
        return self.flavour.run(
            evalctl.describe_eval_task, evalctl.adescribe_eval_task, task_id, **kw
        )

    def call_action(self, route: str, action: str, params: dict[str, Any], **kw: Any) -> QfResponse:
        """The drop-in `call_action` in this flavour."""
        return self.flavour.run(
            evalctl.call_action, evalctl.acall_action, route, action, params, **kw
        )

    def stop_action(self, task_id: object, **kw: Any) -> QfResponse:
        """The drop-in `call_action` on this generation's stop route."""
        return self.call_action(
            self.api.stop_route, self.api.stop_action, self.api.params(task_id), **kw
        )

    def detail_action(self, task_id: object, **kw: Any) -> QfResponse:
        """The drop-in `call_action` on this generation's detail route."""
        return self.call_action(
            self.api.detail_route, self.api.detail_action, self.api.params(task_id), **kw
        )


def without_duration(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with `duration_ms` dropped (it varies), for whole-event comparison."""
    return [{k: v for k, v in event.items() if k != "duration_ms"} for event in events]


def request_log_ids(captured: list[dict[str, Any]]) -> list[str]:
    """The server log ids of every `qianfan.request` event that carried one, in order."""
    return [e["log_id"] for e in captured if e["event"] == "qianfan.request" and e["log_id"]]


#: (modes as stored, which state) → the modes the error reports.
MANUAL_CASES = [
    pytest.param(modes, which, reported, id=f"{modes}@{which}")
    for modes, which, reported in [
        ("manual", "running", {"manual"}),
        ("rule,manual", "running", {"rule", "manual"}),
        ("model, Manual ,rule", "running", {"model", "manual", "rule"}),
        ("ｍａｎｕａｌ", "running", {"manual"}),  # full-width: NFKC folds it to ASCII
        ("rule", "manual-begin", {"rule"}),
        ("rule", "metrics", {"rule"}),
        ("rule,manual", "metrics", {"rule", "manual"}),
    ]
]


#: Details that do not say clearly which modes or which state: fail closed.
FAIL_CLOSED: list[tuple[str, Callable[[ApiSpec], dict[str, Any]]]] = [
    ("modes missing", lambda api: api.without_modes()),
    ("modes empty", lambda api: api.with_modes("")),
    ("modes blank", lambda api: api.with_modes(" , ")),
    ("empty token", lambda api: api.with_modes("rule,,model")),
    ("unknown token", lambda api: api.with_modes("rule,judge")),
    ("cyrillic look-alike", lambda api: api.with_modes("mаnual")),
    ("modes a number", lambda api: api.with_modes(1)),
    ("modes a list", lambda api: api.with_modes(["manual"])),
    ("state missing", lambda api: api.overrides(state=None)),
    ("state unknown", lambda api: api.overrides(state="Paused")),
    ("state a number", lambda api: api.overrides(state=3)),
    ("another task", lambda api: api.describing("ame-someoneelse1")),
]


def cancel_with_hook(
    client: Client, task_id: str, cleared: Callable[[Any], None], **policy: Any
) -> evalctl.CancelResult:
    """`cancel_eval_task` in the client's flavour, with the session's `cleared` hook set.

    The hook runs once the pre-check cleared the task, before the first stop:
    a test changes the emulator there (a fault for what comes after).
    """
    from evalctl._base._ids import validate_task_id
    from evalctl._client._facade import prepare_cancel
    from evalctl._core._options import GivenKeys, check_options
    from evalctl._core._runner import arun, run

    options = check_options(
        keys=GivenKeys(), api=client.api.name, retry=evalctl.RetryPolicy(**policy)
    )
    operation, session = prepare_cancel(
        validate_task_id(task_id, client.api.name), options, cleared=cleared
    )
    if client.flavour.name == "sync":
        return run(operation, session)
    return asyncio.run(arun(operation, session))
