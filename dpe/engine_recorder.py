"""Events and records: what ``status`` shows and what the next DPE adopts.

Every state change reaches ``emit``: it is appended to the event log, the
record of its subject (resource, assembly or the deployable) is saved, it is
logged as ``deployable=… assembly=…: state: reason``, and the listeners hear
of it.  A DPE without the lease writes nothing: the records are its
successor's now.  A write the store does not take now waits in order in the
``Outbox`` for the next renewal; one it refuses for the lease's sake
(``LeaseLost``) fences this DPE at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from dpe.engine_assembly import AssemblyRunner
from dpe.engine_lease import LeaseKeeper
from dpe.engine_log import Context
from dpe.engine_resource import ResourceRunner
from dpe.engine_runners import DeployableLevel, Runners
from dpe.interfaces import Instance
from dpe.outbox import Outbox
from dpe.runtime import Runtime
from dpe.states import ResourceState
from foundation.errors import LeaseLost, PcloudError
from foundation.events import Event
from foundation.model import ResourceId
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, DOCUMENT, INSTANCE, RESOURCE

log = logging.getLogger("dpe.engine")
T = TypeVar("T")

Listener = Callable[[Event], None]


class Recorder:
    def __init__(
        self,
        runtime: Runtime,
        lease: LeaseKeeper,
        level: DeployableLevel,
        runners: Runners,
        on_running: Callable[[ResourceId], None],
    ) -> None:
        self.runtime = runtime
        self.lease = lease
        self.level = level
        self.runners = runners
        self.on_running = on_running  # a resource is running (a requested move may be done)
        self.log = Context(log, deployable=level.document.name)
        self.listeners: list[Listener] = []
        self.outbox = Outbox(self.log)  # writes waiting for the store to answer again

    def emit(self, event: Event) -> None:
        if not self.lease.held:
            self.log.info(
                "not recorded (no lease): %s %s: %s", event.subject, event.state, event.reason
            )
            return
        recorded = self._write(
            partial(self.runtime.append_event, event), f"event {event.subject} {event.state}"
        )
        if not self.lease.held:
            return  # refused: this DPE acts no more
        event = recorded or event
        self._save_subject(event)
        Context(
            log, deployable=event.deployable, assembly=event.assembly, resource=event.resource
        ).info("%s: %s", event.state, event.reason)
        for listener in self.listeners:
            listener(event)

    def _save_subject(self, event: Event) -> None:
        if event.resource and event.assembly:
            rid = ResourceId(event.assembly, event.resource)
            runner = self.runners.find(rid)
            if runner is not None:
                self.save_resource(runner)
                if runner.state is ResourceState.RUNNING:
                    self.on_running(rid)
        elif event.assembly:
            if event.assembly in self.runners.assemblies:
                self.save_assembly(self.runners.assemblies[event.assembly])
        else:
            self.save_deployable()

    def save_resource(self, runner: ResourceRunner) -> None:
        self.put(RESOURCE, str(runner.rid), runner.to_doc())

    def save_assembly(self, runner: AssemblyRunner) -> None:
        doc: dict[str, Any] = {"state": str(runner.state), "reason": runner.cell.reason}
        doc |= {"failures": list(runner.window.times), "monitoring": runner.monitoring_doc()}
        self.put(ASSEMBLY, runner.name, doc)

    def save_instance(self, runner: AssemblyRunner) -> None:
        instance = runner.instance
        if instance is None:
            self.delete(INSTANCE, runner.name)
        else:
            self.put(INSTANCE, runner.name, instance_doc(instance))

    def save_deployable(self) -> None:
        self.put(DEPLOYABLE, "", self.level.to_doc())

    def save_document(self) -> None:
        """The document this DPE runs: what a reload would change is measured against it."""
        self.put(DOCUMENT, "", self.level.document.to_dict())

    def forget_runtime(self) -> None:
        """Stopped: nothing left to adopt; only the final state stays."""
        with contextlib.suppress(PcloudError):
            self.runtime.delete()
        self.save_deployable()

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        if not self.lease.held:
            return  # a DPE without the lease must not overwrite its successor's state
        self._write(partial(self.runtime.put, kind, key, doc), f"{kind} {key}")

    def delete(self, kind: str, key: str) -> None:
        if not self.lease.held:
            return
        self._write(partial(self.runtime.delete, kind, key), f"the end of {kind} {key}")

    def flush_outbox(self) -> None:
        """Write what waited for the store (after a renewal: it answers again)."""
        try:
            self.outbox.flush()
        except LeaseLost as error:
            self.lease.lose(f"the store refused a write: {error}")

    def _write(self, op: Callable[[], T], what: str) -> T | None:
        """Write to the store now, or later in order if it does not answer (``Outbox``);
        a write refused for the lease's sake fences this DPE."""
        try:
            return self.outbox.write(op, what)
        except LeaseLost as error:
            self.lease.lose(f"the store refused a write: {error}")
            return None


def instance_doc(instance: Instance) -> dict[str, Any]:
    doc = dataclasses.asdict(instance)
    doc["state"] = str(instance.state)
    return doc
