"""The catalog's services: resources of a deployable not bound to one assembly.

Each function takes the ``Catalog`` first (the API runs it on the store thread),
changes the stored deployable in one transaction, and revalidates the whole
document, so a change that would leave it invalid (a constraint or colocation
naming a removed service, a candidate that is not in the deployable) is
refused and nothing changes.  A requested move is not part of the document:
it is the runtime entry ``move`` the DPE acts on, then deletes once done.
"""

from __future__ import annotations

from typing import Any

from cpe.catalog import Catalog, _relative, _unknown
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.model import Problems, check_name, validate_name
from foundation.runtime_kinds import MOVE


def add_service(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    name = _body_name(body)
    with catalog.store.transaction():
        doc = catalog.store.get_deployable(validate_name(deployable, "deployable name"))
        services = doc.setdefault("services", [])
        doc.setdefault("colocations", [])
        if any(s.get("name") == name for s in services):
            raise Conflict(f"deployable {deployable!r} already has a service {name!r}")
        services.append(body)
        catalog.store.update_deployable(doc)
        where = f"services[{len(services) - 1}]"
        document = _relative(lambda: catalog._revalidate(deployable, InvalidInput), where)
    service = document.service(name)
    assert service is not None
    return service.to_dict()


def update_service(
    catalog: Catalog, deployable: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Replace a service's definition (its name stays)."""
    body = {**body, "name": body.get("name", name)}
    if body["name"] != name:
        raise InvalidInput(f"invalid service: name {body['name']!r} does not match the URL")
    with catalog.store.transaction():
        doc = catalog.store.get_deployable(validate_name(deployable, "deployable name"))
        index = _index(doc, deployable, name)
        doc["services"][index] = body
        catalog.store.update_deployable(doc)
        where = f"services[{index}]"
        document = _relative(lambda: catalog._revalidate(deployable, InvalidInput), where)
    service = document.service(name)
    assert service is not None
    return service.to_dict()


def remove_service(catalog: Catalog, deployable: str, name: str) -> None:
    with catalog.store.transaction():
        doc = catalog.store.get_deployable(validate_name(deployable, "deployable name"))
        del doc["services"][_index(doc, deployable, name)]
        catalog.store.update_deployable(doc)
        catalog._revalidate(deployable, Conflict)


def add_colocation(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    problems = Problems()
    _unknown(body, {"service", "with", "score"}, problems)
    problems.raise_if_any("invalid colocation")
    with catalog.store.transaction():
        doc = catalog.store.get_deployable(validate_name(deployable, "deployable name"))
        colocations = doc.setdefault("colocations", [])
        doc.setdefault("services", [])
        pair = (body.get("service"), body.get("with"))
        if any((c.get("service"), c.get("with")) == pair for c in colocations):
            raise Conflict(f"deployable {deployable!r} already colocates {pair[0]} with {pair[1]}")
        colocations.append(body)
        catalog.store.update_deployable(doc)
        where = f"colocations[{len(colocations) - 1}]"
        document = _relative(lambda: catalog._revalidate(deployable, InvalidInput), where)
    return document.colocations[-1].to_dict()


def remove_colocation(catalog: Catalog, deployable: str, service: str, with_: str) -> None:
    with catalog.store.transaction():
        doc = catalog.store.get_deployable(validate_name(deployable, "deployable name"))
        colocations = doc.get("colocations", [])
        kept = [c for c in colocations if (c.get("service"), c.get("with")) != (service, with_)]
        if len(kept) == len(colocations):
            raise NotFound(f"deployable {deployable!r} does not colocate {service} with {with_}")
        doc["colocations"] = kept
        catalog.store.update_deployable(doc)
        catalog._revalidate(deployable, Conflict)


def request_move(
    catalog: Catalog, deployable: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Ask the DPE to move a service to one of its assemblies (once; then it clears)."""
    problems = Problems()
    _unknown(body, {"assembly"}, problems)
    assembly = check_name(body.get("assembly"), "assembly", problems)
    problems.raise_if_any("invalid move")
    with catalog.store.transaction():
        document = catalog.stored_document(validate_name(deployable, "deployable name"))
        service = document.service(validate_name(name, "service name"))
        if service is None:
            raise NotFound(f"deployable {deployable!r} has no service {name!r}")
        if service.location(assembly) is None:
            raise InvalidInput(
                f"invalid move: service {name!r} does not run on {assembly!r}"
                f" (its assemblies: {', '.join(service.assemblies)})",
                details=[{"path": "assembly", "message": "not one of the service's assemblies"}],
            )
        request = {"to": assembly, "requested_at": catalog.clock()}
        catalog.store.put_runtime(deployable, MOVE, name, request)
    return {"service": name, **request}


def _body_name(body: dict[str, Any]) -> str:
    problems = Problems()
    name = check_name(body.get("name"), "name", problems)
    problems.raise_if_any("invalid service")
    return name


def _index(doc: dict[str, Any], deployable: str, name: str) -> int:
    for index, service in enumerate(doc.get("services", [])):
        if service.get("name") == name:
            return index
    raise NotFound(f"deployable {deployable!r} has no service {name!r}")
