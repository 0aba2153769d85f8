"""Placement: on which assembly each service runs, as Pacemaker's scheduler decides.

``place(document, observed)`` is pure.  ``dpe.assignment`` assigns each service
an assembly exactly as Pacemaker would (location scores, stickiness, fail counts
against ``migration_threshold`` and ``failure_timeout``, colocation, the order in
which ties are broken), plus two rules of ours: a service whose stop failed
stays where it is until that assembly is fenced, and a service that may still
run on an assembly whose state is not known yet (one being connected to or
fenced) is started nowhere new until it is.  Each ``Decision`` says where the
service runs, where it goes, and why, with each candidate's score term by term
(``Decision.explain``).

``plan(document, observed)`` then plans the placed document with
``dpe.planner``: each service is a resource pinned where it was placed, and its
copies on the other candidates are orphans (stopped where they run; nothing is
stopped on a failed assembly, which is fenced).  A service starts on its new
assembly only after it stopped on the old one, or after the old one was
fenced; order constraints and references to a service's address follow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dpe import planner
from dpe.assignment import (
    Assignment,
    Score,
    add_scores,
    assign,
    copies_of,
    current_location,
    fail_count,
    may_run,
    possibly_active,
)
from dpe.planner import (
    Action,
    ActionKind,
    Applied,
    AssemblyStatus,
    Edge,
    Goal,
    Move,
    Observed,
    Plan,
    ResourceStatus,
)
from dpe.states import AssemblyState, ResourceState
from foundation.model import (
    INFINITY,
    Assembly,
    Constraint,
    Deployable,
    Reference,
    Resource,
    ResourceId,
    Service,
    score_text,
)

__all__ = ["Decision", "add_scores", "copies_of", "place", "plan", "possibly_active"]

NOWHERE = ""  # the pseudo-assembly of services that cannot run anywhere now


@dataclass(frozen=True)
class Decision:
    """Where one service runs now and where it should run, with the scores."""

    service: str
    current: str | None
    target: str | None
    reason: str
    scores: Mapping[str, int] = field(default_factory=dict)  # allowed candidates only
    banned: Mapping[str, str] = field(default_factory=dict)  # candidate -> why not
    until: float | None = None  # a failure ban ends then: place again
    candidates: Mapping[str, Score] = field(default_factory=dict)  # each score, term by term
    tie: str = ""  # how equal scores were told apart
    notes: tuple[str, ...] = ()  # preferences left out

    @property
    def moves(self) -> bool:
        return self.current != self.target

    def headline(self) -> str:
        """What happens to the service, in a few words, and why."""
        if self.target is None:
            where = f"stops on {self.current}" if self.current else "runs nowhere"
        elif self.current is None:
            where = f"starts on {self.target}"
        elif self.moves:
            where = f"moves from {self.current} to {self.target}"
        else:
            where = f"stays on {self.target}"
        return f"{self.service} {where}: {self.reason}"

    def explain(self) -> list[str]:
        """The headline, then each candidate's score term by term, then what was left out."""
        lines = [self.headline()]
        for assembly, score in self.candidates.items():
            lines.append(f"  {assembly}: {self._candidate(assembly, score)}")
        lines += [f"  note: {note}" for note in self.notes]
        return lines

    def _candidate(self, assembly: str, score: Score) -> str:
        terms = _sum_text(score)
        if assembly in self.banned:
            return f"{terms}; not allowed: {self.banned[assembly]}"
        return terms

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "current": self.current,
            "target": self.target,
            "moves": self.moves,
            "reason": self.reason,
            "tie": self.tie or None,
            "until": self.until,
            "candidates": [
                {
                    "assembly": assembly,
                    "score": score_text(score.value),
                    "allowed": assembly not in self.banned,
                    "why_not": self.banned.get(assembly),
                    "terms": [{"score": score_text(t.amount), "why": t.why} for t in score.terms],
                }
                for assembly, score in self.candidates.items()
            ],
            "notes": list(self.notes),
            "explanation": self.explain(),
        }


def _sum_text(score: Score) -> str:
    """``160 = 50 location score + 60 stickiness (it runs here)``."""
    parts = []
    for i, term in enumerate(score.terms):
        amount = score_text(term.amount)
        if i == 0:
            parts.append(f"{amount} {term.why}")
        elif term.amount < 0:
            parts.append(f"- {str(amount).lstrip('-')} {term.why}")
        else:
            parts.append(f"+ {amount} {term.why}")
    return f"{score_text(score.value)} = {' '.join(parts)}" if parts else "no score"


def place(document: Deployable, observed: Observed) -> dict[str, Decision]:
    """Every service's decision, in document order."""
    return {
        name: _decision(document, observed, assignment)
        for name, assignment in assign(document, observed).items()
    }


