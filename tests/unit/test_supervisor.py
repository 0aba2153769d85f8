"""The DPE supervisor's state machine: a fake clock, a fake launcher, a real store.

Fake DPE processes take, renew and release the lease only when a test says so,
so each test reads as the story of one DPE's life.  ``tick`` is called by
hand; nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from cpe.catalog import Catalog, deployables
from cpe.dpe_scheduling import Scheduling
from cpe.dpe_slot import REFUSED_CONFIGURATION
from cpe.supervisor import DpeState, ExitCallback, Supervisor, SupervisorOptions, describe_exit
from dpe.dped_process import ExitCode
from foundation.errors import Conflict, StoreError
from foundation.store import Store

HOST = "testhost"
OPTIONS = SupervisorOptions(
    backoff_initial=0.5, backoff_max=30.0, healthy_after=10.0, lease_ttl=5.0, lease_renew=1.0
)


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@dataclass
class FakeProcess:
    pid: int
    deployable: str
    child: bool
    on_exit: ExitCallback
    launcher: FakeLauncher
    clear_failed: bool = False
    stop_only: bool = False
    signals: list[int] = field(default_factory=list)
    alive: bool = True
    detached: bool = False
    waited: float = 0.0  # seconds it waited for a CPU (the kernel's count)
    stopped: bool = False  # SIGSTOPped
    age: float = 0.0  # seconds since it started, when found

    @property
    def holder(self) -> str:
        return f"{HOST}:{self.pid}"

    def signal(self, signum: int) -> bool:
        if not self.alive:
            return False
        self.signals.append(signum)
        if signum == signal.SIGKILL:
            self.exit(-signal.SIGKILL)
        elif signum == signal.SIGTERM and self.launcher.obey_sigterm:
            self.exit(0, release=True)
        return True

    def detach(self) -> None:
        self.detached = True

    def scheduling(self) -> Scheduling | None:
        return Scheduling(self.waited, self.stopped) if self.alive else None

    def running_for(self) -> float | None:
        return self.age if self.alive else None

    def take_lease(self) -> int | None:
        clock, store = self.launcher.clock, self.launcher.store
        return store.acquire_lease(self.deployable, self.holder, self.pid, 5.0, clock.time())

    def exit(self, status: int, *, release: bool = False) -> None:
        """Die; a clean dped gives its lease up, a killed one cannot."""
        self.alive = False
        if release:
            lease = self.launcher.store.get_lease(self.deployable)
            if lease and lease["holder"] == self.holder:
                self.launcher.store.release_lease(self.deployable, self.holder, lease["epoch"])
        self.on_exit(status if self.child else None)


class FakeLauncher:
    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.next_pid = 100
        self.spawned: list[FakeProcess] = []
        self.foreign: dict[int, str] = {}  # pid -> deployable: live DPEs another cped started
        self.ages: dict[int, float] = {}  # pid -> seconds it had run when found
        self.obey_sigterm = True
        self.fail: OSError | None = None
        self.words = ""  # the last line of the DPE log

    def spawn(
        self, deployable: str, *, clear_failed: bool, on_exit: ExitCallback, stop_only: bool = False
    ) -> FakeProcess:
        if self.fail is not None:
            raise self.fail
        self.next_pid += 1
        process = FakeProcess(
            self.next_pid, deployable, True, on_exit, self, clear_failed, stop_only
        )
        self.spawned.append(process)
        return process

    def attach(self, deployable: str, pid: int, on_exit: ExitCallback) -> FakeProcess | None:
        if self.foreign.get(pid) != deployable:
            return None
        return FakeProcess(pid, deployable, False, on_exit, self, age=self.ages.get(pid, 0.0))

    def last_words(self, deployable: str) -> str:
        return self.words

    def live(self, deployable: str = "shop") -> list[FakeProcess]:
        return [p for p in self.spawned if p.alive and p.deployable == deployable]


@dataclass
class World:
    store: Store
    clock: FakeClock
    launcher: FakeLauncher
    supervisor: Supervisor

    async def tick(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        await self.supervisor.tick()

    def slot_state(self, name: str = "shop") -> DpeState:
        return self.supervisor.slots[name].state

    def events(self, name: str = "shop") -> list[tuple[str, str]]:
        return [(e.state, e.reason) for e in self.store.query_events(deployable=name, limit=1000)]

    def reasons(self, state: str) -> list[str]:
        return [reason for kind, reason in self.events() if kind == state]

    def want(self, desired: str, name: str = "shop") -> None:
        self.store.set_desired_state(name, desired)

    async def running(self) -> FakeProcess:
        """Start the deployable and bring its DPE to RUNNING."""
        self.want("started")
        self.supervisor.start("shop")
        await self.tick()
        (process,) = self.launcher.live()
        process.take_lease()
        await self.tick()
        assert self.slot_state() is DpeState.RUNNING
        return process


def make_world(store: Store, *names: str, options: SupervisorOptions = OPTIONS) -> World:
    catalog = Catalog(store)
    for name in names or ("shop",):
        deployables.create(catalog, {"name": name})
    clock = FakeClock()
    launcher = FakeLauncher(store, clock)
    supervisor = Supervisor(store, launcher, options=lambda: options, clock=clock, host=HOST)
    return World(store, clock, launcher, supervisor)


@pytest.fixture
def world(store: Store) -> World:
    return make_world(store)


# -- starting ----------------------------------------------------------------------------


async def test_start_spawns_one_dpe_that_runs_once_it_holds_the_lease(world: World) -> None:
    world.want("started")
    answer = world.supervisor.start("shop")
    await world.tick()
    (process,) = world.launcher.spawned
    assert answer.result() == {"pid": process.pid, "note": "a DPE was started"}
    assert process.clear_failed is True  # an explicit start clears a failed deployable
    assert world.slot_state() is DpeState.STARTING
    await world.tick(1.0)
    assert world.slot_state() is DpeState.STARTING and len(world.launcher.spawned) == 1
    epoch = process.take_lease()
    await world.tick()
    assert world.slot_state() is DpeState.RUNNING
    assert world.reasons("dpe-running") == [
        f"dpe (pid {process.pid}) holds the lease (epoch {epoch})"
    ]
    assert world.supervisor.info("shop")["pid"] == process.pid


async def test_starting_a_running_deployable_changes_nothing(world: World) -> None:
    process = await world.running()
    answer = world.supervisor.start("shop")
    await world.tick()
    assert answer.result() == {"pid": process.pid, "note": "already running"}
    assert world.launcher.live() == [process] and process.signals == []


async def test_starting_a_failed_deployable_replaces_its_dpe_to_clear_it(world: World) -> None:
    process = await world.running()
    world.store.put_runtime("shop", "deployable", "", {"state": "failed", "reason": "escalated"})
    answer = world.supervisor.start("shop")
    await world.tick()
    assert process.signals == [signal.SIGKILL]
    await world.tick()  # the exit is handled: replaced at once, not after a back-off
    (replacement,) = world.launcher.live()
    assert replacement.clear_failed is True
    assert answer.result()["pid"] == replacement.pid
    assert any("the deployable had failed" in r for r in world.reasons("dpe-killed"))


async def test_a_dpe_that_never_takes_its_lease_is_killed_and_replaced(world: World) -> None:
    world.want("started")
    await world.tick()
    (process,) = world.launcher.spawned
    await world.tick(OPTIONS.start_grace - 1)
    assert process.alive
    await world.tick(2)
    assert process.signals == [signal.SIGKILL]
    assert "did not take its lease" in world.reasons("dpe-killed")[0]
    await world.tick()
    assert world.slot_state() is DpeState.BACKOFF


async def test_a_spawn_that_fails_is_retried_with_back_off(world: World) -> None:
    world.launcher.fail = FileNotFoundError(2, "No such file or directory", "dped")
    world.want("started")
    answer = world.supervisor.start("shop")
    await world.tick()
    assert world.slot_state() is DpeState.BACKOFF
    assert "cannot start dped" in answer.result()["note"]
    world.launcher.fail = None
    await world.tick(0.4)
    assert world.launcher.spawned == []
    await world.tick(0.2)
    assert len(world.launcher.spawned) == 1


# -- a DPE dies ---------------------------------------------------------------------------


async def test_a_dead_dpe_is_replaced_after_a_back_off_with_a_higher_epoch(world: World) -> None:
    process = await world.running()
    first_epoch = world.store.get_lease("shop")["epoch"]  # type: ignore[index]
    process.exit(-9)
    await world.tick()
    assert world.slot_state() is DpeState.BACKOFF
    lease = world.store.get_lease("shop")
    assert lease is not None and lease["holder"] is None  # released: no wait for expiry
    assert world.reasons("dpe-restarting") == [
        f"dpe (pid {process.pid}) exited with status -9 (SIGKILL); restarting in 0.5 s (attempt 1)"
    ]
    await world.tick(0.4)
    assert world.launcher.live() == []
    await world.tick(0.1)
    (replacement,) = world.launcher.live()
    assert replacement.pid != process.pid and replacement.clear_failed is False
    new_epoch = replacement.take_lease()
    assert new_epoch is not None and new_epoch > first_epoch


async def test_a_failing_dpe_is_reported_with_the_last_line_of_its_log(world: World) -> None:
    process = await world.running()
    world.launcher.words = "dped: no such deployable: 'shop'"
    process.exit(2)
    await world.tick()
    assert world.reasons("dpe-restarting") == [
        f"dpe (pid {process.pid}) exited with status 2 (dped: no such deployable: 'shop');"
        " restarting in 0.5 s (attempt 1)"
    ]


async def test_dpes_refusing_their_configuration_mark_the_deployable_failed(
    world: World,
) -> None:
    """Not restarted forever: after a few refusals in a row, failed with the reason."""
    world.launcher.words = "settings.bogus: unknown setting"
    world.want("started")
    answer = world.supervisor.start("shop")
    for _ in range(OPTIONS.refusal_attempts):
        await world.tick(60.0)
        (process,) = world.launcher.live()
        process.exit(REFUSED_CONFIGURATION)
        await world.tick()
    assert len(world.launcher.spawned) == OPTIONS.refusal_attempts
    assert len(world.reasons("dpe-restarting")) == OPTIONS.refusal_attempts - 1
    (reason,) = world.reasons("failed")
    assert "settings.bogus: unknown setting" in reason and "3 DPEs in a row" in reason
    state = world.store.get_runtime("shop")["deployable"][""]
    assert state["state"] == "failed" and state["reason"] == reason
    await world.tick(600.0)
    assert world.launcher.live() == [] and world.slot_state() is DpeState.STOPPED
    assert answer.done()
    world.supervisor.start("shop")  # the admin fixed it: try again
    await world.tick()
    assert len(world.launcher.live()) == 1


async def test_a_dpe_that_took_its_configuration_resets_the_refusals(world: World) -> None:
    world.want("started")
    world.supervisor.start("shop")
    for _ in range(OPTIONS.refusal_attempts - 1):
        await world.tick(60.0)
        world.launcher.live()[0].exit(REFUSED_CONFIGURATION)
        await world.tick()
    await world.tick(60.0)
    (process,) = world.launcher.live()
    process.take_lease()
    await world.tick()
    process.exit(REFUSED_CONFIGURATION)
    await world.tick()
    assert world.reasons("failed") == [] and world.slot_state() is DpeState.BACKOFF


def test_the_refusal_status_is_dpeds_exit_code_for_an_invalid_document() -> None:
    assert REFUSED_CONFIGURATION == ExitCode.USAGE


async def test_a_live_dpe_that_cannot_be_watched_is_not_doubled(store: Store) -> None:
    world = make_world(store)
    world.want("started")
    world.launcher.foreign[4242] = "shop"
    store.acquire_lease("shop", f"{HOST}:4242", 4242, 5.0, world.clock.time())

    def refuse(*args: object) -> None:
        raise OSError(24, "Too many open files")

    world.launcher.attach = refuse  # type: ignore[method-assign,assignment]
    await world.tick()
    assert world.launcher.spawned == []
    assert "cannot watch dpe testhost:4242" in world.supervisor.info("shop")["note"]
    assert store.get_lease("shop")["holder"] == f"{HOST}:4242"  # type: ignore[index]


async def test_repeated_deaths_double_the_delay_up_to_the_cap(world: World) -> None:
    process = await world.running()
    delays = []
    for _ in range(9):
        process.exit(-9)
        await world.tick()
        slot = world.supervisor.slots["shop"]
        delays.append(slot.retry_at - world.clock.monotonic())
        await world.tick(delays[-1])
        (process,) = world.launcher.live()
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    attempts = [r.rsplit("(attempt ", 1)[1].rstrip(")") for r in world.reasons("dpe-restarting")]
    assert attempts == [str(n) for n in range(1, 10)]


async def test_a_dpe_that_ran_long_enough_resets_the_back_off(world: World) -> None:
    process = await world.running()
    for _ in range(3):
        process.exit(1)
        await world.tick()
        await world.tick(world.supervisor.slots["shop"].retry_at - world.clock.monotonic())
        (process,) = world.launcher.live()
    assert world.supervisor.slots["shop"].attempts == 3
    process.take_lease()
    await world.tick(OPTIONS.healthy_after)
    process.exit(1)
    await world.tick()
    assert world.reasons("dpe-restarting")[-1].endswith("restarting in 0.5 s (attempt 1)")


async def test_a_dpe_that_stops_renewing_its_lease_although_it_could_run_is_killed(
    world: World,
) -> None:
    process = await world.running()
    await world.tick(OPTIONS.lease_ttl + 1)  # no renewal: hung, or not scheduled?
    assert process.signals == []
    await world.tick(OPTIONS.confirm_after - 0.5)
    assert process.signals == []
    await world.tick(0.5)  # it could run all that time: hung
    assert process.signals == [signal.SIGKILL]
    (reason,) = world.reasons("dpe-killed")
    assert reason == (
        f"dpe (pid {process.pid}) has not renewed its lease for 8.5 s; in the last 2.5 s it"
        " could run 2.5 s (waited 0.0 s for a CPU, stopped 0.0 s): killed (SIGKILL)"
    )
    await world.tick()
    assert world.slot_state() is DpeState.BACKOFF


async def look_every_check(world: World, seconds: float, during: Callable[[], None]) -> None:
    """Time passes as the supervisor's loop sees it, ``during`` at each look."""
    for _ in range(round(seconds / OPTIONS.check_interval)):
        during()
        await world.tick(OPTIONS.check_interval)


