"""A deployable as Pacemaker sees it, and what-if: ``GET /deployables/{name}/cib``
and ``GET /deployables/{name}/simulate``.

Both start from the stored document and what the deployable's DPE recorded
(``dpe.simulate.observed_from_runtime``).  A deployable that is not running
(nothing recorded, or its DPE recorded it ``stopped``) has no observed state,
and neither answer invents one: its CIB has an empty status section (the
configuration only; Pacemaker would probe everything), and what-if starts from
the steady state, everything up as the document asks
(``dpe.simulate.steady_state``), and says so (``source``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from dpe.cib import export_cib
from dpe.planner import Action, Observed, Plan
from dpe.policy import plan
from dpe.simulate import Windows, observed_from_runtime, plan_to_dot, steady_state, what_if
from foundation.config import POLICY_ENGINES
from foundation.errors import InvalidInput
from foundation.model import Deployable
from foundation.runtime_kinds import ASSEMBLY, INSTANCE, RESOURCE, Docs
from foundation.store import Store

RUNTIME = "runtime"  # planned from what the DPE recorded
STEADY_STATE = "steady_state"  # not running: planned from everything up
MAX_FAILURES = 100
FAILED = "failed"


@dataclass(frozen=True)
class Recorded:
    """The document and what its DPE recorded, read in one snapshot."""

    document: Deployable
    runtime: Docs

    @property
    def state(self) -> str:
        return str(self.runtime.get("deployable", {}).get("", {}).get("state", "stopped"))

    @property
    def running(self) -> bool:
        """Whether there is an observed state: a DPE recorded one and has not stopped."""
        return self.state != "stopped" and any(
            self.runtime.get(kind) for kind in (INSTANCE, ASSEMBLY, RESOURCE)
        )

    def observed(self, now: float) -> tuple[Observed, Windows] | None:
        if not self.running:
            return None
        return observed_from_runtime(self.document, self.runtime, now)


def read_recorded(store: Store, name: str) -> Recorded:
    """NotFound for an unknown deployable."""
    with store.snapshot():
        return Recorded(store.get_document(name), store.get_runtime(name))


# ---------------------------------------------------------------------------
# the CIB


def cib_answer(recorded: Recorded, now: float) -> dict[str, Any]:
    """The CIB, with its status section only when there is an observed state."""
    found = recorded.observed(now)
    return {
        "deployable": recorded.document.name,
        "state": recorded.state,
        "source": RUNTIME if found else "document",
        "cib": export_cib(recorded.document, found[0] if found else None),
    }


# ---------------------------------------------------------------------------
# what-if


Planner = Callable[[Deployable, Observed], Plan]


def parse_fail_query(text: str | None) -> list[str]:
    """``fail=a,b/r``: the parts to fail (dpe.simulate checks each against the document)."""
    if not text:
        return []
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > MAX_FAILURES:
        raise InvalidInput(f"invalid fail: at most {MAX_FAILURES} parts")
    return parts


def planner_named(name: str, timeout: float = 10.0) -> Planner:
    """The planner of a policy engine (``pacemaker``: crm_simulate; Unavailable without it)."""
    if name not in POLICY_ENGINES:
        message = f"must be one of {', '.join(POLICY_ENGINES)}: {name!r}"
        details = [{"path": "policy_engine", "message": message}]
        raise InvalidInput(f"invalid policy_engine: {message}", details=details)
    if name == "builtin":
        return plan
    from dpe.pacemaker import PacemakerPlanner

    return PacemakerPlanner(timeout=timeout)


def simulate_answer(
    recorded: Recorded, failures: list[str], engine: str, now: float
) -> dict[str, Any]:
    """What the engine would do if ``failures`` happened now (runs crm_simulate for pacemaker)."""
    planner = planner_named(engine)
    found = recorded.observed(now)
    observed, windows = found if found else (steady_state(recorded.document, now), Windows())
    result = what_if(recorded.document, observed, failures, windows=windows, planner=planner)
    if recorded.state == FAILED:  # escalation was exhausted: its DPE acts no more
        note = f"{recorded.document.name} is failed: no recovery until it is started again"
        result = replace(result, plan=Plan(), notes=(*result.notes, note), given_up=True)
    steps = in_order(result.plan)
    return {
        "deployable": recorded.document.name,
        "state": recorded.state,
        "source": RUNTIME if found else STEADY_STATE,
        "policy_engine": engine,
        "failures": [str(f) for f in result.failures],
        "notes": list(result.notes),
        "given_up": result.given_up,
        "placements": [decision.to_dict() for decision in result.placements],
        "actions": _actions(result.plan, steps),
        "blocked": [
            {"resource": str(rid), "reason": why}
            for rid, why in sorted(result.plan.blocked.items(), key=lambda item: str(item[0]))
        ],
        "dot": plan_to_dot(_reordered(result.plan, steps), recorded.document.name),
    }


def in_order(plan: Plan) -> list[Action]:
    """The actions so that each comes after what it waits for (else in the plan's order)."""
    before = plan.predecessors()
    done: set[Action] = set()
    ordered: list[Action] = []
    pending = list(plan.actions)
    while pending:
        ready = [a for a in pending if before[a] <= done] or pending[:1]  # a cycle: go on
        for action in ready:
            ordered.append(action)
            done.add(action)
        pending = [a for a in pending if a not in done]
    return ordered


def _actions(plan: Plan, steps: Iterable[Action]) -> list[dict[str, Any]]:
    ordered = list(steps)
    number = {action: i for i, action in enumerate(ordered, 1)}
    before = plan.predecessors()
    return [
        {
            "step": number[action],
            "action": str(action.kind),
            "assembly": action.assembly,
            "resource": action.resource,
            "interval": action.interval or None,
            "text": str(action),
            "after": sorted(number[first] for first in before[action]),
        }
        for action in ordered
    ]


def _reordered(plan: Plan, steps: list[Action]) -> Plan:
    return Plan(tuple(steps), plan.edges, plan.params, plan.blocked, plan.wake_at)
