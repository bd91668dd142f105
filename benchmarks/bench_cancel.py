"""Cancel path: `cancel_eval_task` against the two calls a careful user writes by hand.

The hand-written side is what a careful qianfan user does without evalctl:
read the detail with the SDK's `call_action`, check the modes and the state
in the body, send the cancel with `call_action`, check `result.result`. Each
run stops a fresh automatic task of the in-process emulator; the two sides
alternate in blocks (ABBA) after a warm-up. Target: median ratio ≤ 1.05.

    python benchmarks/bench_cancel.py [--quick] [--n N]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import _common

TARGET: Final = 1.05
N: Final = 500
QUICK_N: Final = 20
_RUNNING: Final = frozenset({"Pending", "Doing"})


def raw_careful_cancel(call_action: Callable[..., Any], task_id: str) -> None:
    """What a careful user writes with the bare SDK: look, decide, stop, check."""
    detail = call_action(_common.V1_DETAIL, "", {"id": task_id}).body["result"]
    modes = {
        mode.strip().lower() for mode in str(detail["evalStandardConf"]["evalMode"]).split(",")
    }
    if "manual" in modes or detail["state"] not in _RUNNING:
        raise RuntimeError(f"{task_id} must not be stopped: {sorted(modes)}, {detail['state']}")
    answer = call_action(_common.V1_CANCEL, "", {"id": task_id}).body["result"]
    if not answer["result"]:
        raise RuntimeError(f"{task_id} was not stopped: {answer.get('errorMessage')}")


def main() -> None:
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="cancels per side")
    _common.prepare("production")
    block = 10 if args.quick else 25
    warmup = 3 if args.quick else 20
    _common.header(
        "bench_cancel",
        f"cancel_eval_task vs SDK detail+check+cancel, {args.n} fresh tasks per side in ABBA "
        f"blocks of {block}, in-process emulator; logging: {_common.LOGGING_MODES['production']}",
    )

    from qianfan.resources.console.utils import call_action as raw_call_action

    import evalctl

    with _common.emulator() as emulator:
        per_side = warmup + args.n

        def fresh(prefix: str) -> Iterator[str]:
            for index in range(2 * per_side):  # two phases: production, rendered
                yield emulator.add_task(f"ame-{prefix}{index:07d}")

        ours_ids, theirs_ids = fresh("benchours"), fresh("benchraw")

        def ours() -> None:
            result = evalctl.cancel_eval_task(next(ours_ids))
            if result.outcome != "cancelled":
                raise RuntimeError(f"unexpected outcome {result.outcome}")

        def theirs() -> None:
            raw_careful_cancel(raw_call_action, next(theirs_ids))

        for mode in ("production", "rendered"):
            _common.configure_logging(mode)
            a, b = _common.interleaved(ours, theirs, args.n, block=block, warmup=warmup)
            target = TARGET if mode == "production" else None
            suffix = "" if mode == "production" else ", INFO logs rendered"
            _common.ratio_line(
                f"cancel path median{suffix}",
                _common.median(a.wall),
                _common.median(b.wall),
                target=target,
            )
            _common.ratio_line(
                f"cancel path p95{suffix}", _common.p95(a.wall), _common.p95(b.wall), target=None
            )
            _common.ratio_line(
                f"cancel path client CPU median{suffix}",
                _common.median(a.cpu),
                _common.median(b.cpu),
                target=None,
            )
        stops = len(emulator.stop_requests())
        expected = 2 * 2 * per_side
        if stops != expected:
            raise SystemExit(f"expected {expected} stop requests, the emulator saw {stops}")


if __name__ == "__main__":
    main()