async def test_a_dpe_stopped_for_10_s_is_not_killed(world: World) -> None:
    process = await world.running()
    process.stopped = True  # SIGSTOP
    await look_every_check(world, 10.0, lambda: None)
    assert process.signals == []
    assert world.supervisor._next_wait() == pytest.approx(OPTIONS.check_interval)  # no busy loop
    process.stopped = False  # SIGCONT: it renews at once
    process.take_lease()
    await world.tick()
    assert process.signals == [] and world.slot_state() is DpeState.RUNNING
    assert world.supervisor.slots["shop"].doubt is None
    await world.tick(OPTIONS.lease_ttl + 1)
    await world.tick(OPTIONS.confirm_after)
    assert process.signals == [signal.SIGKILL]  # a new doubt, from nothing


async def test_a_dpe_starved_of_cpu_is_not_killed(world: World) -> None:
    process = await world.running()

    def starved() -> None:  # it gets a tenth of the time it waits for
        process.waited += OPTIONS.check_interval * 0.9

    await look_every_check(world, 18.0, starved)
    assert process.signals == []
    process.take_lease()
    await world.tick()
    assert world.slot_state() is DpeState.RUNNING and process.signals == []


async def test_a_dpe_that_cannot_run_is_killed_after_the_limit_with_the_evidence(
    world: World,
) -> None:
    process = await world.running()
    process.stopped = True
    await look_every_check(world, OPTIONS.lease_ttl + 1 + OPTIONS.doubt_limit, lambda: None)
    assert process.signals == [signal.SIGKILL]
    (reason,) = world.reasons("dpe-killed")
    assert "could run 0.0 s (waited 0.0 s for a CPU, stopped 30.0 s)" in reason


