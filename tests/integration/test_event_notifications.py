"""Wake-ups across members on PostgreSQL: the store sends, at each commit, the wake-up a
DPE sends its own cped (an event, a lease taken or given up, a desired state), whichever
member wrote it; a listener on another connection hands each to one ``on_wake``, as
cped's wake socket does.  A lost listening connection is taken up again, and the feed
that the wake-ups poke misses nothing meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest

from cpe.eventfeed import EventFeed
from cpe.wakeups import store_wakeups
from foundation.events import Event
from foundation.store import Store
from foundation.wakeup import DESIRED, EVENT, LEASE, Wake

pytestmark = pytest.mark.integration


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_every_writer_wakes_another_member_and_nothing_is_missed(pg_url: str) -> None:
    reader, writer = Store.open_url(pg_url), Store.open_url(pg_url)

    async def last_id() -> int:
        return await asyncio.to_thread(reader.last_event_id)

    feed = EventFeed(last_id, interval=30.0)  # a fallback look too slow to matter here
    wakes: list[Wake] = []
    missed: list[int] = []

    def on_wake(wake: Wake) -> None:
        wakes.append(wake)
        if wake.kind == EVENT:
            feed.poke()

    def on_missed() -> None:
        missed.append(1)
        feed.poke()

    listener = store_wakeups(reader, on_wake, on_missed)
    assert listener is not None
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(feed.run())]
    try:
        await until(lambda: listener.connected)
        waiting = asyncio.create_task(feed.wait_after(0, 10.0))  # a follower, as a stream is
        first = await asyncio.to_thread(writer.append_event, Event(1.0, "d", "running", "one"))
        assert await waiting and feed.last == first.id
        assert Wake(EVENT, "d") in wakes

        with psycopg.connect(pg_url, autocommit=True) as admin:  # the listener's link dies
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        second = await asyncio.to_thread(writer.append_event, Event(2.0, "d", "failed", "two"))
        waiting = asyncio.create_task(feed.wait_after(first.id or 0, 10.0))
        assert await waiting and feed.last == second.id  # told to look again on reconnecting
        await until(lambda: listener.connected and len(missed) >= 2)
        third = await asyncio.to_thread(writer.append_event, Event(3.0, "d", "running", "three"))
        waiting = asyncio.create_task(feed.wait_after(second.id or 0, 10.0))
        assert await waiting and feed.last == third.id
        assert [e.id for e in reader.query_events()] == [first.id, second.id, third.id]
    finally:
        await feed.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reader.close()
        writer.close()


async def test_leases_and_desired_states_wake_other_members(pg_url: str) -> None:
    reader, writer = Store.open_url(pg_url), Store.open_url(pg_url)
    writer.insert_deployable({"name": "w", "uuid": "u-w", "assemblies": []})
    wakes: list[Wake] = []
    listener = store_wakeups(reader, wakes.append, lambda: None)
    assert listener is not None
    task = asyncio.create_task(listener.run())
    try:
        await until(lambda: listener.connected)
        epoch = await asyncio.to_thread(writer.acquire_lease, "w", "m2:7", 7, 5.0)
        assert epoch is not None
        await until(lambda: Wake(LEASE, "w") in wakes)
        wakes.clear()
        refused = await asyncio.to_thread(writer.acquire_lease, "w", "m3:8", 8, 5.0)
        assert refused is None
        await asyncio.to_thread(writer.release_lease, "w", "m2:7", epoch)
        await until(lambda: Wake(LEASE, "w") in wakes)
        assert wakes.count(Wake(LEASE, "w")) == 1  # the refused takeover changed nothing
        await asyncio.to_thread(writer.set_desired_state, "w", "started")
        await until(lambda: Wake(DESIRED, "w") in wakes)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reader.close()
        writer.close()


def test_sqlite_has_no_store_wakeups(store: Store) -> None:
    assert store_wakeups(store, lambda _wake: None, lambda: None) is None
