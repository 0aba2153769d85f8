"""The control loop: observe, plan, carry out, and look again.

Whenever something changed (``replan``) the loop observes the runners, asks
the policy engine for a transition graph and carries it out
(``dpe.engine_exec``).  A change that cannot wait (a failure, a reload, a
stop) aborts the transition in progress (``replan(abort=True)``).  A
transition that failed is tried again after a capped exponential back-off,
unless something new happens first.  An empty plan means the deployable has
converged: it runs, or it is stopped (and, after an escalation to the
deployable, started again).  Only a DPE that holds the lease acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial

from dpe import planner
from dpe.engine_assembly import AssemblyRunner
from dpe.engine_deps import EngineDeps
from dpe.engine_exec import Outcome, execute
from dpe.engine_lease import LeaseKeeper
from dpe.engine_log import Context
from dpe.engine_moves import ServiceMoves
from dpe.engine_planning import FallbackPlanner
from dpe.engine_reload import Reloader
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.engine_tasks import Tasks
from dpe.engine_timing import first_of
from dpe.planner import ActionKind, Goal, Observed, Plan
from dpe.restart_reasons import Seen, restart_cause
from dpe.states import AssemblyState, DeployableState, ResourceState
from foundation.backoff import Retries
from foundation.model import ResourceId


class ControlLoop:
    def __init__(
        self,
        deps: EngineDeps,
        level: DeployableLevel,
        runners: Runners,
        lease: LeaseKeeper,
        policy: FallbackPlanner,
        moves: ServiceMoves,
        reloader: Reloader,
        tasks: Tasks,
        log: Context,
    ) -> None:
        self.deps = deps
        self.clock = deps.clock
        self.level = level
        self.runners = runners
        self.lease = lease
        self.policy = policy
        self.moves = moves
        self.reloader = reloader
        self.tasks = tasks
        self.log = log
        self.stopped = asyncio.Event()  # every resource stopped, every instance destroyed
        # stopping: resources that may have run when their instance was destroyed
        self.unstopped: list[ResourceId] = []
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._abort = False
        self._wake_timer: asyncio.Task[None] | None = None
        self._retries = Retries(deps.options.backoff())  # transitions that failed in a row

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._abort = False
            self._interrupt.clear()
            if not self.may_act():
                continue
            self.reloader.drop_finished()
            self.level.planned = self.level.document
            plan = await self.policy.plan(self.level.planned, self.observe())
            if not plan.probing:  # while probing, nothing else is decided
                self._note_blocked(plan.blocked)
            if self.moves.note(plan):  # another service's place may depend on it
                self._wake.set()
            self._wake_at(plan.wake_at)
            if plan.empty:
                self._converged()
                continue
            await self._carry_out(plan)

    def replan(self, *, abort: bool = False) -> None:
        """Something changed: plan again (``abort``: without finishing the current plan)."""
        if abort:
            self.abort()
            self._interrupt.set()
        self._wake.set()

    def abort(self) -> None:
        """Start nothing more of the current transition."""
        self._abort = True

    def may_act(self) -> bool:
        if not self.lease.held:
            return False
        return self.level.state is not DeployableState.FAILED or self.level.goal is Goal.STOP

    def observe(self) -> Observed:
        runners = {**self.runners.resources, **self.runners.orphans}
        return Observed(
            goal=self.level.goal,
            assemblies=self.runners.assembly_statuses(),
            resources={rid: r.status() for rid, r in runners.items()},
            orphans={rid: r.definition for rid, r in self.runners.orphans.items()},
            orphan_constraints=self.runners.orphan_constraints,
            now=self.clock.time(),
            service_failures=self.moves.records.failures_of(self.level.document),
            move_requests=self.moves.records.moves,
        )

    # -- carrying out a transition ------------------------------------------------

    async def _carry_out(self, plan: Plan) -> None:
        self.log.info("transition: %s", "; ".join(plan.describe()))
        outcome = await execute(plan, partial(self._perform, plan), self._aborted)
        if outcome is Outcome.FAILED and not self._abort:
            await self._pause(self._retries.failed())
        elif outcome is Outcome.COMPLETED:
            self._retries.reset()
        self._wake.set()  # always look again after a transition

    def _aborted(self) -> bool:
        return self._abort or not self.may_act()

    async def _pause(self, seconds: float) -> None:
        """Wait before retrying what failed, unless something new happens first."""
        self.log.info("retrying in %g s", seconds)
        await first_of(self.clock.sleep(seconds), self._interrupt.wait())

    def _wake_at(self, when: float | None) -> None:
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            self._wake_timer = None
        if when is not None:
            self._wake_timer = self.tasks.spawn(self._wake_after(when - self.clock.time()))

    async def _wake_after(self, seconds: float) -> None:
        await self.clock.sleep(max(seconds, 0.0))
        self.replan()

    async def _perform(self, plan: Plan, action: planner.Action) -> bool:
        if self._aborted():
            return False  # launched, but the transition was aborted before it began
        assembly = self.runners.assemblies[action.assembly]
        if action.kind is ActionKind.CREATE:
            assembly.begin_create()
            return True
        if action.kind is ActionKind.FENCE:
            return await self._fence(assembly)
        assert action.rid is not None
        runner = self.runners.resources.get(action.rid) or self.runners.orphans[action.rid]
        params = plan.params.get(action, {})
        if action.kind is ActionKind.MONITOR:
            runner.begin_monitor(assembly, params, action.interval)
            return True
        if action.kind is ActionKind.PROBE:
            statuses = self.runners.assembly_statuses()
            resolved = planner.resolve(runner.definition, statuses) is not None
            return await runner.operate(assembly, "monitor", params, resolved=resolved)
        if action.kind is ActionKind.STOP:
            runner.because = self._restart_cause(plan, action, runner)
        return await runner.operate(assembly, str(action.kind), params)

    def _restart_cause(
        self, plan: Plan, action: planner.Action, runner: ResourceRunner
    ) -> str | None:
        """Why a running resource is stopped while the deployable runs on (None: it
        is not, or nothing says why)."""
        if self.level.goal is not Goal.RUN or runner.state is not ResourceState.RUNNING:
            return None
        seen = Seen(
            self.level.document,
            {rid: r.status() for rid, r in self.runners.resources.items()},
            self.runners.assembly_statuses(),
        )
        start = action._replace(kind=ActionKind.START)
        return restart_cause(seen, runner.rid, runner.definition, plan.params.get(start))

    async def _fence(self, assembly: AssemblyRunner) -> bool:
        stopping = self.level.goal is Goal.STOP
        if stopping:
            reason = "the deployable is stopping: destroying its instance"
        elif self.level.document.assembly(assembly.name) is None:
            reason = "removed from the deployable"
        else:
            reason = "fencing the failed instance"
        if not await assembly.fence(reason, stopping=stopping):
            return False
        if stopping:  # before they are forgotten
            self._note_unstopped(self.runners.on(assembly.name))
        for runner in self.runners.on(assembly.name):
            runner.forget("its instance was destroyed", quietly=stopping)
        return True

    # -- converged: nothing left to do --------------------------------------------

    def _converged(self) -> None:
        assemblies = self.runners.assemblies.values()
        if self.level.goal is Goal.STOP:
            if all(a.state is AssemblyState.STOPPED for a in assemblies):
                self._stop_reached()
            return
        if all(a.state is AssemblyState.RUNNING for a in assemblies):
            self.level.cell.settle(DeployableState.RUNNING, self._summary())

    def _note_unstopped(self, runners: list[ResourceRunner]) -> None:
        """Resources that may still have run (what they were started with is known)
        when their instance was destroyed or found gone: no agent stopped them."""
        for runner in runners:
            if runner.applied is not None and runner.rid not in self.unstopped:
                self.unstopped.append(runner.rid)

    def _stop_reached(self) -> None:
        self._note_unstopped(self.runners.every_resource())  # their instance was gone before
        if self.level.restart_pending:
            self.level.restart_pending = False
            self.level.goal = Goal.RUN
            self.unstopped = []
            self.log.info("every instance destroyed: starting the deployable again")
            self.replan()
            return
        self.level.cell.set(DeployableState.STOPPED, self._stopped_summary())
        self.stopped.set()

    def _stopped_summary(self) -> str:
        if not self.unstopped:
            return "every resource stopped, every instance destroyed"
        names = ", ".join(map(str, self.unstopped))
        return (
            "every instance destroyed; not stopped by its agent, gone with its instance: " + names
        )

    def _summary(self) -> str:
        states = [r.state for r in self.runners.resources.values()]
        running = states.count(ResourceState.RUNNING)
        text = f"{_count(len(self.runners.assemblies), 'assembly', 'assemblies')} running, "
        text += f"{_count(running, 'resource')} running"
        lost = states.count(ResourceState.UNRECOVERABLE)
        blocked = sum(1 for r in self.runners.resources.values() if r.blocked)
        if lost:
            text += f", {lost} unrecoverable"
        if blocked:
            text += f", {blocked} cannot start"
        return text

    def _note_blocked(self, blocked: Mapping[ResourceId, str]) -> None:
        """Mark each resource that is not running with why it cannot start (once per
        reason), and no longer those that can."""
        for rid, runner in self.runners.resources.items():
            reason = blocked.get(rid) if runner.state is not ResourceState.RUNNING else None
            if runner.blocked != reason:
                runner.mark_blocked(reason)


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"
