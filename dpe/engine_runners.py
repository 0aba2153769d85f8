"""What the engine keeps running: the deployable's level, and a runner per part.

``DeployableLevel`` is the deployable itself: its document, state, failure
window and goal (run it, or stop it).  ``Runners`` holds an ``AssemblyRunner``
per assembly and a ``ResourceRunner`` per resource: each pinned resource, and
each place a service may run.  Orphans are resources no longer in the document
(removed by a reload, or recorded by a previous DPE and removed meanwhile) that
may still run: kept, with the order they were stopped in, until stopped.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from dpe.engine_assembly import AssemblyHooks, AssemblyRunner
from dpe.engine_deps import EngineDeps
from dpe.engine_resource import ResourceHooks, ResourceRunner
from dpe.escalation import FailureWindow
from dpe.planner import AssemblyStatus, Goal
from dpe.states import DeployableState, StateCell
from foundation.model import Assembly, Constraint, Deployable, Resource, ResourceId


class DeployableLevel:
    def __init__(self, document: Deployable, cell: StateCell[DeployableState]) -> None:
        self.document = document
        self.planned = document  # the document the current (or last) transition was planned with
        self.cell = cell
        self.window = FailureWindow(document.escalation)
        self.goal = Goal.RUN
        self.restart_pending = False  # stopping every assembly to start them again

    @property
    def state(self) -> DeployableState:
        return self.cell.state

    def counting_failures(self) -> bool:
        """Failures count while keeping the deployable available, not while stopping it."""
        return self.goal is Goal.RUN and self.state is not DeployableState.FAILED

    def recovering(self, reason: str) -> None:
        if self.state is DeployableState.RUNNING:
            self.cell.set(DeployableState.RECOVERING, reason)

    def to_doc(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "reason": self.cell.reason,
            "failures": list(self.window.times),
        }


class RunnerHooks(AssemblyHooks, ResourceHooks, Protocol):
    """What the runners report to (the engine)."""


class Runners:
    def __init__(self, deps: EngineDeps, hooks: RunnerHooks) -> None:
        self.deps = deps
        self.hooks = hooks
        self.assemblies: dict[str, AssemblyRunner] = {}
        self.resources: dict[ResourceId, ResourceRunner] = {}
        self.orphans: dict[ResourceId, ResourceRunner] = {}
        self.orphan_constraints: tuple[Constraint, ...] = ()

    def add_assembly(self, assembly: Assembly) -> AssemblyRunner:
        """A runner for the assembly and one for each of its resources."""
        runner = AssemblyRunner(self.deps, assembly, self.hooks)
        self.assemblies[assembly.name] = runner
        for resource in assembly.resources:
            rid = ResourceId(assembly.name, resource.name)
            self.resources[rid] = self.new_resource(rid, resource)
        return runner

    def new_resource(self, rid: ResourceId, definition: Resource) -> ResourceRunner:
        return ResourceRunner(self.deps, rid, definition, self.hooks)

    def find(self, rid: ResourceId) -> ResourceRunner | None:
        return self.resources.get(rid) or self.orphans.get(rid)

    def every_resource(self) -> list[ResourceRunner]:
        return [*self.resources.values(), *self.orphans.values()]

    def on(self, assembly: str) -> list[ResourceRunner]:
        """The resource runners (orphans too) of one assembly."""
        return [r for r in self.every_resource() if r.rid.assembly == assembly]

    def of_instance(self, instance_id: str) -> AssemblyRunner | None:
        for runner in self.assemblies.values():
            if runner.instance is not None and runner.instance.instance_id == instance_id:
                return runner
        return None

    def assembly_statuses(self) -> dict[str, AssemblyStatus]:
        return {name: a.status() for name, a in self.assemblies.items()}

    def halt(self) -> None:
        """Act no more: monitors cancelled, assemblies' tasks and connections ended."""
        for runner in self.every_resource():
            runner.cancel_monitor()
        for assembly in self.assemblies.values():
            assembly.halt()

    async def shutdown(self) -> None:
        """End every runner's tasks; the instances keep running."""
        await asyncio.gather(*(r.shutdown() for r in self.every_resource()))
        await asyncio.gather(*(a.shutdown() for a in self.assemblies.values()))
