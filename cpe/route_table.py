"""Every route of cped's API, declared once (see ``cpe.routes`` for what a
declaration says and what is made from it).

Targets in ``cpe.catalog`` answer from the store alone (each one store
transaction); ``Lifecycle`` methods act through the DPE supervisor;
``cpe.operations`` answers what needs more than one of those.  Models are named
here and defined in ``foundation.schema`` (the document), ``cpe.bodies``
(requests) and ``cpe.answers`` (answers).

Standard library only: the client imports this table.
"""

from __future__ import annotations

from cpe.routes import EVENT_STREAM, FORCE_WAIT, STOP_WAIT, Route

JEOS = "cpe.catalog.jeos"
ASSEMBLIES = "cpe.catalog.assemblies"
TEMPLATES = "cpe.catalog.templates"
DEPLOYABLES = "cpe.catalog.deployables"
CONSTRAINTS = "cpe.catalog.constraints"
SERVICES = "cpe.catalog.services"
LIFECYCLE = "cpe.lifecycle:Lifecycle"
OPERATIONS = "cpe.operations"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/health", "health", "Daemon health and version", f"{OPERATIONS}:health", "Health",
        errors=(),
    ),
    Route(
        "GET", "/openapi.json", "openapi", "This document", f"{OPERATIONS}:openapi", "Object",
        errors=(),
    ),
    Route(
        "GET", "/cluster", "cluster_status",
        "The members sharing the store: their health and the deployables each runs",
        f"{OPERATIONS}:cluster_status", "ClusterStatus", errors=(503,),
    ),
    # -- JEOS images
    Route("GET", "/jeos", "list_jeos", "List JEOS images", f"{JEOS}:rows", "[Jeos]", errors=()),
    Route(
        "POST", "/jeos", "create_jeos", "Register a JEOS image", f"{JEOS}:create", "Jeos", 201,
        request="JeosNew",
    ),
    Route("GET", "/jeos/{name}", "get_jeos", "Show a JEOS image", f"{JEOS}:get", "Jeos"),
    Route(
        "DELETE", "/jeos/{name}", "delete_jeos",
        "Delete a JEOS image (not the built-in host, not one an assembly uses)",
        f"{JEOS}:delete", status=204,
    ),
    # -- assemblies and their resources
    Route(
        "GET", "/assemblies", "list_assemblies", "List assemblies", f"{ASSEMBLIES}:rows",
        "[AssemblyRow]", errors=(),
    ),
    Route(
        "POST", "/assemblies", "create_assembly", "Create an assembly", f"{ASSEMBLIES}:create",
        "Assembly", 201, request="Assembly",
    ),
    Route(
        "GET", "/assemblies/{name}", "get_assembly", "Show an assembly", f"{ASSEMBLIES}:get",
        "Assembly",
    ),
    Route(
        "PUT", "/assemblies/{name}", "put_assembly", "Replace an assembly document",
        f"{ASSEMBLIES}:replace", "Assembly", request="AssemblyReplacement",
    ),
    Route(
        "DELETE", "/assemblies/{name}", "delete_assembly",
        "Delete an assembly (refused while it is in a deployable)", f"{ASSEMBLIES}:delete",
        status=204,
    ),
    Route(
        "POST", "/assemblies/{assembly}/resources", "add_resource",
        "Add a resource to an assembly", f"{ASSEMBLIES}:add_resource", "Resource", 201,
        request="Resource",
    ),
    Route(
        "PUT", "/assemblies/{assembly}/resources/{resource}", "update_resource",
        "Replace a resource (also sets its escalation)", f"{ASSEMBLIES}:update_resource",
        "Resource", request="Resource",
    ),
    Route(
        "DELETE", "/assemblies/{assembly}/resources/{resource}", "remove_resource",
        "Remove a resource from an assembly", f"{ASSEMBLIES}:remove_resource", status=204,
    ),
    Route(
        "PUT", "/assemblies/{assembly}/escalation", "set_assembly_escalation",
        "Set the assembly's escalation", f"{ASSEMBLIES}:set_escalation", "Escalation",
        request="EscalationSetting",
    ),
    # -- resource templates
    Route(
        "GET", "/templates", "list_templates", "List resource templates", f"{TEMPLATES}:rows",
        "[Template]", errors=(),
    ),
    Route(
        "POST", "/templates", "create_template", "Add a user resource template",
        f"{TEMPLATES}:create", "Template", 201, request="TemplateNew",
    ),
    Route(
        "GET", "/templates/{name}", "get_template", "Show a resource template",
        f"{TEMPLATES}:get", "Template",
    ),
    Route(
        "DELETE", "/templates/{name}", "delete_template", "Delete a user resource template",
        f"{TEMPLATES}:delete", status=204,
    ),
    # -- deployables
    Route(
        "GET", "/deployables", "list_deployables", "List deployables", f"{DEPLOYABLES}:rows",
        "[DeployableRow]", errors=(),
    ),
    Route(
        "POST", "/deployables", "create_deployable", "Create an empty deployable",
        f"{OPERATIONS}:create_deployable", "Deployable", 201, request="DeployableNew",
    ),
    Route(
        "GET", "/deployables/{name}", "get_deployable",
        "The whole document, assemblies expanded", f"{DEPLOYABLES}:get", "Deployable",
    ),
    Route(
        "PUT", "/deployables/{name}", "put_deployable",
        "Import (create or replace) the whole document; creates or updates the assemblies it"
        " names; 201 when created",
        f"{OPERATIONS}:put_deployable", "Deployable", request="DeployableImport", also=(201,),
    ),
    Route(
        "DELETE", "/deployables/{name}", "delete_deployable",
        "Delete a deployable (its assemblies are kept, free)", f"{LIFECYCLE}.delete",
        status=204, query="DeleteQuery", waits=FORCE_WAIT,
    ),
    Route(
        "POST", "/deployables/{name}/assemblies", "add_deployable_assembly",
        "Add an assembly to the deployable", f"{DEPLOYABLES}:add_assembly", "Deployable",
        request="Membership",
    ),
    Route(
        "DELETE", "/deployables/{name}/assemblies/{assembly}", "remove_deployable_assembly",
        "Remove an assembly from the deployable", f"{DEPLOYABLES}:remove_assembly",
        "Deployable",
    ),
    Route(
        "POST", "/deployables/{name}/constraints", "add_constraint",
        "Add an order constraint (cycles are refused)", f"{CONSTRAINTS}:add", "Constraint",
        201, request="Constraint",
    ),
    Route(
        "DELETE", "/deployables/{name}/constraints", "remove_constraint",
        "Remove an order constraint", f"{CONSTRAINTS}:remove", status=204,
        query="ConstraintQuery",
    ),
    Route(
        "POST", "/deployables/{name}/services", "add_service",
        "Add a service: a resource that runs on the best of its candidate assemblies",
        f"{SERVICES}:add", "Service", 201, request="Service",
    ),
    Route(
        "PUT", "/deployables/{name}/services/{service}", "update_service",
        "Replace a service's definition (candidates, scores, stickiness...)",
        f"{SERVICES}:update", "Service", request="Service",
    ),
    Route(
        "DELETE", "/deployables/{name}/services/{service}", "remove_service",
        "Remove a service (refused while a constraint or colocation names it)",
        f"{SERVICES}:remove", status=204,
    ),
    Route(
        "POST", "/deployables/{name}/services/{service}/move", "move_service",
        "Ask the DPE to move a service to one of its assemblies; the request clears itself"
        " once the service runs there",
        f"{OPERATIONS}:move_service", "MoveAnswer", 202, request="MoveRequest",
    ),
    Route(
        "POST", "/deployables/{name}/colocations", "add_colocation",
        "Colocate a service with another (INFINITY: together; -INFINITY: never together)",
        f"{SERVICES}:add_colocation", "Colocation", 201, request="Colocation",
    ),
    Route(
        "DELETE", "/deployables/{name}/colocations", "remove_colocation",
        "Remove a colocation", f"{SERVICES}:remove_colocation", status=204,
        query="ColocationQuery",
    ),
    Route(
        "PUT", "/deployables/{name}/escalation", "set_deployable_escalation",
        "Set the deployable-level escalation", f"{DEPLOYABLES}:set_escalation", "Escalation",
        request="EscalationSetting",
    ),
    # -- lifecycle and what the DPE recorded
    Route(
        "POST", "/deployables/{name}/start", "start_deployable",
        "Start the deployable: its document must be complete and its assemblies must have key"
        " pairs (409 otherwise); cped runs a DPE for it and keeps it running. Idempotent: a"
        " running deployable answers 200 with note 'already running'; one that had failed"
        " gets a new DPE that clears the failed state",
        f"{LIFECYCLE}.start", "LifecycleAnswer", errors=(404, 409, 503),
    ),
    Route(
        "POST", "/deployables/{name}/stop", "stop_deployable",
        "Stop the deployable: its DPE stops the resources in reverse order, destroys the"
        " instances and exits (200); 202 while that takes longer than wait. A DPE still running"
        " after kill_after is killed, and a new DPE stops what it left",
        f"{LIFECYCLE}.stop_request", "LifecycleAnswer", also=(202,), query="StopQuery",
        errors=(400, 404, 503), waits=STOP_WAIT,
    ),
    Route(
        "POST", "/deployables/{name}/reload", "reload_deployable",
        "Make the running DPE apply the stored document (SIGHUP; only what changed)",
        f"{LIFECYCLE}.reload", "LifecycleAnswer", errors=(404, 409, 503),
    ),
    Route(
        "POST", "/deployables/{name}/cleanup", "cleanup_deployable",
        "Clean up failures, as crm_resource --cleanup: the running DPE forgets the fail counts"
        " (and the failed-op history) of the deployable, one assembly, or one resource"
        " (assembly and resource in the body), probes again what was unrecoverable and plans"
        " again; an event says what was cleaned. 202 once recorded for the DPE; 200 when the"
        " deployable does not run (a stop forgets every failure)",
        f"{OPERATIONS}:cleanup_deployable", "CleanupAnswer", 202, request="CleanupRequest",
        also=(200,), errors=(400, 404),
    ),
    Route(
        "GET", "/deployables/{name}/status", "deployable_status",
        "Runtime status: states, DPE and lease, assemblies, instances, addresses, resources,"
        " failures, the latest events",
        f"{LIFECYCLE}.status", "DeployableStatus", errors=(404,),
    ),
    Route(
        "GET", "/deployables/{name}/diff", "diff_deployable",
        "What a reload would change: the stored document against the one the running DPE"
        " runs (assemblies, resources, constraints, services, colocations, settings); all"
        " empty when nothing is pending or no DPE runs",
        "cpe.catalog.pending:diff", "DeployableDiff", errors=(400, 404),
    ),
    Route(
        "GET", "/deployables/{name}/cib", "deployable_cib",
        "The deployable as a Pacemaker CIB: the stored document and, while it runs, what its"
        " DPE recorded as the status section (not running: an empty status section)",
        f"{OPERATIONS}:deployable_cib", "DeployableCib", errors=(404,),
    ),
    Route(
        "GET", "/deployables/{name}/simulate", "simulate_deployable",
        "What-if: the actions the engine would take if the parts named failed now, from what"
        " its DPE recorded (not running: from the steady state); changes nothing",
        f"{OPERATIONS}:simulate_deployable", "Simulation", query="SimulateQuery",
        errors=(400, 404, 503),
    ),
    # -- events
    Route(
        "GET", "/events", "query_events", "Query the event log", "cpe.catalog.events:query",
        "[Event]", query="EventQuery", errors=(400,),
    ),
    Route(
        "GET", "/events/stream", "stream_events",
        "Live events as server-sent events (id: the event id; event: event; data: the Event"
        " as JSON); a comment line every few seconds keeps the connection alive",
        "cpe.eventstream:stream_events", "Event", query="StreamQuery", errors=(400,),
        media=EVENT_STREAM,
    ),
)  # fmt: skip
