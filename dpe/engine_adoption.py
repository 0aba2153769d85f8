"""Starting from what is there: a previous DPE's records, the driver's instances.

``restore`` reads the records: failure windows, what each resource was
started with, a ``failed`` deployable (kept, unless this start clears it), and
resources removed while no DPE ran (kept as orphans, so that they are stopped).

``adopt`` asks the driver for the deployable's instances first; without an
answer the engine does not start, so as never to create a duplicate.  Each
assembly keeps one instance (the recorded one if it is alive, else the newest
alive); every other one is destroyed, and so are those of assemblies no longer
in the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dpe.engine_deps import EngineDeps
from dpe.engine_log import Context
from dpe.engine_runners import DeployableLevel, Runners
from dpe.engine_timing import bounded
from dpe.escalation import FailureWindow
from dpe.interfaces import DEAD_STATES, Instance
from dpe.states import DeployableState, ResourceState
from foundation.errors import PcloudError, Unavailable
from foundation.model import Resource, ResourceId
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, RESOURCE, Docs


@dataclass(eq=False)
class Adoption:
    deps: EngineDeps
    level: DeployableLevel
    runners: Runners
    log: Context

    def restore(self, docs: Docs, *, clear_failed: bool, epoch: int | None) -> None:
        deployable = docs.get(DEPLOYABLE, {}).get("", {})
        level = self.level
        level.window = FailureWindow.restore(
            level.document.escalation, deployable.get("failures", [])
        )
        for name, doc in docs.get(ASSEMBLY, {}).items():
            if name in self.runners.assemblies:
                runner = self.runners.assemblies[name]
                runner.window = FailureWindow.restore(
                    runner.definition.escalation, doc.get("failures", [])
                )
        for key, doc in docs.get(RESOURCE, {}).items():
            self._restore_resource(key, doc)
        level.cell.note(f"engine started (lease epoch {epoch})")
        if deployable.get("state") == str(DeployableState.FAILED):
            if clear_failed:
                self._start_as_new(docs)
                level.cell.note("failed state cleared: starting again")
            else:
                level.cell.set(DeployableState.FAILED, deployable.get("reason") or "failed before")

    def _start_as_new(self, docs: Docs) -> None:
        """A start that clears "failed": every failure window empty, as a clean-up
        leaves them, and what had failed is recovered without being counted again
        (a stale pidfile still says failed until a stop)."""
        self.level.window.reset()
        for assembly in self.runners.assemblies.values():
            assembly.window.reset()
        recorded = docs.get(RESOURCE, {})
        for rid, runner in self.runners.resources.items():
            runner.window.reset()
            failed = recorded.get(str(rid), {}).get("state") == str(ResourceState.FAILED)
            runner.failed_before = failed

    def _restore_resource(self, key: str, doc: Mapping[str, Any]) -> None:
        assembly, _, name = key.partition("/")
        rid = ResourceId(assembly, name)
        if rid in self.runners.resources:
            self.runners.resources[rid].restore(doc)
            return
        definition = _definition_from_record(name, doc)  # removed while no DPE ran
        if definition is not None and assembly in self.runners.assemblies:
            runner = self.runners.new_resource(rid, definition)
            runner.restore(doc)
            self.runners.orphans[rid] = runner

    async def adopt(self, recorded: Mapping[str, Any]) -> None:
        """Keep one live instance per assembly (``recorded``: their ids), destroy the rest."""
        by_assembly: dict[str, list[Instance]] = {}
        for instance in await self._discover():
            by_assembly.setdefault(instance.assembly, []).append(instance)
        for name, runner in self.runners.assemblies.items():
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

    async def _discover(self) -> list[Instance]:
        name = self.deps.deployable
        try:
            return await bounded(
                self.deps.clock,
                self.deps.options.driver_timeout,
                self.deps.driver.list(name),
                "listing the instances",
            )
        except (PcloudError, OSError) as error:
            raise Unavailable(
                f"cannot list the instances of {name} ({error}): not starting,"
                " so as never to create a duplicate",
                deployable=name,
            ) from error

    async def _destroy_strays(self, instances: list[Instance], why: str) -> bool:
        cleared = True
        for instance in instances:
            self.log.warning("destroying instance %s: %s", instance.instance_id, why)
            try:
                await bounded(
                    self.deps.clock,
                    self.deps.options.destroy_timeout,
                    self.deps.driver.destroy(instance.instance_id),
                    f"destroying instance {instance.instance_id}",
                )
            except (PcloudError, OSError) as error:
                self.log.error("cannot destroy instance %s: %s", instance.instance_id, error)
                cleared = False
        return cleared


def _choose(found: list[Instance], recorded_id: str | None) -> Instance | None:
    """The instance to adopt: the recorded one if alive, else the newest alive."""
    alive = [i for i in found if i.state not in DEAD_STATES]
    recorded = [i for i in alive if i.instance_id == recorded_id]
    if recorded:
        return recorded[0]
    return max(alive, key=lambda i: i.created_at, default=None)


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
