"""A whole deployable document imported (``PUT /deployables/{name}``): created, or
replacing the stored one, with the assemblies it names created or updated.

A document without uuids keeps the stored ones (an assembly's uuid is its
machine-id); an assembly the document no longer names is kept, free.
"""

from __future__ import annotations

from typing import Any

from cpe.catalog import Catalog
from cpe.catalog.assemblies import check_images, indexed, reference_problems
from cpe.catalog.assemblies import check_uuid as check_assembly_uuid
from cpe.catalog.deployables import check_uuid
from cpe.catalog.documents import (
    checked_settings,
    exists,
    level_doc,
    maybe,
    named,
    parse_catalog_document,
    revalidate,
)
from cpe.routes import Answer
from foundation.errors import Conflict, InvalidInput
from foundation.model import Deployable, Problems, validate_name


def put(catalog: Catalog, name: str, body: dict[str, Any]) -> Answer:
    """The stored document (201 if it was created)."""
    raw = named(body, validate_name(name, "deployable name"))
    store = catalog.store
    with store.transaction():
        existing = maybe(store.get_deployable, name)
        _keep_uuids(catalog, raw, existing)
        document = checked_settings(catalog, parse_catalog_document(raw))
        _check(catalog, document)
        _write(catalog, document, existing)
        revalidate(catalog, name, InvalidInput)
    return Answer(document.to_dict(), 201 if existing is None else 200)


def _keep_uuids(catalog: Catalog, raw: dict[str, Any], existing: dict[str, Any] | None) -> None:
    if existing is not None and raw.get("uuid") in (None, ""):
        raw["uuid"] = existing["uuid"]
    assemblies = raw.get("assemblies")
    for item in assemblies if isinstance(assemblies, list) else []:
        if isinstance(item, dict) and item.get("uuid") in (None, ""):
            stored = maybe(catalog.store.get_assembly, item.get("name"))
            if stored is not None:
                item["uuid"] = stored["uuid"]


def _check(catalog: Catalog, document: Deployable) -> None:
    paths = [f"assemblies[{i}].image" for i in range(len(document.assemblies))]
    check_images(catalog, [a.image for a in document.assemblies], paths)
    check_uuid(catalog, document)
    store = catalog.store
    for i, assembly in enumerate(document.assemblies):
        stored = maybe(store.get_assembly, assembly.name)
        owner = store.assembly_owner(assembly.name) if stored else None
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
        check_assembly_uuid(catalog, assembly.to_dict(), f"assemblies[{i}].uuid")
    _check_parameters(catalog, document)


def _check_parameters(catalog: Catalog, document: Deployable) -> None:
    """References name an assembly (of the document or the catalog) or a service of the
    document; parameters keep their agent's rules."""
    known = {a.name for a in document.assemblies} | {s.name for s in document.services}
    problems = Problems()
    for i, assembly in enumerate(document.assemblies):
        resources = indexed([r.to_dict() for r in assembly.resources], f"assemblies[{i}].resources")
        reference_problems(catalog, resources, known, problems)
    services = indexed([s.to_dict() for s in document.services], "services")
    reference_problems(catalog, services, known, problems)
    problems.raise_if_any("invalid resource parameters")


def _write(catalog: Catalog, document: Deployable, existing: dict[str, Any] | None) -> None:
    store = catalog.store
    level = level_doc(document)
    if existing is None:
        store.insert_deployable(level)
    else:
        store.update_deployable(level)
        for old in set(existing["assemblies"]) - set(level["assemblies"]):
            store.set_assembly_owner(old, None)
    for assembly in document.assemblies:
        if exists(store.get_assembly, assembly.name):
            store.update_assembly(assembly.to_dict())
            store.set_assembly_owner(assembly.name, document.name)
        else:
            store.insert_assembly(assembly.to_dict(), deployable=document.name)
