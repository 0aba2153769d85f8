"""Time in the engine: deadlines and back-off, all on the injected clock.

``asyncio.wait_for`` would use the loop's own clock; the engine's timeouts go
through ``dpe.interfaces.Clock`` so tests drive them with a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from foundation.clock import Clock
from foundation.errors import OperationTimeout

T = TypeVar("T")


async def bounded(clock: Clock, seconds: float, awaitable: Awaitable[T], what: str) -> T:
    """Await ``awaitable`` for at most ``seconds``; else cancel it and raise OperationTimeout."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    if work.cancelled():
        raise OperationTimeout(f"{what} timed out after {seconds:g} s")
    return work.result()


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


class Backoff:
    """Capped exponential delays: none for the first ``free`` failures, then
    initial, 2x, 4x... up to maximum."""

    def __init__(self, initial: float, maximum: float, free: int = 1) -> None:
        self.initial = initial
        self.maximum = maximum
        self.free = free
        self.failures = 0

    @property
    def delay(self) -> float:
        if self.failures <= self.free:
            return 0.0
        return min(self.initial * 2.0 ** (self.failures - self.free - 1), self.maximum)

    def failed(self) -> None:
        self.failures += 1

    def reset(self) -> None:
        self.failures = 0
