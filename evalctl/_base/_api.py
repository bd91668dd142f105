"""The facts of the Qianfan evaluation console API, in one place.

Routes, actions, state names and error codes, shared by the client and the
emulator so that both sides speak exactly the same dialect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: Final[tuple[ApiVersion, ...]] = ("v1", "v2")

# v1: the route carries the operation and the action is the empty string.
V1_DETAIL_ROUTE: Final = "/wenxinworkshop/modelrepo/eval/detail"
V1_CANCEL_ROUTE: Final = "/wenxinworkshop/modelrepo/eval/cancel"
V1_CREATE_ROUTE: Final = "/wenxinworkshop/modelrepo/eval/create"

# v2: one route, the operation is the `Action` query parameter.
V2_ROUTE: Final = "/v2/eval"
V2_DESCRIBE_ACTION: Final = "DescribeEvalTask"
V2_STOP_ACTION: Final = "StopEvalTask"
V2_LIST_ACTION: Final = "DescribeEvalTasks"

# The evaluation modes of `evalStandardConf.evalMode` (v1).
MODE_RULE: Final = "rule"
MODE_MODEL: Final = "model"
MODE_MANUAL: Final = "manual"
KNOWN_MODES: Final = frozenset({MODE_RULE, MODE_MODEL, MODE_MANUAL})
#: The one order modes are shown in, everywhere (errors, logs, tables).
MODE_ORDER: Final = (MODE_RULE, MODE_MODEL, MODE_MANUAL)

# v2 `evalType`.
V2_EVAL_TYPE_MANUAL: Final = "manual"
V2_EVAL_TYPE_AUTO: Final = "auto"
KNOWN_EVAL_TYPES: Final = frozenset({V2_EVAL_TYPE_MANUAL, V2_EVAL_TYPE_AUTO})

# Where each generation documents the modes of a task (relative to `result`).
V1_MODE_FIELD: Final = "evalStandardConf.evalMode"
V2_TYPE_FIELD: Final = "evalType"
# The field of the detail `result` that names the task, by id type.
V1_ID_STR_FIELD: Final = "evaluationIdStr"
V1_ID_INT_FIELD: Final = "evaluationId"
V2_ID_FIELD: Final = "taskId"

# v1 states.
V1_PENDING: Final = "Pending"
V1_DOING: Final = "Doing"
V1_DOING_MANUAL: Final = "DoingWithManualBegin"
V1_DOING_METRICS: Final = "DoingWithMetricsCalculating"
V1_STOPPING: Final = "Stopping"
V1_STOPPED: Final = "Stopped"
V1_DONE: Final = "Done"
V1_PARTLY_DONE: Final = "PartlyDone"
V1_FAIL: Final = "Fail"
V1_FAILED: Final = "Failed"  # the SDK's enum spelling of `Fail`

# v2 states.
V2_QUEUED: Final = "Queued"
V2_RUNNING: Final = "Running"
V2_RUNNING_MANUAL: Final = "RunningWithManualBegin"
V2_RUNNING_METRICS: Final = "RunningWithMetricsCalculating"
V2_SUCCESSED: Final = "Successed"
V2_STOPPING: Final = "Stopping"
V2_FAILED: Final = "Failed"
V2_STOPPED: Final = "Stopped"

StateKind = Literal["running", "manual", "stopped", "finished"]

# Each generation's own vocabulary: a state is judged in the words of the
# generation that answered (a v2 detail saying "Doing" is not understood).
V1_STATE_KINDS: Final[Mapping[str, StateKind]] = {
    V1_PENDING: "running",
    V1_DOING: "running",
    V1_DOING_MANUAL: "manual",
    V1_DOING_METRICS: "manual",
    V1_STOPPING: "stopped",
    V1_STOPPED: "stopped",
    V1_DONE: "finished",
    V1_PARTLY_DONE: "finished",
    V1_FAIL: "finished",
    V1_FAILED: "finished",
}
V2_STATE_KINDS: Final[Mapping[str, StateKind]] = {
    V2_QUEUED: "running",
    V2_RUNNING: "running",
    V2_RUNNING_MANUAL: "manual",
    V2_RUNNING_METRICS: "manual",
    V2_STOPPING: "stopped",
    V2_STOPPED: "stopped",
    V2_SUCCESSED: "finished",
    V2_FAILED: "finished",
}
STATE_KINDS: Final[Mapping[ApiVersion, Mapping[str, StateKind]]] = {
    "v1": V1_STATE_KINDS,
    "v2": V2_STATE_KINDS,
}

# What each state means for a stop, across both generations.
RUNNING_STATES: Final = frozenset({V1_PENDING, V1_DOING, V2_QUEUED, V2_RUNNING})
MANUAL_STATES: Final = frozenset(
    {V1_DOING_MANUAL, V1_DOING_METRICS, V2_RUNNING_MANUAL, V2_RUNNING_METRICS}
)
STOPPED_STATES: Final = frozenset({V1_STOPPING, V1_STOPPED})
FINISHED_STATES: Final = frozenset(
    {V1_DONE, V1_PARTLY_DONE, V1_FAIL, V1_FAILED, V2_SUCCESSED, V2_FAILED}
)

# The v1 state a v2 state stands for, and back (the emulator keeps v1 states).
V2_TO_V1_STATE: Final[dict[str, str]] = {
    V2_QUEUED: V1_PENDING,
    V2_RUNNING: V1_DOING,
    V2_RUNNING_MANUAL: V1_DOING_MANUAL,
    V2_RUNNING_METRICS: V1_DOING_METRICS,
    V2_SUCCESSED: V1_DONE,
    V2_STOPPING: V1_STOPPING,
    V2_FAILED: V1_FAIL,
    V2_STOPPED: V1_STOPPED,
}
V1_TO_V2_STATE: Final[dict[str, str]] = {
    V1_PENDING: V2_QUEUED,
    V1_DOING: V2_RUNNING,
    V1_DOING_MANUAL: V2_RUNNING_MANUAL,
    V1_DOING_METRICS: V2_RUNNING_METRICS,
    V1_DONE: V2_SUCCESSED,
    V1_PARTLY_DONE: V2_SUCCESSED,
    V1_STOPPING: V2_STOPPING,
    V1_FAIL: V2_FAILED,
    V1_FAILED: V2_FAILED,
    V1_STOPPED: V2_STOPPED,
}

# Envelope error codes (qianfan.consts.APIErrorCode) that evalctl names.
CODE_SERVICE_UNAVAILABLE: Final = 2
CODE_REQUEST_LIMIT: Final = 4
CODE_DAILY_LIMIT: Final = 17
CODE_QPS_LIMIT: Final = 18
CODE_INVALID_PARAM: Final = 336003
CODE_INTERNAL_ERROR: Final = 336000
CODE_SERVER_HIGH_LOAD: Final = 336100
CODE_CONSOLE_INTERNAL_ERROR: Final = 500000

# How an unknown task id is answered. The cloud has no dedicated code: it
# answers "invalid param" with a message naming the missing task. The emulator
# answers exactly this, and the client recognises it by code and message.
V1_NOT_FOUND_CODE: Final = CODE_INVALID_PARAM
NOT_FOUND_MESSAGE: Final = "eval task not found"
V2_NOT_FOUND_CODE: Final = "ResourceNotFound"
V2_NOT_FOUND_STATUS: Final = 404

# v2 refusals arrive as HTTP 400 with this code.
V2_INVALID_OPERATION_CODE: Final = "InvalidOperation"

# The messages the cloud gives when refusing to stop.
REFUSE_MANUAL_MESSAGE: Final = (
    "evaluation task includes manual evaluation and cannot be stopped"
    " (评估包含人工评估模式，不允许停止)"
)
REFUSE_FINISHED_MESSAGE: Final = "evaluation task is not running"

# v2 answers a malformed request (body not an object, missing field, unknown
# Action) with HTTP 400 and this code.
V2_INVALID_PARAMETER_CODE: Final = "InvalidParameter"


def ordered_modes(modes: Iterable[str]) -> list[str]:
    """`modes` in the one order they are shown: rule, model, manual, then others sorted."""
    unique = set(modes)
    known = [mode for mode in MODE_ORDER if mode in unique]
    return known + sorted(unique - KNOWN_MODES)
