"""The deployable as a Pacemaker CIB, from the same inputs as the built-in planner.

``export_cib(document, observed=None)`` gives the CIB as text; ``build_cib``
also gives the maps from Pacemaker's ids back to assemblies and resources
(``dpe.pacemaker`` reads ``crm_simulate``'s answers with them).  Valid for
Pacemaker 2.1 (``crm_verify`` passes): ``crm_feature_set`` is ``3.16.1`` on the
``<cib>`` and on every op record, since 2.1.5's scheduler aborts on anything
newer.

Its length is the CIB's: one writer for each section, kept in one module so
that the whole mapping reads in one place.

What the CIB says, and why:

- options: ``stonith-enabled=false`` (the engine fences through the
  infrastructure driver, never Pacemaker; so no ``startup-fencing`` either),
  ``symmetric-cluster=false`` (a resource runs only where a location allows
  it), ``no-quorum-policy=ignore``, ``start-failure-is-fatal=false`` (a failed start
  is retried on the same assembly, as the planner does) and, when the goal is
  to stop, ``stop-all-resources=true``;
- nodes: one per assembly (id = its uuid, uname = its name), plus the
  assemblies the observed state still has but the document dropped;
- primitives: one per resource, with its class, provider and type, its
  resolved parameters as instance attributes, and start, stop and recurring
  monitor ops with their intervals and timeouts; each is pinned to its
  assembly (location INFINITY, ``resource-discovery=exclusive``: probed there
  only);
- order constraints: ``Mandatory`` (and symmetrical: stopped in reverse);
- ``target-role=Stopped`` where the planner would not start the resource now:
  removed from the document (an orphan), waiting for another assembly's
  address or hostname, or backing off after failures in a row (the primitive's
  ``description`` says which);
- status: each assembly's membership (online when RUNNING, cleanly down
  otherwise: Pacemaker schedules nothing there, like the planner) and, on
  online assemblies, each resource's op history as ``lrm_rsc_op`` records with
  rc codes (``dpe.cib_history``), the agent it was started with, and the digest
  of the parameters it was started with, so that changed parameters (a
  referenced assembly came back with a new address) restart it as they do in
  the planner.  A resource the planner does not know the state of (unknown,
  starting, stopping) has no history: Pacemaker probes it.

Services (resources not bound to one assembly) are primitives ``svc_NAME``
with a location constraint of their score on each candidate (probed there
only), ``resource-stickiness``, ``migration-threshold`` and ``failure-timeout``
(in whole seconds, as Pacemaker keeps it) as meta attributes, colocations as
``rsc_colocation``, the op history of their copy on each candidate, and their
fail count on each running assembly as Pacemaker's transient node attributes
(``fail-count-svc_NAME#monitor_MS`` and ``last-failure-...``, the failures
that still count, as ``dpe.assignment.fail_count`` counts them), and a move an
administrator asked for as a location of INFINITY on that assembly (what
``crm_resource --move`` adds).  The CIB's time (``Cib.now``, the time of the observed
state) is what ``crm_simulate`` must take for now (``--set-datetime``): fail
counts expire against it.

Escalation, failure windows and back-off timers are the engine's: the CIB
shows their effect (a failed assembly, a resource held stopped), not the
policy.

Ids: names may contain ``_``, ``.`` and ``-``.  Every ``_`` inside a name is
doubled, so a single ``_`` only ever separates the parts of an id:
``rsc_web_db`` is resource ``db`` of assembly ``web``, ``rsc_my__app_db``
resource ``db`` of ``my_app``; ``order_a_x_b_y`` orders ``a/x`` before
``b/y``.  Ids made of different kinds or numbers of parts never collide.

(About 500 lines: this text is the export's specification, and the writer is
one pass over the CIB, element by element; the op history is apart.)
"""

from __future__ import annotations

import math
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dpe.assignment import fail_count, whole_seconds
from dpe.cib_history import (
    OpRecord,
    interval_ms,
    op_digest,
    rsc_op_records,
    timeout_ms,
    xml_text,
)
from dpe.planner import (
    AssemblyStatus,
    Goal,
    Observed,
    literal_params,
    resolve,
    unresolved,
)
from dpe.states import AssemblyState, ResourceState
from foundation.model import (
    Constraint,
    Deployable,
    Resource,
    ResourceId,
    Service,
    score_text,
    service_id,
)

