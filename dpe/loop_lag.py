"""How late this process's own event loop was: overload is not failure.

A dped whose loop did not run for a while (the host overloaded, the process
stopped or swapped, a long garbage collection, a slow store write) must not
blame its guests for the silence it could not hear.  Every wait of the engine
goes through its clock; ``LagClock`` wraps that clock and notes each sleep (or
timer) that woke later than planned (by ``NOTICED`` or more): the loop was not
running from the planned wake-up to the real one.  ``LoopLag.between(start, end)`` is
how long the loop was stalled within a span, so a guest's silence is counted
only for the time dped could actually have heard it (corosync warns of a
process "not scheduled for N ms"; Kubernetes gives nodes a grace period).

No timer of its own: the engine's sleepers (heartbeats, leases, timeouts)
wake at least once a second, and each reports what it saw.
"""

from __future__ import annotations

from collections.abc import Callable

from foundation.clock import Clock, Timer
from foundation.clock import call_at as clock_call_at

NOTICED = 0.05  # a wake-up this much later than planned is the loop's stall
KEPT = 600.0  # seconds of stalls remembered
MOST = 256  # stalls remembered at most (merged when they overlap)


class LoopLag:
    """Stalls of the loop, as disjoint ``(start, end)`` spans of the monotonic clock."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []
        self.worst = 0.0  # the longest stall noted

    def note(self, planned: float, woke: float) -> None:
        """A sleeper due at ``planned`` woke at ``woke``."""
        if woke - planned < NOTICED:
            return
        start, end = planned, woke
        kept = []
        for span in self.stalls:
            if span[1] < start or span[0] > end:
                kept.append(span)
            else:
                start, end = min(start, span[0]), max(end, span[1])
        kept.append((start, end))
        kept.sort()
        self.stalls = [s for s in kept if s[1] >= woke - KEPT][-MOST:]
        self.worst = max(self.worst, end - start)

    def between(self, start: float, end: float) -> float:
        """Seconds the loop was stalled between ``start`` and ``end``."""
        return sum(max(0.0, min(e, end) - max(s, start)) for s, e in self.stalls)


class LagClock:
    """A clock (``foundation.clock.Clock``) whose sleeps report how late they woke."""

    def __init__(self, clock: Clock, lag: LoopLag | None = None) -> None:
        self.clock = clock
        self.lag = lag or LoopLag()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def time(self) -> float:
        return self.clock.time()

    async def sleep(self, seconds: float) -> None:
        planned = self.clock.monotonic() + max(seconds, 0.0)
        await self.clock.sleep(seconds)
        self.lag.note(planned, self.clock.monotonic())

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """The wrapped clock's timer (``foundation.clock.call_at``), noting how late it fired."""

        def noted() -> None:
            self.lag.note(when, self.clock.monotonic())
            callback()

        return clock_call_at(self.clock, when, noted)

    def lag_since(self, start: float) -> float:
        """Seconds the loop was stalled since ``start`` (a ``monotonic()`` reading)."""
        return self.lag.between(start, self.monotonic())


def lag_clock(clock: Clock) -> LagClock:
    """``clock`` itself if it already tracks the loop's lag, else wrapped."""
    return clock if isinstance(clock, LagClock) else LagClock(clock)
