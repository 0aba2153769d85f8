"""The built-in policy engine: from document + observed state to a transition graph.

``plan(document, observed)`` is a pure function (no I/O, no clock).  Its input
is what a Pacemaker CIB is made of -- nodes (assemblies and whether they are
up), primitives pinned to them with their parameters, mandatory order
constraints, and each resource's op history (last op, rc, the parameters it
was started with) -- so the same input can be exported as a CIB and the
decisions compared with ``crm_simulate``.  Its output is a set of actions
``(kind, assembly, resource, interval)`` with ordering edges.

Rules:

- a FAILED assembly is fenced, then re-created (not one ``refused``: its
  instance presented another host key; it is left alone); an assembly without an
  instance is created; nothing is scheduled on an assembly that is not RUNNING;
- resources not probed on their current instance are probed first, and
  nothing else is decided until the probes are in;
- resources start in constraint order; a failed resource is stopped and
  started again, with the resources ordered after it stopped before it (in
  reverse order) and started after it;
- a running resource whose resolved parameters differ from the ones it was
  started with (a referenced assembly came back with a new address) is
  restarted, and so is everything ordered after it;
- an UNRECOVERABLE resource is left alone, and what is ordered after it cannot
  start (``Plan.blocked`` says why);
- stopping the deployable stops resources in reverse order, then fences every
  instance (an adopted one once connected and probed: what runs on it is stopped
  first); resources no longer in the document (``orphans``) are stopped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from dpe.states import AssemblyState, ResourceState
from foundation.model import Constraint, Deployable, Reference, Resource, ResourceId


class Goal(StrEnum):
    RUN = "run"
    STOP = "stop"


class ActionKind(StrEnum):
    CREATE = "create"  # a new instance for the assembly
    FENCE = "fence"  # destroy the assembly's instance(s): they never come back
    PROBE = "probe"  # monitor with interval 0: is it running?
    STOP = "stop"
    START = "start"
    MONITOR = "monitor"  # begin the recurring monitor at ``interval``


class Action(NamedTuple):  # a tuple: hashed and compared in C, ordered by its fields
    kind: ActionKind
    assembly: str
    resource: str | None = None
    interval: float = 0.0

    @property
    def rid(self) -> ResourceId | None:
        return ResourceId(self.assembly, self.resource) if self.resource else None

    def __str__(self) -> str:
        subject = f"{self.assembly}/{self.resource}" if self.resource else self.assembly
        every = f" every {self.interval:g} s" if self.kind is ActionKind.MONITOR else ""
        return f"{self.kind} {subject}{every}"


@dataclass(frozen=True)
class Applied:
    """What a running resource was started with: its agent and resolved parameters."""

    agent: str
    params: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, resource: Resource, params: Mapping[str, str]) -> Applied:
        return cls(resource.agent, tuple(sorted(params.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Applied:
        params = data.get("params", {})
        return cls(str(data["agent"]), tuple(sorted((str(k), str(v)) for k, v in params.items())))


@dataclass(frozen=True)
class ResourceStatus:
    """A resource's op history, as much as the planner needs of it."""

    state: ResourceState = ResourceState.UNKNOWN
    last_op: str | None = None  # probe, start, stop, monitor
    last_rc: int | None = None
    applied: Applied | None = None
    monitoring: bool = False  # its recurring monitor is running
    retry_at: float | None = None  # backing off after failures in a row: no start before


@dataclass(frozen=True)
class AssemblyStatus:
    state: AssemblyState = AssemblyState.UNKNOWN
    address: str | None = None  # of the current instance, once known
    hostname: str | None = None
    # FAILED because its instance is not to be trusted (a host key mismatch): left
    # alone, neither fenced nor re-created, while the deployable runs
    refused: bool = False
    # an instance adopted from a previous DPE, not connected yet: what runs on it
    # is unknown and may be running, like a resource not probed yet
    adopting: bool = False


# what is known of what was never seen (shared: frozen, and asked for thousands of times)
_NO_ASSEMBLY = AssemblyStatus()
_NO_RESOURCE = ResourceStatus()


@dataclass(frozen=True)
class Observed:
    goal: Goal
    assemblies: Mapping[str, AssemblyStatus]
    resources: Mapping[ResourceId, ResourceStatus]
    # resources (and their order) no longer in the document that may still run
    orphans: Mapping[ResourceId, Resource] = field(default_factory=dict)
    orphan_constraints: tuple[Constraint, ...] = ()
    now: float = 0.0  # the time ``retry_at`` is compared with
    # services: failure times of each on each assembly (``ASSEMBLY/SERVICE``), and
    # the moves an administrator asked for (service -> assembly)
    service_failures: Mapping[ResourceId, tuple[float, ...]] = field(default_factory=dict)
    move_requests: Mapping[str, str] = field(default_factory=dict)

    def assembly(self, name: str) -> AssemblyStatus:
        return self.assemblies.get(name, _NO_ASSEMBLY)

    def resource(self, rid: ResourceId) -> ResourceStatus:
        return self.resources.get(rid, _NO_RESOURCE)


