"""Assemblies in the catalog, and the resources each runs.

A change to an assembly is validated as a whole assembly, then, when it is in
a deployable, as part of that deployable's document: a resource that an order
constraint names cannot be removed, say.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from cpe.bodies import EscalationSetting
from cpe.catalog import Catalog
from cpe.catalog.documents import Refusal, exists, named, relative, revalidate
from cpe.resource_templates import parameter_problems
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.model import Problems, parse_assembly, parse_resource, validate_name
from foundation.schema import validated

Change = Callable[[dict[str, Any]], dict[str, Any]]


def rows(catalog: Catalog) -> list[dict[str, Any]]:
    return [{**doc, "deployable": owner} for doc, owner in catalog.store.list_assemblies()]


def get(catalog: Catalog, name: str) -> dict[str, Any]:
    return catalog.store.get_assembly(validate_name(name, "assembly name"))


def create(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    doc = parse_assembly(body).to_dict()
    store = catalog.store
    with store.transaction():
        if exists(store.get_assembly, doc["name"]):
            raise Conflict(f"assembly {doc['name']!r} already exists", assembly=doc["name"])
        check_images(catalog, [doc["image"]], ["image"])
        check_uuid(catalog, doc, "uuid")
        check_references(catalog, doc, None, known={doc["name"]})
        store.insert_assembly(doc)
    return doc


def replace(catalog: Catalog, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The whole assembly document; without a uuid it keeps its own."""
    raw = named(body, validate_name(name, "assembly name"))

    def keep_uuid(current: dict[str, Any]) -> dict[str, Any]:
        if raw.get("uuid") in (None, ""):
            raw["uuid"] = current["uuid"]
        return raw

    return change(catalog, name, keep_uuid, InvalidInput)


def delete(catalog: Catalog, name: str) -> None:
    validate_name(name, "assembly name")
    store = catalog.store
    with store.transaction():
        owner = store.assembly_owner(name)
        if owner is not None:
            raise Conflict(
                f"assembly {name!r} belongs to deployable {owner!r}: remove it from the"
                " deployable first",
                assembly=name,
                deployable=owner,
            )
        users = referrers(resources_of([doc for doc, _ in store.list_assemblies()], name), name)
        if users:
            raise Conflict(
                f"assembly {name!r} is referred to by {', '.join(users)}:"
                " change or remove those parameters first",
                assembly=name,
            )
        store.delete_assembly(name)


def resources_of(assemblies: list[dict[str, Any]], but: str) -> list[tuple[str, dict[str, Any]]]:
    """``(ASSEMBLY/RESOURCE, resource)`` of the stored ``assemblies``, all but ``but``'s."""
    return [
        (f"{doc['name']}/{resource['name']}", resource)
        for doc in assemblies
        if doc["name"] != but
        for resource in doc["resources"]
    ]


def referrers(resources: list[tuple[str, dict[str, Any]]], target: str) -> list[str]:
    """``WHERE (parameter NAME)`` for each parameter of ``resources`` (where each is,
    and its stored document) that refers to assembly ``target``."""
    return [
        f"{where} (parameter {key})"
        for where, resource in resources
        for key, value in resource.get("parameters", {}).items()
        if _reference_target(value) == target
    ]


def add_resource(catalog: Catalog, assembly: str, body: dict[str, Any]) -> dict[str, Any]:
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

    change(catalog, validate_name(assembly, "assembly name"), add, InvalidInput)
    return resource