def _decision(document: Deployable, observed: Observed, assignment: Assignment) -> Decision:
    service = document.service(assignment.service)
    assert service is not None
    current = current_location(service, observed) or _former(service, observed)
    up = {a for a in assignment.scores if _up(observed, a)}
    allowed = {a: s.value for a, s in assignment.scores.items() if a in up and s.value >= 0}
    banned = {a: _why_not(observed, a, s) for a, s in assignment.scores.items() if a not in allowed}
    reason = assignment.held or _reason(service, observed, current, assignment, allowed, banned)
    return Decision(
        service.name,
        current,
        assignment.target,
        reason,
        allowed,
        banned,
        _ban_ends(service, observed),
        assignment.scores,
        assignment.tie,
        assignment.notes,
    )


def _up(observed: Observed, assembly: str) -> bool:
    return observed.assembly(assembly).state is AssemblyState.RUNNING


def _former(service: Service, observed: Observed) -> str | None:
    """An assembly that is no longer a candidate but still runs a copy."""
    former = [a for a in copies_of(service, observed) if service.location(a) is None]
    active = [a for a in former if may_run(observed.resource(ResourceId(a, service.name)))]
    return active[0] if active else None


def _why_not(observed: Observed, assembly: str, score: Score) -> str:
    if not _up(observed, assembly):
        return f"assembly {assembly} is {observed.assembly(assembly).state}"
    ban = next((t for t in score.terms[1:] if t.amount <= -INFINITY), None)
    return ban.why if ban is not None else f"score {score_text(score.value)} on {assembly}"


def _ban_ends(service: Service, observed: Observed) -> float | None:
    """When the first failure ban in force ends (the service is placed again then)."""
    ends = []
    for assembly in service.assemblies:
        times = observed.service_failures.get(ResourceId(assembly, service.name), ())
        failed, until = fail_count(times, service, observed.now)
        threshold = service.migration_threshold
        if _up(observed, assembly) and threshold and failed >= threshold and until is not None:
            ends.append(until)
    return min(ends, default=None)


def _reason(
    service: Service,
    observed: Observed,
    current: str | None,
    assignment: Assignment,
    allowed: Mapping[str, int],
    banned: Mapping[str, str],
) -> str:
    target = assignment.target
    if target is None:
        why = "; ".join(banned[a] for a in service.assemblies if a in banned)
        return f"no assembly may run it: {why}" if why else "no candidate assembly"
    if observed.move_requests.get(service.name) == target:
        return "moved by the administrator"
    score = f"score {score_text(allowed[target])} on {target}"
    if assignment.tie:
        score += f"; {assignment.tie}"
    if current is None:
        return f"best allowed assembly ({score})"
    if current in banned:
        return f"{banned[current]} ({score})"
    if service.location(current) is None:
        return f"{current} is no longer one of its assemblies ({score})"
    if current != target:
        return f"{score} against {score_text(allowed[current])} on {current}" + (
            f" (stickiness {score_text(service.stickiness)} included)" if service.stickiness else ""
        )
    return f"the best allowed ({score})"


def steady_services(
    document: Deployable, assemblies: Mapping[str, AssemblyStatus], now: float = 0.0
) -> dict[ResourceId, ResourceStatus]:
    """Everything running as the document asks, each service where it would be placed
    (its other copies stopped), references resolved to where services run."""
    stopped = ResourceStatus(ResourceState.STOPPED, "probe", 7)
    start = Observed(Goal.RUN, assemblies, dict.fromkeys(document.service_placements(), stopped))
    placed, _ = materialize(document, start, place(document, replace(start, now=now)))
    resources = dict(start.resources)
    for rid in placed.resource_ids():
        definition = placed.resource(rid)
        if rid.assembly == NOWHERE or definition is None:
            continue
        applied = Applied.of(definition, planner.resolve(definition, assemblies) or {})
        resources[rid] = ResourceStatus(ResourceState.RUNNING, "start", 0, applied, True)
    return resources


# ---------------------------------------------------------------------------
# planning the placed document


def plan(document: Deployable, observed: Observed) -> Plan:
    """Place the services, then plan them as resources pinned where they were placed."""
    decisions = place(document, observed)
    if observed.goal is Goal.STOP:
        decisions = {n: replace(d, target=d.current) for n, d in decisions.items()}
    placed, placed_observed = materialize(document, observed, decisions)
    pinned = planner.plan_pinned(placed, placed_observed)
    return _finish(document, observed, decisions, pinned)


def materialize(
    document: Deployable, observed: Observed, decisions: Mapping[str, Decision]
) -> tuple[Deployable, Observed]:
    """The document with each service as a resource on its assembly, and the state
    with its copies elsewhere as orphans (what runs there must be stopped)."""
    targets = {name: d.target or NOWHERE for name, d in decisions.items()}
    definitions = {s.name: _placed_resource(s.resource, targets) for s in document.services}
    assemblies = [
        replace(
            a,
            resources=(
                *(_placed_resource(r, targets) for r in a.resources),
                *_services_on(a.name, targets, definitions),
            ),
        )
        for a in document.assemblies
    ]
    nowhere = _services_on(NOWHERE, targets, definitions)
    if nowhere and observed.goal is Goal.RUN:
        assemblies.append(Assembly(NOWHERE, "", resources=nowhere))
    constraints = tuple(_placed_constraint(c, targets) for c in document.constraints)
    if observed.goal is Goal.STOP:
        constraints = tuple(c for c in constraints if not (c.first.is_service or c.then.is_service))
    orphans = {
        rid: definitions[rid.resource]
        for rid in document.service_placements()
        if rid.assembly != targets[rid.resource]
    }
    placed = replace(
        document,
        assemblies=tuple(assemblies),
        constraints=constraints,
        services=(),
        colocations=(),
    )
    placed_observed = replace(
        observed,
        orphans={**observed.orphans, **orphans},
        orphan_constraints=(
            *observed.orphan_constraints,
            *_orphan_constraints(document, observed, set(orphans) | set(observed.orphans)),
        ),
    )
    return placed, placed_observed


