"""Failure clean-up, as Pacemaker's ``crm_resource --cleanup``: fail counts forgotten.

An administrator asks cped (``deployable_cleanup NAME [ASSEMBLY[/RESOURCE]]``),
which records the request (runtime kind ``cleanup``, keyed by its scope) and
tells the DPE.  For the scope, every failure window is emptied (the resources',
the assemblies', the deployable's own for the whole deployable), a service's
fail counts on those assemblies too, the restart back-off ends (its failures in a
row are counted as forgotten too), a resource's last failed operation is
forgotten, and a resource
left unrecoverable is probed again, an assembly refused for a host key mismatch
is fenced and made again; then the engine plans again.  An event on
the scope's subject says what was cleaned, and the request is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpe.engine_log import Context
from dpe.engine_moves import ServiceMoves
from dpe.engine_recorder import Recorder
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.runtime import Runtime
from dpe.states import ResourceState
from foundation.errors import PcloudError
from foundation.model import ResourceId
from foundation.runtime_kinds import CLEANUP, SERVICE


@dataclass(eq=False)
class Cleanup:
    runtime: Runtime
    level: DeployableLevel
    runners: Runners
    recorder: Recorder
    moves: ServiceMoves
    log: Context

    def take_requested(self) -> int:
        """Carry out every clean-up asked for since; how many there were."""
        try:
            requests = self.runtime.load().get(CLEANUP, {})
        except PcloudError as error:
            self.log.warning("cannot read the requested clean-ups: %s", error)
            return 0
        for scope in sorted(requests):
            self.clean(scope)
            self.recorder.delete(CLEANUP, scope)
        return len(requests)

    def clean(self, scope: str) -> str:
        """Forget the failures of ``scope`` ("", ASSEMBLY or ASSEMBLY/RESOURCE); the event's reason."""
        assembly, _, resource = scope.partition("/")
        resources = self._resources(assembly, resource)
        reprobed = [str(r.rid) for r in resources if r.state is ResourceState.UNRECOVERABLE]
        forgotten = sum(self._clean_resource(runner) for runner in resources)
        if not resource:
            forgotten += self._clean_assemblies(assembly)
        if not scope:
            forgotten += len(self.level.window.times)
            self.level.window.reset()
            self.recorder.save_deployable()
        reason = _reason(scope, forgotten, reprobed)
        self._subject_note(assembly, resource, reason)
        return reason

    def _resources(self, assembly: str, resource: str) -> list[ResourceRunner]:
        if resource:
            runner = self.runners.find(ResourceId(assembly, resource))
            return [runner] if runner is not None else []
        if assembly:
            return self.runners.on(assembly)
        return list(self.runners.every_resource())

    def _clean_resource(self, runner: ResourceRunner) -> int:
        forgotten = _failures_of(runner) + self._clean_service(runner.rid)
        runner.window.reset()
        runner.retries.reset()
        runner.retry_at = None
        runner.last_failure = None
        if runner.state is ResourceState.UNRECOVERABLE:
            runner.last_op = runner.last_rc = None
            runner.cell.set(ResourceState.UNKNOWN, "cleaned up: probing it again")
        self.recorder.save_resource(runner)
        return forgotten

    def _clean_service(self, rid: ResourceId) -> int:
        """A service's fail count on the assembly (``migration-threshold``)."""
        counts = self.moves.records.failures.get(rid.resource)
        if self.level.document.service_copy(rid) is None or not counts:
            return 0
        forgotten = len(counts.pop(rid.assembly, []))
        self.recorder.put(SERVICE, rid.resource, {"failures": counts})
        return forgotten

    def _clean_assemblies(self, assembly: str) -> int:
        forgotten = 0
        for runner in self.runners.assemblies.values():
            if assembly and runner.name != assembly:
                continue
            forgotten += len(runner.window.times)
            runner.window.reset()
            if runner.refused is not None:  # fenced and made again from here on
                runner.refused = None
                forgotten += 1
            self.recorder.save_assembly(runner)
        return forgotten

    def _subject_note(self, assembly: str, resource: str, reason: str) -> None:
        if resource:
            runner = self.runners.find(ResourceId(assembly, resource))
            if runner is not None:
                runner.cell.note(reason)
                return
        if assembly and assembly in self.runners.assemblies:
            self.runners.assemblies[assembly].cell.note(reason)
            return
        self.level.cell.note(reason)


def _failures_of(runner: ResourceRunner) -> int:
    """Its failures: those in its escalation window, or those in a row that the restart
    back-off counts (with escalation off the window keeps none: a resource that keeps
    failing to start has only these); the same failures may be in both."""
    return max(len(runner.window.times), runner.failures_in_a_row)


def _reason(scope: str, forgotten: int, reprobed: list[str]) -> str:
    noun = "failure" if forgotten == 1 else "failures"
    text = f"cleaned up {scope or 'the whole deployable'}: {forgotten} {noun} forgotten"
    if reprobed:
        text += f", probing again {', '.join(reprobed)}"
    return text
