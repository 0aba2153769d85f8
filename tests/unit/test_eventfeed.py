"""The event feed reads the store only while someone waits for events.

``last_id`` is a counter standing for the store's newest event id; each call
is a look.  Nothing here waits on a timer: the fallback interval is an hour,
so every look counted comes from a subscriber's arrival or a poke.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cpe.eventfeed import EventFeed


class Log:
    def __init__(self) -> None:
        self.newest = 0
        self.reads = 0

    async def last_id(self) -> int:
        self.reads += 1
        return self.newest


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def feed_and_log() -> AsyncIterator[tuple[EventFeed, Log]]:
    log = Log()
    feed = EventFeed(log.last_id, interval=3600.0)
    task = asyncio.create_task(feed.run())
    yield feed, log
    await feed.close()
    await task


async def test_nobody_waiting_means_no_reads_however_often_it_is_poked(
    feed_and_log: tuple[EventFeed, Log],
) -> None:
    feed, log = feed_and_log
    for _ in range(5):
        log.newest += 1
        feed.poke()
        await settle()
    assert log.reads == 0


async def test_a_subscriber_arriving_makes_it_look_at_once(
    feed_and_log: tuple[EventFeed, Log],
) -> None:
    feed, log = feed_and_log
    log.newest = 7
    assert await feed.wait_after(3, timeout=3600.0)
    assert feed.last == 7 and log.reads == 1


async def test_a_poke_wakes_a_waiting_subscriber(feed_and_log: tuple[EventFeed, Log]) -> None:
    feed, log = feed_and_log
    waiter = asyncio.create_task(feed.wait_after(0, timeout=3600.0))
    await settle()
    assert not waiter.done() and log.reads == 1  # looked once: nothing new
    log.newest = 1
    feed.poke()
    assert await waiter
    assert log.reads == 2


async def test_once_the_last_subscriber_left_pokes_are_not_followed_any_more(
    feed_and_log: tuple[EventFeed, Log],
) -> None:
    feed, log = feed_and_log
    log.newest = 1
    assert await feed.wait_after(0, timeout=3600.0)
    await settle()
    reads = log.reads
    log.newest = 2
    feed.poke()
    await settle()
    assert log.reads == reads


async def test_closing_wakes_subscribers_with_false(feed_and_log: tuple[EventFeed, Log]) -> None:
    feed, _ = feed_and_log
    waiter = asyncio.create_task(feed.wait_after(0, timeout=3600.0))
    await settle()
    await feed.close()
    assert await waiter is False
