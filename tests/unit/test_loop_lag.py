"""The loop's own lateness: noted by the engine's sleepers, and excused in deadlines."""

from __future__ import annotations

import asyncio

import pytest

from dpe.engine_timing import bounded
from dpe.loop_lag import KEPT, LagClock, LoopLag
from foundation.errors import OperationTimeout
from tests.unit.fakes import FakeClock, settle


def test_a_late_wake_up_is_a_stall_and_a_punctual_one_is_not() -> None:
    lag = LoopLag()
    lag.note(10.0, 10.01)
    assert lag.stalls == []
    lag.note(10.0, 12.0)
    assert lag.stalls == [(10.0, 12.0)]
    assert lag.worst == 2.0


def test_stalls_seen_by_several_sleepers_are_counted_once() -> None:
    lag = LoopLag()
    lag.note(10.0, 20.0)
    lag.note(9.5, 20.0)  # another sleeper, due earlier, woke at the same time
    lag.note(30.0, 31.0)
    assert lag.stalls == [(9.5, 20.0), (30.0, 31.0)]
    assert lag.between(0.0, 100.0) == pytest.approx(11.5)
    assert lag.between(15.0, 30.5) == pytest.approx(5.5)
    assert lag.between(21.0, 29.0) == 0.0


def test_old_stalls_are_forgotten() -> None:
    lag = LoopLag()
    lag.note(0.0, 1.0)
    lag.note(KEPT + 10.0, KEPT + 11.0)
    assert lag.stalls == [(KEPT + 10.0, KEPT + 11.0)]


async def test_the_clock_notes_the_stall_its_sleepers_woke_from() -> None:
    fake = FakeClock()
    clock = LagClock(fake)
    start = clock.monotonic()
    sleeper = asyncio.ensure_future(clock.sleep(1.0))
    await settle()
    fake.now += 10.0  # the loop was stopped: the timer fires 9 s late
    await fake.advance(0.0)
    assert sleeper.done()
    assert clock.lag_since(start) == pytest.approx(9.0)


async def test_a_deadline_reached_during_a_stall_is_extended_by_it() -> None:
    fake = FakeClock()
    clock = LagClock(fake)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(bounded(clock, 3.0, answer, "keepalive"))
    await fake.advance(1.0)
    fake.now += 5.0  # stalled: the answer came meanwhile but was not read
    await fake.advance(0.0)
    assert not waiting.done()  # given the time the loop was not watching
    answer.set_result("pong")
    await settle()
    assert waiting.result() == "pong"


async def test_a_deadline_without_a_stall_is_kept() -> None:
    fake = FakeClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(bounded(LagClock(fake), 3.0, never, "keepalive"))
    await fake.advance(3.0)
    with pytest.raises(OperationTimeout, match="keepalive timed out after 3 s"):
        await waiting
    assert never.cancelled()


async def test_a_stall_extends_a_deadline_once_and_by_the_timeout_at_most() -> None:
    fake = FakeClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(bounded(LagClock(fake), 3.0, never, "keepalive"))
    await fake.advance(1.0)
    fake.now += 100.0
    await fake.advance(0.0)
    assert not waiting.done()
    await fake.advance(3.0)
    with pytest.raises(OperationTimeout):
        await waiting
