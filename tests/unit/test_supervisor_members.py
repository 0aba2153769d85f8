"""The supervisor as one member among several: deployables placed elsewhere are
handed over (SIGUSR1), never cleaned up here, and looked at for leftovers when
they come here; a DPE is started early when its lease holder's member is gone;
turns to start are each member's own, and a start queued on a member that died
is started by the member that runs the deployable now.  Another member's
changes wake it as its own DPEs do.  Fake clock, fake launcher, real store (as
in test_supervisor.py)."""

from __future__ import annotations

import dataclasses
import signal

from cpe.catalog import Catalog, deployables
from cpe.supervisor import DpeState, Supervisor, SupervisorOptions
from foundation.events import Event
from foundation.store import Store
from foundation.wakeup import DESIRED, EVENT, Wake
from tests.unit.test_supervisor import OPTIONS, FakeClock, FakeLauncher, World

ONE_AT_ONCE = dataclasses.replace(OPTIONS, starts_at_once=1, start_turn=100.0)


def placed_world(
    store: Store,
    here: set[str],
    gone: set[str] | None = None,
    *,
    names: tuple[str, ...] = ("shop", "blog"),
    options: SupervisorOptions = OPTIONS,
    host: str = "testhost",
) -> World:
    """A member sharing ``store`` (its deployables made once, whichever member comes first)."""
    catalog = Catalog(store)
    for name in names:
        if name not in store.desired_states():
            deployables.create(catalog, {"name": name})
    clock = FakeClock()
    launcher = FakeLauncher(store, clock)
    supervisor = Supervisor(
        store,
        launcher,
        options=lambda: options,
        clock=clock,
        host=host,
        owns=lambda name: name in here,
        holder_gone=lambda holder: holder.split(":")[0] in (gone or set()),
    )
    return World(store, clock, launcher, supervisor)


def spawned(world: World) -> list[str]:
    return [p.deployable for p in world.launcher.spawned]


async def test_a_deployable_placed_elsewhere_is_not_started_here(store: Store) -> None:
    world = placed_world(store, here={"blog"})
    world.want("started", "shop")
    answer = world.supervisor.start("shop")
    await world.tick()
    assert world.launcher.spawned == []
    assert answer.result()["elsewhere"] is True


async def test_a_running_dpe_placed_elsewhere_hands_over_and_is_not_replaced(
    store: Store,
) -> None:
    here = {"shop"}
    world = placed_world(store, here)
    process = await world.running()
    here.clear()  # another member joined and ranks first for shop
    await world.tick()
    assert process.signals == [signal.SIGUSR1]
    assert world.slot_state() is DpeState.STOPPING
    assert world.reasons("dpe-handover")
    process.exit(0, release=True)
    await world.tick()
    await world.tick(OPTIONS.backoff_max)
    assert world.slot_state() is DpeState.STOPPED
    assert world.launcher.live() == [], "nothing started again, nothing cleaned up here"
    lease = store.get_lease("shop")
    assert lease is not None and lease["holder"] is None


async def test_a_dpe_that_does_not_hand_over_in_time_is_killed(store: Store) -> None:
    here = {"shop"}
    world = placed_world(store, here)
    process = await world.running()
    here.clear()
    await world.tick()
    await world.tick(OPTIONS.handover_timeout + 0.1)
    assert process.signals == [signal.SIGUSR1, signal.SIGKILL]


async def test_leftovers_are_cleaned_only_by_the_member_that_runs_it(store: Store) -> None:
    here: set[str] = set()
    world = placed_world(store, here)
    store.put_runtime("shop", "instance", "a1", {"instance_id": "a1-1"})  # left by a dead DPE
    await world.tick()
    assert world.launcher.spawned == []
    here.add("shop")  # it comes here: what was left is stopped from here
    await world.tick()
    (cleaner,) = world.launcher.spawned
    assert "to stop what is left (a1)" in world.reasons("dpe-started")[0]
    assert cleaner.clear_failed is False


