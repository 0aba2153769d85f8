"""Events across members on PostgreSQL: NOTIFY at each commit wakes every member's
feed, which reads them in id order; a lost listening connection is taken up
again and nothing is missed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest

from cpe.eventfeed import EventFeed, notifications_for
from foundation.events import Event
from foundation.store import Store

pytestmark = pytest.mark.integration


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_every_writer_wakes_the_feed_and_nothing_is_missed(pg_url: str) -> None:
    reader, writer = Store.open_url(pg_url), Store.open_url(pg_url)
    notifications = notifications_for(reader)
    assert notifications is not None

    async def last_id() -> int:
        return await asyncio.to_thread(reader.last_event_id)

    feed = EventFeed(last_id, waker=notifications)
    tasks = [asyncio.create_task(notifications.run()), asyncio.create_task(feed.run())]
    try:
        await until(lambda: notifications.connected)
        first = await asyncio.to_thread(writer.append_event, Event(1.0, "d", "running", "one"))
        await until(lambda: notifications.received >= 1 and feed.last == first.id)

        with psycopg.connect(pg_url, autocommit=True) as admin:  # the listener's link dies
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        second = await asyncio.to_thread(writer.append_event, Event(2.0, "d", "failed", "two"))
        await until(lambda: feed.last == second.id)  # by the fallback look at worst
        await until(lambda: notifications.connected)
        third = await asyncio.to_thread(writer.append_event, Event(3.0, "d", "running", "three"))
        await until(lambda: feed.last == third.id)
        ids = [e.id for e in reader.query_events()]
        assert ids == [first.id, second.id, third.id]
    finally:
        await feed.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reader.close()
        writer.close()


def test_sqlite_has_no_notifications(store: Store) -> None:
    assert notifications_for(store) is None