async def test_a_starting_dpe_is_judged_on_the_time_it_could_run(world: World) -> None:
    world.want("started")
    await world.tick()
    (process,) = world.launcher.spawned

    def starved() -> None:
        process.waited += OPTIONS.check_interval / 2

    await look_every_check(world, 2 * OPTIONS.start_grace - 2, starved)
    assert process.signals == []  # past its grace, but it could run only half of it
    await look_every_check(world, 4.0, starved)
    assert process.signals == [signal.SIGKILL]
    assert "did not take its lease within 17 s; in the last 3" in world.reasons("dpe-killed")[0]


async def test_a_dpe_whose_lease_was_taken_over_is_killed(world: World) -> None:
    process = await world.running()
    lease = world.store.get_lease("shop")
    assert lease is not None
    world.store.release_lease("shop", lease["holder"], lease["epoch"])
    world.store.acquire_lease("shop", "elsewhere:7", 7, 5.0, world.clock.time())
    await world.tick()
    assert process.signals == [signal.SIGKILL]
    assert "now held by elsewhere:7" in world.reasons("dpe-killed")[0]


# -- stopping ------------------------------------------------------------------------------


async def test_stop_sends_sigterm_and_answers_once_the_dpe_has_exited(world: World) -> None:
    world.launcher.obey_sigterm = False
    process = await world.running()
    world.want("stopped")
    answer = world.supervisor.stop("shop")
    await world.tick()
    assert process.signals == [signal.SIGTERM] and world.slot_state() is DpeState.STOPPING
    assert not answer.done()
    process.exit(0, release=True)
    await world.tick()
    assert world.slot_state() is DpeState.STOPPED
    assert answer.result() == {"pid": process.pid, "exit": "status 0", "killed": False, "left": []}
    await world.tick(100)
    assert world.launcher.live() == []


