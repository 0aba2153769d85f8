"""The deployable's objects as the engines use them: frozen dataclasses.

What the document says, once validated (``foundation.schema`` checks the shape,
``foundation.checks`` the cross-references; ``foundation.model.parse`` does both).
``to_dict`` gives the canonical JSON form.  Objects are frozen: a change is a
new object.  Importing this module costs no third-party import: the engine's
hot paths and the shell's one-shot commands use it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

RESOURCE_CLASSES = ("ocf", "lsb", "systemd")
INFRASTRUCTURES = ("local", "libvirt", "openstack")
MONITORING_MODES = ("active", "passive")
# active: an agent in each guest runs the monitors; passive: each one over its own
# SSH channel.  The original's words (deployable_create ... am|pm) mean the same.
MONITORING_WORDS = {"active": "active", "am": "active", "passive": "passive", "pm": "passive"}
REFERENCE_ATTRIBUTES = ("ipaddress", "hostname")
OPERATIONS = ("start", "stop", "monitor")

DEFAULT_MONITOR_INTERVAL = 10.0
DEFAULT_OP_TIMEOUT = 20.0

# ---------------------------------------------------------------------------
# value types


@dataclass(frozen=True)
class Escalation:
    """``failures`` failures within ``period`` seconds escalate; 0 disables.

    In JSON both are always numbers: off is ``{"failures": 0, "period": 0}`` (0
    failures as Pacemaker's ``migration-threshold=0``); INFINITY and -1 are read.
    """

    failures: int = 0
    period: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0 and self.period > 0

    def to_dict(self) -> dict[str, Any]:
        if not self.enabled:
            return {"failures": 0, "period": 0}
        return {"failures": self.failures, "period": number(self.period)}


@dataclass(frozen=True)
class Reference:
    """A parameter whose value is another assembly's address or hostname."""

    assembly: str
    attribute: str  # one of REFERENCE_ATTRIBUTES

    def __str__(self) -> str:
        return f"@{self.assembly}:{self.attribute}"

    def to_dict(self) -> dict[str, str]:
        return {"ref": f"{self.assembly}:{self.attribute}"}


ParamValue = str | Reference


class ResourceId(NamedTuple):
    """A resource named across the deployable: ``ASSEMBLY/RESOURCE``.

    A named tuple, not a dataclass: the planner hashes thousands of these per
    decision, and a tuple's hash and equality run in C.
    """

    assembly: str
    resource: str

    def __str__(self) -> str:
        return f"{self.assembly}/{self.resource}" if self.assembly else self.resource

    @property
    def is_service(self) -> bool:
        """A deployable-level service (``SERVICE``), not a resource pinned to an assembly."""
        return not self.assembly


def service_id(name: str) -> ResourceId:
    """A service as an end of an order constraint: no assembly of its own."""
    return ResourceId("", name)


@dataclass(frozen=True)
class Resource:
    name: str
    rclass: str = "ocf"
    type: str = "Dummy"
    provider: str = "heartbeat"  # OCF only; empty for lsb and systemd
    monitor_interval: float = DEFAULT_MONITOR_INTERVAL
    timeouts: Mapping[str, float] = field(default_factory=dict)
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    escalation: Escalation = Escalation()

    def timeout(self, operation: str) -> float:
        return self.timeouts.get(operation, DEFAULT_OP_TIMEOUT)

    @property
    def agent(self) -> str:
        """The agent spec in Pacemaker's notation (``ocf:heartbeat:Dummy``)."""
        if self.rclass == "ocf":
            return f"ocf:{self.provider}:{self.type}"
        return f"{self.rclass}:{self.type}"

    def references(self) -> Iterator[Reference]:
        return (v for v in self.parameters.values() if isinstance(v, Reference))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "class": self.rclass}
        if self.rclass == "ocf":
            data["provider"] = self.provider
        data["type"] = self.type
        data["monitor_interval"] = number(self.monitor_interval)
        data["timeouts"] = {op: number(t) for op, t in sorted(self.timeouts.items())}
        data["parameters"] = {k: _param_to_json(v) for k, v in self.parameters.items()}
        data["escalation"] = self.escalation.to_dict()
        return data


@dataclass(frozen=True)
class Assembly:
    name: str
    uuid: str
    image: str = "host"  # the JEOS the assembly was made from
    escalation: Escalation = Escalation()
    resources: tuple[Resource, ...] = ()

    def resource(self, name: str) -> Resource | None:
        return next((r for r in self.resources if r.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "image": self.image,
            "escalation": self.escalation.to_dict(),
            "resources": [r.to_dict() for r in self.resources],
        }


@dataclass(frozen=True)
class Constraint:
    """Mandatory order: ``first`` starts before ``then``, and stops after it."""

    first: ResourceId
    then: ResourceId

    def to_dict(self) -> dict[str, str]:
        return {"first": str(self.first), "then": str(self.then)}


INFINITY = 1_000_000  # Pacemaker's score infinity: scores are clamped to +-INFINITY


def score_text(score: int) -> int | str:
    """A score as documents spell it: a number, ``INFINITY`` or ``-INFINITY``."""
    if score >= INFINITY:
        return "INFINITY"
    if score <= -INFINITY:
        return "-INFINITY"
    return score


@dataclass(frozen=True)
class Location:
    """A service may run on ``assembly``, with Pacemaker's location ``score`` for it."""

    assembly: str
    score: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"assembly": self.assembly, "score": score_text(self.score)}


