"""The deployable document's shape, defined once: pydantic models.

They validate a document and report every problem at once, each with its path
(``assemblies[1].resources[0].monitor_interval: not a duration: '10x'``), and
cped's OpenAPI components are generated from them (``cpe.openapi``): the
document cped serves and the checks it applies are the same definitions.
Values are checked by the types of ``foundation.schema_values``; a valid model
becomes the engine's objects (``foundation.domain``) with ``to_domain``, and
what a shape cannot say (references, order constraints, cycles) is checked on
those (``foundation.checks``).

Importing pydantic takes about 100 ms: the shell's one-shot commands and the
API's route table never import this module; ``foundation.model.parse`` imports
it when first called.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from foundation import domain
from foundation.checks import check_assembly, check_document
from foundation.domain import DEFAULT_MONITOR_INTERVAL, INFINITY, new_uuid
from foundation.problems import Problems, refusal
from foundation.schema_errors import LENIENT, is_lenient, problems_of, repaired
from foundation.schema_values import (
    AgentType,
    Duration,
    FailureCount,
    Infrastructure,
    Monitoring,
    Name,
    OperationDuration,
    Parameters,
    Period,
    PositiveDuration,
    ResourceClass,
    ResourceEnd,
    Score,
    Settings,
    Timeouts,
    Uuid,
    name_value,
    refused,
)
from foundation.spelling import NAME_RE

Model = TypeVar("Model", bound=BaseModel)


# ---------------------------------------------------------------------------
# the document


class Closed(BaseModel):
    """A JSON object with these fields and no other.

    ``what`` titles the refusal of one that is not valid (``invalid assembly``);
    ``unknown_field`` and ``required`` word the problems of its own fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    what: ClassVar[str] = "invalid request"
    unknown_field: ClassVar[str] = "unknown field"
    required: ClassVar[str] = "required"


class Escalation(Closed):
    """``failures`` failures within ``period`` escalate to the level above.

    Disabled with INFINITY or -1; set by half, it is disabled too.
    """

    what: ClassVar[str] = "invalid escalation"

    failures: FailureCount = 0
    period: Period = 0.0

    def to_domain(self) -> domain.Escalation:
        if (self.failures > 0) != (self.period > 0):
            return domain.Escalation()  # half-set means disabled, as in the original
        return domain.Escalation(self.failures, self.period)


class Resource(Closed):
    """A service in an assembly, driven by a resource agent."""

    what: ClassVar[str] = "invalid resource"

    name: Name
    rclass: ResourceClass = Field(default="ocf", alias="class")
    provider: str | None = Field(
        default=None, validate_default=True, description="OCF only (default heartbeat)"
    )
    type: AgentType
    monitor_interval: OperationDuration = DEFAULT_MONITOR_INTERVAL
    timeouts: Timeouts = Field(default_factory=dict)
    parameters: Parameters = Field(default_factory=dict)
    escalation: Escalation = Escalation()

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None, info: ValidationInfo) -> str:
        """OCF agents have a provider (a name); lsb and systemd none: one given is ignored."""
        if info.data.get("rclass") != "ocf":
            return ""
        return name_value("heartbeat" if value is None else value)

    def to_domain(self) -> domain.Resource:
        return domain.Resource(
            name=self.name,
            rclass=self.rclass,
            type=self.type,
            provider=self.provider or "",
            monitor_interval=self.monitor_interval,
            timeouts=dict(self.timeouts),
            parameters=dict(self.parameters),
            escalation=self.escalation.to_domain(),
        )


class Assembly(Closed):
    """A guest built from a JEOS image, and the resources it runs."""

    what: ClassVar[str] = "invalid assembly"

    name: Name
    uuid: Uuid = None
    image: Name = Field(default="host", description="the JEOS image (default: host)")
    escalation: Escalation = Escalation()
    resources: tuple[Resource, ...] = ()

    def to_domain(self) -> domain.Assembly:
        return domain.Assembly(
            name=self.name,
            uuid=self.uuid or new_uuid(),
            image=self.image,
            escalation=self.escalation.to_domain(),
            resources=tuple(r.to_domain() for r in self.resources),
        )


class Constraint(Closed):
    """Mandatory order: ``first`` starts before ``then``, and stops after it."""

    what: ClassVar[str] = "invalid constraint"

    first: ResourceEnd
    then: ResourceEnd

    def to_domain(self) -> domain.Constraint:
        return domain.Constraint(self.first, self.then)


class Location(Closed):
    """An assembly a service may run on, and its location score there."""

    assembly: Name
    score: Score = 0

    def to_domain(self) -> domain.Location:
        return domain.Location(self.assembly, self.score)


class Service(Resource):
    """A resource not bound to one assembly: a resource's fields, and where it may run."""

    what: ClassVar[str] = "invalid service"

    locations: tuple[Location, ...] = Field(description="the assemblies it may run on")
    stickiness: Score = 0
    migration_threshold: FailureCount = 0
    failure_timeout: Duration = 0.0

    def to_domain(self) -> domain.Service:  # type: ignore[override]
        return domain.Service(
            resource=super().to_domain(),
            locations=tuple(loc.to_domain() for loc in self.locations),
            stickiness=self.stickiness,
            migration_threshold=self.migration_threshold,
            failure_timeout=self.failure_timeout,
        )


