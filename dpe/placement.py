"""Placement: on which assembly each service runs, as Pacemaker's scheduler decides.

``place(document, observed)`` is pure.  For each service, in colocation order
(a service after those it is colocated with), every candidate assembly gets
the service's location score for it, plus

- the service's stickiness where it runs now;
- +INFINITY where an administrator asked it to move (until it is there);
- each colocation's score where the service it is colocated with was placed
  (INFINITY: only there; -INFINITY: never there);

and is not allowed when it is not running (failed, being fenced or
re-created), when its score is negative (as in Pacemaker, where a negative
score keeps a resource off a node; -INFINITY always), or while the service has failed
there ``migration_threshold`` times, each less than ``failure_timeout`` ago
(Pacemaker's fail count).  The highest score wins; ties go to the candidate
listed first.  A service that may still run on an assembly whose state is not
known yet (one being connected to or fenced) is started nowhere new until it is.

``plan(document, observed)`` then plans the placed document with
``dpe.planner``: each service is a resource pinned where it was placed, and its
copies on the other candidates are orphans (stopped where they run; nothing is
stopped on a failed assembly, which is fenced).  A service starts on its new
assembly only after it stopped on the old one, or after the old one was
fenced; order constraints and references to a service's address follow it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from dpe import planner
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
    colocation_order,
    score_text,
)

NOWHERE = ""  # the pseudo-assembly of services that cannot run anywhere now
_ACTIVE = (
    ResourceState.RUNNING,
    ResourceState.STARTING,
    ResourceState.STOPPING,
    ResourceState.FAILED,
)
# states in which an assembly's instance may exist but what runs there is not known
_UNCERTAIN = (
    AssemblyState.UNKNOWN,
    AssemblyState.CREATING,
    AssemblyState.CONNECTING,
    AssemblyState.FENCING,
    AssemblyState.STOPPING,
)


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

    @property
    def moves(self) -> bool:
        return self.current != self.target


def add_scores(a: int, b: int) -> int:
    """Pacemaker's score addition: -INFINITY wins over INFINITY; clamped."""
    if a <= -INFINITY or b <= -INFINITY:
        return -INFINITY
    if a >= INFINITY or b >= INFINITY:
        return INFINITY
    return max(-INFINITY, min(INFINITY, a + b))


def place(document: Deployable, observed: Observed) -> dict[str, Decision]:
    """Every service's decision, in colocation order."""
    decisions: dict[str, Decision] = {}
    names = [s.name for s in document.services]
    for name in colocation_order(names, document.colocations):
        service = document.service(name)
        assert service is not None
        decisions[name] = _Placer(document, observed, service, decisions).decide()
    return decisions


def possibly_active(status: ResourceStatus) -> bool:
    """It may run: an active state, or not probed yet but running when last known."""
    if status.state in _ACTIVE:
        return True
    return status.state is ResourceState.UNKNOWN and status.applied is not None


def current_location(service: Service, observed: Observed) -> str | None:
    """Where it runs: on a running assembly if it can be (best score), else any."""
    active = [
        a
        for a in service.assemblies
        if observed.resource(ResourceId(a, service.name)).state in _ACTIVE
        and observed.assembly(a).state is not AssemblyState.STOPPED
    ]
    up = [a for a in active if observed.assembly(a).state is AssemblyState.RUNNING]
    location_score = {loc.assembly: loc.score for loc in service.locations}
    return max(up or active, key=location_score.__getitem__, default=None)


def _weight(service: Service, assembly: str, current: str | None) -> int:
    """A service's own score for an assembly (-INFINITY where it may not run)."""
    location = service.location(assembly)
    if location is None:
        return -INFINITY
    sticky = service.stickiness if assembly == current else 0
    return add_scores(location.score, sticky)


def _scaled(weight: int, factor: float) -> int:
    """``weight * factor`` rounded half away from zero, as Pacemaker does (INFINITY
    is a number there too: INFINITY times 40 / INFINITY is 40)."""
    value = weight * factor
    return int(value - 0.5) if value < 0 else int(value + 0.5)


def failures_within(
    times: Iterable[float], service: Service, now: float
) -> tuple[int, float | None]:
    """The failures that still count (not older than failure_timeout), and when the
    oldest of them stops counting (None: never)."""
    counted = sorted(
        t for t in times if not service.failure_timeout or now - t < service.failure_timeout
    )
    if not counted or not service.failure_timeout:
        return len(counted), None
    return len(counted), counted[0] + service.failure_timeout


