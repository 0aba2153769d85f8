"""Order constraints of a deployable: ``first`` starts before ``then`` (cycles refused)."""

from __future__ import annotations

from typing import Any

from cpe.catalog import Catalog
from cpe.catalog.documents import relative, revalidate
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.model import validate_name
from foundation.schema import Constraint, validated


def add(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    validated(Constraint, body)
    constraint = {"first": body["first"], "then": body["then"]}
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        if constraint in doc["constraints"]:
            raise Conflict(
                f"deployable {deployable!r} already has the constraint"
                f" {constraint['first']} -> {constraint['then']}"
            )
        index = len(doc["constraints"])
        doc["constraints"].append(constraint)
        store.update_deployable(doc)
        relative(lambda: revalidate(catalog, deployable, InvalidInput), f"constraints[{index}]")
    return constraint


def remove(catalog: Catalog, deployable: str, first: str, then: str) -> None:
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        wanted = {"first": first, "then": then}
        if wanted not in doc["constraints"]:
            raise NotFound(f"deployable {deployable!r} has no constraint {first} -> {then}")
        doc["constraints"].remove(wanted)
        store.update_deployable(doc)
