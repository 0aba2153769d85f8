"""The deployable model: what cloud management software asks us to keep available.

The canonical form is a JSON document (see ``Deployable.to_dict``).  ``parse``
validates a whole document and reports every problem at once, each with its
path (``assemblies[1].resources[0].monitor_interval: not a duration: "10x"``).
Objects are frozen: a change is a new document.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from dpe.errors import InvalidInput

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
RESOURCE_CLASSES = ("ocf", "lsb", "systemd")
INFRASTRUCTURES = ("local", "libvirt", "openstack")
REFERENCE_ATTRIBUTES = ("ipaddress", "hostname")
OPERATIONS = ("start", "stop", "monitor")
DISABLED_WORDS = ("INFINITY", "-INFINITY", "-1", "")

DEFAULT_MONITOR_INTERVAL = 10.0
DEFAULT_OP_TIMEOUT = 20.0
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*\Z")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0}
_UNIT_SECONDS |= {"h": 3600.0, "hr": 3600.0, "d": 86400.0}


# ---------------------------------------------------------------------------
# value types


@dataclass(frozen=True)
class Escalation:
    """``failures`` failures within ``period`` seconds escalate; 0 disables."""

    failures: int = 0
    period: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0 and self.period > 0

    def to_dict(self) -> dict[str, Any]:
        if not self.enabled:
            return {"failures": "INFINITY", "period": "INFINITY"}
        return {"failures": self.failures, "period": _number(self.period)}


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
        data["monitor_interval"] = _number(self.monitor_interval)
        data["timeouts"] = {op: _number(t) for op, t in sorted(self.timeouts.items())}
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


def parse_score(value: object) -> int:
    """``100``, ``-50``, ``INFINITY``, ``+INFINITY``, ``-INFINITY`` (clamped); ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a score: {value!r}")
    if isinstance(value, int):
        return max(-INFINITY, min(INFINITY, value))
    if isinstance(value, str):
        text = value.strip().upper()
        if text in ("INFINITY", "+INFINITY", "INF", "+INF"):
            return INFINITY
        if text in ("-INFINITY", "-INF"):
            return -INFINITY
        if re.fullmatch(r"[+-]?\d+", text):
            return parse_score(int(text))
    raise ValueError(f"not a score: {value!r} (a whole number, INFINITY or -INFINITY)")


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
            "failure_timeout": _number(self.failure_timeout),
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
            "interval": _number(self.interval),
            "timeout": _number(self.timeout),
            "health_interval": _number(self.health_interval),
        }


@dataclass(frozen=True)
class Deployable:
    name: str
    uuid: str
    infrastructure: str = "local"
    settings: Mapping[str, str] = field(default_factory=dict)
    heartbeat: Heartbeat = Heartbeat()
    escalation: Escalation = Escalation()
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
# parsing with every problem collected


class Problems:
    """Collects ``path: message`` problems; raises them together."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def raise_if_any(self, what: str = "invalid deployable document") -> None:
        if not self.items:
            return
        lines = [f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in self.items]
        raise InvalidInput(f"{what}:\n  " + "\n  ".join(lines), details=self.items)


def check_name(value: object, path: str, problems: Problems) -> str:
    if not isinstance(value, str):
        problems.add(path, f"must be a string, not {_kind(value)}")
        return ""
    if not NAME_RE.match(value):
        problems.add(
            path, f"not a valid name: {value!r} (allowed: [A-Za-z0-9][A-Za-z0-9_.-]{{0,62}})"
        )
    elif value in (".", ".."):
        problems.add(path, f"not a valid name: {value!r}")
    return value


def validate_name(value: str, what: str = "name") -> str:
    """Check one name given on a command line or in a URL."""
    problems = Problems()
    check_name(value, what, problems)
    problems.raise_if_any(f"invalid {what}")
    return value


def parse_duration(value: object) -> float:
    """Seconds from ``10``, ``10s``, ``500ms``, ``2m``, ``1h`` or ``7d``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"not a duration: {value!r} (negative)")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"not a duration: {value!r}")


def duration_setting(value: object, default: float, path: str, problems: Problems) -> float:
    """An optional positive duration (a driver setting, say); the default when unset."""
    if value is None:
        return default
    seconds = _duration(value, path, problems, positive=True)
    return seconds if seconds > 0 else default


