"""The clock seam: every part reads time through it, so tests can drive time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Timer(Protocol):
    def cancel(self) -> object: ...


def call_at(clock: Clock, when: float, callback: Callable[[], None]) -> Timer:
    """Call ``callback`` at ``when`` (``clock.monotonic()`` seconds) on the running loop.

    A clock with timers of its own (the system's: the loop's timers) gives one,
    which can be cancelled and set again without waking anybody (a deadline that
    every message pushes on never fires while they come); any other clock (a
    test's) gets a task that sleeps on it."""
    own: Callable[[float, Callable[[], None]], Timer] | None = getattr(clock, "call_at", None)
    if own is not None:
        return own(when, callback)
    return asyncio.ensure_future(_sleep_then(clock, when, callback))


async def _sleep_then(clock: Clock, when: float, callback: Callable[[], None]) -> None:
    await clock.sleep(when - clock.monotonic())
    callback()


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + when - time.monotonic(), callback)
