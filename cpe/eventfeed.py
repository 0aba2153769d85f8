"""Notices new events and wakes whoever waits for them (event streams, the hook).

dped processes append events straight into the store; cped looks at the last
event id (an indexed ``max(id)``, cheap).  Event ids become visible in order
(SQLite commits one writer at a time; on PostgreSQL ids are given under a lock
of their own), so "everything after the last id seen" never skips one.

It looks only while someone waits (``wait_after``): at once when a waiter
arrives, whenever ``poke`` says an event was stored (a wake-up, ``cpe.wakeups``:
a DPE's datagram, or on PostgreSQL the store's notification of any member's
event; or cped's own event), and every ``interval`` as a fallback for a wake-up
lost.  With nobody waiting it does nothing at all: an idle cped does not read
its store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from foundation.errors import StoreError

log = logging.getLogger(__name__)


class EventFeed:
    def __init__(self, last_id: Callable[[], Awaitable[int]], interval: float = 1.0) -> None:
        self._last_id = last_id
        self.interval = interval  # the fallback look while someone waits
        self.last = 0  # the newest event id seen in the store (as of the last look)
        self.closed = False
        self.looks = 0  # how often the store was read (tests and the benchmark)
        self._changed = asyncio.Condition()
        self._waiting = 0
        self._wanted = asyncio.Event()  # someone waits
        self._poked = asyncio.Event()  # an event may have been stored
        self._closing = asyncio.Event()

    def poke(self) -> None:
        """An event was stored: look now if anyone waits (else nothing)."""
        self._poked.set()

    async def run(self) -> None:
        """Look while someone waits, until closed (run it as a task)."""
        while True:
            await self._wanted.wait()
            if self.closed:
                return
            self._poked.clear()
            await self.look()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval)

    async def look(self) -> int:
        """Read the newest event id now; waiters are woken if it moved."""
        try:
            latest = await self._last_id()
        except StoreError as error:
            log.warning("cannot read the event log: %s", error)
            return self.last
        self.looks += 1
        if latest != self.last:
            self.last = latest
            await self._notify()
        return latest

    async def wait_after(self, seen_id: int, timeout: float) -> bool:
        """Wait until an event newer than ``seen_id`` exists; False on timeout or close."""
        self._subscribe()
        try:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.last > seen_id or self.closed),
                        timeout,
                    )
                except TimeoutError:
                    return False
        finally:
            self._unsubscribe()
        return not self.closed

    async def closing(self) -> None:
        """Return once the feed is closed."""
        await self._closing.wait()

    async def close(self) -> None:
        self.closed = True
        self._closing.set()
        self._wanted.set()  # let run() see it
        self._poked.set()
        await self._notify()

    def _subscribe(self) -> None:
        self._waiting += 1
        if not self._wanted.is_set():
            self._wanted.set()
            self._poked.set()  # a subscriber's arrival: look at once

    def _unsubscribe(self) -> None:
        self._waiting -= 1
        if not self._waiting and not self.closed:
            self._wanted.clear()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
