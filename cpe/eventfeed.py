"""Notices new events and wakes whoever waits for them (event streams, the hook).

dped processes append events straight into the store, so cped cannot be told
about them: it polls the last event id (an indexed ``max(id)``, cheap) every
``interval`` seconds.  SQLite commits one writer at a time, so ids become
visible in order and "everything after the last id seen" never skips one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from foundation.errors import StoreError

log = logging.getLogger(__name__)


class EventFeed:
    def __init__(self, last_id: Callable[[], Awaitable[int]], interval: float = 0.1) -> None:
        self._last_id = last_id
        self.interval = interval
        self.last = 0  # the newest event id seen in the store
        self.closed = False
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        """Poll until closed (run it as a task)."""
        while not self.closed:
            try:
                latest = await self._last_id()
            except StoreError as error:
                log.warning("cannot read the event log: %s", error)
            else:
                if latest != self.last:
                    self.last = latest
                    await self._notify()
            await asyncio.sleep(self.interval)

    async def wait_after(self, seen_id: int, timeout: float) -> bool:
        """Wait until an event newer than ``seen_id`` exists; False on timeout or close."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.last > seen_id or self.closed), timeout
                )
            except TimeoutError:
                return False
        return not self.closed

    async def close(self) -> None:
        self.closed = True
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
