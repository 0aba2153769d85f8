"""Why a running resource is stopped while the deployable is kept running.

The planner stops a resource that did not fail itself for one of a few
reasons: something ordered before it is not running (a failed resource, a
lost assembly), a parameter that references another assembly's address or
hostname resolves to a new value, or its definition changed.  Its events say
which (``restarting because db/pg failed (order db/pg then web/www)``), so an
administrator reading the log sees a consequence, not a second failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dpe.planner import Applied, AssemblyStatus, ResourceStatus
from dpe.states import AssemblyState, ResourceState
from foundation.model import Constraint, Deployable, Reference, Resource, ResourceId

_DEPTH = 16  # order chains are acyclic; this only bounds a pathological document


@dataclass(frozen=True)
class Seen:
    """What the engine knows when it stops a resource."""

    document: Deployable
    resources: Mapping[ResourceId, ResourceStatus]
    assemblies: Mapping[str, AssemblyStatus]


def restart_cause(
    seen: Seen, rid: ResourceId, definition: Resource, new_params: Mapping[str, str] | None
) -> str | None:
    """Why ``rid`` is restarted (None: no known reason beyond the plan itself)."""
    ordered = _order_cause(seen, rid)
    if ordered is not None:
        return ordered
    applied = seen.resources.get(rid, ResourceStatus()).applied
    if applied is None or new_params is None:
        return None
    return _parameter_cause(applied, definition, new_params)


def _order_cause(seen: Seen, rid: ResourceId) -> str | None:
    """The part not running that ``rid`` is ordered after, however far up, with the chain."""
    chain = _chain_to_stopped(seen, rid, _DEPTH)
    if not chain:
        return None
    orders = ", ".join(f"{c.first} then {c.then}" for c in chain)
    return f"{_what_happened(seen, chain[0].first)} (order {orders})"


def _chain_to_stopped(seen: Seen, rid: ResourceId, depth: int) -> list[Constraint]:
    """Constraints from a part that is not running down to ``rid`` (empty: none)."""
    if depth == 0:
        return []
    before = [c for c in seen.document.constraints if _same(c.then, rid)]
    for constraint in before:
        if not _running(seen, constraint.first):
            return [constraint]
    for constraint in before:
        chain = _chain_to_stopped(seen, constraint.first, depth - 1)
        if chain:
            return [*chain, constraint]
    return []


def _same(end: ResourceId, rid: ResourceId) -> bool:
    """A constraint's end names ``rid`` (a service's end names every copy of it)."""
    return end == rid or (end.is_service and end.resource == rid.resource)


def _copies(seen: Seen, end: ResourceId) -> list[tuple[ResourceId, ResourceStatus]]:
    return [(rid, status) for rid, status in seen.resources.items() if _same(end, rid)]


def _running(seen: Seen, end: ResourceId) -> bool:
    """Some copy runs on an assembly that was not lost (a lost one's last state lingers)."""
    return any(
        status.state is ResourceState.RUNNING and not _lost(seen, rid.assembly)
        for rid, status in _copies(seen, end)
    )


def _lost(seen: Seen, assembly: str) -> bool:
    state = seen.assemblies.get(assembly, AssemblyStatus()).state
    return state in (AssemblyState.FAILED, AssemblyState.FENCING)


def _what_happened(seen: Seen, end: ResourceId) -> str:
    copies = _copies(seen, end)
    for rid, _status in copies:
        if _lost(seen, rid.assembly):
            return f"restarting because assembly {rid.assembly} failed"
    if any(status.state is ResourceState.FAILED for _, status in copies):
        return f"restarting because {end} failed"
    return f"restarting because {end} is not running"


def _parameter_cause(
    applied: Applied, definition: Resource, new_params: Mapping[str, str]
) -> str | None:
    old = dict(applied.params)
    if applied.agent != definition.agent:
        return f"restarting because its agent changed ({applied.agent} -> {definition.agent})"
    changed = sorted(k for k in {*old, *new_params} if old.get(k) != new_params.get(k))
    if not changed:
        return None
    referenced = [k for k in changed if isinstance(definition.parameters.get(k), Reference)]
    if referenced:
        return (
            "restarting because a referenced address changed ("
            + ", ".join(
                f"{k}: {definition.parameters[k]} {old.get(k, '-')} -> {new_params.get(k, '-')}"
                for k in referenced
            )
            + ")"
        )
    return "restarting because its parameters changed (" + ", ".join(changed) + ")"
