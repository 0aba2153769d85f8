"""The supervisor's turns to start, its wake-ups and its own lateness.

The same fake clock, launcher and real store as ``test_supervisor``; ``tick``
is called by hand and ``_next_wait`` is read, so nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
import signal

import pytest

from cpe.supervisor import DpeState, SupervisorOptions
from foundation.events import Event
from foundation.store import Store
from foundation.wakeup import EVENT, LEASE, Wake
from tests.unit.test_supervisor import OPTIONS, FakeProcess, World, make_world

TWO_AT_ONCE = dataclasses.replace(OPTIONS, starts_at_once=2, start_turn=100.0)
NAMES = ("a", "b", "c")


@pytest.fixture
def world(store: Store) -> World:
    return make_world(store)


def settled(world: World, name: str, state: str = "running") -> None:
    """What a DPE records once its deployable is up (an event of the deployable itself)."""
    world.store.append_event(Event(world.clock.time(), name, state, "2 assemblies running"))


async def start_three(store: Store, options: SupervisorOptions = TWO_AT_ONCE) -> World:
    world = make_world(store, *NAMES, options=options)
    for name in NAMES:
        world.want("started", name)
    await world.tick()
    return world


def spawned(world: World) -> list[str]:
    return [p.deployable for p in world.launcher.spawned]


# -- turns to start ---------------------------------------------------------------------


async def test_only_so_many_deployables_start_at_once_the_others_are_queued(
    store: Store,
) -> None:
    world = await start_three(store)
    assert spawned(world) == ["a", "b"]
    assert world.slot_state("c") is DpeState.QUEUED
    info = world.supervisor.info("c")
    assert info["supervision"] == "queued" and "waiting for its turn" in info["note"]


async def test_a_start_request_in_the_queue_is_answered_at_once(store: Store) -> None:
    world = make_world(store, *NAMES, options=TWO_AT_ONCE)
    for name in NAMES:
        world.want("started", name)
    answers = [world.supervisor.start(name) for name in NAMES]
    await world.tick()
    assert answers[2].result()["pid"] is None
    assert "2 deployables are starting" in answers[2].result()["note"]


async def test_a_settled_deployable_gives_its_turn_to_the_next(store: Store) -> None:
    world = await start_three(store)
    for process in world.launcher.live("a"):
        process.take_lease()
    await world.tick()
    assert spawned(world) == ["a", "b"]  # holding the lease is not being settled
    settled(world, "a")
    world.supervisor.notice(Wake(EVENT, "a"))
    await world.tick()
    assert spawned(world) == ["a", "b", "c"]


async def test_an_event_of_one_assembly_is_not_the_deployable_settling(store: Store) -> None:
    world = await start_three(store)
    world.store.append_event(Event(world.clock.time(), "a", "running", "up", assembly="web"))
    await world.tick(OPTIONS.check_interval)
    assert spawned(world) == ["a", "b"]


async def test_a_failed_deployable_and_a_dead_dpe_give_their_turns_back(store: Store) -> None:
    world = await start_three(store)
    settled(world, "a", "failed")
    (b,) = world.launcher.live("b")
    b.exit(1)
    await world.tick(OPTIONS.check_interval)  # without a wake-up: the fallback look
    assert spawned(world) == ["a", "b", "c"]
    assert world.slot_state("b") is DpeState.BACKOFF
    await world.tick(OPTIONS.backoff_initial)
    assert world.slot_state("b") is DpeState.STARTING  # its restart takes a turn too
    assert set(world.supervisor.turns.turns) == {"b", "c"}


async def test_a_restart_waits_for_a_turn_like_a_first_start(store: Store) -> None:
    world = await start_three(store)
    (a,) = world.launcher.live("a")
    a.take_lease()
    settled(world, "a")
    await world.tick(OPTIONS.check_interval)  # a settled: c takes its turn
    a.exit(1)
    await world.tick()
    await world.tick(OPTIONS.backoff_initial)
    assert world.slot_state("a") is DpeState.QUEUED


async def test_a_start_that_takes_too_long_loses_its_turn_and_keeps_running(
    store: Store,
) -> None:
    world = await start_three(store)
    for process in world.launcher.spawned:
        process.take_lease()
    await world.tick()
    world.clock.advance(TWO_AT_ONCE.start_turn)
    for process in world.launcher.spawned:
        process.take_lease()  # renewed all along: running, but not settled
    await world.tick()
    assert spawned(world) == ["a", "b", "c"]
    assert all(p.alive for p in world.launcher.spawned)


async def test_a_queued_start_is_called_off_by_a_stop(store: Store) -> None:
    world = await start_three(store)
    world.want("stopped", "c")
    answer = world.supervisor.stop("c")
    await world.tick()
    assert world.slot_state("c") is DpeState.STOPPED
    assert answer.result() == {"pid": None, "left": []}


async def test_adopting_a_live_dpe_takes_no_turn(store: Store) -> None:
    world = make_world(store, *NAMES, options=TWO_AT_ONCE)
    for pid, name in enumerate(NAMES, 4000):
        world.want("started", name)
        world.launcher.foreign[pid] = name
        store.acquire_lease(name, f"testhost:{pid}", pid, 5.0, world.clock.time())
    await world.tick()
    assert [world.slot_state(n) for n in NAMES] == [DpeState.RUNNING] * 3
    assert len(world.supervisor.turns) == 0


# -- waking -------------------------------------------------------------------------------


async def running_settled(world: World) -> FakeProcess:
    process = await world.running()
    settled(world, "shop")
    world.supervisor.notice(Wake(EVENT, "shop"))
    await world.tick()
    assert len(world.supervisor.turns) == 0
    return process


async def test_with_every_dpe_running_it_sleeps_until_the_first_lease_could_expire(
    world: World,
) -> None:
    await running_settled(world)
    lease = world.store.get_lease("shop")
    assert lease is not None
    due = lease["expires_at"] + OPTIONS.check_interval - world.clock.time()
    assert world.supervisor._next_wait() == due  # not every check_interval


async def test_with_nothing_running_it_sleeps_until_the_idle_look(world: World) -> None:
    await world.tick()
    assert world.supervisor._next_wait() == OPTIONS.idle_look


async def test_a_lease_wake_up_makes_it_look_and_an_idle_event_does_not(world: World) -> None:
    process = await running_settled(world)
    wake = world.supervisor._wake
    wake.clear()
    world.supervisor.notice(Wake(EVENT, "shop"))  # a running deployable's event: no turn
    assert not wake.is_set()
    world.supervisor.notice(Wake(LEASE, "shop"))
    assert wake.is_set()
    assert process.alive


async def test_a_starting_dpe_is_running_as_soon_as_its_wake_up_is_handled(
    world: World,
) -> None:
    world.want("started")
    await world.tick()
    (process,) = world.launcher.live()
    process.take_lease()
    world.supervisor.notice(Wake(LEASE, "shop"))
    assert world.supervisor._wake.is_set()
    await world.tick()  # no time passed
    assert world.slot_state() is DpeState.RUNNING


# -- its own lateness ----------------------------------------------------------------------


async def test_a_late_supervisor_does_not_kill_a_dpe_for_a_lease_that_expired_meanwhile(
    world: World,
) -> None:
    process = await world.running()
    world.clock.advance(10.0)  # cped was stopped (SIGSTOP) or not scheduled
    world.supervisor._check_late(10.0 - world.supervisor._next_wait())
    await world.tick()
    assert process.signals == []
    process.take_lease()  # the DPE, scheduled again, renews
    await world.tick(OPTIONS.lease_renew + OPTIONS.check_interval)
    assert process.signals == [] and world.slot_state() is DpeState.RUNNING


async def test_after_a_renewal_s_time_a_dpe_that_did_not_renew_is_killed(world: World) -> None:
    process = await world.running()
    world.clock.advance(10.0)
    world.supervisor._check_late(10.0)
    await world.tick()
    assert world.supervisor._next_wait() >= OPTIONS.lease_renew  # no busy looping meanwhile
    await world.tick(OPTIONS.lease_renew + OPTIONS.check_interval)
    assert process.signals == []  # judged again: it could have run since?
    await world.tick(OPTIONS.confirm_after)
    assert process.signals == [signal.SIGKILL]


async def test_a_supervisor_on_time_judges_as_before(world: World) -> None:
    process = await world.running()
    world.supervisor._check_late(0.2)
    await world.tick(OPTIONS.lease_ttl + 1)
    await world.tick(OPTIONS.confirm_after)
    assert isinstance(process, FakeProcess) and process.signals == [signal.SIGKILL]
