"""What every noun of the catalog does with stored documents: read a deployable as
the catalog keeps it, re-validate it inside a change, and word the refusal.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from cpe.catalog import Catalog
from dpe.agent_metadata import AgentSpec
from dpe.drivers.registry import check_settings
from foundation.domain import Resource
from foundation.errors import InvalidInput, NotFound, PcloudError
from foundation.model import Deployable, Problems, parse, validate_name

Refusal = type[PcloudError]
T = TypeVar("T")


def parse_catalog_document(data: dict[str, Any]) -> Deployable:
    """``foundation.model.parse``, except that a reference parameter may name an assembly
    that is not in the deployable yet (see the package's docstring)."""
    return parse(data, references_may_wait=True)


def stored_document(catalog: Catalog, name: str) -> Deployable:
    """The document as the catalog keeps it (a reference may still dangle)."""
    validate_name(name, "deployable name")
    return parse_catalog_document(catalog.store.document_dict(name))


def revalidate(catalog: Catalog, deployable: str, refusal: Refusal) -> Deployable:
    """The deployable as it now stands in the transaction, stored normalised, or ``refusal``."""
    try:
        document = parse_catalog_document(catalog.store.document_dict(deployable))
    except InvalidInput as error:
        reasons = error.message.split("\n", 1)[-1]
        raise refusal(
            f"refused: deployable {deployable!r} would become invalid:\n{reasons}",
            details=error.details,
        ) from None
    checked_settings(catalog, document)
    catalog.store.update_deployable(level_doc(document))
    return document


def checked_settings(catalog: Catalog, document: Deployable) -> Deployable:
    """``document``, its infrastructure settings as its driver would take them, and
    the agents it names on this host if it runs this host's agents: refused when
    written, not when a DPE first tries them (and then again, and again)."""
    check_settings(document.infrastructure, document.settings)
    if document.infrastructure == "local":
        _check_host_agents(catalog, document)
    return document


def _check_host_agents(catalog: Catalog, document: Deployable) -> None:
    """The local infrastructure's guests run this host's agents: each one a resource
    names is installed here (an image's agents, of the other drivers, are not known)."""
    problems = Problems()
    for path, resource in _resources(document):
        spec = AgentSpec(resource.rclass, resource.type, resource.provider)
        try:
            catalog.host_agent(spec)
        except InvalidInput as error:
            problems.add(
                f"{path}.type",
                f"resource {resource.name}: {error.message}, and the local infrastructure"
                " runs this host's agents",
            )
    problems.raise_if_any("agent not installed")


def _resources(document: Deployable) -> Iterator[tuple[str, Resource]]:
    """Each resource and service's resource, with its path in the document."""
    for i, assembly in enumerate(document.assemblies):
        for j, resource in enumerate(assembly.resources):
            yield f"assemblies[{i}].resources[{j}]", resource
    for k, service in enumerate(document.services):
        yield f"services[{k}]", service.resource


def relative(action: Callable[[], T], prefix: str) -> T:
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


def named(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``body`` whose name is the one in the URL (given or not)."""
    raw = copy.deepcopy(body)
    if raw.get("name") is None:
        raw["name"] = name
    if raw["name"] != name:
        given = raw["name"]
        raise InvalidInput(
            f"invalid document: name {given!r} does not match the URL ({name!r})",
            details=[{"path": "name", "message": f"does not match the URL: {given!r} != {name!r}"}],
        )
    return raw


def level_doc(document: Deployable) -> dict[str, Any]:
    """The deployable as the store keeps it: its assemblies by name."""
    doc = document.to_dict()
    doc["assemblies"] = [a.name for a in document.assemblies]
    return doc


def exists(getter: Callable[[str], Any], name: str) -> bool:
    return maybe(getter, name) is not None


def maybe(getter: Callable[[Any], Any], name: object) -> Any:
    """What ``getter`` finds for ``name``, or None (NotFound, or not a name at all)."""
    if not isinstance(name, str):
        return None
    try:
        return getter(name)
    except NotFound:
        return None