FEATURE_SET = "3.16.1"  # the newest Pacemaker 2.1.5 accepts
SCHEMA = "pacemaker-3.9"
ORIGIN = "pacemaker-cloud"
_NIL_UUID = "00000000-0000-0000-0000-000000000000"
STOPPED_ROLE = "Stopped"

OPTIONS = (
    ("stonith-enabled", "false"),
    ("symmetric-cluster", "false"),
    ("no-quorum-policy", "ignore"),
    ("start-failure-is-fatal", "false"),
)


# ---------------------------------------------------------------------------
# ids


def _part(name: str) -> str:
    return name.replace("_", "__")


def make_id(*parts: str) -> str:
    """An id whose single underscores only separate ``parts``."""
    return "_".join(_part(p) for p in parts)


def primitive_id(rid: ResourceId) -> str:
    """``rsc_ASSEMBLY_RESOURCE``; a service (no assembly of its own) is ``svc_NAME``."""
    if rid.is_service:
        return make_id("svc", rid.resource)
    return make_id("rsc", rid.assembly, rid.resource)


def node_id(assembly: str, uuid: str | None) -> str:
    """The assembly's uuid; an assembly no longer in the document has none."""
    return uuid or f"orphan-{assembly}"


# ---------------------------------------------------------------------------
# the result


@dataclass(frozen=True)
class Cib:
    """A CIB and the maps from its ids back to the deployable."""

    xml: str
    resources: Mapping[str, ResourceId]  # primitive id -> resource
    nodes: Mapping[str, str]  # uname -> assembly (the same name)
    monitor_intervals: Mapping[ResourceId, float] = field(default_factory=dict)  # seconds
    stopped: Mapping[ResourceId, str] = field(default_factory=dict)  # held stopped: why
    now: float | None = None  # the time of its status section (None: it has none)

    def resource(self, primitive: str) -> ResourceId | None:
        return self.resources.get(primitive)


def export_cib(document: Deployable, observed: Observed | None = None) -> str:
    """The deployable (and, if given, its observed state) as a Pacemaker CIB."""
    return build_cib(document, observed).xml


def build_cib(document: Deployable, observed: Observed | None = None) -> Cib:
    return _Writer(document, observed).write()


# ---------------------------------------------------------------------------
# writing


