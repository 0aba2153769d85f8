"""Failures, counted and escalated: resource → assembly → deployable.

The runners report what failed; here each failure is counted in its failure
window (``dpe.escalation``) while the deployable is kept available (not while
it is stopped, nor once it has failed).  Within the window's limit the part is
restarted; past it, the level above is: a resource's assembly is fenced and
re-created, an assembly's deployable is stopped and started again, and a
deployable that keeps failing is marked ``failed`` and left alone.  Every
failure makes the control loop plan again at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dpe.engine_assembly import AssemblyRunner
from dpe.engine_moves import ServiceMoves
from dpe.engine_recorder import Recorder
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.escalation import Verdict
from dpe.planner import Goal
from dpe.states import DeployableState, ResourceState
from foundation.clock import Clock

Replan = Callable[[], None]  # plan again now, abandoning the current transition


@dataclass(eq=False)
class Escalation:
    clock: Clock
    level: DeployableLevel
    runners: Runners
    recorder: Recorder
    moves: ServiceMoves
    replan: Replan

    def assembly_lost(self, runner: AssemblyRunner, reason: str) -> None:
        if not runner.mark_failed(reason):
            return  # already failed, being fenced, or gone
        for resource in self.runners.on(runner.name):
            resource.cancel_monitor()
        self.level.recovering(f"assembly {runner.name} failed: {reason}")
        if self.level.counting_failures():
            verdict = runner.window.record(self.clock.time())
            self.recorder.save_assembly(runner)
            if verdict is Verdict.ESCALATE:
                self._deployable_failed(
                    f"assembly {runner.name}: " + runner.window.reason("deployable")
                )
        self.replan()

    def assembly_refused(self, runner: AssemblyRunner, reason: str) -> None:
        """Its instance is not the guest it was made as (another host key, our key
        refused): not a lost guest, so no failure is counted and nothing is fenced or
        re-created (that would only meet the same impostor, again and again)."""
        name, deployable = runner.name, self.level.document.name
        told = (
            f"host key mismatch: {reason}; not trusted, never used: left alone (not fenced,"
            f" not re-created) until deployable_cleanup {deployable} {name}"
        )
        if not runner.refuse(told):
            return
        for resource in self.runners.on(name):
            resource.cancel_monitor()
        self.level.recovering(f"assembly {name}: host key mismatch")
        self.replan()

    def resource_failed(self, runner: ResourceRunner, reason: str) -> None:
        runner.cancel_monitor()
        self.level.recovering(f"{runner.rid} failed: {reason}")
        if runner.failed_before:  # the failure its deployable failed of: counted then
            runner.failed_before = False
            runner.cell.note("failed when the deployable did: recovered as new, not counted again")
        elif self.level.counting_failures():
            self.moves.count_failure(runner.rid)
            verdict = runner.window.record(self.clock.time())
            self.recorder.save_resource(runner)
            if verdict is Verdict.ESCALATE:
                assembly = self.runners.assemblies[runner.rid.assembly]
                self.assembly_lost(
                    assembly, f"{runner.rid.resource}: " + runner.window.reason("assembly")
                )
        self.replan()

    def stop_failed(self, runner: ResourceRunner, reason: str) -> None:
        """A stop failed: the resource may still run, and only a fence makes sure.
        After a hard error a pinned resource is left alone (unrecoverable); a
        service's copy is fenced all the same, or it could run twice."""
        if (
            runner.state is ResourceState.UNRECOVERABLE
            and self.level.document.service_copy(runner.rid) is None
        ):
            return
        runner.cancel_monitor()
        if self.level.goal is Goal.RUN:
            assembly = self.runners.assemblies[runner.rid.assembly]
            self.assembly_lost(assembly, f"stop of {runner.rid.resource} failed ({reason})")
        self.replan()

    def _deployable_failed(self, reason: str) -> None:
        """An assembly escalated: restart the whole deployable, or give up."""
        level = self.level
        if level.window.record(self.clock.time()) is Verdict.ESCALATE:
            level.cell.note(reason)  # the assembly's step, told before the verdict
            level.cell.set(DeployableState.FAILED, level.window.giving_up())
            return
        level.cell.announce(DeployableState.RECOVERING, f"{reason}: restarting every assembly")
        self.recorder.save_deployable()
        level.goal = Goal.STOP
        level.restart_pending = True
