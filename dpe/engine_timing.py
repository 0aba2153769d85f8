"""Time in the engine: deadlines and timings, all on the injected clock.

``asyncio.wait_for`` would use the loop's own clock; the engine's timeouts go
through ``foundation.clock.Clock`` so tests drive them with a fake one.  On a
``dpe.loop_lag.LagClock`` (the engine's), a deadline reached while the loop
was stalled is extended once by the stall (up to the timeout again): what
was awaited gets the time dped could actually have watched it.  Back-off is
``foundation.backoff``'s, with ``retry_initial`` and ``retry_max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dpe.loop_lag import LagClock
from foundation.backoff import Backoff
from foundation.clock import Clock
from foundation.errors import OperationTimeout

T = TypeVar("T")


def deployable_phase(deployable: str, interval: float) -> float:
    """Where in ``interval`` the agents of ``deployable`` send their heartbeats:
    the same for all of its guests (one wake-up of its dped for them all), spread
    over the interval across deployables (not every dped of a host at once)."""
    return zlib.crc32(deployable.encode()) / 2**32 * interval


def at_phase(now: float, seconds: float, phase: float, period: float) -> float:
    """Seconds from ``now`` (the wall clock) to the last moment ``phase`` into a
    ``period`` that is at most ``seconds`` away (or the one a hundredth of a period
    beyond, when a timer fired that much before its phase): ``seconds`` once
    aligned, less before, never much more (a lease renewal must not come later than
    asked).  A dped's periodic timers share the phase at which its guests'
    heartbeats arrive, so it wakes once a period for them all."""
    tolerance = period / 100
    past = (now + seconds - phase + tolerance) % period - tolerance
    return seconds - past


async def bounded(clock: Clock, seconds: float, awaitable: Awaitable[T], what: str) -> T:
    """Await ``awaitable`` for at most ``seconds`` (plus the loop's stall meanwhile);
    else cancel it and raise OperationTimeout."""
    work = asyncio.ensure_future(awaitable)
    started = clock.monotonic()
    try:
        await _race(clock, work, seconds)
        stalled = clock.lag_since(started) if isinstance(clock, LagClock) else 0.0
        if not work.done() and stalled:
            await _race(clock, work, min(stalled, seconds))
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        elif not work.cancelled():
            work.exception()  # seen, even when this wait itself was cancelled
    if work.cancelled():
        raise OperationTimeout(f"{what} timed out after {seconds:g} s")
    return work.result()


async def _race(clock: Clock, work: asyncio.Future[Any], seconds: float) -> None:
    """Until ``work`` is done or ``seconds`` have passed."""
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()


async def first_of(*awaitables: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of them is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class EngineOptions:
    """The engine's own timings (the document carries heartbeat and monitors)."""

    create_timeout: float = 300.0  # a VM may boot slowly under emulation
    destroy_timeout: float = 60.0
    driver_timeout: float = 30.0  # list and state
    connect_timeout: float = 10.0
    connect_attempts: int = 3
    health_timeout: float = 10.0
    close_timeout: float = 5.0
    lease_ttl: float = 5.0
    lease_renew: float = 1.0
    lease_wait: float = 10.0  # how long start waits for a previous holder's lease to expire
    fence_margin: float = 1.25  # stop acting this long before the lease can expire
    retry_initial: float = 0.5  # back-off after failures in a row
    retry_max: float = 30.0
    agent_python: str = "python3"  # the guest agent's interpreter, on the guests
    agent_restart_window: float = 60.0  # a guest agent lost again this soon fails its assembly

    def backoff(self, free: int = 0) -> Backoff:
        """The engine's back-off; ``free`` failures in a row are retried at once."""
        return Backoff(self.retry_initial, self.retry_max, free)
