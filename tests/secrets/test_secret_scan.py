"""The secret scan: hostile servers echo every secret in every spelling; none comes out.

Every failure kind the library can reach over real HTTP — envelope errors,
HTTP 400/403/500/503, HTML and non-JSON answers, refused and failing stops,
waits that time out — plus successes, through `cancel_eval_task`,
`describe_eval_task`, the drop-in `call_action` (sync and async, v1 and v2)
and the batch `cancel_eval_tasks`, against `secret_hostile.HostileServer`,
which answers each request with its own Authorization value, signature,
signing key, the AK, the SK and the judge app's keys, spelled raw,
JSON-escaped, ``\\/``-escaped, ``\\uXXXX``-escaped, JSON in JSON,
percent-encoded (three ways, and twice), HTML/XML-escaped, as YAML and as a
query string — in messages, log ids, codes, headers and detail fields.

Each outcome is rendered as `secret_scan.shown` does (the error chain's
str/repr/args/attributes, tracebacks with every frame's locals, structlog's
dict tracebacks with locals); structlog events, stdlib logging at DEBUG
(qianfan's and baidubce's loggers included), warnings, stdout and stderr are
captured; none may hold a 10-character window of a sentinel, a signature,
a signing key or an unmasked ``bce-auth-v1/`` value. App keys are masked
once evalctl has seen them (in a detail), so each run reads a detail first.
The body the drop-in
`call_action` returns on success is the caller's own data and is not
scanned; the request it reports is.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from core.support import APIS, ApiSpec
from secret_hostile import SPELLINGS, HostileServer
from secret_scan import Needles, capturing, leaking_locals, no_error_is_its_own_cause, shown

import evalctl
from evalctl.emulator import pointed_at

AK = "AKsc4Nq7Wm2Lx9Tb"
SK = "SKsc8Hv3Rf6Yd1Gp"
APP_AK = "APsc2Kw9Qz5Lm7Xe"
APP_SK = "APsc6Tj1Vn4Hc8Ra"
QUICK = evalctl.RetryPolicy(max_attempts=2)
_IDS = itertools.count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    """One hostile server for the module, qianfan pointed at it with the sentinel keys."""
    with HostileServer(AK, SK, APP_AK, APP_SK) as started, pointed_at(started):
        yield started


def _run(
    flavour: str, sync: Callable[..., Any], coro: Callable[..., Any], *a: Any, **kw: Any
) -> Any:
    if flavour == "sync":
        return sync(*a, **kw)
    return asyncio.run(coro(*a, **kw))


def scenarios(
    server: HostileServer, api: ApiSpec, flavour: str, spelling: str
) -> list[tuple[str, Callable[[], object]]]:
    """(name, call) for every failure kind and a few successes, in one spelling."""

    def task(detail: str = "detail", stop: str = "stop-ok") -> Callable[[], str]:
        return lambda: server.plan(f"ame-scan{next(_IDS)}", detail, stop, spelling)

    def cancel(make: Callable[[], str], **kw: Any) -> Callable[[], object]:
        kw.setdefault("retry", QUICK)
        return lambda: _run(
            flavour, evalctl.cancel_eval_task, evalctl.acancel_eval_task, make(), api=api.name, **kw
        )

    def describe(make: Callable[[], str]) -> Callable[[], object]:
        return lambda: _run(
            flavour, evalctl.describe_eval_task, evalctl.adescribe_eval_task, make(), api=api.name
        )

    def drop_in(route: str, action: str, make: Callable[[], str]) -> Callable[[], object]:
        def call() -> object:
            reply = _run(
                flavour,
                evalctl.call_action,
                evalctl.acall_action,
                route,
                action,
                api.params(make()),
                retry=QUICK,
            )
            return reply.request  # the body is the caller's data; the request is evalctl's

        return call

    return [
        # First: evalctl learns the app keys only from a detail that carries them.
        ("described", describe(task())),
        ("detail: manual", cancel(task(detail="detail-manual"))),
        ("detail: undecidable modes", cancel(task(detail="detail-undecidable"))),
        (
            "drop-in stop: manual",
            drop_in(api.stop_route, api.stop_action, task(detail="detail-manual")),
        ),
        ("detail: envelope error", cancel(task(detail="envelope"))),
        ("detail: HTTP 400", cancel(task(detail="bce-400"))),
        ("detail: HTTP 403", cancel(task(detail="bce-403"))),
        ("detail: HTTP 503 until exhausted", cancel(task(detail="bce-503"))),
        ("detail: HTML 502", cancel(task(detail="html-502"))),
        ("detail: not JSON", cancel(task(detail="not-json"))),
        ("stop: refused", cancel(task(stop="stop-refused"))),
        ("stop: HTTP 500 until exhausted", cancel(task(stop="bce-500"))),
        ("stop: HTML 504", cancel(task(stop="html-504"))),
        ("stop: not JSON", cancel(task(stop="not-json"))),
        ("cancelled", cancel(task())),
        ("cancelled, wait times out", cancel(task(), wait=True, wait_timeout=5)),
        ("dry run", cancel(task(), dry_run=True)),
        ("described: HTTP 400", describe(task(detail="bce-400"))),
        (
            "drop-in stop: refused",
            drop_in(api.stop_route, api.stop_action, task(stop="stop-refused")),
        ),
        ("drop-in stop", drop_in(api.stop_route, api.stop_action, task())),
        (
            "drop-in detail: HTTP 400",
            drop_in(api.detail_route, api.detail_action, task(detail="bce-400")),
        ),
        (
            "drop-in detail: envelope",
            drop_in(api.detail_route, api.detail_action, task(detail="envelope")),
        ),
    ]


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - what escaped is what is scanned (and checked)
        return error


def _assert_clean(
    outcomes: dict[str, object], sources: dict[str, str], server: HostileServer, tasks: int
) -> None:
    """No foreign error, no error its own cause, no leak; every problem listed at once."""
    needles = Needles((AK, SK, APP_AK, APP_SK), SK)
    needles.learn(server.authorizations())
    assert len(server.received) >= tasks  # every task met the hostile server
    problems = [
        f"{name}: {type(o).__name__} is not an EvalctlError"
        for name, o in outcomes.items()
        if isinstance(o, BaseException) and not isinstance(o, evalctl.EvalctlError)
    ]
    problems += [
        f"{name}: an exception in its chain is its own cause"
        for name, o in outcomes.items()
        if not no_error_is_its_own_cause(o)
    ]
    frames: set[str] = set()
    for name, outcome in outcomes.items():
        sources[f"shown by {name!r}"] = "\n".join(shown(outcome))
        frames |= leaking_locals(outcome, needles)
    problems += [f"frame local leaks: {where}" for where in sorted(frames)]
    problems += [f"{name}: {hits[:2]!r}" for name, hits in needles.leaks(sources).items()]
    assert problems == [], "\n".join(problems)


#: How many spellings each scenario is run with, per API generation and flavour.
SPELLINGS_PER_SCENARIO = 2
_FLAVOURS = [("v1", "sync"), ("v1", "async"), ("v2", "sync"), ("v2", "async")]


def _spellings_for(index: int, combination: int) -> list[str]:
    """Rotated so that across the four combinations each scenario meets 8 of the spellings."""
    names = list(SPELLINGS)
    start = index + SPELLINGS_PER_SCENARIO * combination
    return [names[(start + j) % len(names)] for j in range(SPELLINGS_PER_SCENARIO)]


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_no_secret_leaves_the_library_whatever_the_server_echoes(
    server: HostileServer, api_name: str, flavour: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every scenario in every spelling: no channel holds a secret, no error is foreign."""
    server.forget()
    outcomes: dict[str, object] = {}
    combination = _FLAVOURS.index((api_name, flavour))
    with capturing() as captured:
        for spelling in SPELLINGS:  # the detail first: it teaches the app keys
            name, call = scenarios(server, APIS[api_name], flavour, spelling)[0]
            outcomes[f"{name} [{spelling}]"] = _outcome(call)
        for index in range(1, len(scenarios(server, APIS[api_name], flavour, "raw"))):
            for spelling in _spellings_for(index, combination):
                name, call = scenarios(server, APIS[api_name], flavour, spelling)[index]
                outcomes[f"{name} [{spelling}]"] = _outcome(call)
    out, err = capsys.readouterr()

    sources = {**captured.sources(), "stdout": out, "stderr": err}
    assert any(e.get("event") == "qianfan.request" for e in captured.events)
    _assert_clean(outcomes, sources, server, tasks=len(outcomes))


