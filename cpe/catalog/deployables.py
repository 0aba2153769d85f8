"""Deployables in the catalog: their own settings, escalation and membership.

The store keeps a deployable with its assemblies by name; ``get`` answers the
whole document, assemblies expanded.  An assembly is in at most one deployable.
"""

from __future__ import annotations

from typing import Any

from cpe.bodies import DeployableNew, EscalationSetting, Membership
from cpe.catalog import Catalog
from cpe.catalog.assemblies import referrers, resources_of
from cpe.catalog.documents import (
    checked_settings,
    exists,
    level_doc,
    maybe,
    parse_catalog_document,
    relative,
    revalidate,
)
from cpe.catalog.pending import pending
from cpe.catalog.runstate import lease_live
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.model import Deployable, parse, validate_name
from foundation.runtime_kinds import DEPLOYABLE
from foundation.schema import validated


def rows(catalog: Catalog) -> list[dict[str, Any]]:
    store = catalog.store
    with store.snapshot():
        return [_row(catalog, doc, desired) for doc, desired in store.list_deployables()]


def _row(catalog: Catalog, doc: dict[str, Any], desired: str) -> dict[str, Any]:
    recorded = catalog.store.get_runtime(doc["name"], DEPLOYABLE)  # not every resource's
    runtime = recorded.get(DEPLOYABLE, {}).get("", {})
    return {
        "name": doc["name"],
        "uuid": doc["uuid"],
        "infrastructure": doc["infrastructure"],
        "assemblies": len(doc["assemblies"]),
        "state": runtime.get("state", "stopped"),
        "desired": desired,
        "desired_state": desired,  # the same, under its earlier name (kept for scripts)
        "pending_reload": pending(catalog.store, doc["name"]),
    }


def get(catalog: Catalog, name: str) -> dict[str, Any]:
    validate_name(name, "deployable name")
    return parse_catalog_document(catalog.store.document_dict(name)).to_dict()


def create(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    """An empty deployable: its settings (assemblies are added, or a document imported)."""
    validated(DeployableNew, body)
    document = checked_settings(catalog, parse(body))
    store = catalog.store
    with store.transaction():
        if exists(store.get_deployable, document.name):
            raise Conflict(f"deployable {document.name!r} already exists")
        check_uuid(catalog, document)
        store.insert_deployable(level_doc(document))
    return document.to_dict()


def check_uuid(catalog: Catalog, document: Deployable) -> None:
    """A deployable's uuid is its own, and never changes."""
    store = catalog.store
    holder = store.deployable_with_uuid(document.uuid)
    if holder is not None and holder != document.name:
        raise Conflict(f"uuid {document.uuid} already belongs to deployable {holder!r}")
    existing = maybe(store.get_deployable, document.name)
    if existing is not None and existing["uuid"] != document.uuid:
        raise Conflict(
            f"uuid: deployable {document.name!r} has uuid {existing['uuid']}; a uuid cannot change"
        )


def delete(catalog: Catalog, name: str, force: bool = False) -> None:
    """Refused while it runs (wanted started, or a DPE's lease is live) unless ``force``."""
    validate_name(name, "deployable name")
    store = catalog.store
    with store.transaction():
        running = store.get_desired_state(name) == "started" or lease_live(catalog, name)
        if running and not force:
            raise Conflict(
                f"deployable {name!r} is running: stop it first, or delete it with --force",
                deployable=name,
            )
        store.delete_deployable(name)


def set_escalation(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    validated(EscalationSetting, body)
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        doc["escalation"] = dict(body)
        store.update_deployable(doc)
        document = relative(lambda: revalidate(catalog, deployable, InvalidInput), "escalation")
    return document.escalation.to_dict()


def add_assembly(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    assembly = validated(Membership, body).assembly
    validate_name(deployable, "deployable name")
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(deployable)
        owner = store.assembly_owner(assembly)
        if owner is not None:
            where = "this deployable" if owner == deployable else f"deployable {owner!r}"
            raise Conflict(
                f"assembly {assembly!r} is already in {where}"
                " (an assembly is in at most one deployable)"
            )
        doc["assemblies"].append(assembly)
        store.update_deployable(doc)
        store.set_assembly_owner(assembly, deployable)
        return revalidate(catalog, deployable, Conflict).to_dict()


def _refuse_if_referred_to(catalog: Catalog, doc: dict[str, Any], assembly: str) -> None:
    """A parameter that names the assembly's address or hostname would be left
    without one: the deployable could no longer start (nor be exported and imported
    again), as a constraint naming its resources would leave it."""
    others = [catalog.store.get_assembly(name) for name in doc["assemblies"]]
    services = [(f"service {s['name']}", s) for s in doc.get("services", [])]
    users = referrers(resources_of(others, assembly) + services, assembly)
    if users:
        raise Conflict(
            f"refused: assembly {assembly!r} is referred to by {', '.join(users)}:"
            " change or remove those parameters first",
            assembly=assembly,
            deployable=doc["name"],
        )


def remove_assembly(catalog: Catalog, deployable: str, assembly: str) -> dict[str, Any]:
    validate_name(deployable, "deployable name")
    validate_name(assembly, "assembly name")
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(deployable)
        if assembly not in doc["assemblies"]:
            raise NotFound(f"assembly {assembly!r} is not in deployable {deployable!r}")
        doc["assemblies"].remove(assembly)
        _refuse_if_referred_to(catalog, doc, assembly)
        store.update_deployable(doc)
        store.set_assembly_owner(assembly, None)
        return revalidate(catalog, deployable, Conflict).to_dict()
