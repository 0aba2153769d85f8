"""The API's routes, defined once: cped registers them from here and serves them
as the OpenAPI 3.0 document at ``GET /v1/openapi.json``.

Each ``Operation`` names its handler (``operation_id``), its query parameters,
its request body schema and its success response.  Path parameters come from
the ``{name}`` parts of the path.  Every error is the ``Error`` schema:
``{code, message, details}`` with the codes of ``foundation.errors.Code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from foundation import __version__
from foundation.errors import Code
from foundation.model import INFRASTRUCTURES, NAME_RE, OPERATIONS, RESOURCE_CLASSES

PREFIX = "/v1"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"

# HTTP status of each error code (one place; the client maps back by code).
STATUS_OF_CODE: dict[Code, int] = {
    Code.INVALID: 400,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.CONFLICT: 409,
    Code.AGENT: 502,
    Code.UNAVAILABLE: 503,
    Code.TIMEOUT: 504,
    Code.STORE: 500,
    Code.INTERNAL: 500,
}


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: tuple[tuple[str, Any], ...] = (("type", "string"),)
    required: bool = False

    def to_openapi(self, where: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": where,
            "required": self.required,
            "description": self.description,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # under PREFIX
    operation_id: str
    summary: str
    response: str | None = None  # schema (a component name or "[Name]" for a list)
    status: int = 200
    request: str | None = None  # schema of the JSON body
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 404, 409)
    media: str = JSON
    also: tuple[int, ...] = ()  # other success statuses, with the same body

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.query)


# Every route may answer these: an unknown query parameter or an invalid name (400),
# the access check (401, 403, see cpe.access), an internal error (500).
EVERY_ROUTE_ERRORS = (400, 401, 403, 500)

_NAME_PATTERN = "^" + NAME_RE.pattern.removesuffix(r"\Z") + "$"
_NAME_PARAM = (("type", "string"), ("pattern", _NAME_PATTERN))
_INT = (("type", "integer"), ("minimum", 0))
_ID = (*_INT, ("maximum", 2**63 - 1))  # an event id: a SQLite integer
_NUMBER = (("type", "number"),)
_SUBJECT = (
    Param("deployable", "only events of this deployable", _NAME_PARAM),
    Param("assembly", "only events of this assembly", _NAME_PARAM),
    Param("resource", "only events of this resource", _NAME_PARAM),
)
EVENT_QUERY = (
    *_SUBJECT,
    Param("since", "only events at or after this time (seconds since the epoch)", _NUMBER),
    Param("until", "only events at or before this time (seconds since the epoch)", _NUMBER),
    Param("after_id", "only events with a larger id (page forward: the last id seen)", _ID),
    Param("before_id", "only events with a smaller id (page backward, with order=desc)", _ID),
    Param("limit", "at most this many events, 1..1000 (default 100)", _INT),
    Param(
        "order",
        "asc: oldest first (default); desc: newest first",
        (("type", "string"), ("enum", ["asc", "desc"])),
    ),
)
STREAM_QUERY = (
    *_SUBJECT,
    Param(
        "after_id",
        "start after this event id (0 = from the oldest); default: only new events;"
        " the Last-Event-ID header takes precedence",
        _ID,
    ),
)
_FORCE = Param(
    "force", "delete even while running", (("type", "string"), ("enum", ["true", "false"]))
)
_DURATION_PARAM = (("type", "string"), ("example", "30s"))
_STOP_QUERY = (
    Param(
        "wait",
        "how long the request waits for the stop to complete (default 20 s, at most"
        " 10 min): seconds or a duration such as 500ms, 30s, 2m",
        _DURATION_PARAM,
    ),
    Param(
        "kill_after",
        "SIGKILL the DPE if it has not stopped after this long (default: 30 s plus the"
        " resources' stop timeouts)",
        _DURATION_PARAM,
    ),
)
_CONSTRAINT_QUERY = (
    Param("first", "ASSEMBLY/RESOURCE that starts first", required=True),
    Param("then", "ASSEMBLY/RESOURCE that starts after it", required=True),
)

_COLOCATION_QUERY = (
    Param("service", "the colocated service", required=True),
    Param("with", "the service it is colocated with", required=True),
)

ROUTES: tuple[Operation, ...] = (
    Operation("GET", "/health", "health", "Daemon health and version", "Health", errors=()),
    Operation("GET", "/openapi.json", "openapi", "This document", "Object", errors=()),
    Operation(
        "GET",
        "/cluster",
        "cluster_status",
        "The members sharing the store: their health and the deployables each runs",
        "ClusterStatus",
        errors=(503,),
    ),
    Operation("GET", "/jeos", "list_jeos", "List JEOS images", "[Jeos]", errors=()),
    Operation("POST", "/jeos", "create_jeos", "Register a JEOS image", "Jeos", 201, "JeosNew"),
    Operation("GET", "/jeos/{name}", "get_jeos", "Show a JEOS image", "Jeos"),
    Operation(
        "DELETE",
        "/jeos/{name}",
        "delete_jeos",
        "Delete a JEOS image (not the built-in host, not one an assembly uses)",
        status=204,
    ),
    Operation(
        "GET", "/assemblies", "list_assemblies", "List assemblies", "[AssemblyRow]", errors=()
    ),
    Operation(
        "POST", "/assemblies", "create_assembly", "Create an assembly", "Assembly", 201, "Assembly"
    ),
    Operation("GET", "/assemblies/{name}", "get_assembly", "Show an assembly", "Assembly"),
    Operation(
        "PUT",
        "/assemblies/{name}",
        "put_assembly",
        "Replace an assembly document",
        "Assembly",
        request="Assembly",
    ),
    Operation(
        "DELETE",
        "/assemblies/{name}",
        "delete_assembly",
        "Delete an assembly (refused while it is in a deployable)",
        status=204,
    ),
    Operation(
        "POST",
        "/assemblies/{assembly}/resources",
        "add_resource",
        "Add a resource to an assembly",
        "Resource",
        201,
        "Resource",
    ),
    Operation(
        "PUT",
        "/assemblies/{assembly}/resources/{resource}",
        "update_resource",
        "Replace a resource (also sets its escalation)",
        "Resource",
        request="Resource",
    ),
    Operation(
        "DELETE",
        "/assemblies/{assembly}/resources/{resource}",
        "remove_resource",
        "Remove a resource from an assembly",
        status=204,
    ),
    Operation(
        "PUT",
        "/assemblies/{assembly}/escalation",
        "set_assembly_escalation",
        "Set the assembly's escalation",
        "Escalation",
        request="Escalation",
    ),
    Operation(
        "GET", "/templates", "list_templates", "List resource templates", "[Template]", errors=()
    ),
    Operation(
        "POST",
        "/templates",
        "create_template",
        "Add a user resource template",
        "Template",
        201,
        "TemplateNew",
    ),
    Operation("GET", "/templates/{name}", "get_template", "Show a resource template", "Template"),
    Operation(
        "DELETE",
        "/templates/{name}",
        "delete_template",
        "Delete a user resource template",
        status=204,
    ),
    Operation(
        "GET", "/deployables", "list_deployables", "List deployables", "[DeployableRow]", errors=()
    ),
    Operation(
        "POST",
        "/deployables",
        "create_deployable",
        "Create an empty deployable",
        "Deployable",
        201,
        "DeployableNew",
    ),
    Operation(
        "GET",
        "/deployables/{name}",
        "get_deployable",
        "The whole document, assemblies expanded",
        "Deployable",
    ),
    Operation(
        "PUT",
        "/deployables/{name}",
        "put_deployable",
        "Import (create or replace) the whole document; creates or updates the"
        " assemblies it names; 201 when created",
        "Deployable",
        also=(201,),
        request="DeployableImport",
    ),
    Operation(
        "DELETE",
        "/deployables/{name}",
        "delete_deployable",
        "Delete a deployable (its assemblies are kept, free)",
        status=204,
        query=(_FORCE,),
    ),
    Operation(
        "POST",
        "/deployables/{name}/assemblies",
        "add_deployable_assembly",
        "Add an assembly to the deployable",
        "Deployable",
        request="Membership",
    ),
    Operation(
        "DELETE",
        "/deployables/{name}/assemblies/{assembly}",
        "remove_deployable_assembly",
        "Remove an assembly from the deployable",
        "Deployable",
    ),
    Operation(
        "POST",
        "/deployables/{name}/constraints",
        "add_constraint",
        "Add an order constraint (cycles are refused)",
        "Constraint",
        201,
        "Constraint",
    ),
    Operation(
        "DELETE",
        "/deployables/{name}/constraints",
        "remove_constraint",
        "Remove an order constraint",
        status=204,
        query=_CONSTRAINT_QUERY,
    ),
    Operation(
        "POST",
        "/deployables/{name}/services",
        "add_service",
        "Add a service: a resource that runs on the best of its candidate assemblies",
        "Service",
        201,
        "Service",
    ),
    Operation(
        "PUT",
        "/deployables/{name}/services/{service}",
        "update_service",
        "Replace a service's definition (candidates, scores, stickiness...)",
        "Service",
        request="Service",
    ),
    Operation(
        "DELETE",
        "/deployables/{name}/services/{service}",
        "remove_service",
        "Remove a service (refused while a constraint or colocation names it)",
        status=204,
    ),
    Operation(
        "POST",
        "/deployables/{name}/services/{service}/move",
        "move_service",
        "Ask the DPE to move a service to one of its assemblies; the request clears"
        " itself once the service runs there",
        "MoveAnswer",
        202,
        "MoveRequest",
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        "/deployables/{name}/colocations",
        "add_colocation",
        "Colocate a service with another (INFINITY: together; -INFINITY: never together)",
        "Colocation",
        201,
        "Colocation",
    ),
    Operation(
        "DELETE",
        "/deployables/{name}/colocations",
        "remove_colocation",
        "Remove a colocation",
        status=204,
        query=_COLOCATION_QUERY,
    ),
    Operation(
        "PUT",
        "/deployables/{name}/escalation",
        "set_deployable_escalation",
        "Set the deployable-level escalation",
        "Escalation",
        request="Escalation",
    ),
    Operation(
        "POST",
        "/deployables/{name}/start",
        "start_deployable",
        "Start the deployable: its document must be complete and its assemblies must"
        " have key pairs (409 otherwise); cped runs a DPE for it and keeps it running."
        " Idempotent: a running deployable answers 200 with note 'already running'; one"
        " that had failed gets a new DPE that clears the failed state",
        "LifecycleAnswer",
        errors=(404, 409, 503),
    ),
    Operation(
        "POST",
        "/deployables/{name}/stop",
        "stop_deployable",
        "Stop the deployable: its DPE stops the resources in reverse order, destroys the"
        " instances and exits (200); 202 while that takes longer than wait. A DPE still"
        " running after kill_after is killed, and a new DPE stops what it left",
        "LifecycleAnswer",
        also=(202,),
        query=_STOP_QUERY,
        errors=(400, 404, 503),
    ),
    Operation(
        "POST",
        "/deployables/{name}/reload",
        "reload_deployable",
        "Make the running DPE apply the stored document (SIGHUP; only what changed)",
        "LifecycleAnswer",
        errors=(404, 409, 503),
    ),
    Operation(
        "GET",
        "/deployables/{name}/status",
        "deployable_status",
        "Runtime status: states, DPE and lease, assemblies, instances, addresses,"
        " resources, failures, the latest events",
        "DeployableStatus",
        errors=(404,),
    ),
    Operation(
        "GET",
        "/deployables/{name}/cib",
        "deployable_cib",
        "The deployable as a Pacemaker CIB: the stored document and, while it runs, what"
        " its DPE recorded as the status section (not running: an empty status section)",
        "DeployableCib",
        errors=(404,),
    ),
    Operation(
        "GET",
        "/deployables/{name}/simulate",
        "simulate_deployable",
        "What-if: the actions the engine would take if the parts named failed now, from"
        " what its DPE recorded (not running: from the steady state); changes nothing",
        "Simulation",
        query=(
            Param(
                "fail",
                "the parts that fail, comma-separated: ASSEMBLY (its instance is lost) or"
                " ASSEMBLY/RESOURCE (its monitor found it not running)",
            ),
            Param(
                "policy_engine",
                "the planner: builtin or pacemaker (crm_simulate); default: [dped]"
                " policy_engine of the configuration",
                (("type", "string"), ("enum", ["builtin", "pacemaker"])),
            ),
        ),
        errors=(400, 404, 503),
    ),
    Operation(
        "GET",
        "/events",
        "query_events",
        "Query the event log",
        "[Event]",
        query=EVENT_QUERY,
        errors=(400,),
    ),
    Operation(
        "GET",
        "/events/stream",
        "stream_events",
        "Live events as server-sent events (id: the event id; event: event; data: the"
        " Event as JSON); a comment line every few seconds keeps the connection alive",
        "Event",
        query=STREAM_QUERY,
        errors=(400,),
        media=EVENT_STREAM,
    ),
)


# ---------------------------------------------------------------------------
# schemas

_ESCALATION_VALUE = {
    "oneOf": [{"type": "number"}, {"type": "string"}],
    "nullable": True,
    "description": "a number (seconds for period; '10s', '5m' accepted), or INFINITY / -1"
    " (or null, or empty) to disable",
}
_DURATION = {
    "oneOf": [{"type": "number"}, {"type": "string"}],
    "description": "seconds, or a duration such as '10s', '500ms', '2m', '1h'",
}
_NAME = {"type": "string", "pattern": _NAME_PATTERN}
_UUID = {"type": "string", "description": "uuid (32 hex digits); generated when absent"}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), extra: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> dict[str, Any]:
    if name.startswith("["):
        return {"type": "array", "items": _ref(name[1:-1])}
    return {"$ref": f"#/components/schemas/{name}"}


_RESOURCE = _object(
    {
        "name": _NAME,
        "class": {"type": "string", "enum": list(RESOURCE_CLASSES)},
        "provider": {"type": "string", "description": "OCF only (default heartbeat)"},
        "type": _NAME,
        "monitor_interval": _DURATION,
        "timeouts": {
            "type": "object",
            "properties": {op: _DURATION for op in OPERATIONS},
            "additionalProperties": False,
        },
        "parameters": {
            "type": "object",
            "additionalProperties": {
                "oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/Reference"}]
            },
        },
        "escalation": _ref("DocumentEscalation"),
    },
    ("name", "type"),
)

_DEPLOYABLE = _object(
    {
        "name": _NAME,
        "uuid": _UUID,
        "infrastructure": {"type": "string", "enum": list(INFRASTRUCTURES)},
        "settings": {"type": "object", "additionalProperties": {"type": "string"}},
        "heartbeat": _ref("Heartbeat"),
        "escalation": _ref("DocumentEscalation"),
        "assemblies": {"type": "array", "items": _ref("Assembly")},
        "constraints": {"type": "array", "items": _ref("Constraint")},
        "services": {"type": "array", "items": _ref("Service")},
        "colocations": {"type": "array", "items": _ref("Colocation")},
    },
    ("name",),
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Object": {"type": "object"},
    "Problem": _object({"path": {"type": "string"}, "message": {"type": "string"}}),
    "Error": _object(
        {
            "code": {"type": "string", "enum": [str(c) for c in Code]},
            "message": {"type": "string"},
            "details": {
                "description": "for invalid input, a list of Problem (every problem, with its"
                " path in the document); otherwise an object with context, or null",
                "nullable": True,
            },
        },
        ("code", "message", "details"),
    ),
    "Health": _object(
        {
            "status": {"type": "string", "enum": ["ok"]},
            "version": {"type": "string"},
            "pid": {"type": "integer"},
            "uptime": {"type": "number"},
            "config": {"type": "string", "nullable": True},
            "store": {"type": "string"},
        },
        ("status", "version", "pid", "uptime"),
    ),
    "ClusterStatus": _object(
        {
            "member": {"type": "string", "description": "the member that answered"},
            "store": {"type": "string"},
            "members": {"type": "array", "items": _ref("Member")},
            "unowned": {
                "type": "array",
                "items": _NAME,
                "description": "deployables whose lease nobody holds now",
            },
        },
        ("member", "store", "members", "unowned"),
    ),
    "Member": _object(
        {
            "name": _NAME,
            "url": {"type": "string", "nullable": True},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "health": {"type": "string", "enum": ["alive", "gone", "left"]},
            "heartbeat_age": {"type": "number", "description": "seconds, by the store's clock"},
            "deployables": {
                "type": "array",
                "items": _NAME,
                "description": "those whose lease one of its DPEs holds",
            },
            "self": {"type": "boolean", "description": "the member that answered"},
        },
        ("name", "health", "heartbeat_age", "deployables"),
    ),
    "JeosNew": _object(
        {
            "name": _NAME,
            "kind": {"type": "string", "enum": ["image"]},
            "path": {"type": "string", "description": "absolute path of the qcow2 image"},
            "arch": {"type": "string"},
            "release": {"type": "string"},
            "size": {"type": "integer", "nullable": True},
            "checksum": {"type": "string", "nullable": True},
            "created": {"type": "number"},
        },
        ("name", "path"),
    ),
    "Jeos": _object(
        {
            "name": _NAME,
            "kind": {"type": "string", "enum": ["host", "image"]},
            "path": {"type": "string", "nullable": True},
            "arch": {"type": "string"},
            "release": {"type": "string"},
            "size": {"type": "integer", "nullable": True},
            "checksum": {"type": "string", "nullable": True},
            "created": {"type": "number"},
        }
    ),
    "Escalation": _object(
        {"failures": _ESCALATION_VALUE, "period": _ESCALATION_VALUE}, ("failures", "period")
    ),
    # in a document either may be left out: escalation set by half is disabled
    "DocumentEscalation": _object({"failures": _ESCALATION_VALUE, "period": _ESCALATION_VALUE}),
    "Reference": _object(
        {"ref": {"type": "string", "description": "ASSEMBLY:ipaddress or ASSEMBLY:hostname"}},
        ("ref",),
    ),
    "Resource": _RESOURCE,
    "Assembly": _object(
        {
            "name": _NAME,
            "uuid": _UUID,
            "image": {**_NAME, "description": "the JEOS image (default: host)"},
            "escalation": _ref("DocumentEscalation"),
            "resources": {"type": "array", "items": _ref("Resource")},
        },
        ("name",),
    ),
    "AssemblyRow": {
        "allOf": [
            _ref("Assembly"),
            _object({"deployable": {**_NAME, "nullable": True}}, extra=True),
        ]
    },
    "TemplateNew": _object(
        {
            "name": _NAME,
            "description": {"type": "string"},
            "resource": {"type": "object", "description": "a Resource document without name"},
            "parameters_help": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        ("name", "resource"),
    ),
    "Template": _object(
        {
            "name": _NAME,
            "description": {"type": "string"},
            "builtin": {"type": "boolean"},
            "resource": {"type": "object", "description": "a Resource document without name"},
            "parameters_help": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    ),
    "Heartbeat": _object(
        {"interval": _DURATION, "timeout": _DURATION, "health_interval": _DURATION}
    ),
    "Constraint": _object(
        {
            "first": {"type": "string", "description": "ASSEMBLY/RESOURCE or SERVICE"},
            "then": {"type": "string", "description": "ASSEMBLY/RESOURCE or SERVICE"},
        },
        ("first", "then"),
    ),
    "Membership": _object({"assembly": _NAME}, ("assembly",)),
    "Score": {
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "description": "a whole number, INFINITY or -INFINITY",
    },
    "Location": _object(
        {"assembly": _NAME, "score": {"$ref": "#/components/schemas/Score"}}, ("assembly",)
    ),
    # a resource's fields and the service's own, in one closed object (an allOf of
    # two closed objects could never be satisfied)
    "Service": _object(
        {
            **_RESOURCE["properties"],
            "locations": {"type": "array", "items": _ref("Location")},
            "stickiness": {"$ref": "#/components/schemas/Score"},
            "migration_threshold": _ESCALATION_VALUE,
            "failure_timeout": _DURATION,
        },
        (*_RESOURCE["required"], "locations"),
    ),
    "Colocation": _object(
        {"service": _NAME, "with": _NAME, "score": {"$ref": "#/components/schemas/Score"}},
        ("service", "with"),
    ),
    "MoveRequest": _object({"assembly": _NAME}, ("assembly",)),
    "MoveAnswer": _object(
        {
            "service": _NAME,
            "to": _NAME,
            "requested_at": {"type": "number"},
            "note": {"type": "string"},
        }
    ),
    "DeployableNew": _object(
        {
            "name": _NAME,
            "uuid": _UUID,
            "infrastructure": {"type": "string", "enum": list(INFRASTRUCTURES)},
            "settings": {"type": "object", "additionalProperties": {"type": "string"}},
            "heartbeat": _ref("Heartbeat"),
            "escalation": _ref("DocumentEscalation"),
        },
        ("name",),
    ),
    "Deployable": _DEPLOYABLE,
    # PUT /deployables/{name}: the name may be left out (the URL's); if given, the same
    "DeployableImport": {k: v for k, v in _DEPLOYABLE.items() if k != "required"},
    "DeployableRow": _object(
        {
            "name": _NAME,
            "uuid": {"type": "string"},
            "infrastructure": {"type": "string"},
            "assemblies": {"type": "integer", "description": "how many"},
            "state": {"type": "string"},
            "desired_state": {"type": "string", "enum": ["stopped", "started"]},
        }
    ),
    "LifecycleAnswer": _object(
        {
            "deployable": _NAME,
            "desired": {"type": "string", "enum": ["stopped", "started"]},
            "state": {"type": "string", "description": "stop: stopped, or stopping (202)"},
            "pid": {"type": "integer", "nullable": True, "description": "the DPE's pid"},
            "note": {"type": "string", "description": "what was done"},
            "dpe": _object(
                {
                    "pid": {"type": "integer", "nullable": True},
                    "exit": {"type": "string", "description": "how the last DPE exited"},
                    "killed": {"type": "boolean"},
                    "left": {
                        "type": "array",
                        "items": _NAME,
                        "description": "assemblies whose instances could not be stopped",
                    },
                    "note": {"type": "string"},
                },
                extra=True,
            ),
        },
        ("deployable",),
        extra=True,
    ),
    "DeployableStatus": _object(
        {
            "name": _NAME,
            "state": {
                "type": "string",
                "description": "as the DPE recorded it: starting, running, recovering,"
                " failed, stopping, stopped",
            },
            "reason": {"type": "string"},
            "desired": {"type": "string", "enum": ["stopped", "started"]},
            "failures": {"type": "array", "items": {"type": "number"}},
            "dpe": _object(
                {
                    "pid": {"type": "integer", "nullable": True},
                    "alive": {"type": "boolean"},
                    "lease_epoch": {"type": "integer", "nullable": True},
                    "lease_holder": {"type": "string", "nullable": True},
                    "lease_expires_in": {"type": "number"},
                    "supervision": {
                        "type": "string",
                        "enum": ["stopped", "starting", "running", "stopping", "backoff"],
                    },
                    "adopted": {"type": "boolean", "description": "started by an earlier cped"},
                    "restarts": {"type": "integer", "description": "consecutive failed runs"},
                    "uptime": {"type": "number"},
                    "restart_in": {"type": "number"},
                    "note": {"type": "string"},
                    "member": {"type": "string", "description": "the cped member that runs it"},
                },
                ("pid", "alive", "lease_epoch"),
            ),
            "assemblies": {"type": "array", "items": _ref("AssemblyStatus")},
            "services": {"type": "array", "items": _ref("ServiceStatus")},
            "last_events": {"type": "array", "items": _ref("Event")},
        },
        ("name", "state", "desired", "dpe", "assemblies", "last_events"),
    ),
    "ServiceStatus": _object(
        {
            "name": _NAME,
            "agent": {"type": "string"},
            "locations": {"type": "array", "items": _ref("Location")},
            "running_on": {"type": "array", "items": _NAME},
        },
        ("name", "running_on"),
    ),
    "AssemblyStatus": _object(
        {
            "name": _NAME,
            "state": {"type": "string"},
            "reason": {"type": "string"},
            "failures": {"type": "array", "items": {"type": "number"}},
            "instance": {"type": "string", "nullable": True, "description": "instance id"},
            "address": {"type": "string", "nullable": True},
            "hostname": {"type": "string", "nullable": True},
            "ssh_host": {"type": "string", "nullable": True, "description": "where SSH connects"},
            "ssh_port": {"type": "integer", "nullable": True},
            "username": {"type": "string", "nullable": True, "description": "the login user"},
            "uptime": {"type": "number", "description": "seconds since the instance was made"},
            "resources": {"type": "array", "items": _ref("ResourceStatus")},
        },
        ("name", "state", "instance", "address", "resources"),
    ),
    "ResourceStatus": _object(
        {
            "name": _NAME,
            "agent": {"type": "string"},
            "state": {"type": "string"},
            "failures": {
                "type": "array",
                "items": {"type": "number"},
                "description": "times of the failures in the escalation window",
            },
            "last_op": {"type": "string", "nullable": True},
            "last_rc": {"type": "integer", "nullable": True},
            "service": {"type": "boolean", "description": "a service's copy on this assembly"},
        },
        ("name", "state", "failures", "last_rc"),
    ),
    "DeployableCib": _object(
        {
            "deployable": _NAME,
            "state": {"type": "string", "description": "the state its DPE recorded"},
            "source": {
                "type": "string",
                "enum": ["runtime", "document"],
                "description": "runtime: the status section is what the DPE recorded;"
                " document: not running, the status section is empty",
            },
            "cib": {"type": "string", "description": "the CIB (XML, Pacemaker 2.1)"},
        },
        ("deployable", "state", "source", "cib"),
    ),
    "Simulation": _object(
        {
            "deployable": _NAME,
            "state": {"type": "string"},
            "source": {
                "type": "string",
                "enum": ["runtime", "steady_state"],
                "description": "planned from what the DPE recorded, or (not running)"
                " from everything up as the document asks",
            },
            "policy_engine": {"type": "string", "enum": ["builtin", "pacemaker"]},
            "failures": {"type": "array", "items": {"type": "string"}},
            "notes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "escalations that happen first, failures that change nothing",
            },
            "given_up": {"type": "boolean", "description": "the deployable would be failed"},
            "actions": {"type": "array", "items": _ref("SimulatedAction")},
            "blocked": {
                "type": "array",
                "items": _object({"resource": {"type": "string"}, "reason": {"type": "string"}}),
            },
            "dot": {"type": "string", "description": "the plan as a Graphviz digraph"},
        },
        ("deployable", "source", "policy_engine", "failures", "notes", "actions", "dot"),
    ),
    "SimulatedAction": _object(
        {
            "step": {"type": "integer", "description": "1, 2...: an order that respects 'after'"},
            "action": {
                "type": "string",
                "enum": ["create", "fence", "probe", "stop", "start", "monitor"],
            },
            "assembly": _NAME,
            "resource": {**_NAME, "nullable": True},
            "interval": {"type": "number", "nullable": True, "description": "monitor: seconds"},
            "text": {"type": "string"},
            "after": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "the steps it waits for",
            },
        },
        ("step", "action", "assembly", "text", "after"),
    ),
    "Event": _object(
        {
            "id": {"type": "integer"},
            "time": {"type": "number", "description": "seconds since the epoch"},
            "deployable": _NAME,
            "assembly": {**_NAME, "nullable": True},
            "resource": {**_NAME, "nullable": True},
            "state": {"type": "string"},
            "reason": {"type": "string"},
        }
    ),
}


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in ROUTES:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pacemaker-cloud CPE API",
            "version": __version__,
            "description": "cped's API, HTTP/1.1 + JSON on a UNIX socket (mode 0660; the"
            " peer's uid must be root, cped's own, one of allowed_users or a member of"
            " socket_group), and optionally on a TCP listener that requires TLS and a bearer"
            " token. Every error is an Error object; a rejected request changes nothing.",
        },
        # No credentials on the UNIX socket (the peer's uid decides); a bearer token on TCP.
        "security": [{}, {"bearerToken": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": _error_responses(),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token of cped's token_file; required on the TCP"
                    " listener only",
                }
            },
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    params = [
        Param(n, f"the {n}'s name", _NAME_PARAM, True).to_openapi("path") for n in op.path_params
    ]
    params += [p.to_openapi("query") for p in op.query]
    if op.operation_id == "stream_events":
        params.append(
            Param("Last-Event-ID", "resume after this event id", _ID).to_openapi("header")
        )
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": params,
        "responses": _responses(op),
    }
    if op.request:
        spec["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _ref(op.request)}},
        }
    return spec


def _responses(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        success["content"] = {op.media: {"schema": _ref(op.response)}}
    responses: dict[str, Any] = {str(status): success for status in (op.status, *op.also)}
    for status in sorted({*op.errors, *EVERY_ROUTE_ERRORS}):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _error_responses() -> dict[str, Any]:
    texts = {
        400: "invalid: malformed JSON, wrong content type, unknown fields or invalid values"
        " (details lists every problem with its path)",
        401: "unauthorized: on the TCP listener, a missing or wrong bearer token",
        403: "forbidden: the peer's uid may not use the API (UNIX socket)",
        404: "not_found: no such object (or no such route)",
        409: "conflict: duplicate name, object in use, or the wrong state",
        500: "internal or store_error",
        503: "unavailable: this API runs no DPE supervisor",
    }
    return {
        f"E{status}": {
            "description": text,
            "content": {JSON: {"schema": _ref("Error")}},
        }
        for status, text in texts.items()
    }
