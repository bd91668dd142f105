"""Testing support: zero-backoff retries for your tests (and ours).

    from evalctl.testing import set_testing

    with set_testing(True) as clock:
        cancel_eval_task("ame-...")   # retries wait no real time
    assert clock.sleeps == [...]      # the waits that would have happened

`EVALCTL_TESTING=1` in the environment turns the mode on at import, which is
how subprocess tests of the CLI avoid real backoff.
"""

from __future__ import annotations

from evalctl._base._config import Clock, VirtualClock, get_clock, set_clock

__all__ = ["VirtualClock", "is_testing", "set_testing"]


def is_testing() -> bool:
    """Whether retries and polling currently run on a virtual clock."""
    return isinstance(get_clock(), VirtualClock)


class _Mode:
    """The value of `set_testing`: usable as a context manager, or ignored."""

    def __init__(self, previous: Clock, clock: VirtualClock | None) -> None:
        self._previous = previous
        self.clock = clock

    def __enter__(self) -> VirtualClock | None:
        return self.clock

    def __exit__(self, *exc_info: object) -> None:
        set_clock(self._previous)


def set_testing(on: bool = True, *, clock: VirtualClock | None = None) -> _Mode:
    """Turn testing mode on (a fresh `VirtualClock`, or `clock`) or off (real time).

    Returns a context manager that restores the previous mode on exit; its
    value is the virtual clock in force (None when turned off).
    """
    new = (clock or VirtualClock()) if on else None
    previous = set_clock(new)
    return _Mode(previous, new)
