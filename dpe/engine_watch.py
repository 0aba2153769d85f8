"""The driver's instance events: a stopped or vanished instance fails its assembly at once.

A driver that is an ``InstanceWatcher`` (libvirt) is watched from the engine's
start until its shutdown.  A report that an assembly's current instance stopped,
crashed or is gone fails that assembly as a lost heartbeat would (fence, create,
probe, start); reports about other instances are ignored.  The heartbeat stays
the safety net for events that never come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dpe.engine_assembly import AssemblyRunner
from dpe.engine_deps import EngineDeps
from dpe.engine_lease import LeaseKeeper
from dpe.engine_log import Context
from dpe.engine_runners import Runners
from dpe.engine_timing import bounded
from dpe.interfaces import DEAD_STATES, InstanceState, InstanceWatcher, Watch
from foundation.errors import PcloudError


@dataclass(eq=False)
class InstanceWatch:
    deps: EngineDeps
    lease: LeaseKeeper
    runners: Runners
    on_lost: Callable[[AssemblyRunner, str], None]
    log: Context
    _watch: Watch | None = field(default=None, init=False)

    async def subscribe(self) -> None:
        """Watch the driver's instance events, if it has them (the heartbeat stays)."""
        driver = self.deps.driver
        if not isinstance(driver, InstanceWatcher) or self._watch is not None:
            return
        try:
            self._watch = await bounded(
                self.deps.clock,
                self.deps.options.driver_timeout,
                driver.watch(self.on_instance_state),
                "watching the instances",
            )
        except (PcloudError, OSError) as error:
            self.log.warning("cannot watch instance events (the heartbeat still runs): %s", error)

    def unsubscribe(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def on_instance_state(self, instance_id: str, state: InstanceState) -> None:
        """The driver says an instance stopped or is gone: a hint, checked against ours."""
        if state not in DEAD_STATES or not self.lease.held:
            return
        runner = self.runners.of_instance(instance_id)
        if runner is None:
            self.log.debug("instance %s %s: not an instance of ours now", instance_id, state)
            return
        self.on_lost(runner, f"instance {instance_id} {state} ({self.deps.driver.name} event)")
