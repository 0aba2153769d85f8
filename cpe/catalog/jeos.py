"""JEOS images in the catalog: the built-in ``host`` and the registered image files."""

from __future__ import annotations

import platform
from typing import Any

from cpe.bodies import JeosNew
from cpe.catalog import Catalog
from foundation.errors import Conflict
from foundation.model import validate_name
from foundation.schema import validated


def rows(catalog: Catalog) -> list[dict[str, Any]]:
    return catalog.store.list_jeos()


def get(catalog: Catalog, name: str) -> dict[str, Any]:
    return catalog.store.get_jeos(validate_name(name, "JEOS name"))


def create(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    new = validated(JeosNew, body)
    doc = {
        "name": new.name,
        "kind": "image",
        "path": new.path,
        "arch": platform.machine() if new.arch is None else new.arch,
        "release": new.release,
        "size": new.size,
        "checksum": new.checksum,
        "created": catalog.clock() if new.created is None else new.created,
    }
    catalog.store.insert_jeos(doc)
    return doc


def delete(catalog: Catalog, name: str) -> None:
    validate_name(name, "JEOS name")
    store = catalog.store
    with store.transaction():
        if store.get_jeos(name)["kind"] == "host":
            raise Conflict(f"the built-in JEOS {name!r} cannot be deleted", jeos=name)
        users = store.assemblies_using_image(name)
        if users:
            raise Conflict(
                f"JEOS image {name!r} is used by assemblies {', '.join(users)}: delete them first",
                details={"assemblies": users},
            )
        store.delete_jeos(name)
