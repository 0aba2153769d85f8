"""The deployable policy engine: keeps one deployable available.

``Engine(document, driver=..., transport=..., runtime=..., keys=...)``:

- ``start()`` takes the deployable's lease (``dpe.engine_lease``), reads what a
  previous DPE recorded and adopts the instances the driver still has, never
  creating a duplicate (``dpe.engine_adoption``), watches the driver's
  instance events if it has them (``dpe.engine_watch``), then runs;
- one control loop (``dpe.engine_control``) plans with the policy engine
  (``dpe.engine_planning``: the built-in planner, or Pacemaker's while it
  answers) and carries out transition graphs (``dpe.engine_exec``) whenever
  something changed; each assembly has its own tasks (``dpe.engine_assembly``)
  and each running resource its monitor (``dpe.engine_resource``), all held
  in ``dpe.engine_runners``;
- failures are counted in failure windows and escalated
  (``dpe.engine_escalation``): a resource is restarted or its assembly fenced
  and re-created; an assembly is re-created or the whole deployable restarted;
  a deployable that keeps failing is marked ``failed`` and left alone until
  started again; failover services move (``dpe.engine_moves``);
- ``reload(document)`` applies only the difference (``dpe.engine_reload``);
  ``take_requests()`` carries out the clean-ups cped recorded
  (``dpe.engine_cleanup``);
  ``stop()`` stops every resource in reverse order and destroys every
  instance; ``shutdown()`` leaves them running for the next DPE to adopt.

Heartbeat timings are the document's, except when the document's heartbeat
equals the model's defaults (``Heartbeat()``: a document that sets none, or
sets exactly those values) and the driver offers ``heartbeat_defaults``: then
the driver's defaults are used (slow emulated guests need longer timeouts).

Every state change is an event, recorded with its subject's state
(``dpe.engine_recorder``); the lease is renewed every second and a DPE that
cannot renew it stops acting a margin before it can expire
(``dpe.engine_lease``, backed by a ``watchdog``).  The engine itself only
builds these parts, answers its callers, and routes what the runners report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from dpe.engine_adoption import Adoption
from dpe.engine_assembly import AssemblyRunner
from dpe.engine_cleanup import Cleanup
from dpe.engine_control import ControlLoop
from dpe.engine_deps import EngineDeps
from dpe.engine_escalation import Escalation
from dpe.engine_lease import LeaseKeeper, Watchdog
from dpe.engine_log import Context
from dpe.engine_moves import ServiceMoves
from dpe.engine_planning import FallbackPlanner, Planner
from dpe.engine_recorder import Listener, Recorder
from dpe.engine_reload import Reloader
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.engine_status import engine_status
from dpe.engine_tasks import Tasks
from dpe.engine_timing import EngineOptions, deployable_phase, first_of
from dpe.engine_watch import InstanceWatch
from dpe.interfaces import Driver, Notifying, Transport
from dpe.loop_lag import lag_clock
from dpe.planner import Goal
from dpe.runtime import Runtime
from dpe.states import DeployableState, StateCell, Subject, deployable_cell
from foundation.clock import Clock, SystemClock
from foundation.errors import InvalidInput, PcloudError, Unavailable
from foundation.events import Event
from foundation.keyfiles import AssemblyKeys
from foundation.model import Deployable, Heartbeat, ResourceId
from foundation.runtime_kinds import INSTANCE

__all__ = ["Engine", "Listener", "Planner", "Watchdog", "effective_heartbeat"]

log = logging.getLogger("dpe.engine")


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
        self.name = document.name
        self.runtime = runtime
        self.clock = lag_clock(clock or SystemClock())
        self.options = options or EngineOptions()
        self.log = Context(log, deployable=self.name)
        self.tasks = Tasks(self.log)
        holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = LeaseKeeper(
            runtime,
            self.clock,
            self.options,
            holder,
            self.log,
            self._halt,
            watchdog,
            phase=self._heartbeat_phase,
        )
        self.deps = EngineDeps(
            self.name, driver, transport, self.clock, keys, self.options, self._emit
        )
        cell = deployable_cell(Subject(self.name), self._emit, self.clock.time)
        self.level = DeployableLevel(document, cell)
        self.runners = Runners(self.deps, hooks=self)
        self.recorder = Recorder(runtime, self.lease, self.level, self.runners, self._running)
        self.lease.on_renewed = self.recorder.flush_outbox
        self.moves = ServiceMoves(
            runtime, self.clock, self.level, self.runners, self.recorder, self.log
        )
        self.reloader = Reloader(self.level, self.runners, self.recorder)
        self.cleanup = Cleanup(
            runtime, self.level, self.runners, self.recorder, self.moves, self.log
        )
        self.control = ControlLoop(
            self.deps,
            self.level,
            self.runners,
            self.lease,
            FallbackPlanner(planner, self.clock, cell, self.log),
            self.moves,
            self.reloader,
            self.tasks,
            self.log,
        )
        self.escalation = Escalation(
            self.clock, self.level, self.runners, self.recorder, self.moves, self._replan_now
        )
        self.watch = InstanceWatch(
            self.deps, self.lease, self.runners, self.escalation.assembly_lost, self.log
        )
        for assembly in document.assemblies:
            self.runners.add_assembly(assembly)
        self.reloader.add_service_runners(document)

    @property
    def document(self) -> Deployable:
        return self.level.document

    @property
    def cell(self) -> StateCell[DeployableState]:
        return self.level.cell

    @property
    def halted(self) -> asyncio.Event:
        """Set once the lease is lost: this engine acts no more."""
        return self.lease.halted

    @property
    def halt_reason(self) -> str:
        return self.lease.lost_reason

    @property
    def listeners(self) -> list[Listener]:
        return self.recorder.listeners

    # -- what callers ask -----------------------------------------------------------

    async def start(self, *, clear_failed: bool = False, stop_only: bool = False) -> None:
        """Take the lease, restore, adopt, and begin keeping the deployable available;
        ``stop_only``: begin stopping it instead, so that nothing is created or started."""
        await self.lease.acquire(self.name)
        # held from now on: listing a cloud's instances can outlast the lease's ttl
        self.tasks.spawn(self.lease.hold())
        docs = self.runtime.load()
        self.moves.restore(docs)
        adoption = Adoption(self.deps, self.level, self.runners, self.log)
        adoption.restore(docs, clear_failed=clear_failed, epoch=self.lease.epoch)
        await adoption.adopt(docs.get(INSTANCE, {}))
        self.recorder.save_document()
        self.cleanup.take_requested()  # asked for while no DPE ran
        self._hear_driver_notices()
        await self.watch.subscribe()
        if stop_only:  # before the first plan: a run's plan would create what is absent
            self._aim_to_stop("stopping what a previous DPE left")
        self.tasks.spawn(self.control.run())
        self.control.replan()

    async def stop(self) -> None:
        """Stop every resource (reverse order), destroy every instance, then end."""
        if self.halted.is_set():
            raise Unavailable(f"cannot stop {self.name}: {self.halt_reason}", deployable=self.name)
        if not self.control.stopped.is_set():  # a stop-only start may have ended it already
            self._aim_to_stop("stop requested")
            self._replan_now()
        await first_of(self.control.stopped.wait(), self.halted.wait())
        if self.control.stopped.is_set():
            self.recorder.forget_runtime()
        await self.shutdown()

    async def shutdown(self, *, release_lease: bool = True) -> None:
        """End every task of this engine and leave the instances running (adoption)."""
        self.watch.unsubscribe()
        await self.tasks.end()
        await self.runners.shutdown()
        self.lease.end(release=release_lease)
        await self._close_driver()

    async def reload(self, document: Deployable) -> None:
        """Apply a new document: only what changed is started, stopped or restarted."""
        if document.name != self.name:
            raise InvalidInput(f"the document is for {document.name!r}, not {self.name!r}")
        summary = self.reloader.apply(document)
        self.recorder.save_document()
        self.moves.load_requested()
        self.cell.note(summary)
        self._replan_now()

    def take_requests(self) -> None:
        """Clean-ups (``dpe.engine_cleanup``) and service moves an administrator asked for
        since.  Read apart from a reload: a move must not apply changes waiting for one."""
        cleaned = self.cleanup.take_requested()
        moved = self.moves.load_requested()
        if cleaned or moved:
            self._replan_now()

    def status(self) -> dict[str, Any]:
        """What is running where, in states (for ``status`` and tests)."""
        return engine_status(self.level, self.runners, self.lease.epoch)

    # -- what the runners report (``RunnerHooks``) ------------------------------------

    def heartbeat(self) -> Heartbeat:
        """The document's heartbeat; the driver's defaults if the document has the model's."""
        return effective_heartbeat(self.document.heartbeat, self.deps.driver)

    def monitoring(self) -> str:
        """The document's monitoring (active or passive), for instances connected from now."""
        return self.document.monitoring

    def assembly_up(self, runner: AssemblyRunner) -> None:
        self._replan_now()

    def assembly_lost(self, runner: AssemblyRunner, reason: str) -> None:
        self.escalation.assembly_lost(runner, reason)

    def assembly_refused(self, runner: AssemblyRunner, reason: str) -> None:
        self.escalation.assembly_refused(runner, reason)

    def instance_changed(self, runner: AssemblyRunner) -> None:
        self.recorder.save_instance(runner)

    def resource_failed(self, runner: ResourceRunner, reason: str) -> None:
        self.escalation.resource_failed(runner, reason)

    def stop_failed(self, runner: ResourceRunner, reason: str) -> None:
        self.escalation.stop_failed(runner, reason)

    def resource_changed(self, runner: ResourceRunner) -> None:
        self.recorder.save_resource(runner)

    # -- wiring -----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self.recorder.emit(event)

    def _running(self, rid: ResourceId) -> None:
        self.moves.done(rid)  # a requested move of a service ends once it runs there

    def _heartbeat_phase(self) -> float:
        """Where in each second the guests' agents send their heartbeats."""
        return deployable_phase(self.name, self.heartbeat().interval)

    def _aim_to_stop(self, reason: str) -> None:
        self.level.goal = Goal.STOP
        self.level.restart_pending = False
        self.cell.set(DeployableState.STOPPING, reason)

    def _replan_now(self) -> None:
        self.control.replan(abort=True)

    def _halt(self) -> None:
        """The lease is lost: start nothing more, end every runner's work."""
        self.control.abort()
        self.runners.halt()

    def _hear_driver_notices(self) -> None:
        """What a driver has to say about no one instance (its cloud's API not
        answering, an image upload) becomes an event of the deployable."""
        driver = self.deps.driver
        if isinstance(driver, Notifying):
            driver.set_notice(self.cell.note)

    async def _close_driver(self) -> None:
        """Drop the driver's connection (libvirt's); the instances keep running."""
        close = getattr(self.deps.driver, "close", None)
        if close is not None:
            with contextlib.suppress(PcloudError, OSError):
                await asyncio.wait_for(close(), self.options.driver_timeout)


def effective_heartbeat(document: Heartbeat, driver: Driver) -> Heartbeat:
    """``document`` unless it equals ``Heartbeat()`` and the driver has its own defaults."""
    defaults = getattr(driver, "heartbeat_defaults", None)
    if document == Heartbeat() and isinstance(defaults, Heartbeat):
        return defaults
    return document
