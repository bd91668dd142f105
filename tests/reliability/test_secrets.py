"""Secret scanning: sentinel credentials never surface, whatever happens and wherever we look.

Representative scenarios — success, every error kind, a signature failure,
servers that echo the request's headers (the real Authorization value
included) back in error bodies, log ids and detail fields, details carrying
the judge app's keys — run with sentinel keys, through the library (sync and
async, v1 and v2) and through the `evalctl` CLI (human and `--json` output,
`-v`/`-vv`, JSON logs, the batch journal). Everything is captured: structlog
rendered by real renderers and as raw event dicts, stdlib logging at every
level on the root, `qianfan`, `baidubce` and `urllib3` loggers, warnings,
stdout/stderr, results, exception messages, reprs, attributes and whole
tracebacks. None may hold any 10-character window of a sentinel (in any
letter case), an Authorization value the emulator received or its signature,
or an unmasked ``bce-auth-v1/`` string (the masked form ``bce-auth-v1/***``
is what redaction leaves) — as written or escaped. The capture, the
renderings and the search are `secret_scan`'s, shared with tests/secrets.

The drop-in `call_action` returns the server's body as is — it is the
caller's own data — so the bodies it returns are not scanned; the request
it reports is.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import forkserver
import pytest
from core.support import APIS, ApiSpec
from secret_scan import Needles, capturing, shown

import evalctl
from evalctl.emulator import Emulator, pointed_at, sdk_environment
from reliability.conftest import wiped

AK = "AKq7Zx9mW2pL4vN8"
SK = "SKt3Jh6Rb1Yc5Xd0"
APP_AK = "APk8Qs2Lw6Ez9Mn4"
APP_SK = "APs5Vg1Tn7Hr3Kc2"
WRONG_SK = "WSk4Fp8Bz2Nq6Dj1"
SENTINELS = (AK, SK, APP_AK, APP_SK, WRONG_SK)
#: For the one scenario where the stop's answer must come too late.
QUICK = evalctl.RetryPolicy(max_attempts=2, attempt_timeout=0.3)


class Seen:
    """Every Authorization value the emulator's echoing answers were made from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.authorizations: list[str] = []

    def add(self, value: str) -> None:
        with self._lock:
            self.authorizations.append(value)


def assert_no_leaks(sources: Mapping[str, str], seen: Seen) -> None:
    """No source holds a secret (`secret_scan.Needles`); the failure names the sources and
    shows the context."""
    needles = Needles(SENTINELS, SK)
    needles.learn(seen.authorizations)
    report = needles.leaks(sources)
    assert not report, "\n".join(f"{name}: {w!r}" for name, ws in report.items() for w in ws)


# --- the echoing server -----------------------------------------------------------------

#: The task an echoed detail describes (a detail must name the task asked for).
ECHO_TASK_ID = "ame-echodetail1"


def echo_headers(
    seen: Seen, shape: str, task_id: str = ECHO_TASK_ID
) -> Callable[[Mapping[str, str]], bytes]:
    """An answer made from the request's own headers, as a misbehaving gateway would send.

    Shapes: ``v1-envelope`` (an error envelope), ``bce`` (a BCE/v2 error body),
    ``v1-stop-refused`` (a refused stop), ``v1-detail`` / ``v2-detail`` (a
    running rule-only task `task_id` whose log id and name echo the request).
    """

    def answer(headers: Mapping[str, str]) -> bytes:
        auth = headers.get("authorization", "")
        seen.add(auth)
        echoed = f"request headers: {dict(headers)}; auth={auth}; ak={AK}; sk: {SK}"
        body: dict[str, Any]
        if shape == "v1-envelope":
            body = {"log_id": auth, "error_code": 336003, "error_msg": echoed}
        elif shape == "bce":
            body = {"requestId": auth, "code": f"Denied {auth}", "message": echoed}
        elif shape == "v1-stop-refused":
            body = {"log_id": auth, "result": {"result": False, "errorMessage": echoed}}
        elif shape == "v1-detail":
            body = {
                "log_id": auth,
                "result": {
                    "evaluationIdStr": task_id,
                    "name": echoed,
                    "state": "Doing",
                    "evalStandardConf": {"evalMode": "rule"},
                },
            }
        else:
            body = {
                "requestId": auth,
                "result": {
                    "taskId": task_id,
                    "taskName": echoed,
                    "state": "Running",
                    "evalType": "auto",
                    "evalMode": "rule",
                },
            }
        return json.dumps(body).encode()

    return answer


