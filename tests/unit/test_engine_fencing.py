"""Self-fencing: a DPE that cannot renew its lease stops acting a margin before the
lease can expire; a write the store refuses fences it at once; the watchdog is
armed half a margin later and disarmed when the engine halts (fake clock)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from dpe.engine import Engine
from dpe.engine_timing import deployable_phase
from dpe.fencing import GRACE, FenceWatchdog
from dpe.runtime import MemoryRuntime
from foundation.errors import StoreError
from foundation.events import Event
from foundation.store import Fence
from tests.unit.fakes import FAST, Harness
from tests.unit.test_engine import TWO, running

TTL, MARGIN, RENEW = FAST.lease_ttl, FAST.fence_margin, FAST.lease_renew


class SilentStore(MemoryRuntime):
    """Renewals fail as if the store were unreachable, once ``silent`` is set."""

    silent = False

    def renew_lease(self, holder: str, epoch: int, ttl: float, now: float) -> bool:
        if self.silent:
            raise StoreError("the store is unreachable")
        return super().renew_lease(holder, epoch, ttl, now)


class RecordingWatchdog:
    def __init__(self) -> None:
        self.armed: list[float] = []
        self.disarmed = 0

    def arm(self, deadline: float) -> None:
        self.armed.append(deadline)

    def disarm(self) -> None:
        self.disarmed += 1


async def test_a_dpe_that_cannot_renew_stops_acting_before_its_lease_can_expire() -> None:
    runtime = SilentStore("dep")
    h = Harness(runtime)
    await running(h)
    engine = h.engine
    assert engine is not None and runtime.lease is not None
    await h.clock.advance(RENEW)  # a renewal went through: the lease runs ttl from it
    renewed_at, expires_at = h.clock.monotonic(), runtime.lease.expires_at
    runtime.silent = True
    await h.until(lambda: engine.halted.is_set(), within=TTL)
    assert h.clock.monotonic() <= renewed_at + TTL - MARGIN + 1e-6
    assert h.clock.time() <= expires_at - MARGIN + 1e-6, "acting too close to the expiry"
    assert engine.halt_reason.startswith("cannot renew the lease: self-fenced")
    h.world.kill_resource("a1", "x")
    mark = len(h.world.ops)
    await h.clock.advance(30)
    assert h.world.ops[mark:] == [], "a fenced DPE acted"
    await engine.shutdown()


async def test_a_write_refused_by_the_store_fences_at_once() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None and h.runtime is not None and h.runtime.lease is not None
    # the store sees another epoch than the one this DPE writes under (renewals
    # still pass here, so only the refused write can be what fences it)
    h.runtime.fence = Fence("test:1", h.runtime.lease.epoch - 1)
    h.world.kill_resource("a1", "x")  # the failure is an event: its write is refused
    await h.until(lambda: engine.halted.is_set(), within=2 * RENEW)
    assert engine.halt_reason.startswith("the store refused a write")
    assert "x failed" not in " ".join(h.story()[-3:])
    await engine.shutdown()


async def started_with_watchdog(h: Harness) -> tuple[Engine, RecordingWatchdog]:
    dog = RecordingWatchdog()
    engine = h.new_engine(TWO)
    engine.lease.watchdog = dog
    await engine.start()
    return engine, dog


async def test_the_watchdog_follows_renewals_and_is_disarmed_on_halt() -> None:
    h = Harness(SilentStore("dep"))
    engine, dog = await started_with_watchdog(h)
    sent = h.clock.monotonic()
    assert dog.armed == [sent + TTL - MARGIN / 2]
    await h.clock.advance(RENEW)  # a renewal within it, at the deployable's phase
    assert len(dog.armed) == 2
    assert sent < dog.armed[-1] - (TTL - MARGIN / 2) <= h.clock.monotonic()
    assert isinstance(h.runtime, SilentStore)
    h.runtime.silent = True
    await h.until(lambda: engine.halted.is_set(), within=TTL)
    assert dog.disarmed >= 1
    assert h.clock.monotonic() < dog.armed[-1], "the loop fenced itself before the watchdog"
    await engine.shutdown()


async def test_the_lease_is_renewed_at_the_phase_of_the_guests_heartbeats() -> None:
    h = Harness(MemoryRuntime("dep"))
    engine, dog = await started_with_watchdog(h)
    await h.clock.advance(5 * RENEW)
    phase = deployable_phase("dep", engine.heartbeat().interval) % RENEW
    renewals = [armed - (TTL - MARGIN / 2) for armed in dog.armed[1:]]  # the clock's time too
    assert len(renewals) >= 4
    assert all(abs((at - phase + RENEW / 2) % RENEW - RENEW / 2) < 1e-6 for at in renewals)
    assert all(RENEW * 0.99 < b - a < RENEW * 1.01 for a, b in pairwise(renewals[1:]))
    await engine.shutdown()


def watchdog_armed_at(deadline: float) -> tuple[FenceWatchdog, list[float], list[float]]:
    """A watchdog without its thread, checked by hand, on a clock at 100 (``now[0]``);
    the times it fired at."""
    now = [100.0]
    fired: list[float] = []
    dog = FenceWatchdog(on_expiry=lambda: fired.append(now[0]), clock=lambda: now[0])
    dog._deadline = deadline
    return dog, now, fired


def test_the_watchdog_fires_once_past_its_deadline_unless_disarmed() -> None:
    dog, now, fired = watchdog_armed_at(105.0)
    assert not dog.check()
    now[0] = 105.5
    dog.disarm()
    assert not dog.check() and fired == []
    dog._deadline = 106.0
    now[0] = 106.0
    assert dog.check() and fired == [106.0]
    now[0] = 200.0
    assert not dog.check() and fired == [106.0]


def test_time_the_whole_process_did_not_run_moves_the_deadline_on() -> None:
    dog, now, fired = watchdog_armed_at(105.0)
    dog.overslept(0.2)  # an ordinary late wake-up: the loop had its time
    now[0] = 110.0  # stopped for 10 s (SIGSTOP): the loop did not run either
    dog.overslept(10.0)
    assert not dog.check() and fired == []
    now[0] = 115.0
    assert dog.check() and fired == [115.0], "a loop that runs and does not renew is fenced"


def test_a_stop_late_in_the_sleep_leaves_the_loop_a_grace_once_it_runs_again() -> None:
    # slept for 5 s from 100; stopped at 104.9 until 114.9
    dog, now, fired = watchdog_armed_at(105.0)
    now[0] = 114.9
    dog.overslept(9.9)
    assert not dog.check(), "the loop had no time to renew once it ran again"
    now[0] = 114.9 + GRACE
    assert dog.check() and fired == [now[0]]


def test_a_patient_call_holds_the_deadline_off_until_its_own_limit() -> None:
    dog, now, fired = watchdog_armed_at(101.0)
    with dog.patient(10.0):  # a write waiting for another process's lock, until 110
        now[0] = 105.0
        assert not dog.check() and fired == []
        now[0] = 110.0
        assert dog.check() and fired == [110.0], "a call past its own limit is stuck"


def test_once_a_patient_call_returns_the_deadline_is_the_armed_one() -> None:
    dog, now, fired = watchdog_armed_at(101.0)
    with dog.patient(10.0):
        now[0] = 103.0
    assert dog.check() and fired == [103.0], "the loop did not renew after the call"


class SleepingCondition:
    """A condition whose waits pass on a fake clock, each wait recorded, and
    ``during`` called as the waiter sleeps (a renewal of the loop, say)."""

    def __init__(self, now: list[float], during: Callable[[int], None]) -> None:
        self.now, self.during = now, during
        self.waits: list[float | None] = []

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.during(len(self.waits))
        self.now[0] += timeout or 0.0
        return False

    def notify(self, n: int = 1) -> None:
        return None


def test_the_watchdog_sleeps_until_its_deadline_not_at_every_renewal() -> None:
    dog, now, fired = watchdog_armed_at(104.0)

    def renew(wait: int) -> None:  # the loop renews every second while the dog sleeps
        if wait == 1:
            dog._deadline = 107.0

    dog._changed = SleepingCondition(now, renew)  # type: ignore[assignment]
    dog._watch()  # returns once it fired: the loop stopped renewing after 103
    assert dog._changed.waits == [4.0, 3.0]  # type: ignore[attr-defined]
    assert fired == [107.0]


class FlakyStore(SilentStore):
    """Writes fail too while ``silent``, as when the store restarts."""

    def append_event(self, event: Event) -> Event:
        if self.silent:
            raise StoreError("the store is unreachable")
        return super().append_event(event)

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        if self.silent:
            raise StoreError("the store is unreachable")
        super().put(kind, key, doc)


async def test_what_happens_while_the_store_is_away_is_recorded_in_order_after() -> None:
    runtime = FlakyStore("dep")
    h = Harness(runtime)
    await running(h)
    engine = h.engine
    assert engine is not None
    runtime.silent = True
    h.world.kill_resource("a1", "x")  # fails and is restarted while nothing can be written
    await h.until(lambda: h.world.ops_of("a1/x").count("start") == 2, within=TTL - MARGIN - 1)
    missing = len(engine.recorder.outbox.pending)
    assert missing > 0 and not engine.halted.is_set()
    runtime.silent = False
    await h.clock.advance(RENEW)  # the next renewal goes through, then what waited
    assert engine.recorder.outbox.pending == deque()
    story = h.story("a1/x")
    assert story.index("a1/x failed: monitor returned 7 (not running)") < len(story) - 1
    assert runtime.docs["resource"]["a1/x"]["state"] == "running"
    await engine.shutdown()


async def stall(h: Harness, seconds: float) -> None:
    """dped's loop does not run for ``seconds``; then every timer fires late."""
    h.clock.now += seconds
    await h.clock.advance(0)