async def test_a_dpe_stuck_in_its_stop_is_killed_after_the_timeout(world: World) -> None:
    world.launcher.obey_sigterm = False
    process = await world.running()
    world.want("stopped")
    answer = world.supervisor.stop("shop", kill_after=5.0)
    await world.tick()
    await world.tick(4.9)
    assert process.signals == [signal.SIGTERM]
    await world.tick(0.2)
    assert process.signals == [signal.SIGTERM, signal.SIGKILL]
    assert world.reasons("dpe-killed") == [
        f"dpe (pid {process.pid}) did not stop within 5 s: killed (SIGKILL)"
    ]
    await world.tick()
    await world.tick(OPTIONS.backoff_initial)
    assert answer.result()["killed"] is True and answer.result()["left"] == []


async def test_stop_without_a_dpe_stops_the_instances_a_dead_one_left(world: World) -> None:
    world.store.put_runtime("shop", "instance", "web", {"instance_id": "web-1"})
    world.want("stopped")
    answer = world.supervisor.stop("shop")
    await world.tick()
    (stopper,) = world.launcher.live()
    assert "to stop what is left (web)" in world.reasons("dpe-started")[0]
    assert stopper.stop_only  # dped --stop-only: it must not create what a run would
    await world.tick()
    assert stopper.signals == []  # not before it holds the lease (its handlers are set)
    stopper.take_lease()
    world.launcher.obey_sigterm = False
    await world.tick()
    assert stopper.signals == [signal.SIGTERM]
    world.store.delete_runtime("shop", "instance")  # what dped does once it has stopped
    stopper.exit(0, release=True)
    await world.tick()
    assert answer.result()["left"] == [] and world.slot_state() is DpeState.STOPPED


