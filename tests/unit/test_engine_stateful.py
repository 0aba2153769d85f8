"""A Hypothesis state machine over the engine with fakes.

Random resource failures, instance deaths and freezes, engine restarts (the
old engine ends, a new one adopts) and reloads must never leave two live
instances of one assembly, and never start a resource before the ones it is
ordered after run.  When the faults stop, the deployable converges: every
assembly running on exactly one instance, every resource running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dpe.engine import Engine
from foundation.model import Deployable, parse
from tests.unit.fakes import Harness

T = TypeVar("T")


def _resource(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "Dummy", "monitor_interval": 2, **extra}


BASE = {
    "name": "dep",
    "heartbeat": {"interval": 1, "timeout": 3, "health_interval": 5},
}
V0 = parse(
    BASE
    | {
        "assemblies": [
            {"name": "a1", "resources": [_resource("x"), _resource("y")]},
            {"name": "a2", "resources": [_resource("z")]},
            {
                "name": "a3",
                "resources": [_resource("w", parameters={"peer": {"ref": "a1:ipaddress"}})],
            },
        ],
        "constraints": [
            {"first": "a1/y", "then": "a1/x"},
            {"first": "a1/x", "then": "a2/z"},
            {"first": "a2/z", "then": "a3/w"},
            {"first": "a1/x", "then": "a3/w"},
        ],
    }
)
V1 = parse(  # z changed, y removed, a4 added after w
    BASE
    | {
        "assemblies": [
            {"name": "a1", "resources": [_resource("x")]},
            {"name": "a2", "resources": [_resource("z", parameters={"fake": "2"})]},
            {
                "name": "a3",
                "resources": [_resource("w", parameters={"peer": {"ref": "a1:ipaddress"}})],
            },
            {"name": "a4", "resources": [_resource("v")]},
        ],
        "constraints": [
            {"first": "a1/x", "then": "a2/z"},
            {"first": "a2/z", "then": "a3/w"},
            {"first": "a3/w", "then": "a4/v"},
        ],
    }
)
V2 = parse(  # a3 removed; escalation at two levels
    BASE
    | {
        "assemblies": [
            {
                "name": "a1",
                "resources": [
                    _resource("x", escalation={"failures": 2, "period": 20}),
                    _resource("y"),
                ],
            },
            {
                "name": "a2",
                "escalation": {"failures": 2, "period": 30},
                "resources": [_resource("z")],
            },
        ],
        "constraints": [{"first": "a1/y", "then": "a1/x"}, {"first": "a1/x", "then": "a2/z"}],
    }
)
VARIANTS = (V0, V1, V2)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.h = Harness()
        self.doc: Deployable = V0
        self.run(self.h.start(self.doc))

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    @property
    def engine(self) -> Engine:
        assert self.h.engine is not None
        return self.h.engine

    def alive_guests(self, assembly: str) -> list[Any]:
        return [g for g in self.h.world.live(assembly) if g.alive and not g.frozen]

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 15.0]))
    def time_passes(self, seconds: float) -> None:
        self.run(self.h.clock.advance(seconds))

    @rule(data=st.data())
    def a_resource_dies(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(list(self.doc.resource_ids())))
        for guest in self.alive_guests(rid.assembly):
            guest.service(rid.resource).running = False

    @rule(data=st.data(), freeze=st.booleans())
    def an_instance_dies(self, data: st.DataObject, freeze: bool) -> None:
        assembly = data.draw(st.sampled_from([a.name for a in self.doc.assemblies]))
        for guest in self.alive_guests(assembly):
            if freeze:
                guest.frozen = True
            else:
                self.h.world.kill_instance(assembly)

    @rule()
    def the_engine_is_replaced(self) -> None:
        self.run(self.engine.shutdown())
        self.run(self.h.start(self.doc))

    @precondition(lambda self: not self.engine.halted.is_set())
    @rule(index=st.integers(0, len(VARIANTS) - 1))
    def the_document_is_reloaded(self, index: int) -> None:
        self.doc = VARIANTS[index]
        self.run(self.engine.reload(self.doc))

    @invariant()
    def never_two_instances_never_out_of_order(self) -> None:
        assert self.h.world.violations == []

    def teardown(self) -> None:
        try:
            self.run(self.h.clock.advance(300))
            self.check_converged()
        finally:
            self.run(self.engine.shutdown())
            self.run(self.h.world.end_agents())
            self.loop.close()

    def check_converged(self) -> None:
        assert self.h.world.violations == []
        status = self.engine.status()
        assert status["state"] == "running", self.h.story()[-30:]
        for assembly in self.doc.assemblies:
            assert len(self.h.world.live(assembly.name)) == 1, assembly.name
        for rid in self.doc.resource_ids():
            assert status["resources"][str(rid)]["state"] == "running", rid
        names = {a.name for a in self.doc.assemblies}
        strays = [g for g in self.h.world.guests.values() if not g.destroyed]
        assert {g.assembly for g in strays} == names


EngineMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineStateMachine = EngineMachine.TestCase
