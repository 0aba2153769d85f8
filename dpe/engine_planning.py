"""The policy engine the engine plans with, and what it does while that one fails.

The built-in planner (``dpe.policy.plan``) is the default.  Another planner of
the same shape may be given (``policy_engine = pacemaker``:
``dpe.pacemaker.PacemakerPlanner``).  When it fails, the built-in planner plans
for ``PLANNER_RETRY`` seconds and an event says so: a deployable is never left
without a policy engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dpe.engine_log import Context
from dpe.planner import Observed, Plan
from dpe.policy import plan as builtin_plan
from dpe.states import DeployableState, StateCell
from foundation.clock import Clock
from foundation.model import Deployable

Planner = Callable[[Deployable, Observed], Plan]  # the shape of ``dpe.policy.plan``
PLANNER_RETRY = 60.0  # after a planner failure, the built-in planner plans this long


class FallbackPlanner:
    def __init__(
        self,
        planner: Planner | None,
        clock: Clock,
        cell: StateCell[DeployableState],
        log: Context,
    ) -> None:
        self.planner: Planner = planner or builtin_plan
        self.clock = clock
        self.cell = cell  # the deployable's: its events say when the fallback plans
        self.log = log
        self._down_until = float("-inf")

    async def plan(self, document: Deployable, observed: Observed) -> Plan:
        """The policy engine's plan; the built-in planner's while it cannot answer.

        A planner that runs a program (``blocking``: crm_simulate) runs in a
        thread, so that heartbeats and the lease go on meanwhile.
        """
        if self.planner is builtin_plan or self.clock.time() < self._down_until:
            return builtin_plan(document, observed)
        try:
            if getattr(self.planner, "blocking", False):
                return await asyncio.to_thread(self.planner, document, observed)
            return self.planner(document, observed)
        except Exception as error:  # noqa: BLE001 - any failure: the built-in planner still works
            self._failed(error)
            return builtin_plan(document, observed)

    def _failed(self, error: Exception) -> None:
        """Say so once per retry period, and plan with the built-in planner meanwhile."""
        self._down_until = self.clock.time() + PLANNER_RETRY
        name = getattr(self.planner, "name", "configured")
        reason = f"the {name} policy engine failed ({error}): planning with the built-in"
        reason += f" planner for {PLANNER_RETRY:g} s"
        self.log.warning("%s", reason)
        self.cell.note(reason)
