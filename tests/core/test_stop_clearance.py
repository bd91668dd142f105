"""Every stop follows a verdict of its own operation; an unverifiable stop says so.

* A stop that may have been applied, whose verification read then fails (or
  cannot be understood), ends in `StopUnconfirmedError` (exit 8) — not in
  `PrecheckError`, which promises that nothing was stopped.
* Errors raised after the pre-check read carry the state it read (`.state`).
* The drop-in reads the caller's params once, for the id; the stop it sends
  is built from that validated id; a stop body with other keys is refused unsent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from helpers import events

from core.support import ApiSpec, Client, cancel_with_hook
from evalctl import (
    CancelRejectedError,
    PrecheckError,
    RetryExhaustedError,
    RetryPolicy,
    StopUnconfirmedError,
    UnsafeRequestError,
)
from evalctl._base._errors import EXIT_STOP_UNCONFIRMED
from evalctl.emulator import Emulator


@pytest.mark.parametrize(
    ("fault", "cause"), [("http_503", RetryExhaustedError), ("not_json", PrecheckError)]
)
def test_a_lost_stop_whose_verification_read_fails_is_unconfirmed(
    client: Client,
    api: ApiSpec,
    emulator: Emulator,
    logs: list[dict[str, Any]],
    fault: str,
    cause: type[Exception],
) -> None:
    """The stop timed out, then the detail could not be read: exit 8, state before, cause."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("slow", route=api.stop_fault_route, delay_s=2.0)

    def detail_down(_task: object) -> None:
        emulator.inject(fault, times=20, route=api.detail_fault_route)

    with pytest.raises(StopUnconfirmedError) as caught:
        cancel_with_hook(client, task_id, detail_down, attempt_timeout=0.2, max_attempts=3)

    error = caught.value
    assert (error.exit_code, error.kind, error.task_id) == (
        EXIT_STOP_UNCONFIRMED,
        "stop_unconfirmed",
        task_id,
    )
    assert error.state == api.running_states[0]
    assert type(error.__cause__) is cause
    assert "may have been sent" in str(error)
    # Nothing resent blindly. (Counted as sent: under load the emulator may read
    # the request only after the client gave up on it.)
    stops = [e for e in events(logs, "qianfan.request") if e["purpose"] == "stop"]
    assert [e["outcome"] for e in stops] == ["error"]


def test_a_drop_in_stop_lost_then_unverifiable_is_unconfirmed(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """The drop-in too: a stop that timed out, then a detail that answers garbage."""
    task_id = emulator.add_task(state=api.running_states[0])
    emulator.inject("slow", route=api.stop_fault_route, delay_s=3.0)
    # Once the stop has arrived (and is being held), the detail starts answering garbage.
    watcher = threading.Thread(target=_garble_details_after_the_stop, args=(emulator, api))
    watcher.start()
    try:
        with pytest.raises(StopUnconfirmedError) as caught:
            client.stop_action(task_id, retry=RetryPolicy(attempt_timeout=0.6))
    finally:
        watcher.join()

    assert type(caught.value.__cause__) is PrecheckError
    assert [r.is_stop for r in emulator.requests] == [False, True, False]


def _garble_details_after_the_stop(emulator: Emulator, api: ApiSpec) -> None:
    deadline = time.monotonic() + 5.0
    while not emulator.stop_requests() and time.monotonic() < deadline:
        time.sleep(0.002)
    emulator.inject("not_json", times=5, route=api.detail_fault_route)


def test_a_rejected_stop_carries_the_state_the_precheck_read(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """CancelRejectedError (the server refused the stop) reports the state the pre-check read."""
    running = api.running_states[1]
    task_id = emulator.add_task(state=api.finished_states[0], **api.overrides(state=running))

    with pytest.raises(CancelRejectedError) as caught:
        client.cancel(task_id)

    assert caught.value.state == running
    assert len(emulator.stop_requests()) == 1


def test_a_drop_in_stop_with_other_keys_is_refused_unsent(
    client: Client, api: ApiSpec, emulator: Emulator
) -> None:
    """Only the documented id field: anything next to it is refused before any request."""
    task_id = emulator.add_task()
    for extra in ({"force": True}, {"ids": [task_id]}, {api.id_field.upper(): task_id}):
        with pytest.raises(UnsafeRequestError):
            client.call_action(api.stop_route, api.stop_action, {**api.params(task_id), **extra})

    assert emulator.requests == []


class _Flipping(Mapping[str, Any]):
    """Names `first` on its first full read and `then` on every later one."""

    def __init__(self, key: str, first: str, then: str) -> None:
        self._key, self._first, self._then = key, first, then
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        if key != self._key:
            raise KeyError(key)
        self.reads += 1
        return self._first if self.reads == 1 else self._then

    def __iter__(self) -> Iterator[str]:
        return iter([self._key])

    def __len__(self) -> int:
        return 1


def test_the_drop_in_reads_the_callers_params_once_and_stops_the_checked_task(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """A params object that changes after it was read cannot redirect the stop."""
    automatic = emulator.add_task(eval_mode="rule")
    manual = emulator.add_task(eval_mode="rule,manual")
    params = _Flipping(api.id_field, automatic, manual)
    emulator.inject("reset", route=api.stop_fault_route)  # a resend, after a fresh read

    reply = client.call_action(api.stop_route, api.stop_action, params)  # type: ignore[arg-type]

    assert reply.code == 200
    assert params.reads == 1
    assert {r.task_id for r in emulator.requests} == {automatic}
    assert emulator.task(manual).stop_requests == 0
    assert [e["task_id"] for e in events(logs, "evalctl.precheck")] == [automatic] * 2