def _run(
    flavour: str, sync: Callable[..., Any], coro: Callable[..., Any], *a: Any, **kw: Any
) -> Any:
    if flavour == "sync":
        return sync(*a, **kw)
    return asyncio.run(coro(*a, **kw))


def library_scenarios(
    emulator: Emulator, api: ApiSpec, flavour: str, seen: Seen
) -> list[tuple[str, Callable[[], object], str]]:
    """(name, call, expected outcome or error kind) for one API generation and flavour."""

    def add(task_id: str | None = None, **kw: Any) -> Callable[[], str]:
        """A task made when the scenario runs (each starts on a wiped emulator)."""
        return lambda: task_id or emulator.add_task(**kw)

    def cancel(task: Callable[[], str], **kw: Any) -> Callable[[], object]:
        kw.setdefault("api", api.name)
        kw.setdefault("retry", evalctl.RetryPolicy(max_attempts=2))
        return lambda: _run(
            flavour, evalctl.cancel_eval_task, evalctl.acancel_eval_task, task(), **kw
        )

    def describe(task: Callable[[], str]) -> Callable[[], object]:
        return lambda: _run(
            flavour,
            evalctl.describe_eval_task,
            evalctl.adescribe_eval_task,
            task(),
            api=api.name,
        )

    def stop_action(task: Callable[[], str]) -> Callable[[], object]:
        return lambda: _run(
            flavour,
            evalctl.call_action,
            evalctl.acall_action,
            api.stop_route,
            api.stop_action,
            api.params(task()),
            retry=evalctl.RetryPolicy(max_attempts=2),
        )

    def detail_request(task: Callable[[], str]) -> Callable[[], object]:
        # The body is the caller's data; what the reply says about the request is ours.
        def call() -> object:
            reply = _run(
                flavour,
                evalctl.call_action,
                evalctl.acall_action,
                api.detail_route,
                api.detail_action,
                api.params(task()),
            )
            return reply.request

        return call

    def with_fault(
        fault: str, where: str, call: Callable[[], object], times: int = 5
    ) -> Callable[[], object]:
        route = api.detail_fault_route if where == "detail" else api.stop_fault_route

        def faulty() -> object:
            emulator.inject(fault, times=times, route=route, delay_s=3.0)
            return call()

        return faulty

    def with_raw(
        shape: str, where: str, call: Callable[[], object], status: int, times: int = 1
    ) -> Callable[[], object]:
        route = api.detail_fault_route if where == "detail" else api.stop_fault_route

        def echoing() -> object:
            emulator.serve_raw(echo_headers(seen, shape), status=status, route=route, times=times)
            return call()

        return echoing

    def never_stopped() -> Callable[[], object]:
        def call() -> object:
            emulator.set_stop_delay(10_000)
            return cancel(add(eval_mode="rule,model"), wait=True, wait_timeout=5)()

        return call

    model = "rule,model"  # the detail of a `model` task carries appAk / appSk
    lying_overrides = api.overrides(state=api.running_states[0])
    secret_fields = api.overrides(
        state=f"{APP_SK} bce-auth-v1/{AK}/2025-01-01T00:00:00Z/1800/host;x-bce-date/{'0' * 64}",
        name=f"sk={SK} ak={AK}",
        **({"evaluationIdStr": AK} if api.name == "v1" else {"taskId": AK}),
    )
    odd_place = api.overrides(
        **(
            {"evalStandardConf": {"evalMode": f"rule,{APP_AK}", "appAk": APP_AK, "appSk": APP_SK}}
            if api.name == "v1"
            else {
                "evalMode": f"rule,{APP_AK}",
                "evalStandardConf": {"appAk": APP_AK, "appSk": APP_SK},
            }
        )
    )
    scenarios: list[tuple[str, Callable[[], object], str]] = [
        ("cancelled, waited", cancel(add(eval_mode=model), wait=True), "cancelled"),
        ("described", describe(add(eval_mode=model)), "EvalTask"),
        ("dry run", cancel(add(eval_mode=model), dry_run=True), "dry_run"),
        ("already stopped", cancel(add(eval_mode=model, state="Stopped")), "already_stopped"),
        ("not running", cancel(add(eval_mode=model, state="Done")), "not_running"),
        ("drop-in stop", stop_action(add(eval_mode=model)), "QfResponse"),
        ("drop-in detail", detail_request(add(eval_mode=model)), "QfRequest"),
        ("manual", cancel(add(eval_mode="model,manual")), "manual_evaluation"),
        ("manual, drop-in", stop_action(add(eval_mode="model,manual")), "manual_evaluation"),
        ("undecidable", cancel(add(eval_mode="rule,judge,model")), "precheck"),
        ("not found", cancel(add("ame-nosuchtask")), "not_found"),
        ("refused", cancel(add(eval_mode=model, state="Done", **lying_overrides)), "rejected"),
        ("wrong secret key", cancel(add(eval_mode=model), sk=WRONG_SK), "authentication"),
        ("unknown access key", cancel(add(), ak=WRONG_SK, sk=SK), "authentication"),
        (
            "exhausted on the detail",
            with_fault("http_503", "detail", cancel(add(eval_mode=model))),
            "retry_exhausted",
        ),
        (
            "exhausted on the stop",
            with_fault("reset", "stop", cancel(add(eval_mode=model))),
            "retry_exhausted",
        ),
        (
            "timed out stop",
            with_fault("slow", "stop", cancel(add(eval_mode=model), retry=QUICK), times=1),
            "cancelled",
        ),
        (
            "garbled stop",
            with_fault("missing_fields", "stop", cancel(add(eval_mode=model))),
            "invalid_response",
        ),
        (
            "garbled detail",
            with_fault("not_json", "detail", cancel(add(eval_mode=model))),
            "precheck",
        ),
        ("wait timeout", never_stopped(), "wait_timeout"),
        ("bad api", cancel(add(), api="v3"), "configuration"),
        ("secrets in detail fields", cancel(add(eval_mode=model, **secret_fields)), "precheck"),
        ("app keys in odd places", cancel(add(eval_mode=model, **odd_place)), "precheck"),
        (
            "echo: envelope on the detail",
            with_raw("v1-envelope", "detail", cancel(add()), 200),
            "precheck",
        ),
        (
            "echo: error status on the detail",
            with_raw("bce", "detail", cancel(add()), 400),
            "precheck",
        ),
        ("echo: 403", with_raw("bce", "detail", cancel(add()), 403), "authentication"),
        (
            "echo: 503 until exhausted",
            with_raw("bce", "detail", cancel(add()), 503, times=2),
            "retry_exhausted",
        ),
        (
            "echo: refused stop",
            with_raw(
                "v1-stop-refused" if api.name == "v1" else "bce",
                "stop",
                cancel(add()),
                200 if api.name == "v1" else 400,
            ),
            "rejected",
        ),
        (
            "echo: log id of a detail",
            with_raw(
                f"{api.name}-detail", "detail", cancel(lambda: emulator.add_task(ECHO_TASK_ID)), 200
            ),
            "cancelled",
        ),
        (
            "echo: drop-in detail error",
            with_raw("bce", "detail", detail_request(add()), 400),
            "server_error",
        ),
    ]
    return scenarios