async def test_a_loop_stalled_past_the_window_takes_its_lease_back_if_nobody_took_it() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None and h.runtime is not None and h.runtime.lease is not None
    epoch = h.runtime.lease.epoch
    await stall(h, 2 * TTL)  # the lease expired meanwhile, but nobody took it
    await h.clock.advance(RENEW)
    assert not engine.halted.is_set()
    assert h.runtime.lease.epoch == epoch and h.runtime.lease.expires_at > h.clock.time()
    h.world.kill_resource("a1", "x")
    await h.until(lambda: h.world.ops_of("a1/x").count("start") == 2, within=10)
    await engine.shutdown()


async def test_a_loop_stalled_while_another_dpe_took_the_lease_acts_no_more() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None and h.runtime is not None and h.runtime.lease is not None
    h.clock.now += 2 * TTL  # stalled; meanwhile another DPE takes the expired lease
    assert h.runtime.acquire_lease("other:9", 9, TTL, h.clock.time()) is not None
    h.runtime.fence = Fence("test:1", h.runtime.lease.epoch - 1)  # ours, as the store sees it
    await h.clock.advance(0)
    await h.until(lambda: engine.halted.is_set(), within=RENEW)
    h.world.kill_resource("a1", "x")
    mark = len(h.world.ops)
    await h.clock.advance(30)
    assert h.world.ops[mark:] == [], "a DPE whose lease was taken over acted"
    await engine.shutdown()


