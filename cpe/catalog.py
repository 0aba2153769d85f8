"""The catalog: the rules behind every API request, each one store transaction.

JEOS images, assemblies and their resources, resource templates, deployables,
their membership, order constraints and escalation, and event queries.  Every
method validates first (through ``foundation.model``, every problem listed with its
path), then changes the store inside one transaction, so a rejected request
changes nothing.

One invariant keeps the rest simple: every stored deployable, with its
assemblies expanded, is a valid document (``parse_catalog_document``).  A change
that would break it (a constraint naming a removed resource, a cycle) is
refused, by re-validating the affected deployable inside the transaction before
it commits.  The one thing the catalog tolerates is a reference parameter to an
assembly not (yet) in the deployable: a catalog is built one command at a time,
in any order.  Starting a deployable needs the complete document
(``Store.get_document``), which refuses such a reference.

Methods are synchronous (the API runs them on its store thread) and return
JSON-ready values.
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cpe.resource_templates import builtin_templates, parse_user_template
from foundation.errors import Conflict, InvalidInput, NotFound, PcloudError
from foundation.keyfiles import key_paths
from foundation.model import (
    NAME_RE,
    Deployable,
    Problems,
    check_name,
    parse,
    parse_assembly,
    parse_reference,
    parse_resource,
    validate_name,
)
from foundation.runtime_kinds import DEPLOYABLE
from foundation.store import HOST_JEOS, Store

JEOS_KEYS = {"name", "kind", "path", "arch", "release", "size", "checksum", "created"}
NEW_DEPLOYABLE_KEYS = {"name", "uuid", "infrastructure", "settings", "heartbeat", "escalation"}
EVENT_FILTERS = ("deployable", "assembly", "resource")
EVENT_QUERY_KEYS = {*EVENT_FILTERS, "since", "until", "after_id", "before_id", "limit", "order"}
MAX_EVENTS = 1000

Refusal = type[PcloudError]
T = TypeVar("T")


class Catalog:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        keys_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.keys_dir = keys_dir  # where assembly key pairs are; None: not checked

    # -- JEOS images ----------------------------------------------------------

    def list_jeos(self) -> list[dict[str, Any]]:
        return self.store.list_jeos()

    def get_jeos(self, name: str) -> dict[str, Any]:
        return self.store.get_jeos(validate_name(name, "JEOS name"))

    def create_jeos(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = self._jeos_doc(body)
        self.store.insert_jeos(doc)
        return doc

    def delete_jeos(self, name: str) -> None:
        validate_name(name, "JEOS name")
        with self.store.transaction():
            if self.store.get_jeos(name)["kind"] == "host":
                raise Conflict(f"the built-in JEOS {name!r} cannot be deleted", jeos=name)
            users = self.store.assemblies_using_image(name)
            if users:
                raise Conflict(
                    f"JEOS image {name!r} is used by assemblies {', '.join(users)}:"
                    " delete them first",
                    details={"assemblies": users},
                )
            self.store.delete_jeos(name)

    def _jeos_doc(self, body: dict[str, Any]) -> dict[str, Any]:
        problems = Problems()
        _unknown(body, JEOS_KEYS, problems)
        kind = body.get("kind", "image")
        if kind != "image":
            problems.add("kind", f"must be 'image' ('host' is the built-in one): {kind!r}")
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.add("path", f"must be an absolute file path: {path!r}")
        doc = {
            "name": check_name(body.get("name"), "name", problems),
            "kind": "image",
            "path": path,
            "arch": _text(body, "arch", platform.machine(), problems),
            "release": _text(body, "release", "", problems),
            "size": _optional_int(body, "size", problems),
            "checksum": _optional_text(body, "checksum", problems),
            "created": _number(body, "created", self.clock(), problems),
        }
        problems.raise_if_any("invalid JEOS image")
        return doc

    # -- assemblies -----------------------------------------------------------

    def list_assemblies(self) -> list[dict[str, Any]]:
        return [{**doc, "deployable": owner} for doc, owner in self.store.list_assemblies()]

    def get_assembly(self, name: str) -> dict[str, Any]:
        return self.store.get_assembly(validate_name(name, "assembly name"))

    def create_assembly(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = parse_assembly(body).to_dict()
        with self.store.transaction():
            if _exists(self.store.get_assembly, doc["name"]):
                raise Conflict(f"assembly {doc['name']!r} already exists", assembly=doc["name"])
            self._check_images([doc["image"]], ["image"])
            self._check_assembly_uuid(doc, "uuid")
            self.store.insert_assembly(doc)
        return doc

    def put_assembly(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = _named(body, validate_name(name, "assembly name"))

        def replace(current: dict[str, Any]) -> dict[str, Any]:
            if raw.get("uuid") in (None, ""):
                raw["uuid"] = current["uuid"]
            return raw

        return self._change_assembly(name, replace, InvalidInput)

    def delete_assembly(self, name: str) -> None:
        validate_name(name, "assembly name")
        with self.store.transaction():
            owner = self.store.assembly_owner(name)
            if owner is not None:
                raise Conflict(
                    f"assembly {name!r} belongs to deployable {owner!r}: remove it from the"
                    " deployable first",
                    assembly=name,
                    deployable=owner,
                )
            self.store.delete_assembly(name)

    def add_resource(self, assembly: str, body: dict[str, Any]) -> dict[str, Any]:
        resource = parse_resource(body).to_dict()

        def add(current: dict[str, Any]) -> dict[str, Any]:
            if any(r["name"] == resource["name"] for r in current["resources"]):
                raise Conflict(
                    f"assembly {assembly!r} already has a resource {resource['name']!r}",
                    assembly=assembly,
                    resource=resource["name"],
                )
            current["resources"].append(resource)
            return current

        self._change_assembly(validate_name(assembly, "assembly name"), add, InvalidInput)
        return resource

    def update_resource(self, assembly: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        resource = parse_resource(_named(body, validate_name(name, "resource name"))).to_dict()

        def replace(current: dict[str, Any]) -> dict[str, Any]:
            index = _resource_index(current, assembly, name)
            current["resources"][index] = resource
            return current

        self._change_assembly(validate_name(assembly, "assembly name"), replace, InvalidInput)
        return resource

    def remove_resource(self, assembly: str, name: str) -> None:
        validate_name(name, "resource name")

        def remove(current: dict[str, Any]) -> dict[str, Any]:
            del current["resources"][_resource_index(current, assembly, name)]
            return current

        self._change_assembly(validate_name(assembly, "assembly name"), remove, Conflict)

    def set_assembly_escalation(self, assembly: str, body: dict[str, Any]) -> dict[str, Any]:
        escalation = _escalation_body(body)

        def change(current: dict[str, Any]) -> dict[str, Any]:
            current["escalation"] = escalation
            return current

        name = validate_name(assembly, "assembly name")
        doc = _relative(lambda: self._change_assembly(name, change, InvalidInput), "escalation")
        return dict(doc["escalation"])

    def _change_assembly(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], refusal: Refusal
    ) -> dict[str, Any]:
        """Apply ``change`` to the stored document, validate, store, re-check its deployable."""
        with self.store.transaction():
            current = self.store.get_assembly(name)
            doc = parse_assembly(change(copy.deepcopy(current))).to_dict()
            if doc["uuid"] != current["uuid"]:
                raise Conflict(
                    f"assembly {name!r} has uuid {current['uuid']}; a uuid cannot change",
                    assembly=name,
                )
            self._check_images([doc["image"]], ["image"])
            self.store.update_assembly(doc)
            owner = self.store.assembly_owner(name)
            if owner is not None:
                self._revalidate(owner, refusal)
        return doc

    def _check_images(self, images: list[str], paths: list[str]) -> None:
        problems = Problems()
        for image, path in zip(images, paths, strict=True):
            if not _exists(self.store.get_jeos, image):
                problems.add(path, f"no such JEOS image: {image!r}")
        problems.raise_if_any("unknown JEOS image")

    def _check_assembly_uuid(self, doc: dict[str, Any], path: str) -> None:
        holder = self.store.assembly_with_uuid(doc["uuid"])
        if holder is not None and holder != doc["name"]:
            raise Conflict(
                f"{path}: uuid {doc['uuid']} already belongs to assembly {holder!r}",
                assembly=doc["name"],
            )

    # -- resource templates -----------------------------------------------------

    def list_templates(self) -> list[dict[str, Any]]:
        users = [_user_template(t) for t in self.store.list_templates()]
        return sorted([*builtin_templates().values(), *users], key=lambda t: str(t["name"]))

    def get_template(self, name: str) -> dict[str, Any]:
        validate_name(name, "template name")
        builtin = builtin_templates().get(name)
        return builtin if builtin is not None else _user_template(self.store.get_template(name))

    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        template = parse_user_template(body)
        name = template["name"]
        if name in builtin_templates():
            raise Conflict(f"{name!r} is a built-in resource template", template=name)
        stored = {k: v for k, v in template.items() if k not in ("name", "builtin")}
        self.store.insert_template(name, stored)
        return template

    def delete_template(self, name: str) -> None:
        validate_name(name, "template name")
        if name in builtin_templates():
            raise Conflict(f"{name!r} is a built-in resource template: it cannot be deleted")
        self.store.delete_template(name)

    # -- deployables --------------------------------------------------------------

    def list_deployables(self) -> list[dict[str, Any]]:
        with self.store.snapshot():
            rows = self.store.list_deployables()
            return [self._summary(doc, desired) for doc, desired in rows]

    def _summary(self, doc: dict[str, Any], desired: str) -> dict[str, Any]:
        recorded = self.store.get_runtime(doc["name"], DEPLOYABLE)  # not every resource's
        runtime = recorded.get(DEPLOYABLE, {}).get("", {})
        return {
            "name": doc["name"],
            "uuid": doc["uuid"],
            "infrastructure": doc["infrastructure"],
            "assemblies": len(doc["assemblies"]),
            "state": runtime.get("state", "stopped"),
            "desired_state": desired,
        }

    def get_deployable(self, name: str) -> dict[str, Any]:
        validate_name(name, "deployable name")
        return parse_catalog_document(self.store.document_dict(name)).to_dict()

    def create_deployable(self, body: dict[str, Any]) -> dict[str, Any]:
        problems = Problems()
        _unknown(body, NEW_DEPLOYABLE_KEYS, problems, hint="(import a whole document with PUT)")
        problems.raise_if_any("invalid deployable")
        document = parse(body)
        with self.store.transaction():
            if _exists(self.store.get_deployable, document.name):
                raise Conflict(f"deployable {document.name!r} already exists")
            self._check_deployable_uuid(document)
            self.store.insert_deployable(_level_doc(document))
        return document.to_dict()

    def put_deployable(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Import (create or replace) a whole document; True if it was created."""
        raw = _named(body, validate_name(name, "deployable name"))
        with self.store.transaction():
            existing = _maybe(self.store.get_deployable, name)
            self._keep_uuids(raw, existing)
            document = parse_catalog_document(raw)
            self._check_import(document)
            self._write_import(document, existing)
            self._revalidate(name, InvalidInput)
        return document.to_dict(), existing is None

    def _keep_uuids(self, raw: dict[str, Any], existing: dict[str, Any] | None) -> None:
        """A document without uuids keeps the stored ones (they are machine ids)."""
        if existing is not None and raw.get("uuid") in (None, ""):
            raw["uuid"] = existing["uuid"]
        assemblies = raw.get("assemblies")
        for item in assemblies if isinstance(assemblies, list) else []:
            if isinstance(item, dict) and item.get("uuid") in (None, ""):
                stored = _maybe(self.store.get_assembly, item.get("name"))
                if stored is not None:
                    item["uuid"] = stored["uuid"]

    def _check_import(self, document: Deployable) -> None:
        paths = [f"assemblies[{i}].image" for i in range(len(document.assemblies))]
        self._check_images([a.image for a in document.assemblies], paths)
        self._check_deployable_uuid(document)
        for i, assembly in enumerate(document.assemblies):
            stored = _maybe(self.store.get_assembly, assembly.name)
            owner = self.store.assembly_owner(assembly.name) if stored else None
            if owner not in (None, document.name):
                raise Conflict(
                    f"assemblies[{i}]: assembly {assembly.name!r} belongs to deployable"
                    f" {owner!r} (an assembly is in at most one deployable)"
                )
            if stored is not None and stored["uuid"] != assembly.uuid:
                raise Conflict(
                    f"assemblies[{i}].uuid: assembly {assembly.name!r} exists with uuid"
                    f" {stored['uuid']}; a uuid cannot change"
                )
            self._check_assembly_uuid(assembly.to_dict(), f"assemblies[{i}].uuid")

    def _write_import(self, document: Deployable, existing: dict[str, Any] | None) -> None:
        level = _level_doc(document)
        if existing is None:
            self.store.insert_deployable(level)
        else:
            self.store.update_deployable(level)
            for old in set(existing["assemblies"]) - set(level["assemblies"]):
                self.store.set_assembly_owner(old, None)
        for assembly in document.assemblies:
            doc = assembly.to_dict()
            if _exists(self.store.get_assembly, assembly.name):
                self.store.update_assembly(doc)
                self.store.set_assembly_owner(assembly.name, document.name)
            else:
                self.store.insert_assembly(doc, deployable=document.name)

    def _check_deployable_uuid(self, document: Deployable) -> None:
        holder = self.store.deployable_with_uuid(document.uuid)
        if holder is not None and holder != document.name:
            raise Conflict(f"uuid {document.uuid} already belongs to deployable {holder!r}")
        existing = _maybe(self.store.get_deployable, document.name)
        if existing is not None and existing["uuid"] != document.uuid:
            raise Conflict(
                f"uuid: deployable {document.name!r} has uuid {existing['uuid']};"
                " a uuid cannot change"
            )

    def delete_deployable(self, name: str, force: bool = False) -> None:
        validate_name(name, "deployable name")
        with self.store.transaction():
            running = self.store.get_desired_state(name) == "started" or self._lease_live(name)
            if running and not force:
                raise Conflict(
                    f"deployable {name!r} is running: stop it first (or delete with force)",
                    deployable=name,
                )
            self.store.delete_deployable(name)

    def _lease_live(self, name: str) -> bool:
        lease = self.store.get_lease(name)
        return bool(lease and lease["holder"] and lease["expires_at"] > self.clock())

    def add_deployable_assembly(self, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
        assembly = _single_name(body, "assembly")
        validate_name(deployable, "deployable name")
        with self.store.transaction():
            doc = self.store.get_deployable(deployable)
            owner = self.store.assembly_owner(assembly)
            if owner is not None:
                where = "this deployable" if owner == deployable else f"deployable {owner!r}"
                raise Conflict(
                    f"assembly {assembly!r} is already in {where}"
                    " (an assembly is in at most one deployable)"
                )
            doc["assemblies"].append(assembly)
            self.store.update_deployable(doc)
            self.store.set_assembly_owner(assembly, deployable)
            return self._revalidate(deployable, Conflict).to_dict()

    def remove_deployable_assembly(self, deployable: str, assembly: str) -> dict[str, Any]:
        validate_name(deployable, "deployable name")
        validate_name(assembly, "assembly name")
        with self.store.transaction():
            doc = self.store.get_deployable(deployable)
            if assembly not in doc["assemblies"]:
                raise NotFound(f"assembly {assembly!r} is not in deployable {deployable!r}")
            doc["assemblies"].remove(assembly)
            self.store.update_deployable(doc)
            self.store.set_assembly_owner(assembly, None)
            return self._revalidate(deployable, Conflict).to_dict()

    def add_constraint(self, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
        constraint = {"first": body.get("first"), "then": body.get("then")}
        problems = Problems()
        _unknown(body, {"first", "then"}, problems)
        problems.raise_if_any("invalid constraint")
        with self.store.transaction():
            doc = self.store.get_deployable(validate_name(deployable, "deployable name"))
            if constraint in doc["constraints"]:
                raise Conflict(
                    f"deployable {deployable!r} already has the constraint"
                    f" {constraint['first']} -> {constraint['then']}"
                )
            index = len(doc["constraints"])
            doc["constraints"].append(constraint)
            self.store.update_deployable(doc)
            _relative(lambda: self._revalidate(deployable, InvalidInput), f"constraints[{index}]")
        return constraint

    def remove_constraint(self, deployable: str, first: str, then: str) -> None:
        with self.store.transaction():
            doc = self.store.get_deployable(validate_name(deployable, "deployable name"))
            wanted = {"first": first, "then": then}
            if wanted not in doc["constraints"]:
                raise NotFound(f"deployable {deployable!r} has no constraint {first} -> {then}")
            doc["constraints"].remove(wanted)
            self.store.update_deployable(doc)

    def set_deployable_escalation(self, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
        escalation = _escalation_body(body)
        with self.store.transaction():
            doc = self.store.get_deployable(validate_name(deployable, "deployable name"))
            doc["escalation"] = escalation
            self.store.update_deployable(doc)
            document = _relative(lambda: self._revalidate(deployable, InvalidInput), "escalation")
        return document.escalation.to_dict()

    # -- lifecycle (the DPE itself is cpe.supervisor's) --------------------------

    def prepare_start(self, name: str) -> Deployable:
        """Check that the deployable can run, then want it started (one transaction)."""
        validate_name(name, "deployable name")
        with self.store.transaction():
            document = self.runnable_document(name)
            self.store.set_desired_state(name, "started")
        return document

    def runnable_document(self, name: str) -> Deployable:
        """The complete document a DPE would run, or Conflict saying what is missing:
        every referenced assembly in the deployable, and every assembly's key pair."""
        try:
            document = self.store.get_document(validate_name(name, "deployable name"))
        except InvalidInput as error:
            reasons = error.message.split("\n", 1)[-1]
            raise Conflict(
                f"deployable {name!r} cannot run: its document is incomplete:\n{reasons}",
                details=error.details,
            ) from None
        missing = self._missing_keys(document)
        if missing:
            raise Conflict(
                f"deployable {name!r} cannot run: no key pair for assembly"
                f" {', '.join(missing)} in {self.keys_dir} (keys are made when an assembly"
                " is created or imported with pcloudsh)",
                details={"assemblies": missing},
            )
        return document

    def _missing_keys(self, document: Deployable) -> list[str]:
        if self.keys_dir is None:
            return []
        keys_dir = self.keys_dir
        return [
            a.name
            for a in document.assemblies
            if not all(path.is_file() for path in key_paths(keys_dir, a.name))
        ]

    def stored_document(self, name: str) -> Deployable:
        """The document as the catalog keeps it (a reference may still dangle)."""
        return parse_catalog_document(
            self.store.document_dict(validate_name(name, "deployable name"))
        )

    def want_stopped(self, name: str) -> None:
        self.store.set_desired_state(validate_name(name, "deployable name"), "stopped")

    def desired_state(self, name: str) -> str:
        return self.store.get_desired_state(validate_name(name, "deployable name"))

    def is_running(self, name: str) -> bool:
        """Wanted started, or a DPE holds its lease."""
        validate_name(name, "deployable name")
        with self.store.snapshot():
            return self.store.get_desired_state(name) == "started" or self._lease_live(name)

    def _revalidate(self, deployable: str, refusal: Refusal) -> Deployable:
        """The deployable as it now stands in the transaction, or ``refusal``."""
        try:
            document = parse_catalog_document(self.store.document_dict(deployable))
        except InvalidInput as error:
            reasons = error.message.split("\n", 1)[-1]
            raise refusal(
                f"refused: deployable {deployable!r} would become invalid:\n{reasons}",
                details=error.details,
            ) from None
        self.store.update_deployable(_level_doc(document))  # stored normalised
        return document

    # -- events ---------------------------------------------------------------------

    def query_events(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Events for ``GET /events``; see ``parse_event_query`` for the parameters."""
        return [event.to_dict() for event in self.store.query_events(**parse_event_query(query))]


# ---------------------------------------------------------------------------
# request parsing helpers


def parse_catalog_document(data: dict[str, Any]) -> Deployable:
    """``foundation.model.parse``, except that a reference parameter may name an assembly
    that is not in the deployable yet (see the module's docstring).

    Such assemblies stand in as empty placeholders during validation, then are
    dropped; any other problem is reported as ``parse`` reports it.
    """
    assemblies = data.get("assemblies")
    if not isinstance(assemblies, list):
        return parse(data)
    members = {
        a["name"] for a in assemblies if isinstance(a, dict) and isinstance(a.get("name"), str)
    }
    services = data.get("services")
    service_names = (
        {s.get("name") for s in services if isinstance(s, dict)}
        if isinstance(services, list)
        else set()
    )
    missing = sorted(_referenced_assemblies(assemblies) - members - service_names)
    document = parse({**data, "assemblies": [*assemblies, *({"name": m} for m in missing)]})
    return document.with_assemblies(document.assemblies[: len(assemblies)])


def _referenced_assemblies(assemblies: list[Any]) -> set[str]:
    names = set()
    for assembly in assemblies:
        resources = assembly.get("resources") if isinstance(assembly, dict) else None
        for resource in resources if isinstance(resources, list) else []:
            params = resource.get("parameters") if isinstance(resource, dict) else None
            for value in params.values() if isinstance(params, dict) else []:
                ref = value.get("ref") if isinstance(value, dict) else None
                reference = parse_reference(ref) if isinstance(ref, str) else None
                if reference is not None and NAME_RE.match(reference.assembly):
                    names.add(reference.assembly)
    return names


MAX_EVENT_ID = 2**63 - 1  # SQLite's largest integer


def parse_event_query(query: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters -> ``Store.query_events`` arguments; InvalidInput lists problems.

    ``order=asc`` (default: oldest first, page on with ``after_id``) or ``desc``
    (newest first, page on with ``before_id``); ``limit`` 1..1000 (default 100).
    """
    problems = Problems()
    _unknown(query, EVENT_QUERY_KEYS, problems)
    args: dict[str, Any] = {}
    for key in EVENT_FILTERS:
        if key in query:
            args[key] = check_name(query[key], key, problems)
    for key in ("since", "until"):
        if key in query:
            args[key] = _float_param(query[key], key, problems)
    for key in ("after_id", "before_id"):
        if key in query:
            args[key] = _int_param(query[key], key, problems, 0, MAX_EVENT_ID)
    args["limit"] = _int_param(query.get("limit", "100"), "limit", problems, 1, MAX_EVENTS)
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        problems.add("order", f"must be asc or desc: {order!r}")
    args["newest_first"] = order == "desc"
    problems.raise_if_any("invalid event query")
    return args


def parse_flag(value: str | None, name: str) -> bool:
    """A query flag as the API document has it: ``true`` or ``false`` (absent: false)."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise InvalidInput(
        f"invalid {name}: {value!r} (true or false)",
        details=[{"path": name, "message": f"must be true or false: {value!r}"}],
    )


def _float_param(text: str, key: str, problems: Problems) -> float:
    try:
        return float(text)
    except ValueError:
        problems.add(key, f"must be a number of seconds since the epoch: {text!r}")
        return 0.0


def _int_param(
    text: str, key: str, problems: Problems, minimum: int, maximum: int | None = None
) -> int:
    # isascii: str.isdigit() also accepts digits int() does not ("²")
    whole = text.isascii() and text.isdigit()
    if not whole or int(text) < minimum or (maximum and int(text) > maximum):
        bounds = f"{minimum}..{maximum}" if maximum else f">= {minimum}"
        problems.add(key, f"must be a whole number {bounds}: {text!r}")
        return minimum
    return int(text)


def _unknown(
    data: Mapping[str, Any], allowed: set[str], problems: Problems, hint: str = ""
) -> None:
    for key in data:
        if key not in allowed:
            problems.add(str(key), f"unknown field {hint}".rstrip())


def _named(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``body`` whose name is the one in the URL (given or not)."""
    raw = copy.deepcopy(body)
    given = raw.setdefault("name", name)
    if given != name:
        raise InvalidInput(
            f"invalid document: name {given!r} does not match the URL ({name!r})",
            details=[{"path": "name", "message": f"does not match the URL: {given!r} != {name!r}"}],
        )
    return raw


def _single_name(body: dict[str, Any], key: str) -> str:
    problems = Problems()
    _unknown(body, {key}, problems)
    value = check_name(body.get(key), key, problems)
    problems.raise_if_any(f"invalid request: expected {{{key!r}: NAME}}")
    return value


def _escalation_body(body: dict[str, Any]) -> dict[str, Any]:
    problems = Problems()
    for key in ("failures", "period"):
        if key not in body:
            problems.add(key, "required (use INFINITY to disable)")
    problems.raise_if_any("invalid escalation")
    return dict(body)


def _relative(action: Callable[[], T], prefix: str) -> T:
    """Run ``action``; problem paths under ``prefix`` become relative to the request body."""
    try:
        return action()
    except PcloudError as error:
        if isinstance(error.details, list):
            for item in error.details:
                path = str(item.get("path", ""))
                if path == prefix or path.startswith(prefix + "."):
                    item["path"] = path[len(prefix) + 1 :]
        raise


def _resource_index(doc: dict[str, Any], assembly: str, name: str) -> int:
    for index, resource in enumerate(doc["resources"]):
        if resource["name"] == name:
            return index
    raise NotFound(f"assembly {assembly!r} has no resource {name!r}", assembly=assembly)


def _user_template(stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": stored["name"],
        "description": stored.get("description", ""),
        "builtin": False,
        "resource": stored["resource"],
        "parameters_help": stored.get("parameters_help", {}),
    }


def _level_doc(document: Deployable) -> dict[str, Any]:
    doc = document.to_dict()
    doc["assemblies"] = [a.name for a in document.assemblies]
    return doc


def _exists(getter: Callable[[str], Any], name: str) -> bool:
    return _maybe(getter, name) is not None


def _maybe(getter: Callable[[Any], Any], name: object) -> Any:
    if not isinstance(name, str):
        return None
    try:
        return getter(name)
    except NotFound:
        return None


def _text(body: Mapping[str, Any], key: str, default: str, problems: Problems) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        problems.add(key, "must be a string")
        return default
    return value


def _optional_text(body: Mapping[str, Any], key: str, problems: Problems) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        problems.add(key, "must be a string or null")
        return None
    return value


def _optional_int(body: Mapping[str, Any], key: str, problems: Problems) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.add(key, f"must be a whole number >= 0 or null: {value!r}")
        return None
    return value


def _number(body: Mapping[str, Any], key: str, default: float, problems: Problems) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(key, f"must be a number: {value!r}")
        return default
    return float(value)


__all__ = ["HOST_JEOS", "Catalog", "parse_event_query", "parse_flag"]