def _label(outcome: object) -> str:
    if isinstance(outcome, evalctl.EvalctlError):
        return outcome.kind
    if isinstance(outcome, evalctl.CancelResult):
        return outcome.outcome
    return type(outcome).__name__


@pytest.fixture
def sentinel_emulator() -> Iterator[Emulator]:
    """An emulator with sentinel keys and sentinel judge-app keys, qianfan pointed at it."""
    with (
        Emulator(ak=AK, sk=SK, stop_delay_s=0.0, app_ak=APP_AK, app_sk=APP_SK) as emulator,
        pointed_at(emulator),
    ):
        yield emulator


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_no_secret_leaves_the_library(
    sentinel_emulator: Emulator,
    api_name: str,
    flavour: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every scenario ends as expected, and nothing it leaves behind holds a secret."""
    seen = Seen()
    scenarios = library_scenarios(sentinel_emulator, APIS[api_name], flavour, seen)
    labels: dict[str, str] = {}
    shown_by: dict[str, list[str]] = {}
    with capturing() as captured:
        for name, call, _ in scenarios:
            wiped(sentinel_emulator)
            try:
                outcome: object = call()
            except evalctl.EvalctlError as error:
                outcome = error
            labels[name] = _label(outcome)
            # The test's own frames (which hold everything captured so far) are left out.
            shown_by[name] = shown(outcome, from_library=True)
    shown_by["stdout and stderr"] = list(capsys.readouterr())

    assert {name: expected for name, _, expected in scenarios} == labels
    assert len(seen.authorizations) >= 6  # the echoing answers really were sent
    assert any(e["event"] == "qianfan.request" for e in captured.events)
    sources = {f"shown by {name!r}": "\n".join(texts) for name, texts in shown_by.items()}
    assert_no_leaks({**captured.sources(), **sources}, seen)


# --- the command line -------------------------------------------------------------------

EVALCTL = Path(sys.executable).with_name("evalctl")
CLI_TIMEOUT_S = 60


@dataclass(frozen=True)
class CliRun:
    """One `evalctl` run against its own sentinel-keyed emulator."""

    name: str
    args: tuple[str, ...]
    #: Seeds the emulator; returns the task ids and their expected outcome or error kind.
    seed: Callable[[Emulator, Seen], dict[str, str]]
    exit_code: int
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str
    journal: str
    expected: dict[str, str]


def _mixed_tasks(api: ApiSpec) -> Callable[[Emulator, Seen], dict[str, str]]:
    """An echoing detail first (runs with --concurrency 1), then one task per outcome."""

    def seed(emulator: Emulator, seen: Seen) -> dict[str, str]:
        shape = "v1-envelope" if api.name == "v1" else "bce"
        emulator.serve_raw(
            echo_headers(seen, shape),
            status=200 if api.name == "v1" else 400,
            route=api.detail_fault_route,
        )
        secret_state = api.overrides(state=f"{APP_SK} ak={AK} bce-auth-v1/{AK}/x/1/host;a/{SK}")
        return {
            emulator.add_task(eval_mode="rule,model"): "precheck",  # gets the echo
            emulator.add_task(eval_mode="rule,model"): "cancelled",
            emulator.add_task(eval_mode="model,manual"): "manual_evaluation",
            emulator.add_task(eval_mode="rule,model", **secret_state): "precheck",
            emulator.add_task(
                eval_mode="rule,model", state="Done", **api.overrides(state=api.running_states[0])
            ): "rejected",
            "ame-nosuchtask": "not_found",
        }

    return seed


def _statuses(api: ApiSpec) -> Callable[[Emulator, Seen], dict[str, str]]:
    def seed(emulator: Emulator, seen: Seen) -> dict[str, str]:
        emulator.serve_raw(echo_headers(seen, f"{api.name}-detail"), route=api.detail_fault_route)
        secret_name = api.overrides(
            **{"name" if api.name == "v1" else "taskName": f"sk={SK} {APP_AK} bce-auth-v1/{AK}/x"}
        )
        return {
            emulator.add_task(ECHO_TASK_ID, eval_mode="rule"): "stop",  # its detail is the echo
            emulator.add_task(eval_mode="rule,model", **secret_name): "stop",
            emulator.add_task(eval_mode="model,manual"): "manual_evaluation",
            "ame-nosuchtask": "not_found",
        }

    return seed


def _one_task(emulator: Emulator, seen: Seen) -> dict[str, str]:
    return {emulator.add_task(eval_mode="rule,model"): "authentication"}


def _with_retries(
    seed: Callable[[Emulator, Seen], dict[str, str]], api: ApiSpec
) -> Callable[[Emulator, Seen], dict[str, str]]:
    """`seed`, and the first stop fails twice (an HTTP 503, then a lost connection)."""

    def seeded(emulator: Emulator, seen: Seen) -> dict[str, str]:
        emulator.inject("http_503", route=api.stop_fault_route)
        emulator.inject("reset", route=api.stop_fault_route)
        return seed(emulator, seen)

    return seeded


V1, V2 = APIS["v1"], APIS["v2"]
JOURNALLED = ("--journal", "journal.jsonl", "--concurrency", "1")
#: Few runs (processes forked from the zygote, `forkserver`), each covering much.
CLI_RUNS = [
    CliRun("cancel --json -vv, v1", ("cancel", "--json", "-vv", *JOURNALLED), _mixed_tasks(V1), 7),
    CliRun(
        "cancel -v, JSON logs, retries, v2",
        ("cancel", "-v", "--api", "v2", *JOURNALLED),
        _with_retries(_mixed_tasks(V2), V2),
        7,
        env={"EVALCTL_LOG_FORMAT": "json"},
    ),
    CliRun("status --json -vv, v1", ("status", "--json", "-vv"), _statuses(V1), 4),
    CliRun(
        "cancel -vv, wrong secret key, v2",
        ("cancel", "-vv", "--api", "v2", *JOURNALLED),
        _one_task,
        1,
        env={"QIANFAN_SECRET_KEY": WRONG_SK},
    ),
]


def _run_cli(run: CliRun, home: Path, seen: Seen) -> CliResult:
    with Emulator(ak=AK, sk=SK, stop_delay_s=0.0, app_ak=APP_AK, app_sk=APP_SK) as emulator:
        expected = run.seed(emulator, seen)
        home.mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))},
            **sdk_environment(emulator),
            "HOME": str(home),
            "EVALCTL_TESTING": "1",
            "NO_COLOR": "1",
            **run.env,
        }
        done = forkserver.run(
            [str(EVALCTL), *run.args, *expected],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
    journal = home / "journal.jsonl"
    text = journal.read_text(encoding="utf-8") if journal.exists() else ""
    return CliResult(done.returncode, done.stdout, done.stderr, text, expected)


def _labels(result: CliResult, run: CliRun) -> dict[str, str]:
    """Each task's outcome, from --json output, the journal, or the human lines."""
    labels: dict[str, str] = {}
    lines = result.stdout.splitlines() if "--json" in run.args else []
    if not lines:
        lines = result.journal.splitlines()
    for line in lines:
        record = json.loads(line)
        if record.get("record") == "intent":
            continue
        label = record.get("outcome") or record.get("error_kind")
        if run.args[0] == "status" and label is None:
            label = "stop" if record["stop_allowed"] else record["verdict"]
        labels[record["task_id"]] = label
    return labels


def test_no_secret_leaves_the_command_line(tmp_path: Path) -> None:
    """Every CLI run ends as expected; stdout, stderr and the journal hold no secret."""
    seen = Seen()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda i: _run_cli(CLI_RUNS[i], tmp_path / f"run{i}", seen), range(len(CLI_RUNS))
            )
        )

    sources: dict[str, str] = {}
    for run, result in zip(CLI_RUNS, results, strict=True):
        assert (run.name, run.exit_code) == (run.name, result.code), result.stderr[-2000:]
        assert (run.name, result.expected) == (run.name, _labels(result, run))
        assert "Traceback" not in result.stderr
        sources.update(
            {
                f"{run.name}: stdout": result.stdout,
                f"{run.name}: stderr": result.stderr,
                f"{run.name}: journal": result.journal,
            }
        )
    assert len(seen.authorizations) == 3  # one echoing answer in each of the first three runs
    assert_no_leaks(sources, seen)
