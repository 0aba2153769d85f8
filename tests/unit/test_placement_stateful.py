"""A Hypothesis state machine: services through failures, on a simulated world.

The world holds what really runs where.  Plans are carried out action by
action in an order their edges allow, sometimes only in part (a transition
aborted by a new failure); assemblies fail (what ran there may still run until
the fence), service copies fail, stops fail softly or with a hard error (the
copy goes on running; the engine takes its assembly for failed, to be fenced,
but a whole plan may come first), and time passes.  After every single action:
never two copies of a service running, never a start on an assembly that is
not running, never an anti-colocated pair on one assembly, and what is
colocated starts only where its leader is placed.  When the faults stop,
everything converges: each service running exactly once, where placement
says.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dpe.placement import place
from dpe.planner import (
    Action,
    ActionKind,
    Applied,
    AssemblyStatus,
    Goal,
    Observed,
    Plan,
    ResourceStatus,
)
from dpe.policy import plan
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse

K = ActionKind
A = AssemblyState
R = ResourceState
ASSEMBLIES = ("a1", "a2", "a3")


def _service(name: str, locations: dict[str, int], **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "type": "Dummy",
        "locations": [{"assembly": a, "score": s} for a, s in locations.items()],
    } | extra


DOC = parse(
    {
        "name": "dep",
        "assemblies": [
            {"name": "a1"},
            {"name": "a2"},
            {
                "name": "a3",
                "resources": [
                    {"name": "app", "type": "Dummy", "parameters": {"db": {"ref": "db:ipaddress"}}}
                ],
            },
        ],
        "services": [
            _service(
                "db",
                {"a1": 100, "a2": 50, "a3": 10},
                stickiness=30,
                migration_threshold=2,
                failure_timeout=50,
            ),
            _service("replica", {"a1": 0, "a2": 20, "a3": 10}, stickiness=5),
            _service("cache", {"a1": 0, "a2": 0, "a3": 0}),
        ],
        "colocations": [
            {"service": "replica", "with": "db", "score": "-INFINITY"},
            {"service": "cache", "with": "db", "score": "INFINITY"},
        ],
        "constraints": [{"first": "db", "then": "a3/app"}],
    }
)
SERVICES = ("db", "replica", "cache")
APART = {("db", "replica")}
TOGETHER = {("cache", "db")}  # (follower, leader)


class World:
    """What really runs, and what the engine knows of it."""

    def __init__(self, document: Deployable) -> None:
        self.doc = document
        self.now = 0.0
        self.assemblies = dict.fromkeys(ASSEMBLIES, A.RUNNING)
        self.running: set[ResourceId] = set()  # really running
        self.known: dict[ResourceId, ResourceStatus] = {}
        self.failures: dict[ResourceId, list[float]] = {}
        self.stubborn: dict[ResourceId, int] = {}  # its next stop fails with this rc
        self.unsure: set[str] = set()  # a stop failed there: to be fenced
        self.noticed: set[str] = set()  # the same, noticed one plan later

    def observed(self) -> Observed:
        statuses = {
            name: AssemblyStatus(state, f"10.0.0.{i + 1}", name)
            for i, (name, state) in enumerate(self.assemblies.items())
        }
        return Observed(
            Goal.RUN,
            statuses,
            dict(self.known),
            now=self.now,
            service_failures={k: tuple(v) for k, v in self.failures.items()},
        )

    def carry_out(
        self, p: Plan, limit: int | None = None, rng: random.Random | None = None
    ) -> None:
        """Actions in any order the edges allow; the first ``limit`` of them only."""
        before = p.predecessors()
        done: set[Action] = set()
        pending = list(p.actions)
        while pending and (limit is None or len(done) < limit):
            ready = [a for a in pending if before[a] <= done]
            action = rng.choice(ready) if rng else ready[0]
            pending.remove(action)
            if not self.perform(action, p):
                return  # the engine aborts the transition and plans again
            done.add(action)
            self.check()

    def perform(self, action: Action, p: Plan) -> bool:
        """Carry out one action; False: it failed."""
        rid = action.rid
        if action.kind is K.STOP and rid in self.stubborn:
            return self.stop_fails(rid)
        if action.kind is K.FENCE:
            self.assemblies[action.assembly] = A.STOPPED
            self.running = {r for r in self.running if r.assembly != action.assembly}
            for r in [r for r in self.known if r.assembly == action.assembly]:
                self.known[r] = ResourceStatus()
        elif action.kind is K.CREATE:
            self.assemblies[action.assembly] = A.CREATING
        elif action.kind is K.PROBE:
            assert rid is not None
            state = R.RUNNING if rid in self.running else R.STOPPED
            applied = self.known.get(rid, ResourceStatus()).applied
            self.known[rid] = ResourceStatus(
                state, "probe", 0, applied if state is R.RUNNING else None
            )
        elif action.kind is K.START:
            assert rid is not None
            assert self.assemblies[rid.assembly] is A.RUNNING, (
                f"{action} on a {self.assemblies[rid.assembly]} assembly"
            )
            self.running.add(rid)
            applied = Applied(
                "ocf:heartbeat:Dummy", tuple(sorted(p.params.get(action, {}).items()))
            )
            self.known[rid] = ResourceStatus(R.RUNNING, "start", 0, applied, False)
        elif action.kind is K.STOP:
            assert rid is not None
            self.running.discard(rid)
            self.known[rid] = ResourceStatus(R.STOPPED, "stop", 0)
        elif action.kind is K.MONITOR:
            assert rid is not None
            self.known[rid] = replace(self.known[rid], monitoring=True)
        return True

    def stop_fails(self, rid: ResourceId) -> bool:
        """It goes on running; its assembly is to be fenced."""
        rc = self.stubborn.pop(rid)
        state = R.UNRECOVERABLE if rc == 5 else R.FAILED
        status = self.known.get(rid, ResourceStatus())
        self.known[rid] = replace(status, state=state, last_op="stop", last_rc=rc)
        self.unsure.add(rid.assembly)
        return False

    def stop_failed(self, rid: ResourceId) -> bool:
        status = self.known.get(rid, ResourceStatus())
        return status.last_op == "stop" and status.state in (R.FAILED, R.UNRECOVERABLE)

    def fence_where_stops_failed(self, now: bool = False) -> None:
        """The engine takes an assembly where a stop failed for failed (to fence), at
        the latest after one more plan (or ``now``)."""
        for assembly in self.noticed | (self.unsure if now else set()):
            if self.assemblies[assembly] is A.RUNNING:
                self.assemblies[assembly] = A.FAILED
        self.noticed, self.unsure = (set(), set()) if now else (self.unsure, set())

    def check(self) -> None:
        for name in SERVICES:
            copies = [r for r in self.running if r.resource == name]
            assert len(copies) <= 1, f"two copies of {name}: {sorted(map(str, copies))}"
        for a, b in APART:
            for assembly in ASSEMBLIES:
                together = {ResourceId(assembly, a), ResourceId(assembly, b)} <= self.running
                assert not together, f"{a} and {b} together on {assembly}"


class Failover(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(DOC)
        self.world.carry_out(plan(DOC, self.world.observed()))

    @rule(limit=st.one_of(st.none(), st.integers(0, 6)), rng=st.randoms(use_true_random=False))
    def step(self, limit: int | None, rng: random.Random) -> None:
        self.world.now += 7.0
        self.world.carry_out(plan(DOC, self.world.observed()), limit, rng)
        self.world.fence_where_stops_failed()

    @rule(assembly=st.sampled_from(ASSEMBLIES))
    def instance_up(self, assembly: str) -> None:
        if self.world.assemblies[assembly] in (A.CREATING, A.CONNECTING):
            self.world.assemblies[assembly] = A.RUNNING

    @rule()
    def engine_restarts(self) -> None:
        """A new engine adopts the instances: it knows what ran, not what runs."""
        world = self.world
        for assembly, state in world.assemblies.items():
            if state is A.RUNNING:
                world.assemblies[assembly] = A.CONNECTING
        for rid, status in world.known.items():
            world.known[rid] = ResourceStatus(R.UNKNOWN, applied=status.applied)

    @rule(assembly=st.sampled_from(ASSEMBLIES))
    def assembly_fails(self, assembly: str) -> None:
        if self.world.assemblies[assembly] is A.RUNNING:
            self.world.assemblies[assembly] = A.FAILED  # what ran there may still run

    @rule(name=st.sampled_from(SERVICES), rc=st.sampled_from([1, 5]))
    def its_next_stop_fails(self, name: str, rc: int) -> None:
        """Soft (1) or hard (5, not installed): either way it may still run."""
        for rid in self.world.running:
            if rid.resource == name:
                self.world.stubborn[rid] = rc

    @rule(name=st.sampled_from(SERVICES))
    def service_fails(self, name: str) -> None:
        for rid in [r for r in self.world.running if r.resource == name]:
            if self.world.assemblies[rid.assembly] is A.RUNNING:
                status = self.world.known.get(rid, ResourceStatus())
                self.world.known[rid] = replace(status, state=R.FAILED, monitoring=False)
                self.world.failures.setdefault(rid, []).append(self.world.now)

    @invariant()
    def colocated_services_start_only_with_their_leader(self) -> None:
        decisions = place(DOC, self.world.observed())
        for follower, leader in TOGETHER:
            where = decisions[follower].target
            if where is not None and self.world.stop_failed(ResourceId(where, follower)):
                continue  # not a start: it stays where its stop failed until that is fenced
            assert where is None or where == decisions[leader].target

    def teardown(self) -> None:
        """No more faults: everything converges to one running copy of each service."""
        world = self.world
        world.stubborn.clear()
        world.fence_where_stops_failed(now=True)
        for _ in range(12):
            world.now += 100.0  # failures expire
            for assembly, state in world.assemblies.items():
                if state in (A.CREATING, A.CONNECTING):
                    world.assemblies[assembly] = A.RUNNING
            p = plan(DOC, world.observed())
            if p.empty:
                break
            world.carry_out(p)
        assert plan(DOC, world.observed()).empty
        decisions = place(DOC, world.observed())
        for name in SERVICES:
            copies = {r.assembly for r in world.running if r.resource == name}
            target = decisions[name].target
            assert copies == ({target} if target else set()), (name, copies, target)
        assert decisions["db"].target is not None
        assert decisions["replica"].target != decisions["db"].target


TestFailover = Failover.TestCase
TestFailover.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