async def test_stop_gives_up_after_a_few_dpes_could_not_stop_what_is_left(world: World) -> None:
    world.store.put_runtime("shop", "instance", "web", {"instance_id": "web-1"})
    world.want("stopped")
    answer = world.supervisor.stop("shop")
    for _ in range(OPTIONS.stop_attempts):
        await world.tick(30)
        (stopper,) = world.launcher.live()
        stopper.exit(1)
        await world.tick()
    await world.tick(30)
    assert answer.result()["left"] == ["web"]
    assert world.reasons("dpe-left") == ["instances of web are left: 3 DPEs could not stop them"]
    assert world.launcher.live() == []


async def test_stop_of_a_stopped_deployable_answers_at_once(world: World) -> None:
    answer = world.supervisor.stop("shop")
    await world.tick()
    assert answer.result() == {"pid": None, "left": []}
    assert world.launcher.spawned == []


async def test_no_restart_once_the_deployable_should_be_stopped(world: World) -> None:
    process = await world.running()
    process.exit(-9)
    await world.tick()
    world.want("stopped")
    await world.tick(60)
    assert world.launcher.live() == [] and world.slot_state() is DpeState.STOPPED


# -- reload ----------------------------------------------------------------------------------


async def test_reload_signals_a_running_dpe(world: World) -> None:
    process = await world.running()
    assert world.supervisor.reload("shop")["pid"] == process.pid
    assert process.signals == [signal.SIGHUP]