Edge = tuple[Action, Action]  # (before, after)


@dataclass(frozen=True)
class Move:
    """Where a service goes (``dpe.placement``), from where, and why."""

    service: str
    source: str | None  # the assembly it runs on now; None: nowhere
    target: str | None  # the assembly chosen for it; None: it can run nowhere
    reason: str

    def __str__(self) -> str:
        return f"move {self.service}: {self.source or 'nowhere'} -> {self.target or 'nowhere'}" + (
            f" ({self.reason})" if self.reason else ""
        )


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    edges: frozenset[Edge] = frozenset()
    params: Mapping[Action, Mapping[str, str]] = field(default_factory=dict)
    blocked: Mapping[ResourceId, str] = field(default_factory=dict)  # why it cannot start
    wake_at: float | None = None  # plan again then: a back-off ends
    moves: tuple[Move, ...] = ()  # services placed somewhere else than they run

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def probing(self) -> bool:
        """Only probes (and fences or creates) were decided: the rest waits for them."""
        return any(a.kind is ActionKind.PROBE for a in self.actions)

    def predecessors(self) -> dict[Action, set[Action]]:
        before: dict[Action, set[Action]] = {a: set() for a in self.actions}
        for first, then in self.edges:
            before[then].add(first)
        return before

    def describe(self) -> list[str]:
        """One line per action with what it waits for (logs, debugging); moves first."""
        before = self.predecessors()
        lines = [str(move) for move in self.moves]
        for action in self.actions:
            after = ", ".join(sorted(map(str, before[action])))
            lines.append(f"{action} (after {after})" if after else str(action))
        return lines


def plan_pinned(document: Deployable, observed: Observed) -> Plan:
    """``plan`` for a document whose resources are all pinned to an assembly."""
    return _Builder(document, observed).build()


def resolve(resource: Resource, assemblies: Mapping[str, AssemblyStatus]) -> dict[str, str] | None:
    """The resource's parameters with references replaced; None if one is unknown yet."""
    values: dict[str, str] = {}
    for name, value in resource.parameters.items():
        if isinstance(value, Reference):
            resolved = _reference_value(value, assemblies)
            if resolved is None:
                return None
            values[name] = resolved
        else:
            values[name] = value
    return values


def literal_params(resource: Resource) -> dict[str, str]:
    """The parameters that are plain values (references left out)."""
    return {k: v for k, v in resource.parameters.items() if isinstance(v, str)}


def unresolved(resource: Resource, assemblies: Mapping[str, AssemblyStatus]) -> Reference | None:
    return next((r for r in resource.references() if _reference_value(r, assemblies) is None), None)


def start_order(ids: Iterable[ResourceId], constraints: Iterable[Constraint]) -> list[ResourceId]:
    """Resources in an order that respects every constraint (ties: given order)."""
    ids = list(ids)
    position = {rid: i for i, rid in enumerate(ids)}
    thens: dict[ResourceId, list[ResourceId]] = {rid: [] for rid in ids}
    waiting = dict.fromkeys(ids, 0)
    for c in constraints:
        if c.first in position and c.then in position:
            thens[c.first].append(c.then)
            waiting[c.then] += 1
    ready = [i for i, rid in enumerate(ids) if waiting[rid] == 0]  # a heap of positions
    order: list[ResourceId] = []
    while ready:
        rid = ids[heapq.heappop(ready)]
        order.append(rid)
        for then in thens[rid]:
            waiting[then] -= 1
            if waiting[then] == 0:
                heapq.heappush(ready, position[then])
    if len(order) != len(ids):  # a cycle: the model refuses them, stay total anyway
        order += [rid for rid in ids if rid not in order]
    return order


def _reference_value(ref: Reference, assemblies: Mapping[str, AssemblyStatus]) -> str | None:
    status = assemblies.get(ref.assembly)
    if status is None or status.state is not AssemblyState.RUNNING:
        return None
    return status.address if ref.attribute == "ipaddress" else status.hostname


BACKING_OFF = "backing off after failures in a row"
_UP = (ResourceState.RUNNING,)
_NEEDS_PROBE = (ResourceState.UNKNOWN, ResourceState.STARTING, ResourceState.STOPPING)