class WaitingStore(MemoryRuntime):
    """The next renewal waits for the store (SQLite's writer lock held by another
    process): ``waiting`` runs in it, before the store runs the renewal with the
    time the DPE read before the wait."""

    def __init__(self, deployable: str) -> None:
        super().__init__(deployable)
        self.waiting: Callable[[], None] | None = None

    def renew_lease(self, holder: str, epoch: int, ttl: float, now: float) -> bool:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting()
        return super().renew_lease(holder, epoch, ttl, now)


async def engine_on_a_waiting_store() -> tuple[Harness, Engine, WaitingStore]:
    runtime = WaitingStore("dep")
    h = Harness(runtime)
    await running(h)
    assert h.engine is not None and runtime.lease is not None
    return h, h.engine, runtime


async def test_a_renewal_that_waited_past_the_window_takes_the_lease_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h, engine, runtime = await engine_on_a_waiting_store()
    assert runtime.lease is not None
    epoch = runtime.lease.epoch

    def wait_for_the_lock() -> None:  # the loop is blocked in the call meanwhile
        h.clock.now += 2 * TTL

    runtime.waiting = wait_for_the_lock
    await h.clock.advance(RENEW)
    assert not engine.halted.is_set()
    assert runtime.lease.epoch == epoch and runtime.lease.expires_at > h.clock.time()
    assert f"a renewal waited {2 * TTL:.1f} s for the store" in caplog.text
    h.world.kill_resource("a1", "x")
    await h.until(lambda: h.world.ops_of("a1/x").count("start") == 2, within=10)
    await engine.shutdown()


async def test_a_renewal_that_waited_while_another_dpe_took_the_lease_acts_no_more() -> None:
    h, engine, runtime = await engine_on_a_waiting_store()

    def another_took_it() -> None:
        h.clock.now += 2 * TTL
        assert runtime.acquire_lease("other:9", 9, TTL, h.clock.time()) is not None
        assert runtime.lease is not None
        runtime.fence = Fence("test:1", runtime.lease.epoch - 1)  # ours, as the store sees it

    runtime.waiting = another_took_it
    await h.clock.advance(RENEW)
    assert engine.halted.is_set()
    h.world.kill_resource("a1", "x")
    mark = len(h.world.ops)
    await h.clock.advance(30)
    assert h.world.ops[mark:] == [], "a DPE whose lease was taken over acted"
    await engine.shutdown()


class CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def test_only_a_sooner_deadline_wakes_the_watchdog() -> None:
    now = [100.0]
    dog = FenceWatchdog(on_expiry=lambda: None, clock=lambda: now[0])
    dog._changed = changed = CountingCondition()
    dog._thread = threading.current_thread()  # no thread of its own: counted by hand
    dog.arm(105.0)
    assert changed.notified == 1  # armed from nothing
    for renewal in range(1, 6):  # each renewal pushes it on: it looks when it wakes
        dog.arm(105.0 + renewal)
    assert changed.notified == 1
    dog.arm(104.0)
    assert changed.notified == 2
    dog.disarm()
    assert changed.notified == 3
