"""No credential in any result, error or event of the core scenarios (a light sweep).

The dedicated security suite goes further (hostile servers, echoing
gateways); this checks that the everyday paths never show a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.support import ApiSpec, Client
from evalctl import EvalctlError, RetryPolicy
from evalctl.emulator import Emulator
from evalctl.emulator._defaults import DEFAULT_APP_AK, DEFAULT_APP_SK

WRONG_SK = "wrong-secret-key-9d2f"


def test_no_secret_in_any_result_error_or_event(
    client: Client, api: ApiSpec, emulator: Emulator, logs: list[dict[str, Any]]
) -> None:
    """AK, SK, Authorization values and appAk/appSk never appear, whatever the outcome."""
    model = "rule,model"  # details of `model` tasks carry appAk / appSk
    quick = RetryPolicy(max_attempts=2, attempt_timeout=0.2)
    shown: list[str] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            shown.append(repr(call()))
        except EvalctlError as error:
            shown.extend([str(error), repr(error), repr(getattr(error, "last_error", None))])
            shown.append(repr(vars(error)))

    def faulty(fault: str, route: str, times: int = 2) -> Callable[[], object]:
        def call() -> object:
            emulator.inject(fault, times=times, route=route, delay_s=1.0)
            return client.cancel(emulator.add_task(eval_mode=model), retry=quick)

        return call

    attempt(lambda: client.cancel(emulator.add_task(eval_mode=model), wait=True))
    attempt(lambda: client.describe(emulator.add_task(eval_mode=model)))
    # The drop-in returns the server's body as is (appAk included: it is the caller's
    # own data); the request it reports must not show the signature.
    reply = client.detail_action(emulator.add_task(eval_mode=model))
    assert reply.request is not None
    shown.append(repr(reply.request.headers))
    attempt(lambda: client.cancel(emulator.add_task(eval_mode="model,manual")))
    attempt(lambda: client.stop_action(emulator.add_task(eval_mode="model,manual")))
    attempt(lambda: client.cancel("ame-nosuchtask"))
    attempt(lambda: client.cancel(emulator.add_task(eval_mode=model), sk=WRONG_SK))
    attempt(faulty("not_json", api.detail_fault_route, times=1))
    attempt(faulty("http_503", api.detail_fault_route))
    attempt(faulty("reset", api.detail_fault_route))
    attempt(faulty("slow", api.stop_fault_route, times=1))
    attempt(
        lambda: client.cancel(
            emulator.add_task(
                eval_mode=model, state="Done", **api.overrides(state=api.running_states[0])
            )
        )
    )

    assert emulator.faults_pending == 0  # each scenario took exactly its own faults
    text = "\n".join(shown) + "\n" + repr(logs)
    assert len(shown) >= 12
    for secret in (emulator.ak, emulator.sk, WRONG_SK, DEFAULT_APP_AK, DEFAULT_APP_SK):
        assert secret not in text
    assert "bce-auth-v1/" not in text.lower()
