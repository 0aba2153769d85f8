"""One assembly's life: create or adopt its instance, connect, watch it, fence it.

Each assembly runs in its own tasks, so one dead guest never stalls the
others: the bring-up (create → connect → start the guest agent, or monitor
passively: ``dpe.engine_agent``), the heartbeat and the health check (a real
command, and the driver's view of the instance, every
``heartbeat.health_interval``).  Their timers fall at the deployable's phase,
where its agents' heartbeats arrive (``dpe.engine_timing.at_phase``).  The
heartbeat is the guest agent's own while it runs, else an SSH keepalive every
``heartbeat.interval``; either way a
guest silent for ``heartbeat.timeout`` is failed only once a fresh keepalive
confirms it, with the evidence in the event (``dpe.engine_liveness``).
Resource operations run through the agent or over SSH on the same connection
and are cancelled when the assembly is lost.  What a loss means (restart or
escalate) is the engine's decision: the runner reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from dpe import agents
from dpe.engine_agent import AgentLink
from dpe.engine_deps import EngineDeps
from dpe.engine_liveness import probe_silence
from dpe.engine_log import Context
from dpe.engine_tasks import Tasks
from dpe.engine_timing import EngineOptions, at_phase, bounded, deployable_phase
from dpe.escalation import FailureWindow
from dpe.interfaces import DEAD_STATES, Connection, Instance, Transport
from dpe.loop_lag import NOTICED
from dpe.planner import AssemblyStatus
from dpe.states import AssemblyState, StateCell, Subject, assembly_cell
from foundation.backoff import Retries
from foundation.clock import Clock
from foundation.errors import Forbidden, OperationTimeout, PcloudError, Unavailable
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Heartbeat, Resource

log = logging.getLogger("dpe.engine")

HEALTH_COMMAND = "uptime"
_GRACE = 1.0  # beyond a timeout the transport enforces, before the engine gives up


class AssemblyHooks(Protocol):
    def heartbeat(self) -> Heartbeat: ...

    def monitoring(self) -> str:
        """The deployable's monitoring: active or passive."""

    def assembly_up(self, runner: AssemblyRunner) -> None: ...

    def assembly_lost(self, runner: AssemblyRunner, reason: str) -> None: ...

    def assembly_refused(self, runner: AssemblyRunner, reason: str) -> None: ...

    def instance_changed(self, runner: AssemblyRunner) -> None: ...