def _placed_resource(resource: Resource, targets: Mapping[str, str]) -> Resource:
    """References to a service's address become references to its assembly's."""
    params = {
        key: Reference(targets[value.assembly], value.attribute)
        if isinstance(value, Reference) and targets.get(value.assembly)
        else value
        for key, value in resource.parameters.items()
    }
    return replace(resource, parameters=params)


def _services_on(
    assembly: str, targets: Mapping[str, str], definitions: Mapping[str, Resource]
) -> tuple[Resource, ...]:
    return tuple(definitions[name] for name, where in targets.items() if where == assembly)


def _placed_end(rid: ResourceId, targets: Mapping[str, str]) -> ResourceId:
    return ResourceId(targets[rid.resource], rid.resource) if rid.is_service else rid


def _placed_constraint(constraint: Constraint, targets: Mapping[str, str]) -> Constraint:
    return Constraint(_placed_end(constraint.first, targets), _placed_end(constraint.then, targets))


def _orphan_constraints(
    document: Deployable, observed: Observed, orphans: set[ResourceId]
) -> list[Constraint]:
    """How copies left behind (on candidates, or on former ones) are ordered with
    the rest, so that they stop in order."""
    copies = {
        s.name: [ResourceId(a, s.name) for a in copies_of(s, observed)] for s in document.services
    }
    result = []
    for constraint in document.constraints:
        firsts = _ends(constraint.first, copies)
        thens = _ends(constraint.then, copies)
        result += [Constraint(f, t) for f in firsts for t in thens if f in orphans or t in orphans]
    return result


def _ends(rid: ResourceId, copies: Mapping[str, list[ResourceId]]) -> list[ResourceId]:
    return copies.get(rid.resource, []) if rid.is_service else [rid]


def _finish(
    document: Deployable,
    observed: Observed,
    decisions: Mapping[str, Decision],
    pinned: Plan,
) -> Plan:
    """The pinned plan, with a service's start after its copies elsewhere are gone."""
    edges = set(pinned.edges) | set(handover_edges(document, observed, pinned))
    blocked = dict(pinned.blocked)
    wake_at = pinned.wake_at
    for name, decision in decisions.items():
        if decision.target is None and observed.goal is Goal.RUN:
            blocked[ResourceId(NOWHERE, name)] = decision.reason
        if decision.until is not None:
            wake_at = decision.until if wake_at is None else min(wake_at, decision.until)
    moves = () if pinned.probing or observed.goal is Goal.STOP else _moves(decisions)
    return replace(pinned, edges=frozenset(edges), blocked=blocked, wake_at=wake_at, moves=moves)


def handover_edges(document: Deployable, observed: Observed, pinned: Plan) -> list[Edge]:
    """A service's start after its stop elsewhere, after the fence of an assembly
    where it may still run, and after the stop of a service kept apart from it."""
    by_kind: dict[tuple[ActionKind, str, str | None], Action] = {
        (a.kind, a.assembly, a.resource): a for a in pinned.actions
    }
    edges: list[Edge] = []
    for service in document.services:
        for target in service.assemblies:
            start = by_kind.get((ActionKind.START, target, service.name))
            if start is None:
                continue
            for other in copies_of(service, observed):
                if other == target:
                    continue
                stop = by_kind.get((ActionKind.STOP, other, service.name))
                if stop is not None:
                    edges.append((stop, start))
                fence = by_kind.get((ActionKind.FENCE, other, None))
                if fence is not None and possibly_active(
                    observed.resource(ResourceId(other, service.name))
                ):
                    edges.append((fence, start))
            for rival in _kept_apart(document, service.name):
                stop = by_kind.get((ActionKind.STOP, target, rival))
                if stop is not None:  # it leaves before this one comes
                    edges.append((stop, start))
    return edges


def _kept_apart(document: Deployable, name: str) -> set[str]:
    """The services that must never share an assembly with ``name``."""
    apart = set()
    for colocation in document.colocations:
        if colocation.score <= -INFINITY and name in (colocation.service, colocation.with_):
            apart.add(colocation.with_ if colocation.service == name else colocation.service)
    return apart


def _moves(decisions: Mapping[str, Decision]) -> tuple[Move, ...]:
    return tuple(
        Move(d.service, d.current, d.target, d.reason) for d in decisions.values() if d.moves
    )
