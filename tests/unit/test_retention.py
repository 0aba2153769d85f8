"""Event retention: what is pruned, when, and that a store error is not fatal."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cpe.retention import prune_forever, prune_once
from foundation.errors import StoreError


class Prunes:
    def __init__(self, deleted: int = 3, error: Exception | None = None) -> None:
        self.before: list[float] = []
        self.deleted = deleted
        self.error = error

    async def __call__(self, older_than: float) -> int:
        self.before.append(older_than)
        if self.error is not None:
            raise self.error
        return self.deleted


async def test_events_older_than_the_retention_are_pruned() -> None:
    prunes = Prunes()
    assert await prune_once(prunes, retention=100.0, now=1000.0) == 3
    assert prunes.before == [900.0]


async def test_forever_prunes_nothing() -> None:
    prunes = Prunes()
    assert await prune_once(prunes, retention=None, now=1000.0) == 0
    assert prunes.before == []


async def test_a_store_error_is_logged_and_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    prunes = Prunes(error=StoreError("the disk is full"))
    with caplog.at_level(logging.WARNING):
        assert await prune_once(prunes, retention=10.0, now=100.0) == 0
    assert "the disk is full" in caplog.text


async def test_it_prunes_at_once_and_then_again_with_the_current_setting() -> None:
    prunes = Prunes()
    settings = iter([50.0, 20.0, 20.0, 20.0])
    clock = iter([100.0, 200.0, 300.0, 400.0])
    task = asyncio.create_task(
        prune_forever(prunes, lambda: next(settings), lambda: next(clock), 0.001)
    )
    while len(prunes.before) < 2:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert prunes.before[:2] == [50.0, 180.0]
