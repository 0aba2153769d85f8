"""The deployable policy engine: keeps one deployable available.

``Engine(document, driver=..., transport=..., runtime=..., keys=...)``:

- ``start()`` takes the deployable's lease, reads what a previous DPE recorded,
  adopts the instances the driver still has (never creating a duplicate: extra
  instances of an assembly are destroyed), then runs;
- one control loop plans (``dpe.planner``, or the ``planner`` given: the
  ``policy_engine = pacemaker`` option gives ``dpe.pacemaker.PacemakerPlanner``;
  while it fails, the built-in planner plans and an event says so) and carries
  out transition graphs
  (``dpe.engine_exec``) whenever something changed; each assembly has its own
  tasks (``dpe.engine_assembly``) and each running resource its monitor
  (``dpe.engine_resource``);
- failures are counted in failure windows (``dpe.escalation``): a resource is
  restarted or its assembly fenced and re-created; an assembly is re-created
  or the whole deployable restarted; a deployable that keeps failing is
  marked ``failed`` and left alone until started again;
- ``reload(document)`` applies only the difference; ``stop()`` stops every
  resource in reverse order and destroys every instance; ``shutdown()`` leaves
  them running for the next DPE to adopt.

A driver that is an ``InstanceWatcher`` (libvirt) is watched from ``start()``
until ``shutdown()``: when it reports an assembly's current instance stopped,
crashed or gone, that assembly fails at once, as if its heartbeat had been
lost (fence, create, probe, start); reports about other instances are ignored.
The heartbeat stays the safety net for events that never come.

Heartbeat timings are the document's, except when the document's heartbeat
equals the model's defaults (``Heartbeat()``: a document that sets none, or
sets exactly those values) and the driver offers ``heartbeat_defaults``: then
the driver's defaults are used (slow emulated guests need longer timeouts).

Every state change is an event, recorded through the runtime; the lease is
renewed every second and a DPE that cannot renew it stops acting
``fence_margin`` before the lease can expire (counted from when it sent its
last successful renewal, on its own monotonic clock), or at once when the
store refuses a write of its epoch (``LeaseLost``).  A ``watchdog``
(``dpe.fencing``), when given, ends the process should the loop be too stuck
to fence itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

from dpe import planner
from dpe.engine_assembly import AssemblyRunner, Services
from dpe.engine_exec import Outcome, execute
from dpe.engine_log import Context
from dpe.engine_resource import ResourceRunner
from dpe.engine_timing import Backoff, EngineOptions, bounded
from dpe.escalation import FailureWindow, Verdict
from dpe.interfaces import Driver, Instance, InstanceState, InstanceWatcher, Transport, Watch
from dpe.outbox import Outbox
from dpe.planner import ActionKind, Goal, Move, Observed, Plan
from dpe.policy import plan as builtin_plan
from dpe.runtime import Runtime
from dpe.service_runtime import ServiceRecords
from dpe.states import AssemblyState, DeployableState, ResourceState, Subject, deployable_cell
from foundation.clock import Clock, SystemClock
from foundation.errors import Conflict, InvalidInput, LeaseLost, PcloudError, Unavailable
from foundation.events import Event
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Constraint, Deployable, Heartbeat, Resource, ResourceId
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, INSTANCE, MOVE, RESOURCE, SERVICE, Docs

log = logging.getLogger("dpe.engine")
T = TypeVar("T")

Listener = Callable[[Event], None]


class Watchdog(Protocol):
    """Ends the process at a deadline the loop failed to meet (``dpe.fencing``)."""

    def arm(self, deadline: float) -> None: ...

    def disarm(self) -> None: ...


Planner = Callable[[Deployable, Observed], Plan]  # the shape of ``dpe.policy.plan``
PLANNER_RETRY = 60.0
LEASE_POLL = 0.2  # how often a held lease is tried while waiting for it  # after a planner failure, the built-in planner plans this long
_DEAD = (InstanceState.GONE, InstanceState.STOPPED)


class Engine:
    def __init__(
        self,
        document: Deployable,
        *,
        driver: Driver,
        transport: Transport,
        runtime: Runtime,
        keys: Callable[[str], AssemblyKeys],
        clock: Clock | None = None,
        options: EngineOptions | None = None,
        holder: str | None = None,
        planner: Planner | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.document = document
        # the policy engine: the built-in planner, or one of the same shape (Pacemaker's)
        self.planner: Planner = planner or builtin_plan
        self._planner_down_until = float("-inf")
        self.planned = document  # the document the current (or last) transition was planned with
        self.name = document.name
        self.runtime = runtime
        self.clock: Clock = clock or SystemClock()
        self.options = options or EngineOptions()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.s = Services(self.name, driver, transport, self.clock, keys, self.options, self._emit)
        self.log = Context(log, deployable=self.name)
        self.listeners: list[Listener] = []
        self.cell = deployable_cell(Subject(self.name), self._emit, self.clock.time)
        self.window = FailureWindow(document.escalation)
        self.goal = Goal.RUN
        self.assemblies: dict[str, AssemblyRunner] = {}
        self.resources: dict[ResourceId, ResourceRunner] = {}
        self.orphans: dict[ResourceId, ResourceRunner] = {}  # removed, maybe still running
        self.orphan_constraints: tuple[Constraint, ...] = ()
        self.epoch: int | None = None
        self.halted = asyncio.Event()  # the lease is lost: this engine acts no more
        self.halt_reason = ""
        self._lease_ok = False
        self._valid_until = 0.0  # monotonic: act until then unless renewed meanwhile
        self.watchdog = watchdog
        self.outbox = Outbox(self.log)  # writes waiting for the store to answer again
        self._restart_pending = False
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._abort = False
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake_timer: asyncio.Task[None] | None = None
        self._noted_blocked: dict[ResourceId, str] = {}
        self._backoff = Backoff(self.options.retry_initial, self.options.retry_max, free=0)
        self._watch: Watch | None = None
        self.services = ServiceRecords()  # fail counts per assembly, requested moves
        self._noted_moves: dict[str, tuple[str | None, str | None]] = {}
        for assembly in document.assemblies:
            self._add_assembly(assembly)
        self._add_service_runners(document)

    # =========================================================================
    # lifecycle

    async def start(self, *, clear_failed: bool = False) -> None:
        """Take the lease, restore, adopt, and begin keeping the deployable available."""
        await self._acquire_lease()
        docs = self.runtime.load()
        self._restore(docs, clear_failed)
        listed = await self._discover()
        await self._adopt(listed, docs.get(INSTANCE, {}))
        await self._subscribe()
        self._spawn(self._control())
        self._spawn(self._hold_lease())
        self._replan()

    async def stop(self) -> None:
        """Stop every resource (reverse order), destroy every instance, then end."""
        if self.halted.is_set():
            raise Unavailable(f"cannot stop {self.name}: {self.halt_reason}", deployable=self.name)
        self.goal = Goal.STOP
        self._restart_pending = False
        self.cell.set(DeployableState.STOPPING, "stop requested")
        self._replan(abort=True)
        await _first(self._stopped.wait(), self.halted.wait())
        if self._stopped.is_set():
            self._forget_runtime()
        await self.shutdown()

    async def shutdown(self, *, release_lease: bool = True) -> None:
        """End every task of this engine and leave the instances running (adoption)."""
        self._unsubscribe()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runners = [*self.resources.values(), *self.orphans.values()]
        await asyncio.gather(*(r.shutdown() for r in runners))
        await asyncio.gather(*(a.shutdown() for a in self.assemblies.values()))
        if self._lease_ok:  # before the release: a successor acts only after this line
            self.log.info("stopped acting (lease epoch %s)", self.epoch)
        if release_lease and self._lease_ok and self.epoch is not None:
            with contextlib.suppress(PcloudError):
                self.runtime.release_lease(self.holder, self.epoch)
        self._lease_ok = False
        if self.watchdog is not None:
            self.watchdog.disarm()
        await self._close_driver()

    async def _close_driver(self) -> None:
        """Drop the driver's connection (libvirt's); the instances keep running."""
        close = getattr(self.s.driver, "close", None)
        if close is not None:
            with contextlib.suppress(PcloudError, OSError):
                await asyncio.wait_for(close(), self.options.driver_timeout)

    async def reload(self, document: Deployable) -> None:
        """Apply a new document: only what changed is started, stopped or restarted."""
        if document.name != self.name:
            raise InvalidInput(f"the document is for {document.name!r}, not {self.name!r}")
        old, self.document = self.document, document
        self.window.retune(document.escalation)
        added = self._reload_assemblies(document)
        added_resources, changed = self._reload_resources(document)
        added += added_resources + self._add_service_runners(document)
        self._load_moves()
        removed = self._orphan_removed(old, document)
        self.cell.note(
            f"reloaded: {len(added)} added, {len(removed)} removed, {len(changed)} changed"
        )
        self._replan(abort=True)

    def status(self) -> dict[str, Any]:
        """What is running where, in states (for ``status`` and tests)."""
        return {
            "deployable": self.name,
            "state": str(self.cell.state),
            "reason": self.cell.reason,
            "epoch": self.epoch,
            "failures": list(self.window.times),
            "assemblies": {n: self._assembly_status(a) for n, a in self.assemblies.items()},
            "resources": {str(r): self._resource_status(x) for r, x in self.resources.items()},
        }

    # =========================================================================
    # the lease

    async def _acquire_lease(self) -> None:
        deadline = self.clock.monotonic() + self.options.lease_wait
        waiting = False
        while True:
            sent = self.clock.monotonic()
            epoch = self.runtime.acquire_lease(
                self.holder, os.getpid(), self.options.lease_ttl, self.clock.time()
            )
            if epoch is not None:
                self.epoch, self._lease_ok = epoch, True
                self._renewed(sent)
                return
            if self.clock.monotonic() >= deadline:
                raise Conflict(
                    f"deployable {self.name} is kept by another DPE (its lease is held)",
                    deployable=self.name,
                )
            if not waiting:
                waiting = True
                self.log.info("the lease is held: waiting up to %g s", self.options.lease_wait)
            # often: a DPE started early (its holder's member is gone) takes it at expiry
            await self.clock.sleep(min(self.options.lease_renew, LEASE_POLL))

    async def _hold_lease(self) -> None:
        while True:
            now = self.clock.monotonic()
            await self.clock.sleep(max(0.0, min(self.options.lease_renew, self._valid_until - now)))
            if self.clock.monotonic() >= self._valid_until:
                self._lose_lease(self._fence_reason())
                return
            sent = self.clock.monotonic()
            renewed = self._renew_lease()
            if renewed:
                self._renewed(sent)
                self._flush_outbox()
            elif renewed is False:
                self._lose_lease("the lease was taken over")
                return

    def _renewed(self, sent: float) -> None:
        """The lease runs ttl from when the store ran the renewal, which was after
        ``sent``: acting stops a margin before that (the watchdog half a margin)."""
        ttl, margin = self.options.lease_ttl, self.options.fence_margin
        self._valid_until = sent + ttl - margin
        if self.watchdog is not None:
            self.watchdog.arm(sent + ttl - margin / 2)

    def _fence_reason(self) -> str:
        margin = self.options.fence_margin
        silent = self.options.lease_ttl - margin
        return (
            f"cannot renew the lease: self-fenced {silent:g} s after the last renewal,"
            f" {margin:g} s before it can expire"
        )

    def _renew_lease(self) -> bool | None:
        """True renewed, False lost to another DPE, None the store did not answer."""
        assert self.epoch is not None
        ttl, now = self.options.lease_ttl, self.clock.time()
        try:
            if self.runtime.renew_lease(self.holder, self.epoch, ttl, now):
                return True
            # expired but perhaps still ours (the loop was held up): take it back
            again = self.runtime.acquire_lease(self.holder, os.getpid(), ttl, now)
        except PcloudError as error:
            self.log.warning("cannot renew the lease: %s", error)
            return None
        return again == self.epoch

    def _lose_lease(self, reason: str) -> None:
        """Fence ourselves: no more actions, no more writes; the instances stay."""
        if not self._lease_ok:
            return
        self.log.error("%s (epoch %s): acting no more", reason, self.epoch)
        self._lease_ok = False
        if self.watchdog is not None:
            self.watchdog.disarm()
        self.halt_reason = reason
        self._abort = True
        for runner in [*self.resources.values(), *self.orphans.values()]:
            runner.cancel_monitor()
        for assembly in self.assemblies.values():
            assembly.halt()
        self.halted.set()

    def _may_act(self) -> bool:
        if not self._lease_ok:
            return False
        return self.cell.state is not DeployableState.FAILED or self.goal is Goal.STOP

    # =========================================================================
    # restoring and adopting

    def _restore(self, docs: Docs, clear_failed: bool) -> None:
        deployable = docs.get(DEPLOYABLE, {}).get("", {})
        self.window = FailureWindow.restore(
            self.document.escalation, deployable.get("failures", [])
        )
        for name, doc in docs.get(ASSEMBLY, {}).items():
            if name in self.assemblies:
                runner = self.assemblies[name]
                runner.window = FailureWindow.restore(
                    runner.definition.escalation, doc.get("failures", [])
                )
        for key, doc in docs.get(RESOURCE, {}).items():
            self._restore_resource(key, doc)
        self.services = ServiceRecords.restore(docs)
        self.cell.note(f"engine started (lease epoch {self.epoch})")
        if deployable.get("state") == str(DeployableState.FAILED):
            if clear_failed:
                self.window.reset()
                self.cell.note("failed state cleared: starting again")
            else:
                self.cell.set(DeployableState.FAILED, deployable.get("reason") or "failed before")

    def _restore_resource(self, key: str, doc: Mapping[str, Any]) -> None:
        assembly, _, name = key.partition("/")
        rid = ResourceId(assembly, name)
        if rid in self.resources:
            self.resources[rid].restore(doc)
            return
        definition = _definition_from_record(name, doc)  # removed while no DPE ran
        if definition is not None and assembly in self.assemblies:
            runner = self._resource_runner(rid, definition)
            runner.restore(doc)
            self.orphans[rid] = runner

    async def _discover(self) -> list[Instance]:
        try:
            return await bounded(
                self.clock,
                self.options.driver_timeout,
                self.s.driver.list(self.name),
                "listing the instances",
            )
        except (PcloudError, OSError) as error:
            raise Unavailable(
                f"cannot list the instances of {self.name} ({error}): not starting,"
                " so as never to create a duplicate",
                deployable=self.name,
            ) from error

    async def _adopt(self, listed: list[Instance], recorded: Mapping[str, Any]) -> None:
        by_assembly: dict[str, list[Instance]] = {}
        for instance in listed:
            by_assembly.setdefault(instance.assembly, []).append(instance)
        for name, runner in self.assemblies.items():
            found = by_assembly.pop(name, [])
            keep = _choose(found, recorded.get(name, {}).get("instance_id"))
            strays = [i for i in found if i is not keep]
            cleared = await self._destroy_strays(strays, "another instance of the assembly")
            if keep is not None:
                runner.begin_adopt(keep)
            elif not cleared:
                runner.mark_failed("an old instance could not be destroyed: fencing it")
            else:
                runner.mark_absent("no instance yet")
        for strays in by_assembly.values():
            await self._destroy_strays(strays, "its assembly is not in the deployable")

    async def _destroy_strays(self, instances: list[Instance], why: str) -> bool:
        cleared = True
        for instance in instances:
            self.log.warning("destroying instance %s: %s", instance.instance_id, why)
            try:
                await bounded(
                    self.clock,
                    self.options.destroy_timeout,
                    self.s.driver.destroy(instance.instance_id),
                    f"destroying instance {instance.instance_id}",
                )
            except (PcloudError, OSError) as error:
                self.log.error("cannot destroy instance %s: %s", instance.instance_id, error)
                cleared = False
        return cleared

    # =========================================================================
    # the driver's instance events

    async def _subscribe(self) -> None:
        """Watch the driver's instance events, if it has them (the heartbeat stays)."""
        driver = self.s.driver
        if not isinstance(driver, InstanceWatcher) or self._watch is not None:
            return
        try:
            self._watch = await bounded(
                self.clock,
                self.options.driver_timeout,
                driver.watch(self.on_instance_state),
                "watching the instances",
            )
        except (PcloudError, OSError) as error:
            self.log.warning("cannot watch instance events (the heartbeat still runs): %s", error)

    def _unsubscribe(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def on_instance_state(self, instance_id: str, state: InstanceState) -> None:
        """The driver says an instance stopped or is gone: a hint, checked against ours."""
        if state not in _DEAD or not self._lease_ok:
            return
        runner = self._runner_of_instance(instance_id)
        if runner is None:
            self.log.debug("instance %s %s: not an instance of ours now", instance_id, state)
            return
        self.assembly_lost(runner, f"instance {instance_id} {state} ({self.s.driver.name} event)")

    def _runner_of_instance(self, instance_id: str) -> AssemblyRunner | None:
        for runner in self.assemblies.values():
            if runner.instance is not None and runner.instance.instance_id == instance_id:
                return runner
        return None

    # =========================================================================
    # the control loop

    async def _control(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._abort = False
            self._interrupt.clear()
            if not self._may_act():
                continue
            self._drop_orphans()
            self.planned = self.document
            plan = await self._plan(self._observe())
            if not plan.probing:  # while probing, nothing else is decided
                self._note_blocked(plan.blocked)
            self._note_moves(plan)
            self._wake_at(plan.wake_at)
            if plan.empty:
                self._converged()
                continue
            await self._carry_out(plan)

    async def _plan(self, observed: Observed) -> Plan:
        """The policy engine's plan; the built-in planner's while it cannot answer.

        A planner that runs a program (``blocking``: crm_simulate) runs in a
        thread, so that heartbeats and the lease go on meanwhile.
        """
        if self.planner is builtin_plan or self.clock.time() < self._planner_down_until:
            return builtin_plan(self.planned, observed)
        try:
            if getattr(self.planner, "blocking", False):
                return await asyncio.to_thread(self.planner, self.planned, observed)
            return self.planner(self.planned, observed)
        except Exception as error:  # any failure: the built-in planner still works
            self._planner_failed(error)
            return builtin_plan(self.planned, observed)

    def _planner_failed(self, error: Exception) -> None:
        """Say so once per retry period, and plan with the built-in planner meanwhile."""
        self._planner_down_until = self.clock.time() + PLANNER_RETRY
        name = getattr(self.planner, "name", "configured")
        reason = f"the {name} policy engine failed ({error}): planning with the built-in"
        reason += f" planner for {PLANNER_RETRY:g} s"
        self.log.warning("%s", reason)
        self.cell.note(reason)

    async def _carry_out(self, plan: Plan) -> None:
        self.log.info("transition: %s", "; ".join(plan.describe()))
        outcome = await execute(plan, partial(self._perform, plan), self._aborted)
        if outcome is Outcome.FAILED and not self._abort:
            self._backoff.failed()
            await self._pause(self._backoff.delay)
        elif outcome is Outcome.COMPLETED:
            self._backoff.reset()
        self._wake.set()  # always look again after a transition

    def _aborted(self) -> bool:
        return self._abort or not self._may_act()

    async def _pause(self, seconds: float) -> None:
        """Wait before retrying what failed, unless something new happens first."""
        self.log.info("retrying in %g s", seconds)
        await _first(self.clock.sleep(seconds), self._interrupt.wait())

    def _replan(self, *, abort: bool = False) -> None:
        """Something changed: plan again (``abort``: without finishing the current plan)."""
        if abort:
            self._abort = True
            self._interrupt.set()
        self._wake.set()

    def _wake_at(self, when: float | None) -> None:
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            self._wake_timer = None
        if when is not None:
            self._wake_timer = self._spawn(self._wake_after(when - self.clock.time()))

    async def _wake_after(self, seconds: float) -> None:
        await self.clock.sleep(max(seconds, 0.0))
        self._replan()

    def _observe(self) -> Observed:
        runners = {**self.resources, **self.orphans}
        return Observed(
            goal=self.goal,
            assemblies={name: a.status() for name, a in self.assemblies.items()},
            resources={rid: r.status() for rid, r in runners.items()},
            orphans={rid: r.definition for rid, r in self.orphans.items()},
            orphan_constraints=self.orphan_constraints,
            now=self.clock.time(),
            service_failures=self.services.failures_of(self.document),
            move_requests=self.services.moves,
        )

    async def _perform(self, plan: Plan, action: planner.Action) -> bool:
        if self._aborted():
            return False  # launched, but the transition was aborted before it began
        assembly = self.assemblies[action.assembly]
        if action.kind is ActionKind.CREATE:
            assembly.begin_create()
            return True
        if action.kind is ActionKind.FENCE:
            return await self._fence(assembly)
        assert action.rid is not None
        runner = self.resources.get(action.rid) or self.orphans[action.rid]
        params = plan.params.get(action, {})
        if action.kind is ActionKind.MONITOR:
            runner.begin_monitor(assembly, params, action.interval)
            return True
        if action.kind is ActionKind.PROBE:
            resolved = planner.resolve(runner.definition, self._assembly_statuses()) is not None
            return await runner.operate(assembly, "monitor", params, resolved=resolved)
        return await runner.operate(assembly, str(action.kind), params)

    async def _fence(self, assembly: AssemblyRunner) -> bool:
        if self.goal is Goal.STOP:
            reason = "stopping the deployable"
        elif self.document.assembly(assembly.name) is None:
            reason = "removed from the deployable"
        else:
            reason = "fencing the failed instance"
        if not await assembly.fence(reason):
            return False
        for runner in self._runners_on(assembly.name):
            runner.forget("its instance was destroyed")
        return True

    def _converged(self) -> None:
        if self.goal is Goal.STOP:
            if all(a.state is AssemblyState.STOPPED for a in self.assemblies.values()):
                self._stop_reached()
            return
        if all(a.state is AssemblyState.RUNNING for a in self.assemblies.values()):
            self.cell.set(DeployableState.RUNNING, self._summary())

    def _stop_reached(self) -> None:
        if self._restart_pending:
            self._restart_pending = False
            self.goal = Goal.RUN
            self.log.info("every instance destroyed: starting the deployable again")
            self._replan()
            return
        self.cell.set(DeployableState.STOPPED, "every resource stopped, every instance destroyed")
        self._stopped.set()

    def _summary(self) -> str:
        states = [r.state for r in self.resources.values()]
        running = states.count(ResourceState.RUNNING)
        text = f"{_count(len(self.assemblies), 'assembly', 'assemblies')} running, "
        text += f"{_count(running, 'resource')} running"
        lost = states.count(ResourceState.UNRECOVERABLE)
        blocked = len(self._noted_blocked)
        if lost:
            text += f", {lost} unrecoverable"
        if blocked:
            text += f", {blocked} cannot start"
        return text

    def _note_blocked(self, blocked: Mapping[ResourceId, str]) -> None:
        """Say once why a resource that is not running cannot start."""
        waiting = {
            rid: reason
            for rid, reason in blocked.items()
            if rid in self.resources and self.resources[rid].state is not ResourceState.RUNNING
        }
        for rid, reason in waiting.items():
            if self._noted_blocked.get(rid) != reason:
                self.resources[rid].cell.note(f"cannot start: {reason}")
        self._noted_blocked = waiting

    # =========================================================================
    # failures and escalation (hooks called by the runners)

    def heartbeat(self) -> Heartbeat:
        """The document's heartbeat; the driver's defaults if the document has the model's."""
        return effective_heartbeat(self.document.heartbeat, self.s.driver)

    def assembly_up(self, runner: AssemblyRunner) -> None:
        self._replan(abort=True)

    def instance_changed(self, runner: AssemblyRunner) -> None:
        instance = runner.instance
        if instance is None:
            self._delete(INSTANCE, runner.name)
        else:
            self._put(INSTANCE, runner.name, _instance_doc(instance))

    def assembly_lost(self, runner: AssemblyRunner, reason: str) -> None:
        if not runner.mark_failed(reason):
            return  # already failed, being fenced, or gone
        for resource in self._runners_on(runner.name):
            resource.cancel_monitor()
        self._recovering(f"assembly {runner.name} failed: {reason}")
        if self._recording():
            verdict = runner.window.record(self.clock.time())
            self._save_assembly(runner)
            if verdict is Verdict.ESCALATE:
                self._deployable_failure(
                    f"assembly {runner.name}: " + runner.window.reason("deployable")
                )
        self._replan(abort=True)

    def resource_failed(self, runner: ResourceRunner, reason: str) -> None:
        runner.cancel_monitor()
        self._recovering(f"{runner.rid} failed: {reason}")
        if self._recording():
            self._count_service_failure(runner.rid)
            verdict = runner.window.record(self.clock.time())
            self._save_resource(runner)
            if verdict is Verdict.ESCALATE:
                assembly = self.assemblies[runner.rid.assembly]
                self.assembly_lost(
                    assembly, f"{runner.rid.resource}: " + runner.window.reason("assembly")
                )
        self._replan(abort=True)

    def stop_failed(self, runner: ResourceRunner, reason: str) -> None:
        runner.cancel_monitor()
        if self.goal is Goal.RUN:  # only fencing cleans up a resource that will not stop
            assembly = self.assemblies[runner.rid.assembly]
            self.assembly_lost(assembly, f"stop of {runner.rid.resource} failed ({reason})")
        self._replan(abort=True)

    def resource_changed(self, runner: ResourceRunner) -> None:
        self._save_resource(runner)

    def _recording(self) -> bool:
        """Failures count while keeping the deployable available, not while stopping it."""
        return self.goal is Goal.RUN and self.cell.state is not DeployableState.FAILED

    def _recovering(self, reason: str) -> None:
        if self.cell.state is DeployableState.RUNNING:
            self.cell.set(DeployableState.RECOVERING, reason)

    def _deployable_failure(self, reason: str) -> None:
        """An assembly escalated: restart the whole deployable, or give up."""
        if self.window.record(self.clock.time()) is Verdict.ESCALATE:
            self.cell.set(DeployableState.FAILED, self.window.giving_up())
            return
        self.cell.announce(DeployableState.RECOVERING, f"{reason}: restarting every assembly")
        self._save_deployable()
        self.goal = Goal.STOP
        self._restart_pending = True

    # =========================================================================
    # services: where they go, their fail counts, requested moves

    def _add_service_runners(self, document: Deployable) -> list[str]:
        """A runner for each place a service may run (its copies are probed there)."""
        added = []
        for rid in document.service_placements():
            definition = document.resource(rid)
            assert definition is not None
            runner = self.resources.get(rid) or self.orphans.pop(rid, None)
            if runner is None:
                runner = self._resource_runner(rid, definition)
                added.append(str(rid))
            elif runner.definition != definition:
                self._redefine(runner, definition)
            self.resources[rid] = runner
        return added

    def _count_service_failure(self, rid: ResourceId) -> None:
        service = self.document.service(rid.resource)
        assembly = self.document.assembly(rid.assembly)
        if service is None or (assembly is not None and assembly.resource(rid.resource)):
            return  # a pinned resource: its failure window is all there is
        doc = self.services.failed(service, rid.assembly, self.clock.time())
        self._put(SERVICE, service.name, doc)

    def _note_moves(self, plan: Plan) -> None:
        """Say once where each service goes and why (not while probing)."""
        if plan.probing:
            return
        for name, assembly in list(self.services.moves.items()):
            runner = self.resources.get(ResourceId(assembly, name))
            if runner is None or runner.state is ResourceState.RUNNING:
                self._move_done(ResourceId(assembly, name))  # already there, or impossible
        noted = {}
        for move in plan.moves:
            noted[move.service] = (move.source, move.target)
            if self._noted_moves.get(move.service) != noted[move.service]:
                self._announce_move(move)
        self._noted_moves = noted

    def _announce_move(self, move: Move) -> None:
        where = move.target or move.source
        runner = self.resources.get(ResourceId(where, move.service)) if where else None
        if move.target is None:
            text = f"{move.service} cannot run anywhere: {move.reason}"
        elif move.source is None:
            text = f"{move.service} placed on {move.target}: {move.reason}"
        else:
            text = f"{move.service} moves from {move.source} to {move.target}: {move.reason}"
        if runner is not None:
            runner.cell.note(text)
        else:
            self.cell.note(text)

    def _load_moves(self) -> None:
        """Moves an administrator asked for since (``deployable_service_move``)."""
        try:
            docs = self.runtime.load()
        except PcloudError as error:
            self.log.warning("cannot read the requested moves: %s", error)
            return
        self.services.moves = ServiceRecords.restore(docs).moves

    def _move_done(self, rid: ResourceId) -> None:
        """A requested move is done once the service runs there: the request ends."""
        if self.services.moves.get(rid.resource) != rid.assembly:
            return
        del self.services.moves[rid.resource]
        self._delete(MOVE, rid.resource)
        runner = self.resources.get(rid)
        if runner is None:
            self.cell.note(f"move of {rid.resource} to {rid.assembly} dropped: not a candidate")
        else:
            runner.cell.note(f"{rid.resource} moved to {rid.assembly} as requested")

    # =========================================================================
    # reload

    def _reload_assemblies(self, document: Deployable) -> list[str]:
        added = []
        for assembly in document.assemblies:
            runner = self.assemblies.get(assembly.name)
            if runner is None:
                self._add_assembly(assembly).mark_absent("added to the deployable")
                added.append(assembly.name)
            else:
                runner.definition = assembly
                runner.window.retune(assembly.escalation)
        return added

    def _reload_resources(self, document: Deployable) -> tuple[list[str], list[str]]:
        """Runners for new resources; changed ones redefined. Returns (added, changed)."""
        added, changed = [], []
        for assembly in document.assemblies:
            for definition in assembly.resources:
                rid = ResourceId(assembly.name, definition.name)
                runner = self.resources.get(rid) or self.orphans.pop(rid, None)
                if runner is None:
                    self.resources[rid] = self._resource_runner(rid, definition)
                    added.append(str(rid))
                    continue
                self.resources[rid] = runner
                if runner.definition != definition:
                    self._redefine(runner, definition)
                    changed.append(str(rid))
        return added, changed

    def _redefine(self, runner: ResourceRunner, definition: Resource) -> None:
        old, runner.definition = runner.definition, definition
        runner.window.retune(definition.escalation)
        if (old.monitor_interval, old.timeouts) != (
            definition.monitor_interval,
            definition.timeouts,
        ):
            runner.cancel_monitor()  # the planner starts it again at the new interval
        if runner.state is ResourceState.UNRECOVERABLE:
            runner.cell.set(ResourceState.UNKNOWN, "its definition changed: trying again")
        # a changed agent or parameter differs from what it was started with: restarted

    def _orphan_removed(self, old: Deployable, new: Deployable) -> list[str]:
        removed = [rid for rid in self.resources if new.resource(rid) is None]
        for rid in removed:
            self.orphans[rid] = self.resources.pop(rid)
        candidates = (*self.orphan_constraints, *old.constraints)  # how they were ordered
        self.orphan_constraints = tuple(
            dict.fromkeys(
                c for c in candidates if c.first in self.orphans and c.then in self.orphans
            )
        )
        return [str(rid) for rid in removed]

    def _drop_orphans(self) -> None:
        """Forget orphans that no longer run, and removed assemblies once fenced."""
        for name, runner in list(self.assemblies.items()):
            if self.document.assembly(name) is None and runner.state is AssemblyState.STOPPED:
                del self.assemblies[name]
                self._delete(ASSEMBLY, name)
                self._delete(INSTANCE, name)
        for rid, orphan in list(self.orphans.items()):
            if rid.assembly not in self.assemblies or orphan.state in _ORPHAN_DONE:
                orphan.cancel_monitor()
                del self.orphans[rid]
                self._delete(RESOURCE, str(rid))
        self.orphan_constraints = tuple(
            c for c in self.orphan_constraints if c.first in self.orphans and c.then in self.orphans
        )

    # =========================================================================
    # runners

    def _add_assembly(self, assembly: Assembly) -> AssemblyRunner:
        runner = AssemblyRunner(self.s, assembly, self)
        self.assemblies[assembly.name] = runner
        for resource in assembly.resources:
            rid = ResourceId(assembly.name, resource.name)
            self.resources[rid] = self._resource_runner(rid, resource)
        return runner

    def _resource_runner(self, rid: ResourceId, definition: Resource) -> ResourceRunner:
        return ResourceRunner(self.s, rid, definition, self)

    def _runners_on(self, assembly: str) -> list[ResourceRunner]:
        runners = [*self.resources.values(), *self.orphans.values()]
        return [r for r in runners if r.rid.assembly == assembly]

    def _assembly_statuses(self) -> dict[str, planner.AssemblyStatus]:
        return {name: a.status() for name, a in self.assemblies.items()}

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task failed: %r", task.exception(), exc_info=task.exception())

    # =========================================================================
    # events and persistence

    def _emit(self, event: Event) -> None:
        if not self._lease_ok:
            self.log.info(
                "not recorded (no lease): %s %s: %s", event.subject, event.state, event.reason
            )
            return
        recorded = self._write(
            partial(self.runtime.append_event, event), f"event {event.subject} {event.state}"
        )
        if not self._lease_ok:
            return  # refused: this DPE acts no more
        event = recorded or event
        self._persist_subject(event)
        Context(
            log, deployable=event.deployable, assembly=event.assembly, resource=event.resource
        ).info("%s: %s", event.state, event.reason)
        for listener in self.listeners:
            listener(event)

    def _persist_subject(self, event: Event) -> None:
        if event.resource and event.assembly:
            rid = ResourceId(event.assembly, event.resource)
            runner = self.resources.get(rid) or self.orphans.get(rid)
            if runner is not None:
                self._save_resource(runner)
                if runner.state is ResourceState.RUNNING:
                    self._move_done(rid)
        elif event.assembly:
            if event.assembly in self.assemblies:
                self._save_assembly(self.assemblies[event.assembly])
        else:
            self._save_deployable()

    def _save_resource(self, runner: ResourceRunner) -> None:
        self._put(RESOURCE, str(runner.rid), runner.to_doc())

    def _save_assembly(self, runner: AssemblyRunner) -> None:
        doc = {"state": str(runner.state), "reason": runner.cell.reason}
        self._put(ASSEMBLY, runner.name, doc | {"failures": list(runner.window.times)})

    def _save_deployable(self) -> None:
        doc = {"state": str(self.cell.state), "reason": self.cell.reason}
        self._put(DEPLOYABLE, "", doc | {"failures": list(self.window.times)})

    def _forget_runtime(self) -> None:
        """Stopped: nothing left to adopt; only the final state stays."""
        with contextlib.suppress(PcloudError):
            self.runtime.delete()
        self._save_deployable()

    def _put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        if not self._lease_ok:
            return  # a DPE without the lease must not overwrite its successor's state
        self._write(partial(self.runtime.put, kind, key, doc), f"{kind} {key}")

    def _delete(self, kind: str, key: str) -> None:
        if not self._lease_ok:
            return
        self._write(partial(self.runtime.delete, kind, key), f"the end of {kind} {key}")

    def _write(self, op: Callable[[], T], what: str) -> T | None:
        """Write to the store now, or later in order if it does not answer (``Outbox``);
        a write refused for the lease's sake fences this DPE."""
        try:
            return self.outbox.write(op, what)
        except LeaseLost as error:
            self._lose_lease(f"the store refused a write: {error}")
            return None

    def _flush_outbox(self) -> None:
        try:
            self.outbox.flush()
        except LeaseLost as error:
            self._lose_lease(f"the store refused a write: {error}")

    # =========================================================================
    # status rows

    def _assembly_status(self, runner: AssemblyRunner) -> dict[str, Any]:
        instance = runner.instance
        return {
            "state": str(runner.state),
            "reason": runner.cell.reason,
            "instance": _instance_doc(instance) if instance else None,
            "failures": list(runner.window.times),
        }

    def _resource_status(self, runner: ResourceRunner) -> dict[str, Any]:
        return runner.to_doc() | {"reason": runner.cell.reason}


_ORPHAN_DONE = (ResourceState.STOPPED, ResourceState.UNRECOVERABLE)


def effective_heartbeat(document: Heartbeat, driver: Driver) -> Heartbeat:
    """``document`` unless it equals ``Heartbeat()`` and the driver has its own defaults."""
    defaults = getattr(driver, "heartbeat_defaults", None)
    if document == Heartbeat() and isinstance(defaults, Heartbeat):
        return defaults
    return document


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _choose(found: list[Instance], recorded_id: str | None) -> Instance | None:
    """The instance to adopt: the recorded one if alive, else the newest alive."""
    alive = [i for i in found if i.state not in _DEAD]
    recorded = [i for i in alive if i.instance_id == recorded_id]
    if recorded:
        return recorded[0]
    return max(alive, key=lambda i: i.created_at, default=None)


def _instance_doc(instance: Instance) -> dict[str, Any]:
    doc = dataclasses.asdict(instance)
    doc["state"] = str(instance.state)
    return doc


def _definition_from_record(name: str, doc: Mapping[str, Any]) -> Resource | None:
    """A removed resource, rebuilt from what it was started with, so it can be stopped."""
    applied = doc.get("applied")
    if not applied:
        return None
    agent = str(applied.get("agent", "")).split(":")
    params = {str(k): str(v) for k, v in applied.get("params", {}).items()}
    if len(agent) == 3 and agent[0] == "ocf":
        return Resource(name, "ocf", agent[2], agent[1], parameters=params)
    if len(agent) == 2:
        return Resource(name, agent[0], agent[1], "", parameters=params)
    return None


async def _first(*awaitables: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of them is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
