"""One resource: its operations, the state each result leads to, its monitor.

| op      | ok        | not running (7) | hard error (2-6) | other, or timed out |
|---------|-----------|-----------------|------------------|---------------------|
| probe   | RUNNING   | STOPPED         | STOPPED          | FAILED              |
| start   | RUNNING   | FAILED          | UNRECOVERABLE    | FAILED              |
| stop    | STOPPED   | STOPPED         | UNRECOVERABLE    | FAILED (stop failed)|
| monitor | RUNNING   | FAILED          | FAILED           | FAILED              |

A FAILED resource is reported to the engine, which counts it in the failure
window and restarts it or escalates.  A failed stop leaves the resource in an
unknown condition: only fencing its assembly cleans that up.

A start is recorded (state ``starting``, with what it is started with) before
it is sent: once sent it may take effect whatever becomes of its answer, of the
assembly's connection or of this DPE.  Until a probe or a fence says otherwise,
the resource may run there (Pacemaker's rule for a pending operation), for this
engine and for the next one, which restores the record.

The recurring monitor runs here, an operation every interval (passive
monitoring), or in the guest (active: scheduled at the guest agent, which
reports a result only when it changes, and at once when a watched process
dies).  Either way a result is judged as above; failures are "in a row" (for
the restart back-off) unless the resource ran for a whole interval between
them.  An operation that timed out while dped's own loop was stalled
(``dpe.loop_lag``) is run once more before it counts: its answer may have
waited, unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dpe import agents
from dpe.agent_ops import AgentOutcome, agent_result, monitor_key
from dpe.agents import OcfRc
from dpe.engine_agent import Schedule
from dpe.escalation import FailureWindow
from dpe.loop_lag import NOTICED
from dpe.planner import Applied, ResourceStatus
from dpe.states import ResourceState, StateCell, Subject, resource_cell
from foundation.backoff import Retries
from foundation.errors import OperationTimeout, Unavailable
from foundation.model import Resource, ResourceId

if TYPE_CHECKING:
    from dpe.engine_assembly import AssemblyRunner
    from dpe.engine_deps import EngineDeps

_RUNNING_CODES = (OcfRc.OK, OcfRc.RUNNING_MASTER)


@dataclass(frozen=True)
class FailedOp:
    """A resource's last failed operation: a resource left stopped between two tries
    shows what its failed start returned (its last operation is then the stop)."""

    op: str  # probe, start, stop, monitor
    rc: int | None  # None: no answer (timed out)
    reason: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailedOp:
        rc = data.get("rc")
        return cls(
            str(data["op"]),
            rc if isinstance(rc, int) else None,
            str(data["reason"]),
            float(data["time"]),
        )


class ResourceHooks(Protocol):
    def resource_failed(self, runner: ResourceRunner, reason: str) -> None: ...

    def stop_failed(self, runner: ResourceRunner, reason: str) -> None: ...

    def assembly_lost(self, runner: AssemblyRunner, reason: str) -> None: ...

    def resource_changed(self, runner: ResourceRunner) -> None: ...


class ResourceRunner:
    def __init__(
        self, deps: EngineDeps, rid: ResourceId, definition: Resource, hooks: ResourceHooks
    ) -> None:
        self.deps = deps
        self.rid = rid
        self.definition = definition
        self.hooks = hooks
        subject = Subject(deps.deployable, rid.assembly, rid.resource)
        self.cell: StateCell[ResourceState] = resource_cell(subject, deps.emit, deps.clock.time)
        self.window = FailureWindow(definition.escalation)
        self.retries = Retries(deps.options.backoff(free=1))  # restarts in a row
        self.last_op: str | None = None
        self.last_rc: int | None = None
        self.applied: Applied | None = None
        self.retry_at: float | None = None
        self.last_failure: FailedOp | None = None  # until cleaned up or a new instance
        # why the planner cannot start it now (None: it can, or it runs); set by the engine
        self.blocked: str | None = None
        self.monitor: asyncio.Task[None] | None = None
        # why it is being restarted though it did not fail (events say so); set by
        # the engine before a stop, cleared once it runs again
        self.because: str | None = None
        # failed when its deployable did, and that start cleared: its next failure is
        # that one, counted then (recovered, not counted again); cleared once it runs
        self.failed_before = False

    @property
    def state(self) -> ResourceState:
        return self.cell.state

    def status(self) -> ResourceStatus:
        monitoring = self.monitor is not None and not self.monitor.done()
        return ResourceStatus(
            self.state, self.last_op, self.last_rc, self.applied, monitoring, self.retry_at
        )

    # -- operations -------------------------------------------------------------

    async def operate(
        self,
        assembly: AssemblyRunner,
        op: str,
        params: Mapping[str, str],
        interval: float = 0.0,
        resolved: bool = True,
    ) -> bool:
        """Run ``op`` (``monitor`` with interval 0 is the probe); True if it reached its target."""
        kind = "probe" if op == "monitor" and not interval else op
        if kind == "start":
            self.applied = Applied.of(self.definition, params)  # recorded before it is sent
        self._begin(kind)
        try:
            result = await self._run(assembly, op, interval, params)
        except OperationTimeout:
            reason = agents.timeout_reason(kind, self.definition.timeout(op))
            return self._failed(kind, reason, rc=None)
        except Unavailable as error:
            self._interrupted(kind)
            self.hooks.assembly_lost(
                assembly, f"connection lost during {kind} of {self.rid.resource}: {error}"
            )
            return False
        self.last_op, self.last_rc = kind, int(result.rc)
        return self._apply(kind, result, params, resolved)

    async def _run(
        self, assembly: AssemblyRunner, op: str, interval: float, params: Mapping[str, str]
    ) -> agents.AgentResult:
        """The operation's result; once more if it timed out while the loop was stalled."""
        clock = self.deps.clock
        sent = clock.monotonic()
        try:
            return await assembly.run_op(self.definition, op, interval, params)
        except OperationTimeout:
            stalled = clock.lag_since(sent)
            if stalled < NOTICED:
                raise
        assembly.log.warning(
            "%s of %s timed out while this loop was stalled for %.1f s: once more",
            op,
            self.rid.resource,
            stalled,
        )
        return await assembly.run_op(self.definition, op, interval, params)

    def _begin(self, kind: str) -> None:
        if kind in ("start", "stop"):
            self.cancel_monitor()  # a monitor must not judge a resource in mid-change
        because = f": {self.because}" if self.because else ""
        if kind == "start":
            self.cell.set(ResourceState.STARTING, f"starting ({self.definition.agent}){because}")
        elif kind == "stop":
            self.cell.set(ResourceState.STOPPING, f"stopping{because}")

    def _interrupted(self, kind: str) -> None:
        if self.state in (ResourceState.STARTING, ResourceState.STOPPING):
            self.cell.set(ResourceState.UNKNOWN, f"{kind} interrupted: its assembly was lost")

    def _apply(
        self, kind: str, result: agents.AgentResult, params: Mapping[str, str], resolved: bool
    ) -> bool:
        apply = {
            "probe": self._probed,
            "start": self._started,
            "stop": self._stopped,
            "monitor": self._monitored,
        }[kind]
        return apply(result, params, resolved)

    def _probed(
        self, result: agents.AgentResult, params: Mapping[str, str], resolved: bool
    ) -> bool:
        if result.rc in _RUNNING_CODES:
            if self.applied is None and resolved:
                self.applied = Applied.of(self.definition, params)  # found running: as it is
            self.cell.set(ResourceState.RUNNING, "probe: running")
        elif result.rc == OcfRc.NOT_RUNNING or result.hard_error:
            self.applied = None
            text = "not running" if result.rc == OcfRc.NOT_RUNNING else result.reason
            self.cell.set(ResourceState.STOPPED, f"probe: {text}")
        else:
            self._failed("probe", result.reason, int(result.rc))
        self.hooks.resource_changed(self)
        return True  # a probe's answer is information, whatever it is

    def _started(self, result: agents.AgentResult, params: Mapping[str, str], _: bool) -> bool:
        if result.ok:
            self.applied = Applied.of(self.definition, params)
            self.because = None
            self.cell.set(ResourceState.RUNNING, "started")
            return True
        return self._missed("start", result)

    def _stopped(self, result: agents.AgentResult, _: Mapping[str, str], __: bool) -> bool:
        if result.ok or result.rc == OcfRc.NOT_RUNNING:
            self.applied = None
            self.cell.set(ResourceState.STOPPED, "stopped")
            return True
        return self._missed("stop", result)

    def _missed(self, kind: str, result: agents.AgentResult) -> bool:
        """A start or stop that did not reach its target: a hard error is for good."""
        if result.hard_error:
            self._note_failure(kind, result.reason, int(result.rc))
            self.cell.set(ResourceState.UNRECOVERABLE, result.reason)
            self.hooks.stop_failed(self, result.reason)  # it may still run
            return False
        return self._failed(kind, result.reason, int(result.rc))

    def _monitored(self, result: agents.AgentResult, _: Mapping[str, str], __: bool) -> bool:
        if self.state is not ResourceState.RUNNING:
            return False  # answered after something else changed it: not its to judge
        if result.ok:
            self.retries.reset()  # up for a whole interval: failures are no longer in a row
            self.retry_at = None
            self.failed_before = False
            return True
        return self._failed("monitor", result.reason, int(result.rc))

    def _failed(self, kind: str, reason: str, rc: int | None) -> bool:
        self.because = None  # its own failure now
        self._note_failure(kind, reason, rc)
        if kind == "stop":
            self.cell.set(ResourceState.FAILED, reason)
            self.hooks.stop_failed(self, reason)
            return False
        self.cell.set(ResourceState.FAILED, reason)
        delay = self.retries.failed()
        self.retry_at = self.deps.clock.time() + delay if delay else None
        self.hooks.resource_failed(self, reason)
        return False

    def _note_failure(self, kind: str, reason: str, rc: int | None) -> None:
        self.last_failure = FailedOp(kind, rc, reason, self.deps.clock.time())

    def mark_blocked(self, reason: str | None) -> None:
        """Why the planner cannot start it (None: it can now); an event when it cannot,
        and its runtime row says so either way (status shows it)."""
        self.blocked = reason
        if reason is None:
            self.hooks.resource_changed(self)
        else:
            self.cell.note(f"cannot start: {reason}")

    @property
    def failures_in_a_row(self) -> int:
        """Failures since it last ran a whole interval: what the restart back-off counts."""
        return self.retries.failures

    # -- the recurring monitor --------------------------------------------------

    def begin_monitor(
        self, assembly: AssemblyRunner, params: Mapping[str, str], interval: float
    ) -> None:
        self.cancel_monitor()
        recurring = self._agent_monitor if assembly.link.active else self._monitor
        self.monitor = asyncio.create_task(recurring(assembly, dict(params), interval))

    async def _monitor(
        self, assembly: AssemblyRunner, params: dict[str, str], interval: float
    ) -> None:
        while self.state is ResourceState.RUNNING:
            await self.deps.clock.sleep(interval)
            if not await self.operate(assembly, "monitor", params, interval):
                return

    async def _agent_monitor(
        self, assembly: AssemblyRunner, params: dict[str, str], interval: float
    ) -> None:
        """The monitor runs in the guest; its changes are judged here as they come."""
        key = monitor_key(self.rid.resource, interval)
        changes: asyncio.Queue[AgentOutcome] = asyncio.Queue()
        scheduled = self.deps.clock.monotonic()
        link = assembly.link
        try:
            await link.schedule(
                key, Schedule(self.definition, params, interval, changes.put_nowait)
            )
            while self.state is ResourceState.RUNNING:
                outcome = await changes.get()
                if not self._changed(outcome, interval, scheduled):
                    return
        finally:
            link.unschedule(key)  # answered before this resource's next operation runs

    def _changed(self, outcome: AgentOutcome, interval: float, scheduled: float) -> bool:
        """A reported monitor result: False once it failed the resource."""
        if self.state is not ResourceState.RUNNING:
            return False
        try:
            result = agent_result(self.definition, "monitor", outcome)
        except OperationTimeout as timeout:
            self._ran_an_interval(interval, scheduled)
            return self._failed("monitor", str(timeout), rc=None)
        self.last_op, self.last_rc = "monitor", int(result.rc)
        if not result.ok:
            self._ran_an_interval(interval, scheduled)
        return self._monitored(result, {}, False)

    def _ran_an_interval(self, interval: float, scheduled: float) -> None:
        """Up a whole interval before failing: not a failure in a row."""
        if self.deps.clock.monotonic() - scheduled >= interval:
            self.retries.reset()
            self.retry_at = None

    def cancel_monitor(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None and monitor is not asyncio.current_task():
            monitor.cancel()

    async def shutdown(self) -> None:
        monitor = self.monitor
        self.cancel_monitor()
        if monitor is not None:
            await asyncio.gather(monitor, return_exceptions=True)

    # -- forgetting and remembering ---------------------------------------------

    def forget(self, reason: str, *, quietly: bool = False) -> None:
        """Its instance is gone: nothing is known (but a hard error stays).  ``quietly``
        (a stop): a resource already stopped has nothing to report, no event."""
        self.cancel_monitor()
        self.because = None  # a new instance: everything starts for that reason
        self.last_op = self.last_rc = None
        self.applied = None
        self.retries.reset()  # a new instance: its failures are not in a row with these
        self.retry_at = None
        self.last_failure = None
        if quietly and self.state is ResourceState.STOPPED:
            self.cell.reset(ResourceState.UNKNOWN, reason)
        elif self.state is not ResourceState.UNRECOVERABLE:
            self.cell.set(ResourceState.UNKNOWN, reason)
        self.hooks.resource_changed(self)

    def to_doc(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "last_op": self.last_op,
            "last_rc": self.last_rc,
            "failures": list(self.window.times),
            "applied": self.applied.to_dict() if self.applied else None,
            "blocked": self.blocked,
            "retry_at": self.retry_at,
            "failures_in_a_row": self.failures_in_a_row,
            "last_failure": self.last_failure.to_dict() if self.last_failure else None,
        }

    def restore(self, doc: Mapping[str, Any]) -> None:
        """What a previous DPE recorded; the state itself is probed again.  What it
        was started with (a start in flight included) says it may still run."""
        self.window = FailureWindow.restore(self.definition.escalation, doc.get("failures", []))
        self.last_op, self.last_rc = doc.get("last_op"), doc.get("last_rc")
        applied = doc.get("applied")
        self.applied = Applied.from_dict(applied) if applied else None
        failure = doc.get("last_failure")
        self.last_failure = FailedOp.from_dict(failure) if failure else None
        if doc.get("state") == str(ResourceState.UNRECOVERABLE):
            self.cell.set(ResourceState.UNRECOVERABLE, "unrecoverable (recorded before a restart)")
        elif doc.get("state") == str(ResourceState.STARTING):
            self.cell.note("a start was in flight when the previous DPE ended: it may run")
