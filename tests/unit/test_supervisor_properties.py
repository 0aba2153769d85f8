"""A Hypothesis state machine over the supervisor with fake DPEs and a real store.

Random start and stop requests, DPEs killed or hung (they stop renewing their
lease and ignore SIGTERM), time passing and cped restarting must never leave
two live DPEs of one deployable, never start a DPE beside a live one, and
every new lease holder has a higher epoch.  When the faults stop, every
deployable converges: one running DPE holding the lease when it should run;
no DPE and no instance left when it should not.

The fake DPEs behave like dped where it matters: one takes the lease when it
starts (or gives up and exits 1 when it is held), renews it as time passes
(exits 1 if it was taken over), records an instance, and on SIGTERM destroys
it, releases the lease and exits 0.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cpe.catalog import Catalog, deployables
from cpe.dpe_scheduling import NEWBORN, Scheduling
from cpe.supervisor import DpeState, ExitCallback, Supervisor, SupervisorOptions
from foundation.store import Store
from tests.unit.test_supervisor import FakeClock

T = TypeVar("T")
HOST = "testhost"
NAMES = ("shop", "blog")
TTL = 5.0
OPTIONS = SupervisorOptions(
    backoff_initial=0.5, backoff_max=8.0, healthy_after=10.0, lease_ttl=TTL, lease_renew=1.0
)


@dataclass
class Dpe:
    pid: int
    deployable: str
    world: World
    alive: bool = True
    hung: bool = False
    clear_failed: bool = False
    epoch: int | None = None
    watchers: dict[int, tuple[ExitCallback, bool]] = field(default_factory=dict)

    @property
    def holder(self) -> str:
        return f"{HOST}:{self.pid}"

    def start(self) -> None:
        epoch = self.world.store.acquire_lease(
            self.deployable, self.holder, self.pid, TTL, self.world.clock.time()
        )
        if epoch is None:
            self.exit(1)  # the lease is held: dped gives up
            return
        self.world.new_epoch(self.deployable, epoch)
        self.epoch = epoch
        self.world.store.put_runtime(self.deployable, "instance", "a1", {"instance_id": "i"})
        if self.clear_failed:
            self.world.store.put_runtime(self.deployable, "deployable", "", {"state": "running"})

    def renew(self) -> None:
        if not self.alive or self.hung or self.epoch is None:
            return
        store, now = self.world.store, self.world.clock.time()
        if store.renew_lease(self.deployable, self.holder, self.epoch, TTL, now):
            return
        if store.acquire_lease(self.deployable, self.holder, self.pid, TTL, now) is None:
            self.exit(1)  # taken over: it fences itself

    def signal(self, signum: int) -> None:
        if signum == signal.SIGKILL:
            self.exit(-signal.SIGKILL)
        elif signum == signal.SIGTERM and not self.hung:
            self.world.store.delete_runtime(self.deployable, "instance")
            if self.epoch is not None:
                self.world.store.release_lease(self.deployable, self.holder, self.epoch)
            self.exit(0)

    def exit(self, status: int) -> None:
        if not self.alive:
            return
        self.alive = False
        for on_exit, child in list(self.watchers.values()):
            on_exit(status if child else None)


@dataclass
class Handle:
    dpe: Dpe
    key: int
    child: bool

    @property
    def pid(self) -> int:
        return self.dpe.pid

    def signal(self, signum: int) -> bool:
        if not self.dpe.alive or self.key not in self.dpe.watchers:
            return False
        self.dpe.signal(signum)
        return True

    def detach(self) -> None:
        self.dpe.watchers.pop(self.key, None)

    def scheduling(self) -> Scheduling | None:
        return NEWBORN if self.dpe.alive else None  # a hung DPE could run: it is judged

    def running_for(self) -> float | None:
        return None  # not known: counted from when it was found


class World:
    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.dpes: dict[int, Dpe] = {}
        self.epochs: dict[str, int] = {}
        self.violations: list[str] = []
        self._keys = 0

    # -- the launcher seam
    def spawn(
        self, deployable: str, *, clear_failed: bool, on_exit: ExitCallback, stop_only: bool = False
    ) -> Handle:
        if self.live(deployable):
            self.violations.append(f"a DPE of {deployable} started beside a live one")
        dpe = Dpe(1000 + len(self.dpes), deployable, self, clear_failed=clear_failed)
        self.dpes[dpe.pid] = dpe
        handle = self._watch(dpe, on_exit, child=True)
        dpe.start()
        return handle

    def attach(self, deployable: str, pid: int, on_exit: ExitCallback) -> Handle | None:
        dpe = self.dpes.get(pid)
        if dpe is None or not dpe.alive or dpe.deployable != deployable:
            return None
        return self._watch(dpe, on_exit, child=False)

    def last_words(self, deployable: str) -> str:
        return ""

    def _watch(self, dpe: Dpe, on_exit: ExitCallback, child: bool) -> Handle:
        self._keys += 1
        dpe.watchers[self._keys] = (on_exit, child)
        return Handle(dpe, self._keys, child)

    # -- checks
    def new_epoch(self, deployable: str, epoch: int) -> None:
        if epoch <= self.epochs.get(deployable, 0):
            self.violations.append(f"{deployable}: epoch {epoch} is not higher")
        self.epochs[deployable] = epoch

    def live(self, deployable: str) -> list[Dpe]:
        return [d for d in self.dpes.values() if d.alive and d.deployable == deployable]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="pc-sup-", dir="/tmp"))
        self.store = Store.open(self.dir / "store.sqlite")
        for name in NAMES:
            deployables.create(Catalog(self.store), {"name": name})
        self.clock = FakeClock()
        self.world = World(self.store, self.clock)
        self.supervisor = self._supervisor()
        self.requests: list[asyncio.Future[Any]] = []
        self.started_last: dict[str, asyncio.Future[Any] | None] = {}  # the last start

    def _supervisor(self) -> Supervisor:
        return Supervisor(
            self.store, self.world, options=lambda: OPTIONS, clock=self.clock, host=HOST
        )

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def tick(self) -> None:
        self.run(self.supervisor.tick())

    @rule(name=st.sampled_from(NAMES), started=st.booleans())
    def a_request(self, name: str, started: bool) -> None:
        async def request() -> None:
            self.store.set_desired_state(name, "started" if started else "stopped")
            made = self.supervisor.start(name) if started else self.supervisor.stop(name, 5.0)
            self.requests.append(made)
            self.started_last[name] = made if started else None

        self.run(request())
        self.tick()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 3.0, 6.0, 20.0]))
    def time_passes(self, seconds: float) -> None:
        step = min(seconds, 0.5)
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            for dpe in list(self.world.dpes.values()):
                dpe.renew()
            self.tick()

    @rule(name=st.sampled_from(NAMES), hang=st.booleans())
    def a_dpe_dies_or_hangs(self, name: str, hang: bool) -> None:
        for dpe in self.world.live(name):
            if hang:
                dpe.hung = True
            else:
                dpe.exit(-signal.SIGKILL)
        self.tick()

    @rule(name=st.sampled_from(NAMES))
    def a_deployable_fails(self, name: str) -> None:
        """Escalation exhausted: its DPE stays, acting no more, until started again."""
        if self.world.live(name):
            self.store.put_runtime(name, "deployable", "", {"state": "failed"})
            self.started_last[name] = None

    @rule()
    def cped_restarts(self) -> None:
        self.supervisor.close()
        self.supervisor = self._supervisor()
        self.tick()

    @invariant()
    def never_two_dpes_never_a_lower_epoch(self) -> None:
        assert self.world.violations == []
        for name in NAMES:
            assert len(self.world.live(name)) <= 1, name

    def teardown(self) -> None:
        try:
            self.time_passes(60.0)
            self.check_converged()
        finally:
            self.supervisor.close()
            self.store.close()
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def check_converged(self) -> None:
        assert self.world.violations == []
        for name in NAMES:
            live = self.world.live(name)
            slot = self.supervisor.slots[name]
            if self.store.get_desired_state(name) == "started":
                assert len(live) == 1 and slot.state is DpeState.RUNNING, (name, slot)
                start = self.started_last.get(name)
                if start is not None and start.done() and not start.cancelled():
                    # an acknowledged start clears a failed state (one lost with its
                    # cped was never acknowledged: the client has to ask again)
                    state = self.store.get_runtime(name).get("deployable", {}).get("", {})
                    assert state.get("state") != "failed", "a start request did not clear it"
                lease = self.store.get_lease(name)
                assert lease is not None and lease["pid"] == live[0].pid
            else:
                assert live == [] and slot.state is DpeState.STOPPED, (name, slot)
                assert self.store.get_runtime(name).get("instance", {}) == {}


SupervisorMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorStateMachine = SupervisorMachine.TestCase