class _Writer:
    """One export: the inputs, the ids chosen, and the XML tree."""

    def __init__(self, document: Deployable, observed: Observed | None) -> None:
        self.doc = document
        self.obs = observed or Observed(Goal.RUN, {}, {})
        self.known = observed is not None
        self.definitions: dict[ResourceId, Resource] = {}
        for assembly in document.assemblies:
            for resource in assembly.resources:
                self.definitions[ResourceId(assembly.name, resource.name)] = resource
        self.orphans = {r: d for r, d in self.obs.orphans.items() if r not in self.definitions}
        self.definitions.update(self.orphans)
        self.resolved = {
            rid: resolve(d, self.obs.assemblies) for rid, d in self.definitions.items()
        }
        self.ids = {rid: primitive_id(rid) for rid in self.definitions}
        self.services = {service_id(s.name): s for s in document.services}
        self.ids |= {sid: primitive_id(sid) for sid in self.services}
        self.uuids = {a.name: a.uuid for a in document.assemblies}
        self.stopped: dict[ResourceId, str] = {}
        self.call_id = 0
        # transition keys name the controller that ran the op by a uuid: the deployable's
        self.transition_uuid = str(uuidlib.UUID(document.uuid)) if document.uuid else _NIL_UUID

    def write(self) -> Cib:
        self.stopped = {rid: why for rid in self.definitions if (why := self._held_stopped(rid))}
        cib = ET.Element("cib", self._cib_attributes())
        configuration = ET.SubElement(cib, "configuration")
        configuration.append(self._crm_config())
        configuration.append(self._nodes())
        configuration.append(self._resources())
        configuration.append(self._constraints())
        cib.append(self._status())
        ET.indent(cib)
        return Cib(
            xml=ET.tostring(cib, encoding="unicode") + "\n",
            resources={pid: rid for rid, pid in self.ids.items()},
            nodes={name: name for name in self._assembly_names()},
            monitor_intervals={
                **{r: d.monitor_interval for r, d in self.definitions.items()},
                **{
                    r: s.resource.monitor_interval
                    for s in self.services.values()
                    for r in (service_id(s.name), *_copies(s))
                },
            },
            stopped=dict(self.stopped),
            now=self.obs.now if self.known else None,
        )

    def _cib_attributes(self) -> dict[str, str]:
        return {
            "crm_feature_set": FEATURE_SET,
            "validate-with": SCHEMA,
            "epoch": "1",
            "num_updates": "0",
            "admin_epoch": "0",
            "have-quorum": "1",
        }

    # -- configuration ----------------------------------------------------------

    def _crm_config(self) -> ET.Element:
        options = list(OPTIONS)
        if self.obs.goal is Goal.STOP:
            options.append(("stop-all-resources", "true"))
        crm_config = ET.Element("crm_config")
        props = ET.SubElement(crm_config, "cluster_property_set", id="cib-bootstrap-options")
        for name, value in options:
            ET.SubElement(props, "nvpair", id=make_id("option", name), name=name, value=value)
        return crm_config

    def _assembly_names(self) -> list[str]:
        names = [a.name for a in self.doc.assemblies]
        extra = set(self.obs.assemblies) | {rid.assembly for rid in self.orphans}
        return names + sorted(extra - set(names))

    def _nodes(self) -> ET.Element:
        nodes = ET.Element("nodes")
        for name in self._assembly_names():
            ET.SubElement(nodes, "node", id=self._node_id(name), uname=name, type="member")
        return nodes

    def _node_id(self, assembly: str) -> str:
        return node_id(assembly, self.uuids.get(assembly))

    def _resources(self) -> ET.Element:
        resources = ET.Element("resources")
        for rid, definition in self.definitions.items():
            resources.append(self._primitive(rid, definition))
        for sid, service in self.services.items():
            resources.append(self._service_primitive(sid, service))
        return resources

    def _service_primitive(self, sid: ResourceId, service: Service) -> ET.Element:
        pid = self.ids[sid]
        definition = service.resource
        primitive = ET.Element("primitive", _agent_attributes(definition.agent), id=pid)
        params = resolve(definition, self.obs.assemblies) or literal_params(definition)
        _add_params(primitive, (pid,), params)
        meta = {"resource-stickiness": str(score_text(service.stickiness))}
        if service.migration_threshold:
            meta["migration-threshold"] = str(service.migration_threshold)
        if service.failure_timeout:
            meta["failure-timeout"] = f"{whole_seconds(service.failure_timeout)}s"
        _add_meta(primitive, (pid,), meta)
        primitive.append(self._operations(sid, definition))
        return primitive

    def _primitive(self, rid: ResourceId, definition: Resource) -> ET.Element:
        pid = self.ids[rid]
        primitive = ET.Element("primitive", _agent_attributes(definition.agent), id=pid)
        if rid in self.stopped:
            primitive.set("description", self.stopped[rid])
        _add_params(primitive, ("rsc", *_parts(rid)), self._params(rid))
        _add_meta(primitive, ("rsc", *_parts(rid)), self._meta(rid))
        primitive.append(self._operations(rid, definition))
        return primitive

    def _operations(self, rid: ResourceId, definition: Resource) -> ET.Element:
        operations = ET.Element("operations")
        ms = interval_ms(definition.monitor_interval)
        for name, interval in (("monitor", ms), ("start", 0), ("stop", 0)):
            ET.SubElement(
                operations,
                "op",
                id=make_id("rsc", *_parts(rid), "op", name, str(interval)),
                name=name,
                interval=f"{interval}ms",
                timeout=f"{timeout_ms(definition.timeout(name))}ms",
            )
        return operations

    def _meta(self, rid: ResourceId) -> dict[str, str]:
        meta = {}
        if rid in self.stopped:
            meta["target-role"] = STOPPED_ROLE
        return meta

    def _params(self, rid: ResourceId) -> Mapping[str, str]:
        """What it should run with: resolved; else as it runs; else the plain values."""
        resolved = self.resolved[rid]
        if resolved is not None:
            return resolved
        applied = self.obs.resource(rid).applied
        if applied is not None:
            return dict(applied.params)
        return literal_params(self.definitions[rid])

    def _held_stopped(self, rid: ResourceId) -> str | None:
        """Why the planner would not start it now (None: it may start)."""
        if rid in self.orphans:
            return "removed from the deployable"
        status = self.obs.resource(rid)
        if status.state is ResourceState.RUNNING:
            return None  # the planner never stops a running resource for these reasons
        if self.resolved[rid] is None and self.known:
            ref = unresolved(self.definitions[rid], self.obs.assemblies)
            assert ref is not None
            return f"waiting for the {ref.attribute} of assembly {ref.assembly}"
        if status.retry_at is not None and status.retry_at > self.obs.now:
            return f"backing off after failures in a row until {status.retry_at:g}"
        return None

    def _constraints(self) -> ET.Element:
        constraints = ET.Element("constraints")
        for rid in self.definitions:
            ET.SubElement(
                constraints,
                "rsc_location",
                {"resource-discovery": "exclusive"},
                id=make_id("location", *_parts(rid)),
                rsc=self.ids[rid],
                node=rid.assembly,
                score="INFINITY",
            )
        for sid, service in self.services.items():
            for location in service.locations:
                ET.SubElement(
                    constraints,
                    "rsc_location",
                    {"resource-discovery": "exclusive"},
                    id=make_id("location", service.name, location.assembly),
                    rsc=self.ids[sid],
                    node=location.assembly,
                    score=str(score_text(location.score)),
                )
            moved_to = self.obs.move_requests.get(service.name)
            if moved_to is not None and service.location(moved_to) is not None:
                ET.SubElement(
                    constraints,
                    "rsc_location",
                    {"resource-discovery": "exclusive"},  # as its other locations: probed there
                    id=make_id("move", service.name),
                    rsc=self.ids[sid],
                    node=moved_to,
                    score="INFINITY",
                )
        for colocation in self.doc.colocations:
            ET.SubElement(
                constraints,
                "rsc_colocation",
                {"with-rsc": self.ids[service_id(colocation.with_)]},
                id=make_id("colocation", colocation.service, colocation.with_),
                rsc=self.ids[service_id(colocation.service)],
                score=str(score_text(colocation.score)),
            )
        for c in self._orderings():
            ET.SubElement(
                constraints,
                "rsc_order",
                id=make_id("order", *_parts(c.first), *_parts(c.then)),
                first=self.ids[c.first],
                then=self.ids[c.then],
                kind="Mandatory",
            )
        return constraints

    def _orderings(self) -> Iterator[Constraint]:
        seen: set[Constraint] = set()
        for c in (*self.doc.constraints, *self.obs.orphan_constraints):
            if c.first in self.ids and c.then in self.ids and c not in seen:
                seen.add(c)
                yield c

    # -- status -----------------------------------------------------------------

    def _status(self) -> ET.Element:
        status = ET.Element("status")
        if not self.known:
            return status
        for name in self._assembly_names():
            status.append(self._node_state(name, self.obs.assembly(name)))
        return status

    def _node_state(self, name: str, assembly: AssemblyStatus) -> ET.Element:
        nid = self._node_id(name)
        online = assembly.state is AssemblyState.RUNNING
        node_state = ET.Element(
            "node_state",
            {"id": nid, "uname": name, "crm-debug-origin": ORIGIN},
            in_ccm="true" if online else "false",
            crmd="online" if online else "offline",
            join="member" if online else "down",
            expected="member" if online else "down",
        )
        if online:
            attributes = self._fail_counts(name)
            if attributes:
                node_state.append(attributes)
            lrm = ET.SubElement(node_state, "lrm", id=nid)
            lrm_resources = ET.SubElement(lrm, "lrm_resources")
            for rid in self.definitions:
                if rid.assembly == name:
                    entry = self._lrm_resource(rid)
                    if entry is not None:
                        lrm_resources.append(entry)
            for sid, service in self.services.items():
                if service.location(name) is not None:
                    entry = self._lrm_service(sid, service, name)
                    if entry is not None:
                        lrm_resources.append(entry)
        return node_state

    def _fail_counts(self, assembly: str) -> ET.Element | None:
        """The services' fail counts on an assembly, as transient node attributes."""
        nid = self._node_id(assembly)
        values: dict[str, str] = {}
        for sid, service in self.services.items():
            times = self.obs.service_failures.get(ResourceId(assembly, service.name), ())
            count, _ = fail_count(times, service, self.obs.now)
            if count:
                op = f"{self.ids[sid]}#monitor_{interval_ms(service.resource.monitor_interval)}"
                values[f"fail-count-{op}"] = str(count)
                values[f"last-failure-{op}"] = str(math.floor(max(times)))
        if not values:
            return None
        transient = ET.Element("transient_attributes", id=nid)
        attributes = ET.SubElement(transient, "instance_attributes", id=make_id("status", nid))
        for i, (name, value) in enumerate(values.items()):
            nvpair_id = make_id("status", nid, str(i))
            ET.SubElement(attributes, "nvpair", id=nvpair_id, name=name, value=value)
        return transient

    def _lrm_service(self, sid: ResourceId, service: Service, assembly: str) -> ET.Element | None:
        """The op history of a service's copy on one of its assemblies."""
        definition = service.resource
        status = self.obs.resource(ResourceId(assembly, service.name))
        params = resolve(definition, self.obs.assemblies) or literal_params(definition)
        records = rsc_op_records(definition, status, params)
        if not records:
            return None
        agent = status.applied.agent if status.applied else definition.agent
        entry = ET.Element("lrm_resource", _agent_attributes(agent), id=self.ids[sid])
        for record in records:
            entry.append(self._rsc_op(sid, definition, record, assembly))
        return entry

    def _lrm_resource(self, rid: ResourceId) -> ET.Element | None:
        definition = self.definitions[rid]
        status = self.obs.resource(rid)
        records = rsc_op_records(definition, status, self._params(rid))
        if not records:
            return None
        agent = status.applied.agent if status.applied else definition.agent
        entry = ET.Element("lrm_resource", _agent_attributes(agent), id=self.ids[rid])
        for record in records:
            entry.append(self._rsc_op(rid, definition, record))
        return entry

    def _rsc_op(
        self, rid: ResourceId, definition: Resource, record: OpRecord, node: str | None = None
    ) -> ET.Element:
        self.call_id += 1
        pid = self.ids[rid]
        key = f"{pid}_{record.operation}_{record.interval_ms}"
        transition = f"{self.call_id}:1:{record.target_rc}:{self.transition_uuid}"
        recurring = record.interval_ms > 0
        op = ET.Element(
            "lrm_rsc_op",
            {
                "id": key if recurring else f"{pid}_last_{self.call_id}",
                "operation_key": key,
                "operation": record.operation,
                "crm-debug-origin": ORIGIN,
                "crm_feature_set": FEATURE_SET,
                "transition-key": transition,
                "transition-magic": f"{record.status}:{record.rc};{transition}",
                "exit-reason": "",
                "on_node": node or rid.assembly,
                "call-id": str(self.call_id),
                "rc-code": str(record.rc),
                "op-status": str(record.status),
                "interval": str(record.interval_ms),
                "last-rc-change": str(int(self.obs.now)),
                "exec-time": "0",
                "queue-time": "0",
            },
        )
        if record.digest_params is not None:
            timeout = timeout_ms(definition.timeout(record.operation)) if recurring else None
            op.set("op-digest", op_digest(record.digest_params, timeout))
        return op


