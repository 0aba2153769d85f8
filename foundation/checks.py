"""The rules a document's shape cannot say: names unique, references and order
constraints naming what exists, no order cycles (colocation cycles are
accepted, as Pacemaker accepts them).

``check_document`` adds each problem with its path in the document to
``problems``; it runs on a document whose every value is already valid
(``foundation.schema``).  The graphs it looks for cycles in are the domain's
(``foundation.domain.find_cycle``).
"""

from __future__ import annotations

from foundation.domain import (
    Assembly,
    Deployable,
    ParamValue,
    Reference,
    ResourceId,
    find_cycle,
    service_id,
)
from foundation.problems import Problems


def check_document(deployable: Deployable, problems: Problems) -> None:
    _check_assemblies(deployable, problems)
    _check_constraints(deployable, problems)
    _check_services(deployable, problems)
    _check_colocations(deployable, problems)


def check_assembly(assembly: Assembly, path: str, problems: Problems) -> None:
    """An assembly on its own (as the catalog stores it): its resources' names."""
    check_unique([r.name for r in assembly.resources], _at(path, "resources"), problems)


def check_unique(names: list[str], path: str, problems: Problems, what: str = "name") -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.add(path, f"duplicate {what}: {name!r}")
        seen.add(name)


def _check_assemblies(deployable: Deployable, problems: Problems) -> None:
    check_unique([a.name for a in deployable.assemblies], "assemblies", problems)
    uuids = [a.uuid for a in deployable.assemblies if a.uuid]
    check_unique(uuids, "assemblies", problems, "uuid")
    for i, assembly in enumerate(deployable.assemblies):
        path = f"assemblies[{i}]"
        check_assembly(assembly, path, problems)
        for j, resource in enumerate(assembly.resources):
            for key, value in resource.parameters.items():
                _check_reference(deployable, key, value, f"{path}.resources[{j}]", problems)
    for i, service in enumerate(deployable.services):
        for key, value in service.resource.parameters.items():
            _check_reference(deployable, key, value, f"services[{i}]", problems)


def _check_reference(
    deployable: Deployable, key: str, value: ParamValue, path: str, problems: Problems
) -> None:
    if not isinstance(value, Reference):
        return
    if deployable.assembly(value.assembly) is None and deployable.service(value.assembly) is None:
        problems.add(
            f"{path}.parameters.{key}",
            f"refers to assembly {value.assembly!r}, which is not in the deployable",
        )


def _check_constraints(deployable: Deployable, problems: Problems) -> None:
    known = set(deployable.resource_ids()) | {service_id(s.name) for s in deployable.services}
    for i, constraint in enumerate(deployable.constraints):
        for end in ("first", "then"):
            rid = getattr(constraint, end)
            if rid not in known:
                problems.add(f"constraints[{i}].{end}", _unknown_end(known, rid))
        if constraint.first == constraint.then:
            problems.add(
                f"constraints[{i}]",
                f"a resource cannot be ordered after itself: {constraint.first}",
            )
    cycle = find_cycle(deployable.constraints)
    if cycle:
        problems.add(
            "constraints", "order constraints form a cycle: " + " -> ".join(map(str, cycle))
        )


def _unknown_end(known: set[ResourceId], rid: ResourceId) -> str:
    """What is wrong with a constraint's end; a bare name that is a resource of
    some assembly is most likely that resource, written without its assembly."""
    what = "service" if rid.is_service else "resource"
    message = f"no such {what} in the deployable: {rid}"
    if rid.is_service:
        meant = sorted(str(k) for k in known if k.resource == rid.resource and not k.is_service)
        if meant:
            message += f" (a resource is named with its assembly: {', '.join(meant)})"
    return message


def _check_services(deployable: Deployable, problems: Problems) -> None:
    check_unique([s.name for s in deployable.services], "services", problems)
    assemblies = {a.name for a in deployable.assemblies}
    for i, service in enumerate(deployable.services):
        path = f"services[{i}]"
        if service.name in assemblies:
            problems.add(f"{path}.name", f"{service.name!r} is also an assembly's name")
        check_unique(list(service.assemblies), f"{path}.locations", problems, "assembly")
        for j, location in enumerate(service.locations):
            assembly = deployable.assembly(location.assembly)
            where = f"{path}.locations[{j}].assembly"
            if assembly is None:
                problems.add(where, f"no assembly {location.assembly!r} in the deployable")
            elif assembly.resource(service.name) is not None:
                problems.add(
                    where, f"assembly {location.assembly!r} has a resource {service.name!r}"
                )


def _check_colocations(deployable: Deployable, problems: Problems) -> None:
    services = {s.name for s in deployable.services}
    for i, colocation in enumerate(deployable.colocations):
        for key, name in (("service", colocation.service), ("with", colocation.with_)):
            if name and name not in services:
                problems.add(f"colocations[{i}].{key}", f"no service {name!r} in the deployable")
        if colocation.service == colocation.with_:
            problems.add(f"colocations[{i}]", "a service cannot be colocated with itself")
    check_unique(
        [f"{c.service} with {c.with_}" for c in deployable.colocations],
        "colocations",
        problems,
        "colocation",
    )


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