def update_resource(
    catalog: Catalog, assembly: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    resource = parse_resource(named(body, validate_name(name, "resource name"))).to_dict()

    def update(current: dict[str, Any]) -> dict[str, Any]:
        current["resources"][_resource_index(current, assembly, name)] = resource
        return current

    change(catalog, validate_name(assembly, "assembly name"), update, InvalidInput)
    return resource


def remove_resource(catalog: Catalog, assembly: str, name: str) -> None:
    validate_name(name, "resource name")

    def remove(current: dict[str, Any]) -> dict[str, Any]:
        del current["resources"][_resource_index(current, assembly, name)]
        return current

    change(catalog, validate_name(assembly, "assembly name"), remove, Conflict)


def set_escalation(catalog: Catalog, assembly: str, body: dict[str, Any]) -> dict[str, Any]:
    validated(EscalationSetting, body)
    escalation = dict(body)

    def update(current: dict[str, Any]) -> dict[str, Any]:
        current["escalation"] = escalation
        return current

    name = validate_name(assembly, "assembly name")
    doc = relative(lambda: change(catalog, name, update, InvalidInput), "escalation")
    return dict(doc["escalation"])


def change(catalog: Catalog, name: str, update: Change, refusal: Refusal) -> dict[str, Any]:
    """Apply ``update`` to the stored document, validate, store, re-check its deployable
    (``refusal`` if the deployable would become invalid)."""
    store = catalog.store
    with store.transaction():
        current = store.get_assembly(name)
        doc = parse_assembly(update(copy.deepcopy(current))).to_dict()
        if doc["uuid"] != current["uuid"]:
            raise Conflict(
                f"assembly {name!r} has uuid {current['uuid']}; a uuid cannot change",
                assembly=name,
            )
        check_images(catalog, [doc["image"]], ["image"])
        owner = store.assembly_owner(name)
        check_references(catalog, doc, owner, known=_targets(current) | {name})
        store.update_assembly(doc)
        if owner is not None:
            revalidate(catalog, owner, refusal)
    return doc


def check_images(catalog: Catalog, images: list[str], paths: list[str]) -> None:
    """Every image a JEOS of the catalog; each missing one named at its path."""
    problems = Problems()
    for image, path in zip(images, paths, strict=True):
        if not exists(catalog.store.get_jeos, image):
            problems.add(path, f"no such JEOS image: {image!r}")
    problems.raise_if_any("unknown JEOS image")


def check_references(
    catalog: Catalog, doc: dict[str, Any], owner: str | None, known: set[str]
) -> None:
    """A new reference names an assembly of the catalog, or a service of the deployable
    the assembly belongs to: refused when written, not first when the deployable starts
    (it may wait for that assembly to join the deployable).  ``known``: targets the
    stored assembly already has, left as they are.  And every parameter keeps its
    agent's rule (an absolute path where the template says so)."""
    problems = Problems()
    known |= _service_names(catalog, owner)
    reference_problems(catalog, indexed(doc["resources"], "resources"), known, problems)
    problems.raise_if_any("invalid resource parameters")


def reference_problems(
    catalog: Catalog,
    resources: list[tuple[str, dict[str, Any]]],
    known: set[str],
    problems: Problems,
) -> None:
    """Add a problem for each reference of ``resources`` (each with its path) to no
    assembly of the catalog nor name of ``known``, and each parameter its agent's rule
    refuses."""
    for at, resource in resources:
        for item in parameter_problems(resource, at):
            problems.add(item["path"], item["message"])
        for key, value in resource["parameters"].items():
            target = _reference_target(value)
            if target is None or target in known or exists(catalog.store.get_assembly, target):
                continue
            where = f"{at}.parameters.{key}" if at else f"parameters.{key}"
            problems.add(where, f"refers to {target!r}: no such assembly")


def indexed(resources: list[dict[str, Any]], path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(path[i], resource)`` for each resource."""
    return [(f"{path}[{i}]", resource) for i, resource in enumerate(resources)]


def _targets(doc: dict[str, Any]) -> set[str]:
    found = (_reference_target(v) for r in doc["resources"] for v in r["parameters"].values())
    return {target for target in found if target is not None}


def _reference_target(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("ref"), str):
        return str(value["ref"]).partition(":")[0]
    return None


def _service_names(catalog: Catalog, owner: str | None) -> set[str]:
    if owner is None:
        return set()
    return {s["name"] for s in catalog.store.get_deployable(owner).get("services", [])}


def check_uuid(catalog: Catalog, doc: dict[str, Any], path: str) -> None:
    """An assembly's uuid is its machine-id: no other assembly may have it."""
    holder = catalog.store.assembly_with_uuid(doc["uuid"])
    if holder is not None and holder != doc["name"]:
        raise Conflict(
            f"{path}: uuid {doc['uuid']} already belongs to assembly {holder!r}",
            assembly=doc["name"],
        )


def _resource_index(doc: dict[str, Any], assembly: str, name: str) -> int:
    for index, resource in enumerate(doc["resources"]):
        if resource["name"] == name:
            return index
    raise NotFound(f"assembly {assembly!r} has no resource {name!r}", assembly=assembly)