async def test_reload_waits_until_a_starting_dpe_holds_its_lease(world: World) -> None:
    world.want("started")
    await world.tick()
    (process,) = world.launcher.live()
    assert "once it holds its lease" in world.supervisor.reload("shop")["note"]
    assert process.signals == []  # SIGHUP before its handler is set would kill it
    process.take_lease()
    await world.tick()
    assert process.signals == [signal.SIGHUP]


async def test_reload_of_a_stopped_deployable_is_refused(world: World) -> None:
    await world.tick()
    with pytest.raises(Conflict, match="not running"):
        world.supervisor.reload("shop")


# -- a new cped ----------------------------------------------------------------------------


async def test_a_new_cped_adopts_a_live_dpe_instead_of_starting_another(store: Store) -> None:
    world = make_world(store)
    world.want("started")
    world.launcher.foreign[4242] = "shop"
    epoch = store.acquire_lease("shop", f"{HOST}:4242", 4242, 5.0, world.clock.time())
    await world.tick()
    assert world.launcher.spawned == [] and world.slot_state() is DpeState.RUNNING
    assert world.reasons("dpe-adopted") == [
        f"adopted the running dpe (pid 4242, lease epoch {epoch})"
    ]
    info = world.supervisor.info("shop")
    assert info["pid"] == 4242 and info["adopted"] is True


async def test_an_adopted_dpe_s_uptime_is_its_own(store: Store) -> None:
    world = make_world(store)
    world.want("started")
    world.launcher.foreign[4242] = "shop"
    world.launcher.ages[4242] = 127.0  # it ran before this cped found it
    store.acquire_lease("shop", f"{HOST}:4242", 4242, 5.0, world.clock.time())
    await world.tick()
    world.clock.advance(3.0)
    assert world.supervisor.info("shop")["uptime"] == pytest.approx(130.0)


async def test_an_adopted_dpe_that_dies_is_replaced(store: Store) -> None:
    world = make_world(store)
    world.want("started")
    world.launcher.foreign[4242] = "shop"
    store.acquire_lease("shop", f"{HOST}:4242", 4242, 5.0, world.clock.time())
    await world.tick()
    adopted = world.supervisor.slots["shop"].process
    assert isinstance(adopted, FakeProcess)
    adopted.exit(-9)
    await world.tick()
    assert "exited with an unknown status" in world.reasons("dpe-restarting")[0]
    assert store.get_lease("shop")["holder"] is None  # type: ignore[index]
    await world.tick(0.5)
    assert len(world.launcher.live()) == 1