class _Placer:
    """The placement of one service, given the ones placed before it."""

    def __init__(
        self,
        document: Deployable,
        observed: Observed,
        service: Service,
        decisions: Mapping[str, Decision],
    ) -> None:
        self.doc = document
        self.obs = observed
        self.service = service
        self.decisions = decisions
        self.banned: dict[str, str] = {}
        self.until: float | None = None

    def decide(self) -> Decision:
        current = current_location(self.service, self.obs) or self._former()
        uncertain = self._uncertain()
        scores = self._followers({a: self._score(a, current) for a in self.service.assemblies})
        for assembly, score in scores.items():
            if score < 0:
                self.banned.setdefault(assembly, f"score {score_text(score)} on {assembly}")
        allowed = {a: s for a, s in scores.items() if a not in self.banned}
        target = max(allowed, key=allowed.__getitem__, default=None)  # ties: listed first
        if uncertain and target != current:
            reason = uncertain
            target = current if current in allowed else None
        else:
            reason = self._reason(current, target, allowed)
        return Decision(
            self.service.name, current, target, reason, allowed, dict(self.banned), self.until
        )

    # -- where it runs --------------------------------------------------------

    def _status(self, assembly: str) -> ResourceStatus:
        return self.obs.resource(ResourceId(assembly, self.service.name))

    def _running(self, assembly: str) -> bool:
        return self.obs.assembly(assembly).state is AssemblyState.RUNNING

    def _former(self) -> str | None:
        """An assembly that is no longer a candidate but still runs a copy."""
        former = [a for a in copies_of(self.service, self.obs) if self.service.location(a) is None]
        active = [a for a in former if self._status(a).state in _ACTIVE]
        return active[0] if active else None

    def _uncertain(self) -> str:
        """Why it must not start anywhere new yet (empty: it may)."""
        for assembly in copies_of(self.service, self.obs):
            state = self.obs.assembly(assembly).state
            if state in _UNCERTAIN and possibly_active(self._status(assembly)):
                return f"it may still run on {assembly} (assembly {assembly} is {state})"
        return ""

    # -- scores ---------------------------------------------------------------

    def _score(self, assembly: str, current: str | None) -> int:
        location = self.service.location(assembly)
        assert location is not None
        score = location.score
        if assembly == current:
            score = add_scores(score, self.service.stickiness)
        if self.obs.move_requests.get(self.service.name) == assembly:
            score = add_scores(score, INFINITY)
        score = self._colocated(assembly, score)
        self._ban(assembly, score)
        return score

    def _followers(self, scores: dict[str, int]) -> dict[str, int]:
        """Pacemaker's colocation influence: a service placed with (or apart from)
        this one adds its own preferences here, times score / INFINITY (taken
        away for a negative score) -- unless that would leave this one nowhere."""
        influenced = dict(scores)
        for colocation in self.doc.colocations:
            follower = self.doc.service(colocation.service)
            if colocation.with_ != self.service.name or follower is None:
                continue
            factor = colocation.score / INFINITY
            where = current_location(follower, self.obs)
            for assembly in influenced:
                weight = _weight(follower, assembly, where)
                if factor < 0 and weight < 0:
                    continue  # avoiding an assembly it avoids is no preference for it
                influenced[assembly] = add_scores(influenced[assembly], _scaled(weight, factor))
        allowed = [a for a, v in influenced.items() if a not in self.banned and v >= 0]
        return influenced if allowed else scores

    def _colocated(self, assembly: str, score: int) -> int:
        for colocation in self.doc.colocations:
            if colocation.service != self.service.name:
                continue
            leader = self.decisions.get(colocation.with_)
            where = leader.target if leader else None
            if colocation.score >= INFINITY and where != assembly:
                self.banned.setdefault(
                    assembly,
                    f"must run with {colocation.with_}"
                    + (f", which runs on {where}" if where else ", which runs nowhere"),
                )
            elif colocation.score <= -INFINITY and where == assembly:
                self.banned.setdefault(assembly, f"must not run with {colocation.with_}")
            elif where == assembly and abs(colocation.score) < INFINITY:
                score = add_scores(score, colocation.score)
        return score

    def _ban(self, assembly: str, score: int) -> None:
        state = self.obs.assembly(assembly).state
        if state is not AssemblyState.RUNNING:
            self.banned.setdefault(assembly, f"assembly {assembly} is {state}")
            return
        failed, until = failures_within(
            self.obs.service_failures.get(ResourceId(assembly, self.service.name), ()),
            self.service,
            self.obs.now,
        )
        threshold = self.service.migration_threshold
        if threshold and failed >= threshold:
            self.banned.setdefault(
                assembly,
                f"{failed} failure{'s' if failed > 1 else ''} on {assembly}"
                f" (migration threshold {threshold})",
            )
            if until is not None:
                self.until = until if self.until is None else min(self.until, until)
        if self._status(assembly).state is ResourceState.UNRECOVERABLE:
            self.banned.setdefault(assembly, f"unrecoverable on {assembly}")

    def _reason(self, current: str | None, target: str | None, allowed: Mapping[str, int]) -> str:
        if target is None:
            why = "; ".join(self.banned[a] for a in self.service.assemblies if a in self.banned)
            return f"no assembly may run it: {why}" if why else "no candidate assembly"
        if self.obs.move_requests.get(self.service.name) == target:
            return "moved by the administrator"
        score = f"score {score_text(allowed[target])} on {target}"
        if current is None:
            return f"best allowed assembly ({score})"
        if current in self.banned:
            return f"{self.banned[current]} ({score})"
        if self.service.location(current) is None:
            return f"{current} is no longer one of its assemblies ({score})"
        if current != target:
            return f"{score} against {score_text(allowed[current])} on {current}" + (
                f" (stickiness {self.service.stickiness} included)"
                if self.service.stickiness
                else ""
            )
        return f"stays ({score})"


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


def copies_of(service: Service, observed: Observed) -> list[str]:
    """Where copies of the service may be: its candidates, and the assemblies it was
    on before they stopped being candidates (an orphan copy still to stop)."""
    former = [r.assembly for r in observed.orphans if r.resource == service.name]
    return [*service.assemblies, *sorted(set(former) - set(service.assemblies))]


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
