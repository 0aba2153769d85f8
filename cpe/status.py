"""A deployable's status, composed from what its DPE recorded in the store.

The DPE writes runtime documents as things change (``foundation.runtime_kinds``): kind
``deployable`` (key ""), ``assembly`` and ``instance`` (key: the assembly) and
``resource`` (key: ``assembly/resource``).  ``read_status`` takes them, the
document, the desired state, the lease and the latest events in one consistent
read; ``compose_status`` turns them, with the supervisor's view of the DPE
process, into the answer of ``GET /deployables/{name}/status``.  Assemblies and
resources come in document order; what the DPE has not recorded (yet, or any
more) shows as stopped.  Failures are those within the escalation period of their
object (the window that counts); all the recorded ones when escalation is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpe.catalog.pending import changes_between
from foundation.document_diff import summary
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, DOCUMENT, INSTANCE, RESOURCE, Docs
from foundation.store import Store

LAST_EVENTS = 10


@dataclass(frozen=True)
class StatusRecord:
    document: dict[str, Any]  # as stored, assemblies expanded
    desired: str
    runtime: Docs
    lease: dict[str, Any] | None
    events: list[dict[str, Any]]  # the latest, oldest first


def read_status(store: Store, name: str, events: int = LAST_EVENTS) -> StatusRecord:
    """Everything status needs, in one snapshot (NotFound for an unknown deployable)."""
    with store.snapshot():
        document = store.document_dict(name)
        latest = store.query_events(deployable=name, limit=events, newest_first=True)
        return StatusRecord(
            document=document,
            desired=store.get_desired_state(name),
            runtime=store.get_runtime(name),
            lease=store.get_lease(name),
            events=[event.to_dict() for event in reversed(latest)],
        )


def compose_status(record: StatusRecord, dpe: dict[str, Any], now: float) -> dict[str, Any]:
    """The status answer; ``dpe`` is the supervisor's view of the process."""
    deployable = record.runtime.get(DEPLOYABLE, {}).get("", {})
    return {
        "name": record.document["name"],
        "state": deployable.get("state", "stopped"),
        "reason": deployable.get("reason", ""),
        "desired": record.desired,
        "failures": in_window(deployable.get("failures", []), record.document, now),
        **_escalation(record.document),
        "monitoring": record.document.get("monitoring", "active"),
        "dpe": _dpe(record.lease, dpe, now),
        "assemblies": [
            _assembly(a, record.runtime, now, record.document.get("services", []))
            for a in record.document["assemblies"]
        ],
        "services": [_service(s, record.runtime) for s in record.document.get("services", [])],
        "pending_reload": _pending(record),
        "last_events": record.events,
    }


def _pending(record: StatusRecord) -> str:
    running = record.runtime.get(DOCUMENT, {}).get("")
    changes = changes_between(running, record.document)
    return summary(changes) if changes else ""


def _dpe(lease: dict[str, Any] | None, dpe: dict[str, Any], now: float) -> dict[str, Any]:
    held = bool(lease and lease["holder"] and lease["expires_at"] > now)
    data = {
        **dpe,
        "pid": dpe.get("pid") or (lease["pid"] if held and lease else None),
        "alive": bool(dpe.get("alive")) or held,
        "lease_epoch": lease["epoch"] if lease else None,
        "lease_holder": lease["holder"] if lease else None,
    }
    if held and lease:
        data["lease_expires_in"] = round(lease["expires_at"] - now, 3)
    return data


def _assembly(
    assembly: dict[str, Any], runtime: Docs, now: float, services: list[dict[str, Any]]
) -> dict[str, Any]:
    name = assembly["name"]
    recorded = runtime.get(ASSEMBLY, {}).get(name, {})
    instance = runtime.get(INSTANCE, {}).get(name)
    row: dict[str, Any] = {
        "name": name,
        "state": recorded.get("state", "stopped"),
        "reason": recorded.get("reason", ""),
        "failures": in_window(recorded.get("failures", []), assembly, now),
        **_escalation(assembly),
        "instance": instance.get("instance_id") if instance else None,
        "address": instance.get("address") if instance else None,
        "hostname": instance.get("hostname") if instance else None,
    }
    if instance:  # where pcloudsh assembly_ssh connects (a forwarded port on VMs)
        row |= {k: instance.get(k) for k in ("ssh_host", "ssh_port", "username")}
    created = float(instance.get("created_at") or 0) if instance else 0.0
    if created > 0:
        row["uptime"] = round(max(0.0, now - created), 1)
    if instance and recorded.get("monitoring"):  # its mode, as the DPE found it could be
        row["monitoring"] = recorded["monitoring"]
    row["resources"] = [
        _resource(name, r, runtime, now) | _escalation(r) for r in assembly.get("resources", [])
    ]
    for service in services:  # a service shows under the assembly it is on now
        copy = _resource(name, service, runtime, now)
        if copy["state"] not in _ABSENT and name in _candidates(service):
            row["resources"].append(copy | {"service": True})
    return row


_ABSENT = ("stopped", "unknown")


def _candidates(service: dict[str, Any]) -> list[str]:
    return [str(loc.get("assembly")) for loc in service.get("locations", [])]


def _service(service: dict[str, Any], runtime: Docs) -> dict[str, Any]:
    """A service: where it may run (with scores) and where it runs now."""
    records = runtime.get(RESOURCE, {})
    return {
        "name": service["name"],
        "agent": _agent(service),
        "locations": service.get("locations", []),
        "running_on": [
            a
            for a in _candidates(service)
            if records.get(f"{a}/{service['name']}", {}).get("state") == "running"
        ],
    }


def _resource(assembly: str, resource: dict[str, Any], runtime: Docs, now: float) -> dict[str, Any]:
    recorded = runtime.get(RESOURCE, {}).get(f"{assembly}/{resource['name']}", {})
    return {
        "name": resource["name"],
        "agent": _agent(resource),
        "state": recorded.get("state", "stopped"),
        "failures": in_window(recorded.get("failures", []), resource, now),
        "last_op": recorded.get("last_op"),
        "last_rc": recorded.get("last_rc"),
        **_why_not_started(recorded),
    }


def _why_not_started(recorded: dict[str, Any]) -> dict[str, Any]:
    """What its DPE recorded of why it does not run: cannot start, until when, and
    its last failed operation (a stop after a failed start is its last operation)."""
    fields = ("blocked", "retry_at", "failures_in_a_row", "last_failure")
    return {field: recorded.get(field) for field in fields}


def _agent(resource: dict[str, Any]) -> str:
    rclass = resource.get("class", "ocf")
    if rclass == "ocf":
        return f"ocf:{resource.get('provider', 'heartbeat')}:{resource.get('type')}"
    return f"{rclass}:{resource.get('type')}"


def _escalation(owner: dict[str, Any]) -> dict[str, Any]:
    """The owner's escalation setting, so a count of failures can be read with it (a
    service's copy has none: its failures count towards its migration threshold)."""
    escalation = owner.get("escalation")
    return {"escalation": escalation} if isinstance(escalation, dict) else {}


def in_window(times: list[float], owner: dict[str, Any], now: float) -> list[float]:
    """The failure ``times`` within ``owner``'s escalation period before ``now`` (those
    that count towards escalating); all of them when its escalation is off."""
    period = owner.get("escalation", {}).get("period")
    if not isinstance(period, int | float) or isinstance(period, bool) or period <= 0:
        return times
    return [t for t in times if t > now - period]