async def test_a_new_cped_frees_the_lease_of_a_dead_holder_and_starts_a_dpe(
    store: Store,
) -> None:
    world = make_world(store)
    world.want("started")
    store.acquire_lease("shop", f"{HOST}:4242", 4242, 5.0, world.clock.time())  # pid 4242 is dead
    await world.tick()
    (process,) = world.launcher.live()
    assert process.take_lease() == 2


async def test_a_lease_held_on_another_host_is_waited_for(store: Store) -> None:
    world = make_world(store)
    world.want("started")
    store.acquire_lease("shop", "otherhost:99", 99, 5.0, world.clock.time())
    await world.tick()
    assert world.launcher.spawned == []
    assert "held by otherhost:99" in world.supervisor.info("shop")["note"]
    await world.tick(6)
    assert len(world.launcher.live()) == 1


async def test_a_new_cped_stops_what_a_stopped_deployable_left(store: Store) -> None:
    world = make_world(store, "shop", "other")
    store.put_runtime("shop", "instance", "db", {"instance_id": "db-1"})
    await world.tick()
    assert [p.deployable for p in world.launcher.spawned] == ["shop"]
    assert world.launcher.live("other") == []


async def test_trouble_with_one_deployable_does_not_stall_the_others(store: Store) -> None:
    world = make_world(store, "blog", "shop")

    async def flaky(fn: Callable[..., Any], *args: Any) -> Any:
        if fn.__name__ == "_instances_left" and "blog" in args:
            raise StoreError("the store is busy")
        return fn(*args)

    supervisor = Supervisor(
        store, world.launcher, in_store=flaky, options=lambda: OPTIONS, clock=world.clock, host=HOST
    )
    for name in ("blog", "shop"):  # both left an instance: a first tick looks for them
        store.put_runtime(name, "instance", "web", {"instance_id": "i-1"})
    await supervisor.tick()
    assert [p.deployable for p in world.launcher.spawned] == ["shop"]


async def test_an_exit_the_store_failed_on_is_handled_at_the_next_tick(store: Store) -> None:
    world = make_world(store)
    failing = {"get_lease": False}

    async def flaky(fn: Callable[..., Any], *args: Any) -> Any:
        if failing.get(fn.__name__):
            failing[fn.__name__] = False
            raise StoreError("the store is busy")
        return fn(*args)

    world.supervisor = Supervisor(
        store, world.launcher, in_store=flaky, options=lambda: OPTIONS, clock=world.clock, host=HOST
    )
    process = await world.running()
    process.exit(-9)
    failing["get_lease"] = True
    with pytest.raises(StoreError):
        await world.tick()
    await world.tick()
    assert world.slot_state() is DpeState.BACKOFF
    assert len(world.reasons("dpe-restarting")) == 1


async def test_closing_leaves_every_dpe_running(world: World) -> None:
    process = await world.running()
    world.supervisor.close()
    assert process.detached and process.signals == [] and process.alive


async def test_a_deleted_deployable_is_forgotten(world: World) -> None:
    await world.tick()
    deployables.delete(Catalog(world.store), "shop")
    await world.tick()
    assert "shop" not in world.supervisor.slots


# -- pieces ----------------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    options = SupervisorOptions(backoff_initial=1.0, backoff_max=60.0)
    assert [options.backoff.delay(n) for n in (1, 2, 3, 6, 7, 8, 10_000)] == [
        1,
        2,
        4,
        32,
        60,
        60,
        60,
    ]


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (0, "status 0"),
        (1, "status 1"),
        (-9, "status -9 (SIGKILL)"),
        (-15, "status -15 (SIGTERM)"),
        (None, "an unknown status (not a child of this cped)"),
    ],
)
def test_exit_statuses_are_described(status: int | None, text: str) -> None:
    assert describe_exit(status) == text
