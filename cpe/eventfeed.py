"""Notices new events and wakes whoever waits for them (event streams, the hook).

dped processes append events straight into the store, so cped cannot be told
about them by a call: it looks at the last event id (an indexed ``max(id)``,
cheap).  Event ids become visible in order (SQLite commits one writer at a
time; on PostgreSQL ids are given under a lock of their own), so "everything
after the last id seen" never skips one.

On SQLite it looks every ``interval`` seconds.  On PostgreSQL every commit of
an event sends ``NOTIFY pcloud_events`` (``foundation.store_pg``), whichever
member's DPE wrote it: ``PgNotifications`` listens on a connection of its own
and wakes the feed at once, so a stream on any member sees every member's
events as they are committed, in one order.  The feed still looks every
``fallback`` seconds and after every reconnection, so a notification lost with
a connection (PostgreSQL restarting) delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from foundation.errors import StoreError
from foundation.store import Store

log = logging.getLogger(__name__)

FALLBACK = 1.0  # with notifications: still look this often
LISTEN_RETRY = 1.0  # after a lost listening connection
LISTEN_CHECK = 5.0  # a quiet listening connection is checked this often


class Waker(Protocol):
    async def wait(self, timeout: float) -> None:
        """Return when something may have changed, or after ``timeout``."""
        ...


class EventFeed:
    def __init__(
        self,
        last_id: Callable[[], Awaitable[int]],
        interval: float = 0.1,
        waker: Waker | None = None,
    ) -> None:
        self._last_id = last_id
        self.interval = interval
        self.waker = waker
        self.last = 0  # the newest event id seen in the store
        self.closed = False
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        """Look until closed (run it as a task)."""
        while not self.closed:
            try:
                latest = await self._last_id()
            except StoreError as error:
                log.warning("cannot read the event log: %s", error)
            else:
                if latest != self.last:
                    self.last = latest
                    await self._notify()
            if self.waker is None:
                await asyncio.sleep(self.interval)
            else:
                await self.waker.wait(FALLBACK)

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


class PgNotifications:
    """``LISTEN pcloud_events`` on a PostgreSQL connection of its own (run as a task)."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._woken = asyncio.Event()
        self.connected = False
        self.received = 0  # notifications so far (tests and the benchmark read it)

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        self._woken.clear()

    async def run(self) -> None:
        import psycopg  # only members on PostgreSQL load it

        while True:
            try:
                await self._listen()
            except psycopg.Error as error:
                log.warning("event notifications lost (%s): listening again", _line(error))
            self.connected = False
            self._woken.set()  # look now: something may have come meanwhile
            await asyncio.sleep(LISTEN_RETRY)

    async def _listen(self) -> None:
        from psycopg import AsyncConnection, sql

        async with await AsyncConnection.connect(self._conninfo, autocommit=True) as db:
            await db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.connected = True
            self._woken.set()  # catch up with what came before listening
            while True:
                async for _notice in db.notifies(timeout=LISTEN_CHECK):
                    self.received += 1
                    self._woken.set()
                await db.execute("SELECT 1")  # quiet: is the connection still there?


def notifications_for(store: Store) -> PgNotifications | None:
    """A listener when the store is PostgreSQL (SQLite: None, the feed polls)."""
    conninfo = getattr(store.dialect, "conninfo", None)
    if store.dialect.name != "postgresql" or conninfo is None:
        return None
    from foundation.store_pg import EVENT_CHANNEL

    return PgNotifications(conninfo(), EVENT_CHANNEL)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