def parse_escalation_count(value: object) -> int:
    """A failure count; INFINITY, -1 or empty disable escalation (0)."""
    if value is None or (isinstance(value, str) and value.strip().upper() in DISABLED_WORDS):
        return 0
    if isinstance(value, bool):
        raise ValueError(f"not a number of failures: {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())):
        count = int(value)
        if count == -1:
            return 0
        if count < 0:
            raise ValueError(f"not a number of failures: {value!r}")
        return count
    raise ValueError(f"not a number of failures: {value!r}")


def parse_escalation_period(value: object) -> float:
    if value is None or (isinstance(value, str) and value.strip().upper() in DISABLED_WORDS):
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value == -1:
        return 0.0
    return parse_duration(value)


def parse_reference(text: str) -> Reference | None:
    """``ASSEMBLY:ipaddress`` (or with a leading ``@``) as a Reference, else None."""
    match = re.fullmatch(r"@?([^:]+):(ipaddress|hostname)", text)
    return Reference(match.group(1), match.group(2)) if match else None


def parse(data: object) -> Deployable:
    """Validate a whole deployable document (a decoded JSON object)."""
    problems = Problems()
    deployable = _deployable(data, problems)
    problems.raise_if_any()
    assert deployable is not None
    return deployable


def parse_assembly(data: object, path: str = "") -> Assembly:
    """Validate one assembly on its own (as the catalog stores it)."""
    problems = Problems()
    assembly = _assembly(data, path, problems)
    if assembly is not None:
        _check_unique([r.name for r in assembly.resources], _join(path, "resources"), problems)
    problems.raise_if_any("invalid assembly")
    assert assembly is not None
    return assembly


def parse_resource(data: object, path: str = "") -> Resource:
    problems = Problems()
    resource = _resource(data, path, problems)
    problems.raise_if_any("invalid resource")
    assert resource is not None
    return resource


def _deployable(data: object, problems: Problems) -> Deployable | None:
    if not isinstance(data, Mapping):
        problems.add("", f"a deployable document must be an object, not {_kind(data)}")
        return None
    _unknown_keys(data, _DEPLOYABLE_KEYS, "", problems)
    name = check_name(data.get("name"), "name", problems)
    infra = data.get("infrastructure", "local")
    if infra not in INFRASTRUCTURES:
        problems.add("infrastructure", f"must be one of {', '.join(INFRASTRUCTURES)}: {infra!r}")
    assemblies = tuple(
        a
        for i, item in enumerate(_list(data.get("assemblies", []), "assemblies", problems))
        if (a := _assembly(item, f"assemblies[{i}]", problems)) is not None
    )
    deployable = Deployable(
        name=name,
        uuid=_uuid(data.get("uuid"), "uuid", problems),
        infrastructure=str(infra),
        settings=_settings(data.get("settings", {}), problems),
        heartbeat=_heartbeat(data.get("heartbeat", {}), problems),
        escalation=_escalation(data.get("escalation", {}), "escalation", problems),
        assemblies=assemblies,
        constraints=_constraints(data.get("constraints", []), problems),
        services=_services(data.get("services", []), problems),
        colocations=_colocations(data.get("colocations", []), problems),
    )
    _check_cross_references(deployable, problems)
    _check_services(deployable, problems)
    return deployable


_DEPLOYABLE_KEYS = {
    "name",
    "uuid",
    "infrastructure",
    "settings",
    "heartbeat",
    "escalation",
    "assemblies",
    "constraints",
    "services",
    "colocations",
}
_SERVICE_KEYS = {"locations", "stickiness", "migration_threshold", "failure_timeout"}
_ASSEMBLY_KEYS = {"name", "uuid", "image", "escalation", "resources"}
_RESOURCE_KEYS = {
    "name",
    "class",
    "provider",
    "type",
    "monitor_interval",
    "timeouts",
    "parameters",
    "escalation",
}


def _assembly(data: object, path: str, problems: Problems) -> Assembly | None:
    if not isinstance(data, Mapping):
        problems.add(path, f"an assembly must be an object, not {_kind(data)}")
        return None
    _unknown_keys(data, _ASSEMBLY_KEYS, path, problems)
    resources = tuple(
        r
        for i, item in enumerate(
            _list(data.get("resources", []), _join(path, "resources"), problems)
        )
        if (r := _resource(item, _join(path, f"resources[{i}]"), problems)) is not None
    )
    return Assembly(
        name=check_name(data.get("name"), _join(path, "name"), problems),
        uuid=_uuid(data.get("uuid"), _join(path, "uuid"), problems),
        image=check_name(data.get("image", "host"), _join(path, "image"), problems),
        escalation=_escalation(data.get("escalation", {}), _join(path, "escalation"), problems),
        resources=resources,
    )


def _resource(data: object, path: str, problems: Problems) -> Resource | None:
    if not isinstance(data, Mapping):
        problems.add(path, f"a resource must be an object, not {_kind(data)}")
        return None
    _unknown_keys(data, _RESOURCE_KEYS, path, problems)
    rclass = data.get("class", "ocf")
    if rclass not in RESOURCE_CLASSES:
        problems.add(
            _join(path, "class"), f"must be one of {', '.join(RESOURCE_CLASSES)}: {rclass!r}"
        )
    provider = data.get("provider", "heartbeat" if rclass == "ocf" else "")
    if rclass == "ocf":
        provider = check_name(provider, _join(path, "provider"), problems)
    else:  # lsb and systemd have none: one given is ignored, but must still be text
        if not isinstance(provider, str):
            problems.add(_join(path, "provider"), f"must be a string, not {_kind(provider)}")
        provider = ""
    return Resource(
        name=check_name(data.get("name"), _join(path, "name"), problems),
        rclass=str(rclass),
        type=check_name(data.get("type"), _join(path, "type"), problems),
        provider=provider,
        monitor_interval=_duration(
            data.get("monitor_interval", DEFAULT_MONITOR_INTERVAL),
            _join(path, "monitor_interval"),
            problems,
            positive=True,
        ),
        timeouts=_timeouts(data.get("timeouts", {}), _join(path, "timeouts"), problems),
        parameters=_parameters(data.get("parameters", {}), _join(path, "parameters"), problems),
        escalation=_escalation(data.get("escalation", {}), _join(path, "escalation"), problems),
    )


def _parameters(data: object, path: str, problems: Problems) -> dict[str, ParamValue]:
    if not isinstance(data, Mapping):
        problems.add(path, f"must be an object of name: value, not {_kind(data)}")
        return {}
    params: dict[str, ParamValue] = {}
    for key, value in data.items():
        where = _join(path, str(key))
        if not isinstance(key, str) or not PARAM_NAME_RE.match(key):
            problems.add(where, f"not a valid parameter name: {key!r}")
            continue
        parsed = _param_value(value, where, problems)
        if parsed is not None:
            params[key] = parsed
    return params


def _param_value(value: object, path: str, problems: Problems) -> ParamValue | None:
    if isinstance(value, Mapping):
        ref = value.get("ref")
        reference = parse_reference(ref) if isinstance(ref, str) and len(value) == 1 else None
        if reference is None:
            problems.add(path, 'a reference must be {"ref": "ASSEMBLY:ipaddress|hostname"}')
        return reference
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(value)
    if not isinstance(value, str):
        problems.add(path, f"must be a string or a reference, not {_kind(value)}")
        return None
    if "\0" in value or len(value) > 4096:
        problems.add(path, "must not contain NUL bytes or exceed 4096 characters")
        return None
    return value


def _timeouts(data: object, path: str, problems: Problems) -> dict[str, float]:
    if not isinstance(data, Mapping):
        problems.add(path, f"must be an object of operation: duration, not {_kind(data)}")
        return {}
    timeouts = {}
    for op, value in data.items():
        if op not in OPERATIONS:
            problems.add(
                _join(path, str(op)), f"unknown operation (one of {', '.join(OPERATIONS)})"
            )
            continue
        timeouts[op] = _duration(value, _join(path, op), problems, positive=True)
    return timeouts


def _escalation(data: object, path: str, problems: Problems) -> Escalation:
    if not isinstance(data, Mapping):
        problems.add(path, f"must be an object with failures and period, not {_kind(data)}")
        return Escalation()
    _unknown_keys(data, {"failures", "period"}, path, problems)
    try:
        failures = parse_escalation_count(data.get("failures"))
    except ValueError as error:
        problems.add(_join(path, "failures"), str(error))
        failures = 0
    try:
        period = parse_escalation_period(data.get("period"))
    except ValueError as error:
        problems.add(_join(path, "period"), str(error))
        period = 0.0
    if (failures > 0) != (period > 0):
        return Escalation()  # half-set means disabled, as in the original
    return Escalation(failures, period)


def _heartbeat(data: object, problems: Problems) -> Heartbeat:
    if not isinstance(data, Mapping):
        problems.add("heartbeat", f"must be an object, not {_kind(data)}")
        return Heartbeat()
    _unknown_keys(data, {"interval", "timeout", "health_interval"}, "heartbeat", problems)
    default = Heartbeat()
    values = {
        key: _duration(data.get(key, getattr(default, key)), f"heartbeat.{key}", problems, True)
        for key in ("interval", "timeout", "health_interval")
    }
    heartbeat = Heartbeat(**values)
    if heartbeat.timeout <= heartbeat.interval:
        problems.add("heartbeat.timeout", "must be longer than heartbeat.interval")
    return heartbeat


def _settings(data: object, problems: Problems) -> dict[str, str]:
    if not isinstance(data, Mapping):
        problems.add("settings", f"must be an object of name: string, not {_kind(data)}")
        return {}
    settings = {}
    for key, value in data.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.add(f"settings.{key}", f"must be a string or number, not {_kind(value)}")
            continue
        settings[str(key)] = value if isinstance(value, str) else _number_text(value)
    return settings


def _constraints(data: object, problems: Problems) -> tuple[Constraint, ...]:
    constraints = []
    for i, item in enumerate(_list(data, "constraints", problems)):
        path = f"constraints[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, f"must be an object with first and then, not {_kind(item)}")
            continue
        _unknown_keys(item, {"first", "then"}, path, problems)
        first = _resource_id(item.get("first"), f"{path}.first", problems)
        then = _resource_id(item.get("then"), f"{path}.then", problems)
        if first and then:
            constraints.append(Constraint(first, then))
    return tuple(constraints)


def _resource_id(value: object, path: str, problems: Problems) -> ResourceId | None:
    if isinstance(value, str) and "/" not in value:
        return service_id(value) if check_name(value, path, problems) == value else None
    if not isinstance(value, str) or value.count("/") != 1:
        problems.add(path, f"must be ASSEMBLY/RESOURCE or SERVICE: {value!r}")
        return None
    assembly, resource = value.split("/")
    before = len(problems.items)
    check_name(assembly, path, problems)
    check_name(resource, path, problems)
    return ResourceId(assembly, resource) if len(problems.items) == before else None


def _check_cross_references(deployable: Deployable, problems: Problems) -> None:
    _check_unique([a.name for a in deployable.assemblies], "assemblies", problems)
    _check_unique([a.uuid for a in deployable.assemblies if a.uuid], "assemblies", problems, "uuid")
    for i, assembly in enumerate(deployable.assemblies):
        path = f"assemblies[{i}]"
        _check_unique([r.name for r in assembly.resources], f"{path}.resources", problems)
        for j, resource in enumerate(assembly.resources):
            for key, value in resource.parameters.items():
                _check_reference(deployable, key, value, f"{path}.resources[{j}]", problems)
    for i, service in enumerate(deployable.services):
        for key, value in service.resource.parameters.items():
            _check_reference(deployable, key, value, f"services[{i}]", problems)
    known = set(deployable.resource_ids()) | {service_id(s.name) for s in deployable.services}
    for i, constraint in enumerate(deployable.constraints):
        for end in ("first", "then"):
            rid = getattr(constraint, end)
            if rid not in known:
                what = "service" if rid.is_service else "resource"
                problems.add(f"constraints[{i}].{end}", f"no such {what} in the deployable: {rid}")
        if constraint.first == constraint.then:
            problems.add(
                f"constraints[{i}]",
                f"a resource cannot be ordered after itself: {constraint.first}",
            )
    cycle = find_cycle(deployable.constraints)
    if cycle:
        problems.add(
            "constraints", "order constraints form a cycle: " + " -> ".join(map(str, cycle))
        )


def _check_reference(
    deployable: Deployable, key: str, value: ParamValue, path: str, problems: Problems
) -> None:
    if not isinstance(value, Reference):
        return
    if deployable.assembly(value.assembly) is None and deployable.service(value.assembly) is None:
        problems.add(
            f"{path}.parameters.{key}",
            f"refers to assembly {value.assembly!r}, which is not in the deployable",
        )


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


# ---------------------------------------------------------------------------
# services and colocations


def _services(data: object, problems: Problems) -> tuple[Service, ...]:
    services = []
    for i, item in enumerate(_list(data, "services", problems)):
        service = _service(item, f"services[{i}]", problems)
        if service is not None:
            services.append(service)
    return tuple(services)


def _service(data: object, path: str, problems: Problems) -> Service | None:
    if not isinstance(data, Mapping):
        problems.add(path, f"a service must be an object, not {_kind(data)}")
        return None
    resource = _resource({k: v for k, v in data.items() if k not in _SERVICE_KEYS}, path, problems)
    if resource is None:
        return None
    if "locations" not in data:
        problems.add(_join(path, "locations"), "required: the assemblies it may run on")
    return Service(
        resource=resource,
        locations=_locations(data.get("locations", []), _join(path, "locations"), problems),
        stickiness=_score(data.get("stickiness", 0), _join(path, "stickiness"), problems),
        migration_threshold=_threshold(data.get("migration_threshold"), path, problems),
        failure_timeout=_duration(
            data.get("failure_timeout", 0), _join(path, "failure_timeout"), problems
        ),
    )


def _locations(data: object, path: str, problems: Problems) -> tuple[Location, ...]:
    locations = []
    for i, item in enumerate(_list(data, path, problems)):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.add(where, f"must be an object with assembly and score, not {_kind(item)}")
            continue
        _unknown_keys(item, {"assembly", "score"}, where, problems)
        assembly = check_name(item.get("assembly"), _join(where, "assembly"), problems)
        score = _score(item.get("score", 0), _join(where, "score"), problems)
        locations.append(Location(assembly, score))
    return tuple(locations)


def _threshold(value: object, path: str, problems: Problems) -> int:
    try:
        return parse_escalation_count(value)
    except ValueError as error:
        problems.add(_join(path, "migration_threshold"), str(error))
        return 0


def _score(value: object, path: str, problems: Problems) -> int:
    try:
        return parse_score(value)
    except ValueError as error:
        problems.add(path, str(error))
        return 0


def _colocations(data: object, problems: Problems) -> tuple[Colocation, ...]:
    colocations = []
    for i, item in enumerate(_list(data, "colocations", problems)):
        path = f"colocations[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, f"must be an object with service and with, not {_kind(item)}")
            continue
        _unknown_keys(item, {"service", "with", "score"}, path, problems)
        service = check_name(item.get("service"), f"{path}.service", problems)
        with_ = check_name(item.get("with"), f"{path}.with", problems)
        score = _score(item.get("score", "INFINITY"), f"{path}.score", problems)
        colocations.append(Colocation(service, with_, score))
    return tuple(colocations)


def _check_services(deployable: Deployable, problems: Problems) -> None:
    _check_unique([s.name for s in deployable.services], "services", problems)
    assemblies = {a.name for a in deployable.assemblies}
    for i, service in enumerate(deployable.services):
        path = f"services[{i}]"
        if service.name in assemblies:
            problems.add(f"{path}.name", f"{service.name!r} is also an assembly's name")
        _check_unique(list(service.assemblies), f"{path}.locations", problems, "assembly")
        for j, location in enumerate(service.locations):
            assembly = deployable.assembly(location.assembly)
            where = f"{path}.locations[{j}].assembly"
            if assembly is None:
                problems.add(where, f"no assembly {location.assembly!r} in the deployable")
            elif assembly.resource(service.name) is not None:
                problems.add(
                    where, f"assembly {location.assembly!r} has a resource {service.name!r}"
                )
    services = {s.name for s in deployable.services}
    for i, colocation in enumerate(deployable.colocations):
        for key, name in (("service", colocation.service), ("with", colocation.with_)):
            if name and name not in services:
                problems.add(f"colocations[{i}].{key}", f"no service {name!r} in the deployable")
        if colocation.service == colocation.with_:
            problems.add(f"colocations[{i}]", "a service cannot be colocated with itself")
    _check_unique(
        [f"{c.service} with {c.with_}" for c in deployable.colocations],
        "colocations",
        problems,
        "colocation",
    )


# ---------------------------------------------------------------------------
# small helpers


def _uuid(value: object, path: str, problems: Problems) -> str:
    if value is None or value == "":
        return new_uuid()
    if not isinstance(value, str):
        problems.add(path, f"must be a string, not {_kind(value)}")
        return ""
    try:
        return uuidlib.UUID(value).hex
    except ValueError:
        problems.add(path, f"not a uuid: {value!r}")
        return ""


def _duration(value: object, path: str, problems: Problems, positive: bool = False) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        problems.add(path, str(error))
        return 0.0
    if positive and seconds <= 0:
        problems.add(path, f"must be greater than zero: {value!r}")
    return seconds


def _list(value: object, path: str, problems: Problems) -> list[object]:
    if isinstance(value, list | tuple):
        return list(value)
    problems.add(path, f"must be a list, not {_kind(value)}")
    return []


def _unknown_keys(
    data: Mapping[Any, Any], allowed: set[str], path: str, problems: Problems
) -> None:
    for key in data:
        if key not in allowed:
            problems.add(_join(path, str(key)), "unknown field")


def _check_unique(names: list[str], path: str, problems: Problems, what: str = "name") -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.add(path, f"duplicate {what}: {name!r}")
        seen.add(name)


def _join(path: str, key: str) -> str:
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _kind(value: object) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        type(None): "null",
        bool: "a boolean",
    }
    return names.get(type(value), type(value).__name__)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _number_text(value: int | float) -> str:
    return str(_number(float(value)))


def _param_to_json(value: ParamValue) -> str | dict[str, str]:
    return value.to_dict() if isinstance(value, Reference) else value
