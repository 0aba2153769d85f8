"""What cped answers: the models of its answers and errors, for the OpenAPI document.

Handlers build their answers as plain JSON values (cheap at thousands of
status requests a second); these models describe them in the document cped
serves, and the schema tests (schemathesis) check every answer against it.
The document's own parts (``Deployable``, ``Assembly``...) are
``foundation.schema``'s.  ``MODELS`` finds a model by the name a route gives it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from foundation.errors import Code
from foundation.schema import Assembly, Closed, Escalation, Location
from foundation.schema_values import Name, Score

States = Literal["stopped", "started"]
Seconds = float


class Open(BaseModel):
    """A JSON object that may grow fields in a later version."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Problem(Closed):
    path: str
    message: str


class Error(Closed):
    """Every error: a stable code, a message for people, and details for programs."""

    code: str = Field(json_schema_extra={"enum": [str(c) for c in Code]})
    message: str
    details: Any = Field(
        description="for invalid input, a list of Problem (every problem, with its path in"
        " the document); otherwise an object with context, or null"
    )


class Object(Open):
    """Any JSON object (this document)."""


class Health(Closed):
    status: Literal["ok"]
    version: str
    pid: int
    uptime: Seconds
    config: str | None = None
    store: str | None = None


class Jeos(Closed):
    name: Name
    kind: Literal["host", "image"] | None = None
    path: str | None = None
    arch: str | None = None
    release: str | None = None
    size: int | None = None
    checksum: str | None = None
    created: float | None = None


class AssemblyRow(Assembly):
    """An assembly, and the deployable it is in (null: free)."""

    deployable: Name | None = None


class Template(Closed):
    name: Name
    description: str | None = None
    builtin: bool | None = None
    resource: dict[str, Any] | None = Field(
        default=None, description="a Resource document without name"
    )
    parameters_help: dict[str, str] | None = None


class DeployableRow(Closed):
    name: Name
    uuid: str | None = None
    infrastructure: str | None = None
    assemblies: int | None = Field(default=None, description="how many")
    state: str | None = None
    desired: States | None = Field(default=None, description="started or stopped, as in status")
    desired_state: States | None = Field(
        default=None, description="the same as desired: its earlier name, kept for scripts"
    )
    pending_reload: str | None = Field(
        default=None,
        description="changes stored but not yet applied by the running DPE (deployable_reload"
        " applies them); empty when none",
    )


class DpeExit(Open):
    pid: int | None = None
    exit: str | None = Field(default=None, description="how the last DPE exited")
    killed: bool | None = None
    left: list[Name] | None = Field(
        default=None, description="assemblies whose instances could not be stopped"
    )
    note: str | None = None


class LifecycleAnswer(Open):
    deployable: Name
    desired: States | None = None
    state: str | None = Field(default=None, description="stop: stopped, or stopping (202)")
    pid: int | None = Field(default=None, description="the DPE's pid")
    note: str | None = Field(default=None, description="what was done")
    dpe: DpeExit | None = None


class MoveAnswer(Closed):
    service: Name | None = None
    to: Name | None = None
    requested_at: float | None = None
    note: str | None = None


class CleanupAnswer(Closed):
    deployable: Name
    scope: str = Field(
        description='what is cleaned up: "" (everything), ASSEMBLY or ASSEMBLY/RESOURCE'
    )
    note: str = Field(description="who does it, and when")


class DpeStatus(Closed):
    pid: int | None
    alive: bool
    lease_epoch: int | None
    lease_holder: str | None = None
    lease_expires_in: float | None = None
    supervision: Literal["stopped", "starting", "running", "stopping", "backoff"] | None = None
    adopted: bool | None = Field(default=None, description="started by an earlier cped")
    restarts: int | None = Field(default=None, description="consecutive failed runs")
    uptime: float | None = None
    restart_in: float | None = None
    note: str | None = None
    member: str | None = Field(default=None, description="the cped member that runs it")


ESCALATION = "the document's: 0 failures or 0 period is off, and failures then escalate nothing"


class FailedOperation(Closed):
    op: str = Field(description="probe, start, stop or monitor")
    rc: int | None = Field(description="the agent's return code; null: no answer (timed out)")
    reason: str
    time: float


class ResourceStatus(Closed):
    name: Name
    agent: str | None = None
    state: str
    failures: list[float] = Field(description="times of the failures in the escalation window")
    escalation: Escalation | None = Field(default=None, description=ESCALATION)
    last_op: str | None = None
    last_rc: int | None
    blocked: str | None = Field(
        default=None, description="why its DPE cannot start it now (null: it can, or it runs)"
    )
    retry_at: float | None = Field(
        default=None, description="no start before this time: the back-off after failures"
    )
    failures_in_a_row: int | None = Field(
        default=None, description="failures since it last ran an interval (the back-off's)"
    )
    last_failure: FailedOperation | None = Field(
        default=None, description="its last failed operation, until cleaned up"
    )
    service: bool | None = Field(default=None, description="a service's copy on this assembly")


MonitoringMode = Literal["active", "passive"]


class InstanceMonitoring(Closed):
    """How an instance is monitored, as its DPE found it could be."""

    mode: MonitoringMode
    reason: str = Field(description="why: its guest agent (pid, python), or why passively")


class AssemblyStatus(Closed):
    name: Name
    state: str
    reason: str | None = None
    failures: list[float] | None = None
    escalation: Escalation | None = Field(default=None, description=ESCALATION)
    instance: str | None = Field(description="instance id")
    address: str | None
    hostname: str | None = None
    ssh_host: str | None = Field(default=None, description="where SSH connects")
    ssh_port: int | None = None
    username: str | None = Field(default=None, description="the login user")
    uptime: float | None = Field(default=None, description="seconds since the instance was made")
    monitoring: InstanceMonitoring | None = None
    resources: list[ResourceStatus]


