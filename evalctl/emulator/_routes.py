"""What the console answers to each route, given the tasks it holds.

HTTP-free: the server hands over a path, an action and a parsed body, and
gets a `Reply`. The response shapes follow the public API documentation and
the SDK (see /work/shared/reference/qianfan-eval-api.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from evalctl._base import _api
from evalctl.emulator import _replies
from evalctl.emulator._defaults import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from evalctl.emulator._replies import Api, IdSource, Reply
from evalctl.emulator._state import (
    StopOutcome,
    Task,
    TaskStore,
    has_mode,
    includes_manual,
    to_v2_state,
)


class Call(enum.Enum):
    """The operation a request asks for."""

    V1_DETAIL = "v1 detail"
    V1_CANCEL = "v1 cancel"
    V1_CREATE = "v1 create"
    V2_DESCRIBE = "v2 DescribeEvalTask"
    V2_STOP = "v2 StopEvalTask"
    V2_LIST = "v2 DescribeEvalTasks"
    V2_UNKNOWN = "v2 unknown action"

    @property
    def api(self) -> Api:
        """The envelope this operation answers in."""
        return "v1" if self.name.startswith("V1") else "v2"


_CALLS: Final[dict[tuple[str, str], Call]] = {
    (_api.V1_DETAIL_ROUTE, ""): Call.V1_DETAIL,
    (_api.V1_CANCEL_ROUTE, ""): Call.V1_CANCEL,
    (_api.V1_CREATE_ROUTE, ""): Call.V1_CREATE,
    (_api.V2_ROUTE, _api.V2_DESCRIBE_ACTION): Call.V2_DESCRIBE,
    (_api.V2_ROUTE, _api.V2_STOP_ACTION): Call.V2_STOP,
    (_api.V2_ROUTE, _api.V2_LIST_ACTION): Call.V2_LIST,
}
_V1_ROUTES: Final = frozenset({_api.V1_DETAIL_ROUTE, _api.V1_CANCEL_ROUTE, _api.V1_CREATE_ROUTE})

# What `missing_fields` takes away from a successful read.
_V1_DETAIL_IMPORTANT: Final = ("state", "evalStandardConf")
_V2_DESCRIBE_IMPORTANT: Final = ("state", "evalType", "evalMode", "evalStandardConf")


def classify(path: str, action: str) -> Call | None:
    """The operation of a known route; None for an unknown path.

    v1 routes ignore the action (the SDK sends ``Action=``); any other action
    on ``/v2/eval`` is `Call.V2_UNKNOWN`, answered with HTTP 400.
    """
    if path in _V1_ROUTES:
        return _CALLS[(path, "")]
    if path == _api.V2_ROUTE:
        return _CALLS.get((path, action), Call.V2_UNKNOWN)
    return None


@dataclass(frozen=True)
class AppSecrets:
    """The judge-model app credentials served for tasks with the `model` mode."""

    app_ak: str
    app_sk: str
    app_id: int


class Routes:
    """Applies one operation to the task store and builds its reply."""

    def __init__(self, store: TaskStore, ids: IdSource, secrets: AppSecrets) -> None:
        self._store = store
        self._ids = ids
        self._secrets = secrets

    def answer(self, call: Call, body: object) -> Reply:
        """The normal answer; state-changing calls take effect."""
        if call is Call.V2_UNKNOWN:
            return _replies.invalid_param("v2", self._ids, "unknown or missing Action")
        if not isinstance(body, dict):
            return _replies.invalid_param(call.api, self._ids, "body must be a JSON object")
        if call is Call.V1_CREATE:
            return self._create(body)
        if call is Call.V2_LIST:
            return self._list(body)
        ref = self._task_ref(call, body)
        if isinstance(ref, Reply):
            return ref
        if call in {Call.V1_CANCEL, Call.V2_STOP}:
            return self._stop(call, ref)
        task = self._store.get(ref)
        if task is None:
            return _replies.not_found(call.api, self._ids, ref)
        if call is Call.V1_DETAIL:
            return _replies.ok("v1", self._ids, self._v1_detail(task))
        return _replies.ok("v2", self._ids, self._v2_describe(task))

    def answer_missing_fields(self, call: Call, body: object) -> Reply:
        """The `missing_fields` fault: reads apply and lose fields; writes do not apply."""
        if call is Call.V1_CANCEL:
            return Reply(200, {"log_id": self._ids.log_id(), "result": {"errorMessage": ""}})
        if call is Call.V1_CREATE:
            return Reply(200, {"log_id": self._ids.log_id(), "result": {}})
        if call is Call.V2_STOP:
            return Reply(200, {"requestId": self._ids.request_id()})
        reply = self.answer(call, body)
        if not reply.ok or not isinstance(reply.payload, dict):
            return reply
        result = reply.payload.get("result")
        if call is Call.V2_LIST:
            stripped: dict[str, Any] = {}
        else:
            important = _V1_DETAIL_IMPORTANT if call is Call.V1_DETAIL else _V2_DESCRIBE_IMPORTANT
            stripped = {
                key: value
                for key, value in (result.items() if isinstance(result, dict) else ())
                if key not in important
            }
        return Reply(200, {**reply.payload, "result": stripped})

    def _task_ref(self, call: Call, body: Mapping[str, Any]) -> str | int | Reply:
        """The task a detail/stop body names, or the reply to a malformed one."""
        if call.api == "v2":
            ref = body.get("taskId")
            if not isinstance(ref, str) or not ref:
                return _replies.invalid_param("v2", self._ids, "taskId must be a non-empty string")
            return ref
        ref = body.get("id", body.get("evaluationId"))
        if ref is None:
            return _replies.invalid_param("v1", self._ids, "id is required")
        if isinstance(ref, bool) or not isinstance(ref, str | int) or ref == "":
            return _replies.invalid_param("v1", self._ids, "id must be a string like ame-xxxx")
        return ref

    def _stop(self, call: Call, ref: str | int) -> Reply:
        applied = self._store.stop(ref)
        if applied is None:
            return _replies.not_found(call.api, self._ids, ref)
        _, outcome = applied
        refusal = {
            StopOutcome.REFUSED_MANUAL: _api.REFUSE_MANUAL_MESSAGE,
            StopOutcome.REFUSED_NOT_RUNNING: _api.REFUSE_FINISHED_MESSAGE,
        }.get(outcome)
        if call is Call.V1_CANCEL:
            result = {"result": refusal is None, "errorMessage": refusal or ""}
            return _replies.ok("v1", self._ids, result)
        if refusal is not None:
            return _replies.bce_error(400, self._ids, _api.V2_INVALID_OPERATION_CODE, refusal)
        return _replies.ok("v2", self._ids, {})

    def _create(self, body: Mapping[str, Any]) -> Reply:
        name = body.get("name")
        conf = body.get("evalStandardConf")
        mode = conf.get("evalMode") if isinstance(conf, dict) else None
        description = body.get("description", "")
        if not isinstance(name, str) or not name:
            return _replies.invalid_param("v1", self._ids, "name is required")
        if not isinstance(mode, str):
            return _replies.invalid_param("v1", self._ids, "evalStandardConf.evalMode is required")
        if not isinstance(description, str):
            return _replies.invalid_param("v1", self._ids, "description must be a string")
        task = self._store.add(None, mode, _api.V1_DOING, name=name, description=description)
        result = {"evalId": task.evaluation_id, "evalIdStr": task.task_id}
        return _replies.ok("v1", self._ids, result)

    def _list(self, body: Mapping[str, Any]) -> Reply:
        """DescribeEvalTasks: one page of one evaluation type, in the documented shape.

        ``marker`` is the id of the page's first task (the previous page's
        ``nextMarker``); ``keyFilter`` matches a fragment of the name or of the
        string id (case-insensitive) or exactly a model version id.
        """
        eval_type = body.get("evalType")
        key_filter = body.get("keyFilter")
        marker = body.get("marker")
        max_keys = body.get("maxKeys", DEFAULT_PAGE_SIZE)
        reverse = body.get("pageReverse", False)
        if eval_type not in (_api.V2_EVAL_TYPE_AUTO, _api.V2_EVAL_TYPE_MANUAL):
            return _replies.invalid_param("v2", self._ids, "evalType must be auto or manual")
        if (
            isinstance(max_keys, bool)
            or not isinstance(max_keys, int)
            or not 1 <= max_keys <= MAX_PAGE_SIZE
        ):
            return _replies.invalid_param(
                "v2", self._ids, f"maxKeys must be an integer from 1 to {MAX_PAGE_SIZE}"
            )
        if marker is not None and not isinstance(marker, str):
            return _replies.invalid_param("v2", self._ids, "marker must be a string")
        if key_filter is not None and not isinstance(key_filter, str):
            return _replies.invalid_param("v2", self._ids, "keyFilter must be a string")
        if not isinstance(reverse, bool):
            return _replies.invalid_param("v2", self._ids, "pageReverse must be a boolean")

        items: dict[str, dict[str, Any]] = {}  # built once per scanned task

        def matches(task: Task) -> bool:
            item = items[task.task_id] = self._v2_list_item(task)
            return item.get("evalType") == eval_type and _key_matches(task, item, key_filter)

        page = self._store.page(matches, marker=marker or None, max_keys=max_keys, reverse=reverse)
        if page is None:
            return _replies.invalid_param("v2", self._ids, f"unknown marker {marker!r}")
        result = {
            "evalTaskList": [items[task.task_id] for task in page.tasks],
            "pageInfo": {
                "marker": marker or "",
                "maxKeys": max_keys,
                "isTruncated": page.next_marker is not None,
                "nextMarker": page.next_marker or "",
            },
        }
        return _replies.ok("v2", self._ids, result)

    def _v2_list_item(self, task: Task) -> dict[str, Any]:
        return _overridden(self._v2_summary(task), task.list_overrides)

    def _eval_standard_conf(self, task: Task) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "evalMode": task.eval_mode,
            "resultDatasetId": 30_000 + task.evaluation_id,
            "resultDatasetIdStr": f"ds-result{task.evaluation_id:06d}",
        }
        if has_mode(task.eval_mode, _api.MODE_MODEL):
            conf.update(
                appId=self._secrets.app_id,
                appAk=self._secrets.app_ak,
                appSk=self._secrets.app_sk,
                evaluationDimension=[{"dimension": "accuracy", "description": "答案是否正确"}],
            )
        return conf

    def _v1_detail(self, task: Task) -> dict[str, Any]:
        result: dict[str, Any] = {
            "evaluationId": task.evaluation_id,
            "evaluationIdStr": task.task_id,
            "name": task.name,
            "description": task.description,
            "state": task.state,
            "evalUnits": [
                {
                    "modelId": 10_000 + task.evaluation_id,
                    "modelIdStr": f"am-emulator{task.evaluation_id:04d}",
                    "modelVersionId": 20_000 + task.evaluation_id,
                    "modelVersionIdStr": f"amv-emulator{task.evaluation_id:04d}",
                    "modelName": "ERNIE-Speed-8K",
                    "versionName": "V1",
                    "state": task.state,
                }
            ],
            "datasetId": 40_000 + task.evaluation_id,
            "datasetIdStr": f"ds-emulator{task.evaluation_id:04d}",
            "datasetName": "emulator-eval-set",
            "evalStandardConf": self._eval_standard_conf(task),
            "computeResourceConf": {"vmType": 1, "vmNumber": 8},
            "createTime": task.create_time,
            "modifyTime": task.modify_time,
        }
        return _overridden(result, task.detail_overrides)

    def _v2_summary(self, task: Task) -> dict[str, Any]:
        return {
            "taskId": task.task_id,
            "taskName": task.name,
            "evalType": (
                _api.V2_EVAL_TYPE_MANUAL
                if includes_manual(task.eval_mode)
                else _api.V2_EVAL_TYPE_AUTO
            ),
            "state": to_v2_state(task.state),
            "evalMode": task.eval_mode,
            "description": task.description,
            "createTime": task.create_time,
            "modifyTime": task.modify_time,
        }

    def _v2_describe(self, task: Task) -> dict[str, Any]:
        result = {
            **self._v2_summary(task),
            "datasetId": f"ds-emulator{task.evaluation_id:04d}",
            "evalStandardConf": self._eval_standard_conf(task),
        }
        return _overridden(result, task.describe_overrides)


def _model_version_ids(task: Task) -> tuple[str, str]:
    """The model version ids of the task's one eval unit (the ones `_v1_detail` shows)."""
    return f"amv-emulator{task.evaluation_id:04d}", str(20_000 + task.evaluation_id)


def _key_matches(task: Task, item: Mapping[str, Any], key_filter: str | None) -> bool:
    """The cloud's `keyFilter`: fuzzy on name or string id, exact on a model version id."""
    if not key_filter:
        return True
    wanted = key_filter.casefold()
    for field in ("taskName", "taskId"):
        value = item.get(field)
        if isinstance(value, str) and wanted in value.casefold():
            return True
    return key_filter in _model_version_ids(task)


def _overridden(result: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply test-supplied overrides: a None value removes the key."""
    for key, value in (overrides or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