async def test_a_dpe_starts_early_when_the_lease_holder_member_is_gone(store: Store) -> None:
    world = placed_world(store, here={"shop"}, gone={"deadmember"})
    store.acquire_lease("shop", "deadmember:77", 77, 5.0, world.clock.time())
    world.want("started")
    await world.tick()
    (process,) = world.launcher.spawned  # it waits for the expiry itself
    assert "is gone" in world.reasons("dpe-started")[0]
    assert process.take_lease() is None  # not before the expiry
    world.clock.advance(5.0)
    assert process.take_lease() == 2


async def test_a_lease_held_by_a_live_member_is_waited_for(store: Store) -> None:
    world = placed_world(store, here={"shop"}, gone=set())
    store.acquire_lease("shop", "othermember:77", 77, 5.0, world.clock.time())
    world.want("started")
    await world.tick()
    assert world.launcher.spawned == []
    assert "waiting" in world.supervisor.info("shop")["note"]


# -- turns to start, per member -----------------------------------------------------------


async def test_turns_are_counted_per_member(store: Store) -> None:
    world = placed_world(store, {"a", "b"}, names=("a", "b", "c"), options=ONE_AT_ONCE)
    for name in ("a", "b", "c"):
        world.want("started", name)
    await world.tick()
    assert spawned(world) == ["a"]
    assert world.slot_state("b") is DpeState.QUEUED
    assert world.slot_state("c") is DpeState.STOPPED, "another member's start takes no turn here"


async def test_a_queued_start_is_called_off_when_its_deployable_goes_elsewhere(
    store: Store,
) -> None:
    here = {"a", "b"}
    world = placed_world(store, here, names=("a", "b"), options=ONE_AT_ONCE)
    for name in ("a", "b"):
        world.want("started", name)
    await world.tick()
    assert world.slot_state("b") is DpeState.QUEUED
    here.discard("b")  # a member joined and ranks first for b
    answer = world.supervisor.start("b")
    await world.tick()
    assert world.slot_state("b") is DpeState.STOPPED
    assert answer.result()["elsewhere"] is True
    store.append_event(Event(world.clock.time(), "a", "running", "settled"))
    world.supervisor.notice(Wake(EVENT, "a"))
    await world.tick()
    assert spawned(world) == ["a"], "b is not started here once placed elsewhere"


async def test_a_start_queued_on_a_member_that_died_is_started_by_another(
    store: Store,
) -> None:
    names = ("a", "b")
    first = placed_world(store, set(names), names=names, options=ONE_AT_ONCE, host="m1")
    for name in names:
        first.want("started", name)
    await first.tick()
    assert spawned(first) == ["a"] and first.slot_state("b") is DpeState.QUEUED
    runs_here: set[str] = set()  # m1 is alive and runs both
    second = placed_world(store, runs_here, {"m1"}, names=names, options=OPTIONS, host="m2")
    await second.tick()
    assert spawned(second) == []
    runs_here.update(names)  # m1 died (SIGKILL): its queue is gone with it; m2 runs both now
    await second.tick()
    assert "b" in spawned(second)
    assert second.slot_state("b") is DpeState.STARTING


# -- wake-ups from other members -------------------------------------------------------------


async def test_a_desired_state_changed_through_another_member_wakes_the_supervisor(
    store: Store,
) -> None:
    world = placed_world(store, {"shop"})
    await world.tick()
    wake = world.supervisor._wake
    wake.clear()
    world.supervisor.notice(Wake(EVENT, "shop"))
    assert not wake.is_set(), "an event of a deployable holding no turn changes nothing here"
    world.supervisor.notice(Wake(DESIRED, "shop"))
    assert wake.is_set()


async def test_a_start_waiting_for_another_members_lease_looks_again_when_it_expires(
    store: Store,
) -> None:
    world = placed_world(store, here={"shop"}, gone=set())
    store.acquire_lease("shop", "othermember:77", 77, 5.0, world.clock.time())
    world.want("started")
    await world.tick()
    assert world.launcher.spawned == []
    assert 4.9 < world.supervisor._next_wait() <= 5.1  # its release would wake it sooner
    await world.tick(5.1)
    assert spawned(world) == ["shop"]
