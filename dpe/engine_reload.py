"""A new document, applied to the runners: only what changed changes.

New assemblies and resources get runners; a changed resource is redefined (the
planner restarts it, since it runs with what it was started with); a removed
resource becomes an orphan, stopped in the order it was started in, then
forgotten; a removed assembly is fenced, then forgotten.  The event says what
changed as ``deployable_diff`` told it before the reload (the same diff, part by
part: settings, escalation and order constraints too, not only resources).
"""

from __future__ import annotations

from dataclasses import dataclass

from dpe.engine_recorder import Recorder
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.states import AssemblyState, ResourceState
from foundation.document_diff import document_diff, is_empty, summary
from foundation.model import Deployable, Resource, ResourceId
from foundation.runtime_kinds import ASSEMBLY, INSTANCE, RESOURCE

_ORPHAN_DONE = (ResourceState.STOPPED, ResourceState.UNRECOVERABLE)


@dataclass(eq=False)
class Reloader:
    level: DeployableLevel
    runners: Runners
    recorder: Recorder

    def apply(self, document: Deployable) -> str:
        """Make ``document`` the one kept; what changed, in a few words."""
        old, self.level.document = self.level.document, document
        self.level.window.retune(document.escalation)
        self._reload_assemblies(document)
        self._reload_resources(document)
        self.add_service_runners(document)
        self._orphan_removed(old, document)
        return reload_reason(old, document)

    def add_service_runners(self, document: Deployable) -> None:
        """A runner for each place a service may run (its copies are probed there)."""
        for rid in document.service_placements():
            definition = document.resource(rid)
            assert definition is not None
            runner = self.runners.resources.get(rid) or self.runners.orphans.pop(rid, None)
            if runner is None:
                runner = self.runners.new_resource(rid, definition)
            elif runner.definition != definition:
                _redefine(runner, definition)
            self.runners.resources[rid] = runner

    def drop_finished(self) -> None:
        """Forget orphans that no longer run, and removed assemblies once fenced."""
        runners, delete = self.runners, self.recorder.delete
        for name, runner in list(runners.assemblies.items()):
            if self.level.document.assembly(name) is None and runner.state is AssemblyState.STOPPED:
                del runners.assemblies[name]
                delete(ASSEMBLY, name)
                delete(INSTANCE, name)
        for rid, orphan in list(runners.orphans.items()):
            if rid.assembly not in runners.assemblies or orphan.state in _ORPHAN_DONE:
                orphan.cancel_monitor()
                del runners.orphans[rid]
                delete(RESOURCE, str(rid))
        runners.orphan_constraints = tuple(
            c
            for c in runners.orphan_constraints
            if c.first in runners.orphans and c.then in runners.orphans
        )

    def _reload_assemblies(self, document: Deployable) -> None:
        for assembly in document.assemblies:
            runner = self.runners.assemblies.get(assembly.name)
            if runner is None:
                self.runners.add_assembly(assembly).mark_absent("added to the deployable")
            else:
                runner.definition = assembly
                runner.window.retune(assembly.escalation)

    def _reload_resources(self, document: Deployable) -> None:
        """Runners for new resources; changed ones redefined."""
        runners = self.runners
        for assembly in document.assemblies:
            for definition in assembly.resources:
                rid = ResourceId(assembly.name, definition.name)
                runner = runners.resources.get(rid) or runners.orphans.pop(rid, None)
                if runner is None:
                    runners.resources[rid] = runners.new_resource(rid, definition)
                    continue
                runners.resources[rid] = runner
                if runner.definition != definition:
                    _redefine(runner, definition)

    def _orphan_removed(self, old: Deployable, new: Deployable) -> None:
        runners = self.runners
        removed = [rid for rid in runners.resources if new.resource(rid) is None]
        for rid in removed:
            runners.orphans[rid] = runners.resources.pop(rid)
        candidates = (*runners.orphan_constraints, *old.constraints)  # how they were ordered
        runners.orphan_constraints = tuple(
            dict.fromkeys(
                c for c in candidates if c.first in runners.orphans and c.then in runners.orphans
            )
        )


def reload_reason(old: Deployable, new: Deployable) -> str:
    """``reloaded: 1 assembly changed (db), 1 setting changed (escalation.failures)``:
    what changed, in the words of ``deployable_diff`` (``reloaded:`` begins it: the
    shell's ``deployable_reload --wait`` ends on it)."""
    changes = document_diff(old.to_dict(), new.to_dict())
    return f"reloaded: {'nothing changed' if is_empty(changes) else summary(changes)}"


def _redefine(runner: ResourceRunner, definition: Resource) -> None:
    old, runner.definition = runner.definition, definition
    runner.window.retune(definition.escalation)
    if (old.monitor_interval, old.timeouts) != (definition.monitor_interval, definition.timeouts):
        runner.cancel_monitor()  # the planner starts it again at the new interval
    if runner.state is ResourceState.UNRECOVERABLE:
        runner.cell.set(ResourceState.UNKNOWN, "its definition changed: trying again")
    # a changed agent or parameter differs from what it was started with: restarted
