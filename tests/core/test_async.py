"""What only the async flavour can do: be cancelled by its caller, and run concurrently."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from typing import Any

import pytest
from helpers import events

import evalctl
from core.support import ApiSpec
from evalctl._base import _api
from evalctl.emulator import Emulator, pointed_at


def _run_until_cancelled(coro: Any, after_s: float) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(coro, after_s)

    asyncio.run(main())


def test_cancelled_during_the_pre_check_sends_nothing_more(
    api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The caller gives up during the detail read: no stop is ever sent, and that is logged."""
    task_id = emulator.add_task()
    emulator.set_latency(0.2)

    _run_until_cancelled(evalctl.acancel_eval_task(task_id, api=api.name), 0.05)

    assert events(logs, "evalctl.interrupted") == [
        {
            "task_id": task_id,
            "in_flight": "detail",
            "stop_maybe_sent": False,
            "attempts": 1,
            "log_ids": [],
            "event": "evalctl.interrupted",
            "log_level": "warning",
        }
    ]
    assert emulator.stop_requests() == []
    assert events(logs, "evalctl.cancel") == []


def test_cancelled_during_the_stop_says_the_stop_may_have_been_sent(
    api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """The caller gives up while the stop is on the wire: logged as maybe sent, never resent."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    _run_until_cancelled(evalctl.acancel_eval_task(task_id, api=api.name), 0.3)

    (interrupted,) = events(logs, "evalctl.interrupted")
    detail_log_id = events(logs, "qianfan.request")[0]["log_id"]
    assert interrupted == {
        "task_id": task_id,
        "in_flight": "stop",
        "stop_maybe_sent": True,
        "attempts": 2,
        "log_ids": [detail_log_id],
        "event": "evalctl.interrupted",
        "log_level": "warning",
    }
    assert len(emulator.stop_requests()) == 1
    assert emulator.task(task_id).state in (_api.V1_STOPPING, _api.V1_STOPPED)


def test_cancelled_while_waiting_says_the_stop_was_sent(
    api: ApiSpec, logs: list[dict[str, Any]]
) -> None:
    """Given up during wait=True polling: the event must not claim that no stop went out."""
    with Emulator(stop_delay_s=3600, latency_s=0.1) as emulator, pointed_at(emulator):
        task_id = emulator.add_task(state=api.running_states[0])

        _run_until_cancelled(evalctl.acancel_eval_task(task_id, api=api.name, wait=True), 0.6)

        (interrupted,) = events(logs, "evalctl.interrupted")
        assert (interrupted["task_id"], interrupted["stop_maybe_sent"]) == (task_id, True)
        assert len(emulator.stop_requests()) == 1
        assert emulator.task(task_id).state == _api.V1_STOPPING


def test_cancelled_drop_in_stop_sends_nothing_more(
    api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """acall_action on the stop route, cancelled during its pre-check read: no stop."""
    task_id = emulator.add_task()
    emulator.set_latency(0.2)

    _run_until_cancelled(
        evalctl.acall_action(api.stop_route, api.stop_action, api.params(task_id)), 0.05
    )

    assert [e["in_flight"] for e in events(logs, "evalctl.interrupted")] == ["detail"]
    assert emulator.stop_requests() == []


def test_leaves_no_unclosed_client_session(
    api: ApiSpec, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed, timed-out and cancelled requests all close their aiohttp session."""
    emulator.inject("reset", route=api.detail_fault_route)
    emulator.inject("slow", route=api.stop_fault_route, delay_s=2.0)
    policy = evalctl.RetryPolicy(attempt_timeout=0.2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            result = asyncio.run(
                evalctl.acancel_eval_task(emulator.add_task(), api=api.name, retry=policy)
            )
            emulator.inject("not_json", route=api.detail_fault_route)
            with pytest.raises(evalctl.PrecheckError):
                asyncio.run(evalctl.acancel_eval_task(emulator.add_task(), api=api.name))
            emulator.set_latency(0.2)
            _run_until_cancelled(evalctl.acancel_eval_task(emulator.add_task(), api=api.name), 0.05)
            gc.collect()

    assert result.outcome == "cancelled"
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert "Unclosed" not in caplog.text


def test_many_cancels_run_concurrently_on_one_loop(api: ApiSpec, emulator: Emulator) -> None:
    """Async requests overlap (aiohttp, not a thread around the sync code)."""
    task_ids = [emulator.add_task() for _ in range(5)]
    emulator.set_latency(0.15)

    async def main() -> list[evalctl.CancelResult]:
        return await asyncio.gather(
            *(evalctl.acancel_eval_task(task_id, api=api.name) for task_id in task_ids)
        )

    started = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - started

    assert [r.outcome for r in results] == ["cancelled"] * 5
    assert sorted(str(r.task_id) for r in emulator.stop_requests()) == sorted(task_ids)
    # Ten requests of 0.15 s each: 1.5 s one after another, ~0.3 s side by side.
    assert elapsed < 1.2
