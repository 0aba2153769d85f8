"""The supervisor as one member among several: deployables placed elsewhere are
handed over (SIGUSR1), never cleaned up here, and looked at for leftovers when
they come here; a DPE is started early when its lease holder's member is gone.
Fake clock, fake launcher, real store (as in test_supervisor.py)."""

from __future__ import annotations

import signal

from cpe.supervisor import DpeState, Supervisor
from foundation.store import Store
from tests.unit.test_supervisor import OPTIONS, World, make_world


def placed_world(store: Store, here: set[str], gone: set[str] | None = None) -> World:
    world = make_world(store, "shop", "blog")
    world.supervisor = Supervisor(
        store,
        world.launcher,
        options=lambda: OPTIONS,
        clock=world.clock,
        host="testhost",
        owns=lambda name: name in here,
        holder_gone=lambda holder: holder.split(":")[0] in (gone or set()),
    )
    return world


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