class ServiceStatus(Closed):
    name: Name
    agent: str | None = None
    locations: list[Location] | None = None
    running_on: list[Name]


class Event(Closed):
    id: int | None = None
    time: float | None = Field(default=None, description="seconds since the epoch")
    deployable: Name | None = None
    assembly: Name | None = None
    resource: Name | None = None
    state: str | None = None
    reason: str | None = None


class DeployableStatus(Closed):
    name: Name
    state: str = Field(
        description="as the DPE recorded it: starting, running, recovering, failed, stopping,"
        " stopped"
    )
    reason: str | None = None
    desired: States
    failures: list[float] | None = None
    escalation: Escalation | None = Field(default=None, description=ESCALATION)
    monitoring: MonitoringMode | None = Field(default=None, description="the document's")
    dpe: DpeStatus
    assemblies: list[AssemblyStatus]
    services: list[ServiceStatus] | None = None
    pending_reload: str | None = Field(
        default=None,
        description="changes stored but not yet applied by the running DPE (deployable_reload"
        " applies them; GET .../diff lists them); empty when none",
    )
    last_events: list[Event]


class Member(Closed):
    name: Name
    url: str | None = None
    host: str | None = None
    pid: int | None = None
    health: Literal["alive", "gone", "left"]
    heartbeat_age: Seconds = Field(description="seconds, by the store's clock")
    deployables: list[Name] = Field(description="those whose lease one of its DPEs holds")
    self: bool | None = Field(default=None, description="the member that answered")


class ClusterStatus(Closed):
    member: Name = Field(description="the member that answered")
    store: str
    members: list[Member]
    unowned: list[Name] = Field(description="deployables whose lease nobody holds now")


class DeployableCib(Closed):
    deployable: Name
    state: str = Field(description="the state its DPE recorded")
    source: Literal["runtime", "document"] = Field(
        description="runtime: the status section is what the DPE recorded; document: not"
        " running, the status section is empty"
    )
    cib: str = Field(description="the CIB (XML, Pacemaker 2.1)")


class SimulatedAction(Closed):
    step: int = Field(description="1, 2...: an order that respects 'after'")
    action: Literal["create", "fence", "probe", "stop", "start", "monitor"]
    assembly: Name
    resource: Name | None = None
    interval: float | None = Field(default=None, description="monitor: seconds")
    text: str
    after: list[int] = Field(description="the steps it waits for")


class Blocked(Closed):
    resource: str | None = None
    reason: str | None = None


class ScoreTerm(Closed):
    score: Score
    why: str


class PlacementCandidate(Closed):
    assembly: Name
    score: Score
    allowed: bool
    why_not: str | None = None
    terms: list[ScoreTerm] = Field(
        description="the parts of the score: location, stickiness, bans, colocations"
    )


class Placement(Closed):
    service: Name
    current: Name | None = Field(description="where it runs now")
    target: Name | None = Field(description="where it goes (null: nowhere)")
    moves: bool
    reason: str
    tie: str | None = Field(default=None, description="how equal scores were told apart")
    until: float | None = Field(
        default=None, description="a fail count ban ends then (seconds since the epoch)"
    )
    candidates: list[PlacementCandidate]
    notes: list[str] | None = Field(
        default=None, description="preferences left out: with them it could run nowhere"
    )
    explanation: list[str] = Field(description="the same, as lines for people")


class Simulation(Closed):
    deployable: Name
    state: str | None = None
    source: Literal["runtime", "steady_state"] = Field(
        description="planned from what the DPE recorded, or (not running) from everything up"
        " as the document asks"
    )
    policy_engine: Literal["builtin", "pacemaker"]
    failures: list[str]
    notes: list[str] = Field(
        description="escalations that happen first, failures that change nothing"
    )
    given_up: bool | None = Field(default=None, description="the deployable would be failed")
    placements: list[Placement] | None = Field(
        default=None, description="where each service would go, and why"
    )
    actions: list[SimulatedAction]
    blocked: list[Blocked] | None = None
    dot: str = Field(description="the plan as a Graphviz digraph")


class ChangedItem(Closed):
    name: str = Field(description="ASSEMBLY, ASSEMBLY/RESOURCE or SERVICE")
    fields: list[str] = Field(description="what differs (one level deep: parameters.state)")


class DiffPart(Closed):
    """One part of the document: what a reload would add, remove or change."""

    added: list[str] | None = None
    removed: list[str] | None = None
    changed: list[ChangedItem] | None = None


class ChangedSetting(Closed):
    name: str = Field(description="the setting's path: heartbeat.interval, settings.subnet...")
    running: Any = Field(description="what the DPE runs with")
    stored: Any = Field(description="what a reload applies")


class SettingsDiff(Closed):
    changed: list[ChangedSetting] | None = None


class DeployableDiff(Closed):
    deployable: Name
    running: bool = Field(description="a DPE recorded the document it runs")
    pending: bool = Field(description="a reload would change something")
    summary: str = Field(description="the same, in one line for people")
    assemblies: DiffPart
    resources: DiffPart
    constraints: DiffPart
    services: DiffPart
    colocations: DiffPart
    settings: SettingsDiff


MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        Problem,
        Error,
        Object,
        Health,
        Jeos,
        AssemblyRow,
        Template,
        DeployableRow,
        LifecycleAnswer,
        MoveAnswer,
        CleanupAnswer,
        DeployableStatus,
        ClusterStatus,
        DeployableDiff,
        DeployableCib,
        Simulation,
        Placement,
        PlacementCandidate,
        Event,
    )
}