def _add_params(primitive: ET.Element, owner: tuple[str, ...], params: Mapping[str, str]) -> None:
    """Its parameters (``instance_attributes``), if it has any, sorted by name."""
    values = {name: xml_text(value) for name, value in sorted(params.items())}
    _add_nvpairs(primitive, "instance_attributes", (*owner, "params"), (*owner, "param"), values)


def _add_meta(primitive: ET.Element, owner: tuple[str, ...], meta: Mapping[str, str]) -> None:
    """Its meta attributes, if it has any, in the order given."""
    _add_nvpairs(primitive, "meta_attributes", (*owner, "meta"), (*owner, "meta"), meta)


def _add_nvpairs(
    parent: ET.Element,
    tag: str,
    set_id: tuple[str, ...],
    pair_id: tuple[str, ...],
    values: Mapping[str, str],
) -> None:
    if not values:
        return
    attributes = ET.SubElement(parent, tag, id=make_id(*set_id))
    for name, value in values.items():
        ET.SubElement(attributes, "nvpair", id=make_id(*pair_id, name), name=name, value=value)


def _parts(rid: ResourceId) -> tuple[str, ...]:
    return (rid.resource,) if rid.is_service else (rid.assembly, rid.resource)


def _copies(service: Service) -> list[ResourceId]:
    return [ResourceId(assembly, service.name) for assembly in service.assemblies]


def _agent_attributes(agent: str) -> dict[str, str]:
    """``ocf:heartbeat:Dummy`` as class, provider and type attributes."""
    parts = agent.split(":")
    if len(parts) == 3:
        return {"class": parts[0], "provider": parts[1], "type": parts[2]}
    return {"class": parts[0], "type": parts[-1]}
