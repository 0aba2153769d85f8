"""Active monitoring of one instance: its guest agent, as the engine uses it.

``AgentLink.start`` runs once the instance is connected.  With the deployable's
``monitoring = active`` it starts the guest agent (``dpe.agent_channel``) on
the pinned connection; a guest that cannot run it (no python3, too old, an
upload refused, an agent that would not start) is monitored passively, and an
event says why: ``monitoring passively: no python3 on the guest``.

While the agent runs:

- one-shot operations (probes, starts, stops) go through it, with the same
  results and timeouts as over SSH (``dpe.agent_ops``); a busy or broken agent's
  refusal runs that one operation over SSH instead;
- recurring monitors are scheduled in the guest (``schedule``), and their
  changes delivered to whoever scheduled them; after ``unschedule`` nothing
  more is delivered, and the agent's cancel is sent and answered before the
  resource's next operation or schedule (a stop, a start with new parameters,
  a move), never beside it;
- the agent's heartbeat replaces the SSH keepalive (the health command stays).

Losing the agent (its channel ended, or its heartbeat missed, see
``dpe.agent_channel``) is confirmed with a fresh keepalive on the connection
(``dpe.engine_liveness``): unanswered, the assembly is lost (``no heartbeat
for 3.0 s (...)``, or ``connection lost: ...``).  Answered, only the agent is
lost: it is started again once (the new one kills a stuck predecessor through
the guest's lock file) and every monitor scheduled again.  An agent lost again
within ``agent_restart_window`` of that restart, or one that cannot be started
again, fails the assembly, which then recovers per its policy: an agent that
keeps dying or sticking (SIGSTOP, memory pressure) says the guest is unwell.
An operation in flight when the agent was lost runs again on its successor
(OCF operations may be repeated: a start of what runs, a stop of what is
stopped, succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from dpe import agents
from dpe.agent_channel import (
    AgentChannel,
    AgentLost,
    AgentSettings,
    AgentUnsupported,
    MonitorChange,
    ProcessDied,
    start_agent,
)
from dpe.agent_ops import AgentOutcome, agent_result, op_message, watch_message
from dpe.engine_deps import EngineDeps
from dpe.engine_liveness import probe_silence
from dpe.engine_log import Context
from dpe.engine_tasks import Tasks
from dpe.engine_timing import bounded, deployable_phase
from dpe.interfaces import Connection
from foundation.errors import AgentError, PcloudError, Unavailable
from foundation.model import Heartbeat, Resource

START_BOUND = 60.0  # the whole start: a try, an upload, a second try (each bounded too)


class Mode(StrEnum):
    ACTIVE = "active"  # the guest agent runs the operations and monitors
    PASSIVE = "passive"  # each operation over its own SSH channel


class LinkHooks(Protocol):
    def heartbeat(self) -> Heartbeat: ...

    def agent_note(self, reason: str) -> None:
        """An event about the agent (the assembly's state does not change)."""

    def agent_failed(self, reason: str) -> None:
        """The assembly is lost."""


@dataclass(frozen=True)
class Schedule:
    resource: Resource
    params: Mapping[str, str]
    interval: float
    on_change: Callable[[AgentOutcome], None]


class AgentLink:
    def __init__(
        self, deps: EngineDeps, label: str, hooks: LinkHooks, tasks: Tasks, log: Context
    ) -> None:
        self.deps = deps
        self.label = label
        self.hooks = hooks
        self.tasks = tasks
        self.log = log
        self.mode: Mode | None = None  # decided by ``start``
        self.reason = "not connected"
        self.channel: AgentChannel | None = None  # None while it is being replaced
        self.schedules: dict[str, Schedule] = {}
        self._connection: Connection | None = None
        self._stale: dict[str, set[str]] = {}  # unscheduled keys not yet cancelled, by resource
        self._changed = asyncio.Event()  # an agent runs again, or never will
        self._failed: str | None = None
        self._restarted_at: float | None = None

    @property
    def active(self) -> bool:
        return self.mode is Mode.ACTIVE

    def to_doc(self) -> dict[str, str] | None:
        """The mode this instance is monitored in, and why (status)."""
        return None if self.mode is None else {"mode": str(self.mode), "reason": self.reason}

    # -- starting ---------------------------------------------------------------

    async def start(self, connection: Connection, wanted: str) -> None:
        """Start the agent, or say why this instance is monitored passively."""
        self._connection = connection
        if wanted != Mode.ACTIVE:
            self._passive("the deployable's monitoring is passive")
            return
        try:
            channel = await self._start_channel(connection)
        except AgentUnsupported as error:
            self._passive(self._unlabelled(error), announce=True)
        except (PcloudError, OSError) as error:  # the guest's trouble; the heartbeat judges it
            self._passive(f"the guest agent did not start: {self._unlabelled(error)}", True)
        else:
            self._attach(channel)

    async def _start_channel(self, connection: Connection) -> AgentChannel:
        heartbeat = self.hooks.heartbeat()
        settings = AgentSettings(
            python=self.deps.options.agent_python,
            heartbeat_interval=heartbeat.interval,
            heartbeat_phase=deployable_phase(self.deps.deployable, heartbeat.interval),
            heartbeat_timeout=heartbeat.timeout,
        )
        starting = start_agent(connection, settings, clock=self.deps.clock, label=self.label)
        return await bounded(self.deps.clock, START_BOUND, starting, "starting the guest agent")

    def _passive(self, reason: str, announce: bool = False) -> None:
        self.mode, self.reason = Mode.PASSIVE, reason
        if announce:
            self.hooks.agent_note(f"monitoring passively: {reason}")

    def _attach(self, channel: AgentChannel) -> None:
        hello = channel.hello
        self.mode, self.channel = Mode.ACTIVE, channel
        self._stale.clear()  # a new agent has only what is scheduled now
        self.reason = f"guest agent pid {hello.pid} (python {hello.python}, {hello.watch})"
        self._changed.set()
        self.tasks.spawn(self._consume(channel))

    # -- operations -------------------------------------------------------------

    async def run(
        self, resource: Resource, op: str, interval: float, params: Mapping[str, str]
    ) -> agents.AgentResult:
        """One operation through the agent (again on its successor if it was lost)."""
        await self._cancel_stale(resource.name)  # an unscheduled monitor never runs beside it
        message = op_message(resource, op, interval=interval, params=params)
        for attempt in (1, 2):
            channel = await self._current()
            try:
                outcome = await channel.run(message)
            except AgentLost as error:
                if attempt == 2:
                    raise Unavailable(f"{error}", assembly=self.label) from error
                self.log.warning("%s of %s: the agent was lost: running it again", op, resource)
                continue
            except (Unavailable, AgentError) as refusal:  # busy, or broken: this one over SSH
                self.log.warning("%s of %s over SSH: %s", op, resource.name, refusal)
                return await self._over_ssh(resource, op, interval, params)
            return agent_result(resource, op, outcome)
        raise AssertionError("unreachable")

    async def _current(self) -> AgentChannel:
        """The running agent; waits while it is replaced; Unavailable once the assembly failed."""
        while True:
            if self._failed is not None:
                raise Unavailable(self._failed, assembly=self.label)
            if self.channel is not None:
                return self.channel
            await self._changed.wait()

    async def _over_ssh(
        self, resource: Resource, op: str, interval: float, params: Mapping[str, str]
    ) -> agents.AgentResult:
        assert self._connection is not None
        return await agents.execute(
            self._connection, resource, op, interval=interval, params=params
        )

    # -- recurring monitors -------------------------------------------------------

    async def schedule(self, key: str, schedule: Schedule) -> None:
        """Run ``schedule``'s monitor in the guest; its changes go to ``on_change``."""
        await self._cancel_stale(schedule.resource.name)
        self.schedules[key] = schedule
        channel = self.channel
        if channel is None:
            return  # the agent is being replaced: its successor gets every schedule
        with contextlib.suppress(AgentLost):  # likewise
            await self._send_schedule(channel, key, schedule)

    def unschedule(self, key: str) -> None:
        """Nothing more is delivered for ``key``.  The agent is told before the
        resource's next operation or schedule (no task is left behind here)."""
        schedule = self.schedules.pop(key, None)
        if schedule is not None and self.channel is not None:
            self._stale.setdefault(schedule.resource.name, set()).add(key)

    async def _cancel_stale(self, resource: str) -> None:
        """Cancel the monitors of ``resource`` that were unscheduled, before anything else."""
        channel, stale = self.channel, self._stale.pop(resource, set())
        for key in sorted(stale):
            if channel is not None:
                with contextlib.suppress(PcloudError):  # a lost agent runs nothing more
                    await channel.cancel(key)

    async def _send_schedule(self, channel: AgentChannel, key: str, schedule: Schedule) -> None:
        resource, params = schedule.resource, schedule.params
        op = op_message(resource, "monitor", interval=schedule.interval, params=params)
        await channel.schedule(key, op, schedule.interval, watch_message(resource, params))

    # -- what the agent reports ---------------------------------------------------

    async def _consume(self, channel: AgentChannel) -> None:
        async for event in channel.events():
            if isinstance(event, MonitorChange):
                schedule = self.schedules.get(event.key)
                if schedule is not None:
                    schedule.on_change(event.outcome)
            elif isinstance(event, ProcessDied):
                self.log.info("%s: watched process %d died", event.key, event.pid)
            else:
                await self._lost(channel, event.reason)

    async def _lost(self, channel: AgentChannel, reason: str) -> None:
        """Confirm with a fresh keepalive whether the guest or only its agent is lost."""
        self.channel = None
        self._changed.clear()
        if self._connection is None:
            return  # closed
        clock = self.deps.clock
        cause = "guest agent silent" if reason.startswith("no heartbeat") else f"agent: {reason}"
        evidence = await probe_silence(
            clock, self._connection, self.hooks.heartbeat(), channel.last_heard, cause
        )
        if not evidence.answered:
            self._fail(evidence.reason())
            return
        window = self.deps.options.agent_restart_window
        if self._restarted_at is not None and clock.monotonic() - self._restarted_at < window:
            self._fail(f"guest agent lost again within {window:g} s of its restart: {reason}")
            return
        await self._restart(self._connection, f"{reason}; {evidence.measures()}")

    async def _restart(self, connection: Connection, why: str) -> None:
        self.hooks.agent_note(f"guest agent lost ({why}): starting it again")
        try:
            channel = await self._start_channel(connection)
        except (PcloudError, OSError) as error:
            self._fail(f"guest agent lost and not started again: {self._unlabelled(error)}")
            return
        self._restarted_at = self.deps.clock.monotonic()
        self._attach(channel)
        self.hooks.agent_note(f"guest agent started again: {self.reason}")
        for key, schedule in list(self.schedules.items()):
            with contextlib.suppress(AgentLost):  # lost again: its consumer says so
                await self._send_schedule(channel, key, schedule)

    def _fail(self, reason: str) -> None:
        self._failed = reason
        self._changed.set()
        self.hooks.agent_failed(reason)

    # -- the end --------------------------------------------------------------------

    async def close(self) -> None:
        """End the agent (the instance and its resources keep running)."""
        channel, self.channel = self.channel, None
        self._connection = None
        self.schedules.clear()
        self._failed = self._failed or "the assembly's connection was closed"
        self._changed.set()
        if channel is not None:
            await channel.close()

    def _unlabelled(self, error: BaseException) -> str:
        """The client's messages may start with its label; events have their subject."""
        return str(error).removeprefix(f"{self.label}: ")