class AssemblyRunner:
    def __init__(self, deps: EngineDeps, definition: Assembly, hooks: AssemblyHooks) -> None:
        self.deps = deps
        self.definition = definition
        self.name = definition.name
        self.hooks = hooks
        subject = Subject(deps.deployable, definition.name)
        self.cell: StateCell[AssemblyState] = assembly_cell(subject, deps.emit, deps.clock.time)
        self.window = FailureWindow(definition.escalation)
        self.instance: Instance | None = None
        self.connection: Connection | None = None
        self.retries = Retries(deps.options.backoff(free=1))  # creating an instance
        # its instance was not ours to trust (another host key, our key refused): left
        # alone, failed, until a clean-up; a new instance would only meet it again
        self.refused: str | None = None
        self.adopted = False  # the instance came from a previous DPE (until it is connected)
        self.log = Context(log, deployable=deps.deployable, assembly=definition.name)
        self.tasks = Tasks(self.log)  # bring-up, heartbeat, health, the agent's reports
        self.link = self._new_link()  # the instance's guest agent (a new one per instance)
        self._ops: set[asyncio.Task[Any]] = set()  # resource operations in flight
        self._closing: set[asyncio.Task[Any]] = set()

    @property
    def state(self) -> AssemblyState:
        return self.cell.state

    def monitoring_doc(self) -> dict[str, str] | None:
        """How the current instance is monitored, and why; None without one."""
        return self.link.to_doc() if self.connection is not None else None

    def status(self) -> AssemblyStatus:
        instance = self.instance
        refused = self.refused is not None
        if instance is None:
            return AssemblyStatus(self.state, refused=refused)
        adopting = self.adopted and self.state is AssemblyState.CONNECTING
        return AssemblyStatus(self.state, instance.address, instance.hostname, refused, adopting)

    # -- bringing it up ---------------------------------------------------------

    def begin_create(self) -> None:
        """CREATING at once (so nobody asks twice), the instance when the back-off allows."""
        delay = self.retries.delay
        reason = f"creating an instance ({self.deps.driver.name})"
        if delay:
            reason += f" in {delay:g} s, after failures in a row"
        self.adopted = False
        self.cell.set(AssemblyState.CREATING, reason)
        self.tasks.spawn(self._bring_up(None, delay))

    def begin_adopt(self, instance: Instance) -> None:
        self.instance = instance
        self.adopted = True
        # A DPE killed between creating an instance and recording it leaves the
        # store without it: the adopter records what it found.
        self.hooks.instance_changed(self)
        self.cell.set(
            AssemblyState.CONNECTING,
            f"adopting instance {instance.instance_id} at {instance.ssh_host}:{instance.ssh_port}",
        )
        self.tasks.spawn(self._bring_up(instance, 0.0))

    def mark_absent(self, reason: str) -> None:
        """Nothing runs for this assembly: the planner will create an instance."""
        self.cell.set(AssemblyState.STOPPED, reason)

    async def _bring_up(self, adopted: Instance | None, delay: float) -> None:
        try:
            await self.deps.clock.sleep(delay)
            keys = self.deps.keys(self.name)
            instance = adopted or await self._create(keys)
            self.connection = await connect_with_retries(
                self.deps.transport, instance, keys, self.deps.options, self.deps.clock
            )
            self.link = self._new_link()
            await self.link.start(self.connection, self.hooks.monitoring())
        except Forbidden as error:  # not a lost guest: someone else's, or not as made
            self.hooks.assembly_refused(self, str(error))
            return
        except Exception as error:  # a driver bug must not leave it creating forever
            if not isinstance(error, PcloudError | OSError):
                self.log.exception("bringing up the instance")
            self.retries.failed()
            what = "adopting the instance" if adopted else "bringing up an instance"
            self.hooks.assembly_lost(self, f"{what} failed: {error}")
            return
        self.retries.reset()
        self.adopted = False
        self.cell.set(
            AssemblyState.RUNNING, f"connected to {instance.ssh_host}:{instance.ssh_port}"
        )
        if not self.link.active:  # else the agent's heartbeat is the heartbeat
            self.tasks.spawn(self._heartbeat(self.connection))
        self.tasks.spawn(self._health(self.connection, instance))
        self.hooks.assembly_up(self)

    async def _create(self, keys: AssemblyKeys) -> Instance:
        instance = await bounded(
            self.deps.clock,
            self.deps.options.create_timeout,
            self.deps.driver.create(self.deps.deployable, self.definition, keys),
            "creating the instance",
        )
        self.instance = instance
        self.hooks.instance_changed(self)
        self.cell.set(
            AssemblyState.CONNECTING,
            f"instance {instance.instance_id} created: address {instance.address}",
        )
        return instance

    def _new_link(self) -> AgentLink:
        label = f"{self.deps.deployable}/{self.name}"
        return AgentLink(self.deps, label, self, self.tasks, self.log)

    # what the guest agent's link reports (``dpe.engine_agent.LinkHooks``)

    def heartbeat(self) -> Heartbeat:
        return self.hooks.heartbeat()

    def agent_note(self, reason: str) -> None:
        self.cell.note(reason)

    def agent_failed(self, reason: str) -> None:
        self.hooks.assembly_lost(self, reason)

    # -- watching it --------------------------------------------------------------

    async def _heartbeat(self, connection: Connection) -> None:
        """Passive monitoring's heartbeat: an SSH keepalive every interval."""
        clock = self.deps.clock
        last_answer = clock.monotonic()
        while True:
            await clock.sleep(self._phased(self.hooks.heartbeat().interval))
            heartbeat = self.hooks.heartbeat()
            silent = clock.monotonic() - last_answer
            # if this loop was held up (a slow store write), the silence is ours:
            # the guest always gets at least timeout - interval to answer
            remaining = max(heartbeat.timeout - silent, heartbeat.timeout - heartbeat.interval)
            try:
                await bounded(clock, remaining + 1.0, connection.keepalive(remaining), "keepalive")
            except OperationTimeout:
                evidence = await probe_silence(clock, connection, heartbeat, last_answer)
                if not evidence.answered:
                    self.hooks.assembly_lost(self, evidence.reason())
                    return
                self.log.warning("a late heartbeat, not a lost guest: %s", evidence.details())
            except Unavailable as error:
                self.hooks.assembly_lost(self, f"connection lost: {error}")
                return
            last_answer = clock.monotonic()

    async def _health(self, connection: Connection, instance: Instance) -> None:
        while True:
            await self.deps.clock.sleep(self._phased(self.hooks.heartbeat().health_interval))
            problem = await self._health_problem(connection, instance)
            if problem:
                self.hooks.assembly_lost(self, problem)
                return

    def _phased(self, seconds: float) -> float:
        """``seconds``, brought to the deployable's heartbeat phase (``at_phase``)."""
        interval = self.hooks.heartbeat().interval
        phase = deployable_phase(self.deps.deployable, interval)
        return at_phase(self.deps.clock.time(), seconds, phase, interval)

    async def _health_problem(self, connection: Connection, instance: Instance) -> str | None:
        if self.link.active:  # the agent's heartbeat is a process alive in the guest
            return await self._driver_problem(instance)
        clock, timeout = self.deps.clock, self.deps.options.health_timeout
        sent = clock.monotonic()
        try:
            result = await bounded(
                clock, timeout + _GRACE, connection.run(HEALTH_COMMAND, timeout), "health"
            )
        except OperationTimeout:
            if clock.lag_since(sent) < NOTICED:
                return f"health command timed out after {timeout:g} s"
            # its answer may have waited, unread, while this loop was stalled
            evidence = await probe_silence(clock, connection, self.hooks.heartbeat(), sent)
            if evidence.answered:
                self.log.warning("health command late, the guest answers: %s", evidence.details())
                return None
            return f"health command timed out after {timeout:g} s ({evidence.details()})"
        except Unavailable as error:
            return f"connection lost: {error}"
        if result.exit_status != 0:
            return f"health command {HEALTH_COMMAND!r} exited with {result.exit_status}"
        return await self._driver_problem(instance)

    async def _driver_problem(self, instance: Instance) -> str | None:
        try:
            state = await bounded(
                self.deps.clock,
                self.deps.options.driver_timeout,
                self.deps.driver.state(instance.instance_id),
                "asking the driver",
            )
        except (PcloudError, OSError) as error:
            self.log.warning("cannot ask the driver about the instance: %s", error)
            return None  # the driver's trouble is not the instance's
        if state in DEAD_STATES:
            return f"the {self.deps.driver.name} driver reports the instance {state}"
        return None

    # -- running operations -----------------------------------------------------

    async def run_op(
        self, resource: Resource, op: str, interval: float, params: Mapping[str, str]
    ) -> agents.AgentResult:
        """One agent operation; Unavailable if the assembly is (or gets) lost meanwhile."""
        connection = self.connection
        if self.state is not AssemblyState.RUNNING or connection is None:
            raise Unavailable(f"assembly {self.name} is {self.state}", assembly=self.name)
        work = asyncio.create_task(self._execute(connection, resource, op, interval, params))
        self._ops.add(work)
        work.add_done_callback(self._ops.discard)
        try:
            return await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise Unavailable(f"assembly {self.name} was lost", assembly=self.name) from None

    async def _execute(
        self,
        connection: Connection,
        resource: Resource,
        op: str,
        interval: float,
        params: Mapping[str, str],
    ) -> agents.AgentResult:
        # created inside the task: a task cancelled before it runs leaves nothing unawaited
        limit = resource.timeout(op) + agents.KILL_GRACE + _GRACE  # the transport's, and ours
        if self.link.active:
            work = self.link.run(resource, op, interval, params)
        else:
            work = agents.execute(connection, resource, op, interval=interval, params=params)
        return await bounded(self.deps.clock, limit, work, f"{op} of {resource.name}")

    # -- losing it ----------------------------------------------------------------

    def mark_failed(self, reason: str) -> bool:
        """Stop watching and acting on it; False if it was not up or coming up."""
        if self.state not in (
            AssemblyState.UNKNOWN,
            AssemblyState.CREATING,
            AssemblyState.CONNECTING,
            AssemblyState.RUNNING,
        ):
            return False
        self.halt()
        self.cell.set(AssemblyState.FAILED, reason)
        return True

    def refuse(self, reason: str) -> bool:
        """Failed for good (until cleaned up): its instance is not the guest it was made
        as.  Neither fenced nor re-created: that would only meet the same impostor."""
        self.refused = reason
        return self.mark_failed(reason)

    async def fence(self, reason: str, *, stopping: bool = False) -> bool:
        """Destroy every instance of this assembly the driver knows; True once done.
        ``stopping``: on a stop, which is not a failure, and says so (state stopping)."""
        self.halt()
        self.cell.set(AssemblyState.STOPPING if stopping else AssemblyState.FENCING, reason)
        try:
            destroyed = await self._destroy_all()
        except (PcloudError, OSError) as error:
            what = "destroying its instance" if stopping else "fencing"
            self.cell.set(AssemblyState.FAILED, f"{what} failed: {error}")
            return False
        self.instance = None
        self.hooks.instance_changed(self)
        what = f"instance {', '.join(destroyed)} destroyed" if destroyed else "no instance left"
        self.cell.set(AssemblyState.STOPPED, what)
        return True

    async def _destroy_all(self) -> list[str]:
        ids = [self.instance.instance_id] if self.instance else []
        listed = await bounded(
            self.deps.clock,
            self.deps.options.driver_timeout,
            self.deps.driver.list(self.deps.deployable),
            "listing the instances",
        )
        ids += [
            i.instance_id for i in listed if i.assembly == self.name and i.instance_id not in ids
        ]
        for instance_id in ids:
            await bounded(
                self.deps.clock,
                self.deps.options.destroy_timeout,
                self.deps.driver.destroy(instance_id),
                f"destroying instance {instance_id}",
            )
        return ids

    def halt(self) -> None:
        """Cancel its tasks and operations, close its connection (not the instance)."""
        self.tasks.cancel()
        current = asyncio.current_task()
        for task in self._ops:
            if task is not current:
                task.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            closing = asyncio.create_task(self._close(self.link, connection))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _close(self, link: AgentLink, connection: Connection) -> None:
        """The agent first (its input ends: it exits), then the connection."""
        timeout = self.deps.options.close_timeout
        with contextlib.suppress(PcloudError, OSError):
            await bounded(self.deps.clock, timeout, link.close(), "closing the guest agent")
        with contextlib.suppress(PcloudError, OSError):
            await bounded(self.deps.clock, timeout, connection.close(), "closing")

    async def shutdown(self) -> None:
        """Leave the instance running; wait until every task of ours has ended."""
        self.halt()
        pending = self.tasks.running | self._ops | self._closing
        await asyncio.gather(*pending, return_exceptions=True)


async def connect_with_retries(
    transport: Transport,
    instance: Instance,
    keys: AssemblyKeys,
    options: EngineOptions,
    clock: Clock,
) -> Connection:
    """Up to ``connect_attempts`` connections, with back-off between them.

    A wrong host key or a refused login (``Forbidden``) is never retried: it
    does not get better.  Raises ``Unavailable`` with the last error when every
    attempt failed."""
    retries = Retries(options.backoff())
    error: Exception | None = None
    for _ in range(options.connect_attempts):
        await retries.pause(clock)
        try:
            return await bounded(
                clock,
                options.connect_timeout + 1.0,
                transport.connect(instance, keys, options.connect_timeout),
                "connecting",
            )
        except Forbidden:
            raise
        except (Unavailable, OperationTimeout, OSError) as failure:
            error = failure
            retries.failed()
    raise Unavailable(
        f"cannot connect to {instance.ssh_host}:{instance.ssh_port}: {error}",
        assembly=instance.assembly,
    )