class _Builder:
    """One planning run: collects actions, edges and parameters."""

    def __init__(self, document: Deployable, observed: Observed) -> None:
        self.doc = document
        self.obs = observed
        self.definitions: dict[ResourceId, Resource] = {}
        for assembly in document.assemblies:
            for resource in assembly.resources:
                self.definitions[ResourceId(assembly.name, resource.name)] = resource
        self.orphans = {r: d for r, d in observed.orphans.items() if r not in self.definitions}
        self.definitions.update(self.orphans)
        every_constraint = (*document.constraints, *observed.orphan_constraints)
        self.order = start_order(self.definitions, every_constraint)
        self.stop_edges = [c for c in every_constraint if c.first in self.definitions]
        self.firsts: dict[ResourceId, list[ResourceId]] = {rid: [] for rid in self.definitions}
        for c in document.constraints:
            if c.then in self.firsts and c.first in self.definitions:
                self.firsts[c.then].append(c.first)
        self.resolved = {
            rid: resolve(d, observed.assemblies) for rid, d in self.definitions.items()
        }
        self.actions: dict[Action, None] = {}  # ordered set
        self.edges: set[Edge] = set()
        self.params: dict[Action, Mapping[str, str]] = {}
        self.blocked: dict[ResourceId, str] = {}
        self.wake_at: float | None = None

    def build(self) -> Plan:
        probes = [rid for rid in self.order if self._needs_probe(rid)]
        unknown = probes or self._adopting()
        fences = self._assemblies(probing=bool(unknown))
        if unknown:
            self._probe(probes)  # nothing else is decided before they are in
        else:
            stays = self._staying()
            stops = self._stops(stays)
            if self.obs.goal is Goal.RUN:
                self._starts(stops, stays)
            self._fence_after_stops(fences, stops)
        return Plan(
            tuple(self.actions), frozenset(self.edges), self.params, self.blocked, self.wake_at
        )

    # -- assemblies -----------------------------------------------------------

    def _assemblies(self, probing: bool) -> dict[str, Action]:
        """Fence and create actions; returns the fences by assembly."""
        fences = {}
        for name in self._assembly_names():
            state = self.obs.assembly(name).state
            if self._fence_wanted(name, state, probing):
                fences[name] = self._add(Action(ActionKind.FENCE, name))
            refused = self.obs.assembly(name).refused
            if self.obs.goal is Goal.RUN and self.doc.assembly(name) is not None and not refused:
                if state is AssemblyState.FAILED:
                    self._order(fences[name], self._add(Action(ActionKind.CREATE, name)))
                elif state is AssemblyState.STOPPED:
                    self._add(Action(ActionKind.CREATE, name))
        return fences

    def _assembly_names(self) -> list[str]:
        names = [a.name for a in self.doc.assemblies]
        return names + sorted(set(self.obs.assemblies) - set(names))

    def _fence_wanted(self, name: str, state: AssemblyState, probing: bool) -> bool:
        if state in (AssemblyState.STOPPED, AssemblyState.FENCING, AssemblyState.STOPPING):
            return False
        if self.obs.goal is Goal.STOP or self.doc.assembly(name) is None:
            # stopping, or an assembly removed from the document: a running
            # instance is fenced once what runs on it is known and stopped, and
            # an adopted one still connecting may run resources: it connects first
            if self.obs.assembly(name).adopting:
                return False
            return not (probing and state is AssemblyState.RUNNING)
        return state is AssemblyState.FAILED and not self.obs.assembly(name).refused

    def _fence_after_stops(
        self, fences: dict[str, Action], stops: dict[ResourceId, Action]
    ) -> None:
        for rid, stop in stops.items():
            if rid.assembly in fences:
                self._order(stop, fences[rid.assembly])

    # -- resources ------------------------------------------------------------

    def _needs_probe(self, rid: ResourceId) -> bool:
        return self._on_running(rid) and self.obs.resource(rid).state in _NEEDS_PROBE

    def _adopting(self) -> bool:
        """An adopted instance is still connecting: until its resources are probed,
        a dependent of one of them must neither stop nor start on a guess."""
        return any(self.obs.assembly(name).adopting for name in self._assembly_names())

    def _probe(self, rids: list[ResourceId]) -> None:
        for rid in rids:
            action = self._add(Action(ActionKind.PROBE, rid.assembly, rid.resource))
            self.params[action] = self._probe_params(rid)

    def _stops(self, stays: set[ResourceId]) -> dict[ResourceId, Action]:
        stops = {}
        for rid in reversed(self.order):
            if self._on_running(rid) and self._stop_wanted(rid, stays):
                action = self._add(Action(ActionKind.STOP, rid.assembly, rid.resource))
                self.params[action] = self._stop_params(rid)
                stops[rid] = action
        for c in self.stop_edges:
            if c.first in stops and c.then in stops:
                self._order(stops[c.then], stops[c.first])
        return stops

    def _stop_wanted(self, rid: ResourceId, stays: set[ResourceId]) -> bool:
        status = self.obs.resource(rid)
        if status.state is ResourceState.FAILED:
            # in a stop, a resource whose stop failed is left to the fence
            return not (self.obs.goal is Goal.STOP and status.last_op == "stop")
        return status.state is ResourceState.RUNNING and rid not in stays

    def _staying(self) -> set[ResourceId]:
        """Running resources that keep running: unchanged, and all they follow stays."""
        stays: set[ResourceId] = set()
        if self.obs.goal is Goal.STOP:
            return stays
        for rid in self.order:
            if rid in self.orphans or not self._up(rid) or self._changed(rid):
                continue
            if all(first in stays for first in self.firsts[rid]):
                stays.add(rid)
        return stays

    def _starts(self, stops: dict[ResourceId, Action], stays: set[ResourceId]) -> None:
        startable = self._startable(stays)
        starts: dict[ResourceId, Action] = {}
        for rid in self.order:
            if rid in stays:
                self._monitor(rid, after=None)
            elif rid in startable:
                starts[rid] = self._start(rid, stops, starts)

    def _start(
        self, rid: ResourceId, stops: dict[ResourceId, Action], starts: dict[ResourceId, Action]
    ) -> Action:
        action = self._add(Action(ActionKind.START, rid.assembly, rid.resource))
        self.params[action] = self.resolved[rid] or {}
        if rid in stops:
            self._order(stops[rid], action)
        for first in self.firsts[rid]:
            if first in starts:
                self._order(starts[first], action)
        self._monitor(rid, after=action)
        return action

    def _monitor(self, rid: ResourceId, after: Action | None) -> None:
        if after is None and self.obs.resource(rid).monitoring:
            return
        interval = self.definitions[rid].monitor_interval
        action = self._add(Action(ActionKind.MONITOR, rid.assembly, rid.resource, interval))
        self.params[action] = self.resolved[rid] or self._probe_params(rid)
        if after is not None:
            self._order(after, action)

    def _startable(self, stays: set[ResourceId]) -> set[ResourceId]:
        """Resources that can be running at the end of this plan; records why not."""
        startable = set(stays)
        for rid in self.order:
            if rid in stays or rid in self.orphans or not self._on_running(rid):
                continue
            why = self._why_not_startable(rid, startable)
            if why is None:
                startable.add(rid)
            elif self.obs.resource(rid).state is not ResourceState.UNRECOVERABLE:
                self.blocked[rid] = why
        return startable

    def _why_not_startable(self, rid: ResourceId, startable: set[ResourceId]) -> str | None:
        if self.obs.resource(rid).state is ResourceState.UNRECOVERABLE:
            return "unrecoverable"
        if self.resolved[rid] is None:
            ref = unresolved(self.definitions[rid], self.obs.assemblies)
            assert ref is not None
            return f"waiting for the {ref.attribute} of assembly {ref.assembly}"
        retry_at = self.obs.resource(rid).retry_at
        if retry_at is not None and retry_at > self.obs.now:
            self.wake_at = min(retry_at, self.wake_at or retry_at)
            return BACKING_OFF
        for first in self.firsts[rid]:
            if first not in startable:
                return self._blocked_by(first)
        return None

    def _blocked_by(self, first: ResourceId) -> str:
        if first.is_service:
            return f"waiting for service {first.resource}, which has no assembly to run on"
        reason = self.blocked.get(first)
        if reason == BACKING_OFF:
            return f"waiting for {first}, which is {reason}"
        if reason:
            return reason  # the root cause travels down the chain
        if self.obs.resource(first).state is ResourceState.UNRECOVERABLE:
            return f"depends on {first}, which is unrecoverable"
        state = self.obs.assembly(first.assembly).state
        return f"waiting for {first} (assembly {first.assembly} is {state})"

    # -- helpers --------------------------------------------------------------

    def _up(self, rid: ResourceId) -> bool:
        return self._on_running(rid) and self.obs.resource(rid).state in _UP

    def _on_running(self, rid: ResourceId) -> bool:
        return self.obs.assembly(rid.assembly).state is AssemblyState.RUNNING

    def _changed(self, rid: ResourceId) -> bool:
        applied, resolved = self.obs.resource(rid).applied, self.resolved[rid]
        if applied is None or resolved is None:
            return False  # unknown either way: do not restart on a guess
        return applied != Applied.of(self.definitions[rid], resolved)

    def _probe_params(self, rid: ResourceId) -> Mapping[str, str]:
        resolved = self.resolved[rid]
        if resolved is not None:
            return resolved
        applied = self.obs.resource(rid).applied
        return dict(applied.params) if applied else literal_params(self.definitions[rid])

    def _stop_params(self, rid: ResourceId) -> Mapping[str, str]:
        applied = self.obs.resource(rid).applied
        return dict(applied.params) if applied else self._probe_params(rid)

    def _add(self, action: Action) -> Action:
        self.actions[action] = None
        return action

    def _order(self, first: Action, then: Action) -> None:
        self.edges.add((first, then))