@dataclass(frozen=True)
class Service:
    """A resource not bound to one assembly: it runs on the best allowed candidate.

    ``stickiness`` is added to the score of the assembly it runs on (how strongly
    it stays); after ``migration_threshold`` failures on an assembly (0: never)
    it is kept away from it until ``failure_timeout`` seconds after the last one
    (0: until the failures are cleared).
    """

    resource: Resource
    locations: tuple[Location, ...] = ()
    stickiness: int = 0
    migration_threshold: int = 0
    failure_timeout: float = 0.0

    @property
    def name(self) -> str:
        return self.resource.name

    def location(self, assembly: str) -> Location | None:
        return next((loc for loc in self.locations if loc.assembly == assembly), None)

    @property
    def assemblies(self) -> tuple[str, ...]:
        return tuple(loc.assembly for loc in self.locations)

    def to_dict(self) -> dict[str, Any]:
        return self.resource.to_dict() | {
            "locations": [loc.to_dict() for loc in self.locations],
            "stickiness": score_text(self.stickiness),
            "migration_threshold": self.migration_threshold or "INFINITY",
            "failure_timeout": number(self.failure_timeout),
        }


@dataclass(frozen=True)
class Colocation:
    """``service`` runs where ``with_`` runs (score INFINITY), never there
    (-INFINITY), or prefers (positive) or avoids (negative) it by ``score``."""

    service: str
    with_: str
    score: int = INFINITY

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "with": self.with_, "score": score_text(self.score)}


@dataclass(frozen=True)
class Heartbeat:
    interval: float = 1.0
    timeout: float = 3.0
    health_interval: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval": number(self.interval),
            "timeout": number(self.timeout),
            "health_interval": number(self.health_interval),
        }


@dataclass(frozen=True)
class Deployable:
    name: str
    uuid: str
    infrastructure: str = "local"
    settings: Mapping[str, str] = field(default_factory=dict)
    heartbeat: Heartbeat = Heartbeat()
    escalation: Escalation = Escalation()
    monitoring: str = "active"  # one of MONITORING_MODES
    assemblies: tuple[Assembly, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    services: tuple[Service, ...] = ()
    colocations: tuple[Colocation, ...] = ()

    def assembly(self, name: str) -> Assembly | None:
        return next((a for a in self.assemblies if a.name == name), None)

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def resource(self, rid: ResourceId) -> Resource | None:
        """A pinned resource, or a service (``SERVICE``, or on one of its candidates)."""
        assembly = self.assembly(rid.assembly)
        pinned = assembly.resource(rid.resource) if assembly else None
        if pinned is not None:
            return pinned
        service = self.service(rid.resource)
        if service is not None and (rid.is_service or service.location(rid.assembly)):
            return service.resource
        return None

    def service_copy(self, rid: ResourceId) -> Service | None:
        """The service ``rid`` is a copy of (None: a pinned resource of that name)."""
        service = self.service(rid.resource)
        assembly = self.assembly(rid.assembly)
        if service is None or (assembly is not None and assembly.resource(rid.resource)):
            return None
        return service

    def service_placements(self) -> Iterator[ResourceId]:
        """Every place a service may run: ``ASSEMBLY/SERVICE`` for each candidate."""
        for service in self.services:
            for assembly in service.assemblies:
                yield ResourceId(assembly, service.name)

    def resource_ids(self) -> Iterator[ResourceId]:
        for assembly in self.assemblies:
            for resource in assembly.resources:
                yield ResourceId(assembly.name, resource.name)

    def with_assemblies(self, assemblies: tuple[Assembly, ...]) -> Deployable:
        return replace(self, assemblies=assemblies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "infrastructure": self.infrastructure,
            "settings": dict(sorted(self.settings.items())),
            "heartbeat": self.heartbeat.to_dict(),
            "escalation": self.escalation.to_dict(),
            "monitoring": self.monitoring,
            "assemblies": [a.to_dict() for a in self.assemblies],
            "constraints": [c.to_dict() for c in self.constraints],
        } | self._services_dict()

    def _services_dict(self) -> dict[str, Any]:
        """Services and colocations, when there are any (older documents have none)."""
        if not self.services and not self.colocations:
            return {}
        return {
            "services": [s.to_dict() for s in self.services],
            "colocations": [c.to_dict() for c in self.colocations],
        }


def new_uuid() -> str:
    """uuid4 as 32 hex digits: also the assembly's machine-id."""
    return uuidlib.uuid4().hex


# ---------------------------------------------------------------------------
# order and colocation graphs


def find_cycle(constraints: tuple[Constraint, ...]) -> list[ResourceId] | None:
    """A cycle in the order constraints, as a closed path, or None."""
    edges: dict[ResourceId, list[ResourceId]] = {}
    for c in constraints:
        if c.first != c.then:
            edges.setdefault(c.first, []).append(c.then)
    state: dict[ResourceId, int] = {}  # 1 = on the stack, 2 = done
    stack: list[ResourceId] = []

    def visit(node: ResourceId) -> list[ResourceId] | None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in list(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def number(value: float) -> int | float:
    """A number as documents write it: ``10``, not ``10.0``."""
    return int(value) if float(value).is_integer() else value


def number_text(value: int | float) -> str:
    return str(number(float(value)))


def _param_to_json(value: ParamValue) -> str | dict[str, str]:
    return value.to_dict() if isinstance(value, Reference) else value
