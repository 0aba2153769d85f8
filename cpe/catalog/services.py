"""A deployable's services (resources not bound to one assembly) and colocations.

Each change is made to the stored deployable in one transaction and the whole
document re-validated, so a change that would leave it invalid (a constraint
or colocation naming a removed service, a candidate that is not in the
deployable) is refused and nothing changes.  A requested move is not part of
the document: it is the runtime entry ``move`` the DPE acts on, then deletes
once done (``cpe.operations.move_service`` tells a running DPE).
"""

from __future__ import annotations

from typing import Any

from cpe.bodies import MoveRequest
from cpe.catalog import Catalog
from cpe.catalog.assemblies import reference_problems
from cpe.catalog.documents import relative, revalidate, stored_document
from foundation.domain import INFINITY
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.model import Deployable, Problems, validate_name
from foundation.runtime_kinds import MOVE
from foundation.schema import Colocation, Service, validated


def add(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    name = validated(Service, body).name
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        services = doc.setdefault("services", [])
        doc.setdefault("colocations", [])
        if any(s.get("name") == name for s in services):
            raise Conflict(f"deployable {deployable!r} already has a service {name!r}")
        services.append(body)
        store.update_deployable(doc)
        return _service(catalog, deployable, name, len(services) - 1)


def update(catalog: Catalog, deployable: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Replace a service's definition (its name stays)."""
    body = {**body, "name": body.get("name", name)}
    if body["name"] != name:
        raise InvalidInput(f"invalid service: name {body['name']!r} does not match the URL")
    validated(Service, body)
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        index = _index(doc, deployable, name)
        doc["services"][index] = body
        store.update_deployable(doc)
        return _service(catalog, deployable, name, index)


def _service(catalog: Catalog, deployable: str, name: str, index: int) -> dict[str, Any]:
    """The service as the re-validated deployable has it (problems relative to it)."""
    where = f"services[{index}]"
    document = relative(lambda: revalidate(catalog, deployable, InvalidInput), where)
    service = document.service(name)
    assert service is not None
    _check_parameters(catalog, document, service.to_dict())
    return service.to_dict()


def _check_parameters(catalog: Catalog, document: Deployable, service: dict[str, Any]) -> None:
    known = {a.name for a in document.assemblies} | {s.name for s in document.services}
    problems = Problems()
    reference_problems(catalog, [("", service)], known, problems)
    problems.raise_if_any("invalid service parameters")


def remove(catalog: Catalog, deployable: str, name: str) -> None:
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        index = _index(doc, deployable, name)  # NotFound before the list is touched
        del doc["services"][index]
        store.update_deployable(doc)
        revalidate(catalog, deployable, Conflict)


def add_colocation(catalog: Catalog, deployable: str, body: dict[str, Any]) -> dict[str, Any]:
    validated(Colocation, body)
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        colocations = doc.setdefault("colocations", [])
        doc.setdefault("services", [])
        pair = (body.get("service"), body.get("with"))
        if any((c.get("service"), c.get("with")) == pair for c in colocations):
            raise Conflict(f"deployable {deployable!r} already colocates {pair[0]} with {pair[1]}")
        colocations.append(body)
        store.update_deployable(doc)
        where = f"colocations[{len(colocations) - 1}]"
        document = relative(lambda: revalidate(catalog, deployable, InvalidInput), where)
    return document.colocations[-1].to_dict()


def remove_colocation(catalog: Catalog, deployable: str, service: str, with_: str) -> None:
    store = catalog.store
    with store.transaction():
        doc = store.get_deployable(validate_name(deployable, "deployable name"))
        colocations = doc.get("colocations", [])
        kept = [c for c in colocations if (c.get("service"), c.get("with")) != (service, with_)]
        if len(kept) == len(colocations):
            raise NotFound(f"deployable {deployable!r} does not colocate {service} with {with_}")
        doc["colocations"] = kept
        store.update_deployable(doc)
        revalidate(catalog, deployable, Conflict)


def request_move(
    catalog: Catalog, deployable: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Ask the DPE to move a service to one of its assemblies (once; then it clears)."""
    assembly = validated(MoveRequest, body).assembly
    store = catalog.store
    with store.transaction():
        document = stored_document(catalog, deployable)
        service = document.service(validate_name(name, "service name"))
        if service is None:
            raise NotFound(f"deployable {deployable!r} has no service {name!r}")
        location = service.location(assembly)
        if location is None:
            raise InvalidInput(
                f"invalid move: service {name!r} does not run on {assembly!r}"
                f" (its assemblies: {', '.join(service.assemblies)})",
                details=[{"path": "assembly", "message": "not one of the service's assemblies"}],
            )
        if location.score <= -INFINITY:
            # a move counts as INFINITY there, which -INFINITY outweighs (as in
            # Pacemaker): the request would wait forever, and nothing would say why
            raise InvalidInput(
                f"invalid move: service {name!r} never runs on {assembly!r} (its score there"
                " is -INFINITY): change it with deployable_service_set --on first",
                details=[{"path": "assembly", "message": "the service's score there is -INFINITY"}],
            )
        request = {"to": assembly, "requested_at": catalog.clock()}
        store.put_runtime(deployable, MOVE, name, request)
    return {"service": name, **request}


def _index(doc: dict[str, Any], deployable: str, name: str) -> int:
    for index, service in enumerate(doc.get("services", [])):
        if service.get("name") == name:
            return index
    raise NotFound(f"deployable {deployable!r} has no service {name!r}")