class Colocation(Closed):
    """``service`` runs where ``with`` runs (INFINITY), never there (-INFINITY), or
    prefers (positive) or avoids (negative) it by ``score``."""

    what: ClassVar[str] = "invalid colocation"

    service: Name
    with_: Name = Field(alias="with")
    score: Score = INFINITY

    def to_domain(self) -> domain.Colocation:
        return domain.Colocation(self.service, self.with_, self.score)


class Heartbeat(Closed):
    """How often the DPE checks each instance, and when it gives up on one."""

    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = Field(default=3.0, validate_default=True)
    health_interval: PositiveDuration = 10.0

    @field_validator("timeout")
    @classmethod
    def _longer_than_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value <= interval and not is_lenient(info.context):
            raise refused("must be longer than heartbeat.interval")
        return value

    def to_domain(self) -> domain.Heartbeat:
        return domain.Heartbeat(self.interval, self.timeout, self.health_interval)


class DeployableBase(Closed):
    """A deployable's own fields, without its parts."""

    what: ClassVar[str] = "invalid deployable document"

    name: Name
    uuid: Uuid = None
    infrastructure: Infrastructure = "local"
    settings: Settings = Field(default_factory=dict, description="the driver's settings")
    heartbeat: Heartbeat = Heartbeat()
    escalation: Escalation = Escalation()
    monitoring: Monitoring = "active"


class Deployable(DeployableBase):
    """A named set of assemblies, their order constraints, services and escalation."""

    references_may_wait: ClassVar[bool] = False  # see parse_deployable

    assemblies: tuple[Assembly, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    services: tuple[Service, ...] = ()
    colocations: tuple[Colocation, ...] = ()

    def to_domain(self) -> domain.Deployable:
        assert self.name is not None  # an import's name comes from its URL
        return domain.Deployable(
            name=self.name,
            uuid=self.uuid or new_uuid(),
            infrastructure=self.infrastructure,
            settings=dict(self.settings),
            heartbeat=self.heartbeat.to_domain(),
            escalation=self.escalation.to_domain(),
            monitoring=self.monitoring,
            assemblies=tuple(a.to_domain() for a in self.assemblies),
            constraints=tuple(c.to_domain() for c in self.constraints),
            services=tuple(s.to_domain() for s in self.services),
            colocations=tuple(c.to_domain() for c in self.colocations),
        )


DOCUMENT_MODELS: tuple[type[BaseModel], ...] = (
    Escalation,
    Resource,
    Assembly,
    Constraint,
    Location,
    Service,
    Colocation,
    Heartbeat,
    Deployable,
)


# ---------------------------------------------------------------------------
# entry points


def parse_deployable(data: object, *, references_may_wait: bool = False) -> domain.Deployable:
    """A whole document: its shape, then what it says across (``foundation.checks``).

    With ``references_may_wait`` a reference parameter may name an assembly that
    is not in the deployable (yet): the catalog is built one command at a time.
    """
    try:
        document = Deployable.model_validate(data).to_domain()
    except ValidationError as error:
        shape = problems_of(error, Deployable)
        across = problems_across(data, error, references_may_wait)
        raise refusal(Deployable.what, shape + across) from None
    problems = Problems()
    check_across(document, problems, references_may_wait)
    problems.raise_if_any()
    return document


def check_across(
    document: domain.Deployable, problems: Problems, references_may_wait: bool
) -> None:
    if references_may_wait:
        document = with_waited_for(document)
    check_document(document, problems)


def with_waited_for(document: domain.Deployable) -> domain.Deployable:
    """The document with an empty stand-in for each assembly a reference waits for."""
    known = {a.name for a in document.assemblies} | {s.name for s in document.services}
    referenced = {
        ref.assembly
        for assembly in document.assemblies
        for resource in assembly.resources
        for ref in resource.references()
        if NAME_RE.match(ref.assembly)
    }
    waited = tuple(domain.Assembly(name, "") for name in sorted(referenced - known))
    return document.with_assemblies(document.assemblies + waited)


def problems_across(
    data: object, error: ValidationError, references_may_wait: bool = False
) -> list[dict[str, str]]:
    """The problems across the document, in what is left without its shape's problems."""
    repair = repaired(data, error, Deployable)
    if repair is None:
        return []
    repair.data.setdefault("name", "")  # an import's name is its URL's
    try:
        rest = Deployable.model_validate(repair.data, context=LENIENT).to_domain()
    except ValidationError:
        return []
    problems = Problems()
    check_across(rest, problems, references_may_wait)
    return [{**p, "path": repair.original_path(p["path"])} for p in problems.items]


def parse_assembly(data: object, path: str = "") -> domain.Assembly:
    assembly = validated(Assembly, data, path=path).to_domain()
    problems = Problems()
    check_assembly(assembly, path, problems)
    problems.raise_if_any("invalid assembly")
    return assembly


def parse_resource(data: object, path: str = "") -> domain.Resource:
    return validated(Resource, data, path=path).to_domain()


def validated(model: type[Model], data: object, *, path: str = "") -> Model:
    """``data`` as ``model``, or InvalidInput listing every problem (paths under ``path``).

    A whole document's refusal also lists the problems across it (references,
    order constraints...) in what is left without its shape's problems.
    """
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = problems_of(error, model, path)
        if issubclass(model, Deployable):
            problems += problems_across(data, error, model.references_may_wait)
        raise refusal(getattr(model, "what", "invalid request"), problems) from None