def test_no_secret_leaves_a_batch_whatever_the_server_echoes(
    server: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cancel_eval_tasks` over tasks with every answer kind and spelling: reports are clean."""
    server.forget()
    kinds = [
        ("detail", "stop-ok"),  # first: a detail that carries the app keys
        ("detail-manual", "stop-ok"),
        ("detail-undecidable", "stop-ok"),
        ("envelope", "stop-ok"),
        ("bce-400", "stop-ok"),
        ("bce-503", "stop-ok"),
        ("html-502", "stop-ok"),
        ("detail", "stop-refused"),
        ("detail", "bce-500"),
        ("detail", "stop-ok"),
    ]
    outcomes: dict[str, object] = {}
    with capturing() as captured:
        for api_name in ("v1", "v2"):
            names = list(SPELLINGS)
            ids = [
                server.plan(f"ame-batch{next(_IDS)}", *kinds[i % len(kinds)], names[i % len(names)])
                for i in range(2 * len(names))
            ]
            reports: list[Any] = []
            result = _outcome(
                lambda ids=ids, api_name=api_name, reports=reports: evalctl.cancel_eval_tasks(
                    ids, api=api_name, retry=QUICK, concurrency=4, on_report=reports.append
                )
            )
            outcomes[f"batch {api_name}"] = result
            for report in reports:
                outcomes[f"batch {api_name} {report.task_id}"] = report
                if report.error is not None:
                    outcomes[f"batch {api_name} {report.task_id} error"] = report.error
    out, err = capsys.readouterr()

    assert len(outcomes) > 2 * 2 * len(SPELLINGS)  # every task was reported
    sources = {**captured.sources(), "stdout": out, "stderr": err}
    _assert_clean(outcomes, sources, server, tasks=2 * 2 * len(SPELLINGS))
