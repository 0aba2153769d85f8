"""Hand-written fakes for pcloudsh's seams: cped's API, the daemon control, the key store.

``FakeCped`` keeps the catalog in memory with the API's rules (names, membership,
constraints, whole-document validation through ``foundation.model``) and changes
nothing when it refuses a request, like the real store.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from foundation import model
from foundation.errors import Conflict, InvalidInput, NotFound, Unavailable
from foundation.paths import Paths
from pcloudsh.api import CpedUnreachable

JsonDict = dict[str, Any]

TEMPLATES: dict[str, JsonDict] = {
    "dummy": {
        "name": "dummy",
        "description": "a resource that does nothing",
        "builtin": True,
        "resource": {
            "class": "ocf",
            "provider": "heartbeat",
            "type": "Dummy",
            "monitor_interval": 70,
            "timeouts": {},
            "parameters": {"fake": "1"},
            "escalation": {"failures": "INFINITY", "period": "INFINITY"},
        },
        "parameters_help": {"state": "location of the state file", "fake": "does nothing"},
    },
    "httpd": {
        "name": "httpd",
        "description": "Apache",
        "builtin": False,
        "resource": {
            "class": "lsb",
            "type": "httpd",
            "monitor_interval": 10,
            "timeouts": {"start": 30},
        },
        "parameters_help": {},
    },
}
HOST_JEOS = {"name": "host", "kind": "host", "path": None, "arch": "x86_64", "release": "12"}


class FakeCped:
    def __init__(self) -> None:
        self.assemblies: dict[str, JsonDict] = {}
        self.deployables: dict[str, JsonDict] = {}  # assemblies held as names
        self.events: list[JsonDict] = []
        self.calls: list[str] = []
        self.lifecycle_error: Exception | None = None
        self.moves: dict[tuple[str, str], str] = {}  # (deployable, service) -> assembly
        self.jeos: dict[str, JsonDict] = {}  # registered JEOS images but the built-in host
        self.jeos_error: BaseException | None = None  # what create_jeos raises
        self.statuses: dict[str, JsonDict] = {}  # status documents to answer, by deployable
        self.runtimes: dict[str, JsonDict] = {}  # what a DPE recorded, by deployable
        self.on_idle: Callable[[], None] | None = None  # called when a stream has sent all
        self.cluster: JsonDict = {"member": "m1", "store": "s", "members": [], "unowned": []}

    def snapshot(self) -> JsonDict:
        return copy.deepcopy({"assemblies": self.assemblies, "deployables": self.deployables})

    # -- reads ------------------------------------------------------------
    def health(self) -> JsonDict:
        return {"status": "ok", "version": "0.7.0", "pid": 4242, "uptime": 75.0}

    def cluster_status(self) -> JsonDict:
        self.calls.append("cluster_status")
        return copy.deepcopy(self.cluster)

    def list_jeos(self) -> list[JsonDict]:
        return [dict(HOST_JEOS), *(copy.deepcopy(j) for _, j in sorted(self.jeos.items()))]

    def get_jeos(self, name: str) -> JsonDict:
        if name == "host":
            return dict(HOST_JEOS)
        if name not in self.jeos:
            raise NotFound(f"no JEOS image named {name!r}")
        return copy.deepcopy(self.jeos[name])

    def create_jeos(self, doc: JsonDict) -> JsonDict:
        self.calls.append("create_jeos")
        if self.jeos_error is not None:
            raise self.jeos_error
        name = model.validate_name(doc["name"], "JEOS name")
        if name == "host" or name in self.jeos:
            raise Conflict(f"JEOS image {name!r} already exists")
        self.jeos[name] = {"kind": "image", **copy.deepcopy(doc)}
        return copy.deepcopy(self.jeos[name])

    def delete_jeos(self, name: str) -> None:
        if name == "host":
            raise Conflict(f"the built-in JEOS {name!r} cannot be deleted")
        self.get_jeos(name)
        users = sorted(a for a, doc in self.assemblies.items() if doc["image"] == name)
        if users:
            raise Conflict(
                f"JEOS image {name!r} is used by assemblies {', '.join(users)}: delete them first"
            )
        del self.jeos[name]

    def list_assemblies(self) -> list[JsonDict]:
        return [self._assembly_row(a) for a in sorted(self.assemblies)]

    def get_assembly(self, name: str) -> JsonDict:
        return copy.deepcopy(self._assembly(name))

    def list_templates(self) -> list[JsonDict]:
        return [copy.deepcopy(t) for _, t in sorted(TEMPLATES.items())]

    def get_template(self, name: str) -> JsonDict:
        if name not in TEMPLATES:
            raise NotFound(f"no resource template named {name!r}")
        return copy.deepcopy(TEMPLATES[name])

    def list_deployables(self) -> list[JsonDict]:
        return [
            {
                "name": d["name"],
                "uuid": d["uuid"],
                "infrastructure": d["infrastructure"],
                "assemblies": len(d["assemblies"]),
                "state": "stopped",
            }
            for _, d in sorted(self.deployables.items())
        ]

    def get_deployable(self, name: str) -> JsonDict:
        stored = self._deployable(name)
        return {
            **copy.deepcopy(stored),
            "assemblies": [self.get_assembly(a) for a in stored["assemblies"]],
        }

    # -- assemblies ---------------------------------------------------------
    def create_assembly(self, doc: JsonDict) -> JsonDict:
        self.calls.append("create_assembly")
        assembly = model.parse_assembly(doc).to_dict()
        if assembly["name"] in self.assemblies:
            raise Conflict(f"assembly {assembly['name']!r} already exists")
        self.get_jeos(assembly["image"])
        self.assemblies[assembly["name"]] = assembly
        return copy.deepcopy(assembly)

    def delete_assembly(self, name: str) -> None:
        self._assembly(name)
        owner = self._owner(name)
        if owner:
            raise Conflict(f"assembly {name!r} belongs to deployable {owner!r}")
        del self.assemblies[name]

    def add_resource(self, assembly: str, doc: JsonDict) -> JsonDict:
        target = self._assembly(assembly)
        resource = model.parse_resource(doc).to_dict()
        if any(r["name"] == resource["name"] for r in target["resources"]):
            raise Conflict(f"resource {resource['name']!r} is already in assembly {assembly!r}")
        self._check_in_deployable(
            assembly, {**target, "resources": [*target["resources"], resource]}
        )
        target["resources"].append(resource)
        return resource

    def update_resource(self, assembly: str, resource: str, doc: JsonDict) -> JsonDict:
        target = self._assembly(assembly)
        index = self._resource_index(target, resource)
        parsed = model.parse_resource(doc).to_dict()
        target["resources"][index] = parsed
        return parsed

    def remove_resource(self, assembly: str, resource: str) -> None:
        target = self._assembly(assembly)
        index = self._resource_index(target, resource)
        owner = self._owner(assembly)
        rid = f"{assembly}/{resource}"
        if owner and any(
            rid in (c["first"], c["then"]) for c in self.deployables[owner]["constraints"]
        ):
            raise Conflict(f"resource {rid} is in an order constraint of deployable {owner!r}")
        del target["resources"][index]

    def set_assembly_escalation(self, assembly: str, failures: Any, period: Any) -> None:
        target = self._assembly(assembly)
        escalation = self._escalation(failures, period)
        target["escalation"] = escalation

    # -- deployables --------------------------------------------------------
    def create_deployable(
        self, name: str, infrastructure: str, settings: dict[str, str] | None = None
    ) -> JsonDict:
        model.validate_name(name, "deployable")
        if name in self.deployables:
            raise Conflict(f"deployable {name!r} already exists")
        doc = model.parse(
            {"name": name, "infrastructure": infrastructure, "settings": settings or {}}
        ).to_dict()
        self.deployables[name] = {**doc, "assemblies": []}
        return copy.deepcopy(doc)

    def put_deployable(self, name: str, doc: JsonDict) -> JsonDict:
        parsed = model.parse(doc)
        if parsed.name != name:
            raise InvalidInput(f"the document names {parsed.name!r}, not {name!r}")
        for assembly in parsed.assemblies:
            owner = self._owner(assembly.name)
            if owner not in (None, name):
                raise Conflict(f"assembly {assembly.name!r} belongs to deployable {owner!r}")
        stored = parsed.to_dict()
        for assembly in stored["assemblies"]:
            self.assemblies[assembly["name"]] = assembly
        self.deployables[name] = {**stored, "assemblies": [a["name"] for a in stored["assemblies"]]}
        return self.get_deployable(name)

    def delete_deployable(self, name: str, force: bool = False) -> None:
        self._deployable(name)
        del self.deployables[name]

    def add_deployable_assembly(self, deployable: str, assembly: str) -> None:
        target = self._deployable(deployable)
        self._assembly(assembly)
        owner = self._owner(assembly)
        if owner:
            raise Conflict(f"assembly {assembly!r} already belongs to deployable {owner!r}")
        doc = self.get_deployable(deployable)
        model.parse({**doc, "assemblies": [*doc["assemblies"], self.get_assembly(assembly)]})
        target["assemblies"].append(assembly)

    def remove_deployable_assembly(self, deployable: str, assembly: str) -> None:
        target = self._deployable(deployable)
        if assembly not in target["assemblies"]:
            raise NotFound(f"assembly {assembly!r} is not in deployable {deployable!r}")
        doc = self.get_deployable(deployable)
        doc["assemblies"] = [a for a in doc["assemblies"] if a["name"] != assembly]
        model.parse(doc)
        target["assemblies"].remove(assembly)

    def add_constraint(self, deployable: str, first: str, then: str) -> None:
        doc = self.get_deployable(deployable)
        constraint = {"first": first, "then": then}
        if constraint in doc["constraints"]:
            raise Conflict(f"deployable {deployable!r} already orders {first} before {then}")
        doc["constraints"].append(constraint)
        model.parse(doc)
        self.deployables[deployable]["constraints"].append(constraint)

    def remove_constraint(self, deployable: str, first: str, then: str) -> None:
        target = self._deployable(deployable)
        constraint = {"first": first, "then": then}
        if constraint not in target["constraints"]:
            raise NotFound(f"deployable {deployable!r} has no constraint {first} -> {then}")
        target["constraints"].remove(constraint)

    # -- services -----------------------------------------------------------
    def _change_document(self, deployable: str, change: Callable[[JsonDict], None]) -> JsonDict:
        """Apply ``change`` to a copy, validate the whole document, then keep it."""
        doc = self.get_deployable(deployable)
        doc.setdefault("services", [])
        doc.setdefault("colocations", [])
        change(doc)
        parsed = model.parse(doc).to_dict()
        target = self.deployables[deployable]
        target["services"] = parsed.get("services", [])
        target["colocations"] = parsed.get("colocations", [])
        return parsed

    def add_service(self, deployable: str, doc: JsonDict) -> JsonDict:
        if any(s["name"] == doc.get("name") for s in self._services(deployable)):
            raise Conflict(f"deployable {deployable!r} already has a service {doc.get('name')!r}")
        parsed = self._change_document(deployable, lambda d: d["services"].append(doc))
        return dict(parsed["services"][-1])

    def update_service(self, deployable: str, name: str, doc: JsonDict) -> JsonDict:
        index = self._service_index(deployable, name)
        parsed = self._change_document(deployable, lambda d: d["services"].__setitem__(index, doc))
        return dict(parsed["services"][index])

    def remove_service(self, deployable: str, name: str) -> None:
        index = self._service_index(deployable, name)
        self._change_document(deployable, lambda d: d["services"].pop(index))

    def move_service(self, deployable: str, name: str, assembly: str) -> JsonDict:
        service = self._services(deployable)[self._service_index(deployable, name)]
        if assembly not in [loc["assembly"] for loc in service["locations"]]:
            raise InvalidInput(f"invalid move: service {name!r} does not run on {assembly!r}")
        self.moves[(deployable, name)] = assembly
        return {"service": name, "to": assembly, "note": "the DPE is moving it"}

    def add_colocation(self, deployable: str, service: str, with_: str, score: Any) -> JsonDict:
        colocation = {"service": service, "with": with_, "score": score}
        parsed = self._change_document(deployable, lambda d: d["colocations"].append(colocation))
        return dict(parsed["colocations"][-1])

    def remove_colocation(self, deployable: str, service: str, with_: str) -> None:
        def remove(doc: JsonDict) -> None:
            kept = [c for c in doc["colocations"] if (c["service"], c["with"]) != (service, with_)]
            if len(kept) == len(doc["colocations"]):
                raise NotFound(
                    f"deployable {deployable!r} does not colocate {service} with {with_}"
                )
            doc["colocations"] = kept

        self._change_document(deployable, remove)

    def _services(self, deployable: str) -> list[JsonDict]:
        return list(self._deployable(deployable).get("services", []))

    def _service_index(self, deployable: str, name: str) -> int:
        for index, service in enumerate(self._services(deployable)):
            if service["name"] == name:
                return index
        raise NotFound(f"deployable {deployable!r} has no service {name!r}")

    def set_deployable_escalation(self, deployable: str, failures: Any, period: Any) -> None:
        target = self._deployable(deployable)
        target["escalation"] = self._escalation(failures, period)

    # -- lifecycle and events -------------------------------------------------
    def start_deployable(self, name: str) -> JsonDict:
        return self._lifecycle(name, "starting")

    def stop_deployable(self, name: str) -> JsonDict:
        return self._lifecycle(name, "stopping")

    def reload_deployable(self, name: str) -> JsonDict:
        return self._lifecycle(name, "reloading")

    def deployable_cib(self, name: str) -> JsonDict:
        """As cped answers it, from the document and the runtime held in ``runtimes``."""
        from cpe.whatif import cib_answer

        self.calls.append("deployable_cib")
        return cib_answer(self._recorded(name), 1_700_000_000.0)

    def simulate_deployable(
        self, name: str, fail: list[str] | None = None, policy_engine: str | None = None
    ) -> JsonDict:
        from cpe.whatif import simulate_answer

        self.calls.append("simulate_deployable")
        recorded = self._recorded(name)
        return simulate_answer(recorded, fail or [], policy_engine or "builtin", 1_700_000_000.0)

    def _recorded(self, name: str) -> Any:
        from cpe.whatif import Recorded

        document = model.parse(self.get_deployable(name))
        return Recorded(document, copy.deepcopy(self.runtimes.get(name, {})))

    def deployable_status(self, name: str) -> JsonDict:
        doc = self.get_deployable(name)
        if self.lifecycle_error:
            raise self.lifecycle_error
        if name in self.statuses:
            return copy.deepcopy(self.statuses[name])
        return {
            "name": name,
            "state": "running",
            "desired": "running",
            "dpe": {"pid": 99, "lease_epoch": 3, "alive": True},
            "assemblies": [
                {
                    "name": a["name"],
                    "state": "running",
                    "instance": f"{a['name']}-0001",
                    "address": "127.0.0.1",
                    "ssh_host": "127.0.0.1",
                    "ssh_port": 2200 + index,
                    "username": "root",
                    "uptime": 330.0,
                    "resources": [
                        {"name": r["name"], "state": "running", "failures": 0, "last_rc": 0}
                        for r in a["resources"]
                    ],
                }
                for index, a in enumerate(doc["assemblies"])
            ],
            "last_events": [e for e in self.events if e.get("deployable") == name][-10:],
        }

    def query_events(self, **filters: Any) -> list[JsonDict]:
        self.calls.append(f"query_events {sorted(filters.items())}")
        matching = [e for e in self.events if _matches(e, filters)]
        if filters.get("order") == "desc":
            matching.reverse()
        return matching[: filters.get("limit", 100)]

    def stream_events(self, **filters: Any) -> Iterator[JsonDict]:
        """The matching events after ``after_id``; then the admin presses Ctrl-C,
        unless ``on_idle`` (a test's timers firing) stops the stream meanwhile."""
        return FakeStream(self).stream_events(**filters)

    # -- helpers ----------------------------------------------------------------
    def _lifecycle(self, name: str, state: str) -> JsonDict:
        self._deployable(name)
        if self.lifecycle_error:
            raise self.lifecycle_error
        return {"deployable": name, "state": state}

    def _assembly(self, name: str) -> JsonDict:
        if name not in self.assemblies:
            raise NotFound(f"no assembly named {name!r}")
        return self.assemblies[name]

    def _deployable(self, name: str) -> JsonDict:
        if name not in self.deployables:
            raise NotFound(f"no deployable named {name!r}")
        return self.deployables[name]

    def _owner(self, assembly: str) -> str | None:
        return next(
            (d for d, doc in self.deployables.items() if assembly in doc["assemblies"]), None
        )

    def _assembly_row(self, name: str) -> JsonDict:
        return {**copy.deepcopy(self.assemblies[name]), "deployable": self._owner(name)}

    def _check_in_deployable(self, assembly: str, changed: JsonDict) -> None:
        owner = self._owner(assembly)
        if owner:
            doc = self.get_deployable(owner)
            doc["assemblies"] = [changed if a["name"] == assembly else a for a in doc["assemblies"]]
            model.parse(doc)

    @staticmethod
    def _resource_index(assembly: JsonDict, resource: str) -> int:
        for index, item in enumerate(assembly["resources"]):
            if item["name"] == resource:
                return index
        raise NotFound(f"resource {resource!r} is not in assembly {assembly['name']!r}")

    @staticmethod
    def _escalation(failures: Any, period: Any) -> JsonDict:
        problems = model.Problems()
        escalation = model._escalation(
            {"failures": failures, "period": period}, "escalation", problems
        )
        problems.raise_if_any("invalid escalation")
        return escalation.to_dict()


def _matches(event: JsonDict, filters: dict[str, Any]) -> bool:
    for key in ("deployable", "assembly", "resource"):
        if key in filters and event.get(key) != filters[key]:
            return False
    return not ("since" in filters and event["time"] < filters["since"])


class FakeStream:
    """One event stream of the fake cped (``Environment.connect_events``): ``interrupt()``
    ends it, as shutting down the real client's socket does."""

    def __init__(self, cped: FakeCped) -> None:
        self.cped = cped
        self.interrupted = False

    def query_events(self, **filters: Any) -> list[JsonDict]:
        return self.cped.query_events(**filters)

    def interrupt(self) -> None:
        self.interrupted = True

    def stream_events(self, **filters: Any) -> Iterator[JsonDict]:
        self.cped.calls.append(f"stream_events {sorted(filters.items())}")
        after = filters.get("after_id") or 0
        yield from (e for e in self.cped.events if e["id"] > after and _matches(e, filters))
        if self.cped.on_idle is not None:
            self.cped.on_idle()
        if self.interrupted:
            raise Unavailable("cped closed the event stream")
        raise KeyboardInterrupt  # the admin pressing Ctrl-C


class FakeTimers:
    """``Environment.timer``: nothing fires until the test says time has passed."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def start(self, seconds: float, action: Callable[[], None]) -> FakeTimers.Timer:
        entry = (seconds, action)
        self.pending.append(entry)
        return FakeTimers.Timer(self, entry)

    def fire(self) -> None:
        for _seconds, action in list(self.pending):
            action()
        self.pending.clear()

    class Timer:
        def __init__(self, timers: FakeTimers, entry: tuple[float, Callable[[], None]]) -> None:
            self.timers, self.entry = timers, entry

        def cancel(self) -> None:
            if self.entry in self.timers.pending:
                self.timers.pending.remove(self.entry)


class FakeImages:
    """JEOS image files (``Environment.make_images``): records in memory, each step reported."""

    def __init__(self) -> None:
        self.files: dict[str, JsonDict] = {}
        self.fail: BaseException | None = None  # raised halfway through a build or import
        self.calls: list[str] = []

    def build(
        self, name: str, release: str, arch: str, packages: Any, progress: Callable[..., None]
    ) -> JsonDict:
        self.calls.append(f"build {name} {release} {arch} {list(packages)}")
        return self._make(name, release, arch, progress, ("check", "debootstrap", "convert"))

    def import_image(
        self, name: str, file: Any, progress: Callable[..., None], **options: Any
    ) -> JsonDict:
        self.calls.append(f"import {name} {file} {sorted(options.items())}")
        return self._make(name, options["release"], options["arch"], progress, ("check", "convert"))

    def delete(self, name: str) -> bool:
        self.calls.append(f"delete {name}")
        return self.files.pop(name, None) is not None

    def _make(
        self, name: str, release: str, arch: str, progress: Callable[..., None], phases: Any
    ) -> JsonDict:
        if name in self.files:
            raise Conflict(f"JEOS {name!r} already exists in /images")
        for phase in phases:
            progress(phase, 0.0)
            if phase == "debootstrap":
                progress(phase, 0.5)
            if self.fail is not None and phase != "check":
                raise self.fail  # the builder removes its work: nothing is kept
            progress(phase, 1.0)
        record = {
            "name": name,
            "path": f"/images/{name}/disk.qcow2",
            "kernel": f"/images/{name}/vmlinuz",
            "size": 300 * 1024 * 1024,
            "virtual_size": 4 << 30,
            "checksum": "sha256:00",
            "release": release,
            "arch": arch,
            "created": 1_699_990_000.0,
            "kind": "image",
            "format": "qcow2",
        }
        self.files[name] = record
        return dict(record)


class FakeDisks:
    """Assembly disks (``Environment.make_disks``): paths in memory, each step reported."""

    def __init__(self) -> None:
        self.files: dict[str, JsonDict] = {}
        self.fail: BaseException | None = None  # raised while the disk is customized
        self.calls: list[str] = []

    def create(
        self,
        assembly: str,
        assembly_uuid: str,
        jeos: str,
        overlay: bool,
        progress: Callable[..., None],
    ) -> JsonDict:
        self.calls.append(f"create {assembly} {jeos} {'overlay' if overlay else 'full'}")
        if assembly in self.files:
            raise Conflict(f"assembly {assembly!r} already has a disk image")
        for phase in ("copy", "customize"):
            progress(phase, 0.0)
            if self.fail is not None and phase == "customize":
                raise self.fail  # the builder removes its staged file: nothing is kept
            progress(phase, 1.0)
        path = f"/images/assemblies/{assembly}.qcow2"
        record = {
            "assembly": assembly,
            "path": path,
            "jeos": jeos,
            "backing": f"/images/{jeos}/disk.qcow2" if overlay else None,
            "machine_id": assembly_uuid,
        }
        self.files[assembly] = record
        return dict(record)

    def delete(self, assembly: str) -> bool:
        self.calls.append(f"delete {assembly}")
        return self.files.pop(assembly, None) is not None


class DownCped:
    """cped not running: every call fails to connect."""

    def __getattr__(self, name: str) -> Any:
        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise CpedUnreachable("cped is not running (no answer on its socket)")

        return unreachable


class FakeKeys:
    def __init__(self) -> None:
        self.made: set[str] = set()
        self.fail_on: str | None = None

    def exists(self, assembly: str) -> bool:
        return assembly in self.made

    def write(self, assembly: str) -> None:
        if assembly == self.fail_on:
            raise Unavailable("cannot write keys")
        self.made.add(assembly)

    def delete(self, assembly: str) -> None:
        self.made.discard(assembly)


class FakeDaemon:
    def __init__(self, running: bool = False) -> None:
        self.running = running

    def start(self) -> dict[str, Any]:
        already, self.running = self.running, True
        return {"pid": 4242, "already_running": already}

    def stop(self) -> dict[str, Any]:
        was, self.running = self.running, False
        return {"pid": 4242, "was_running": was}

    def status(self) -> dict[str, Any] | None:
        return FakeCped().health() if self.running else None


def fake_paths() -> Paths:
    from pathlib import Path

    base = Path("/nonexistent/pcloud-test")
    return Paths(base / "etc", base / "state", base / "run")
