"""What starting, stopping and deleting a deployable need from the catalog (the DPE
itself is ``cpe.supervisor``'s; ``cpe.lifecycle`` puts the two together), and the
clean-up requests a running DPE carries out.
"""

from __future__ import annotations

from typing import Any

from cpe.bodies import CleanupRequest
from cpe.catalog import Catalog
from cpe.catalog.documents import stored_document
from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.keyfiles import key_paths
from foundation.model import Deployable, ResourceId, validate_name
from foundation.runtime_kinds import CLEANUP
from foundation.schema import validated


def prepare_start(catalog: Catalog, name: str) -> Deployable:
    """Check that the deployable can run, then want it started (one transaction)."""
    validate_name(name, "deployable name")
    with catalog.store.transaction():
        document = runnable_document(catalog, name)
        catalog.store.set_desired_state(name, "started")
    return document


def runnable_document(catalog: Catalog, name: str) -> Deployable:
    """The complete document a DPE would run, or Conflict saying what is missing:
    every referenced assembly in the deployable, and every assembly's key pair."""
    try:
        document = catalog.store.get_document(validate_name(name, "deployable name"))
    except InvalidInput as error:
        reasons = error.message.split("\n", 1)[-1]
        raise Conflict(
            f"deployable {name!r} cannot run: its document is incomplete:\n{reasons}",
            details=error.details,
        ) from None
    missing = _missing_keys(catalog, document)
    if missing:
        raise Conflict(
            f"deployable {name!r} cannot run: no key pair for assembly"
            f" {', '.join(missing)} in {catalog.keys_dir} (keys are made when an assembly"
            " is created or imported with pcloudsh)",
            details={"assemblies": missing},
        )
    return document


def _missing_keys(catalog: Catalog, document: Deployable) -> list[str]:
    keys_dir = catalog.keys_dir
    if keys_dir is None:
        return []
    return [
        a.name
        for a in document.assemblies
        if not all(path.is_file() for path in key_paths(keys_dir, a.name))
    ]


def want_stopped(catalog: Catalog, name: str) -> None:
    catalog.store.set_desired_state(validate_name(name, "deployable name"), "stopped")


def desired_state(catalog: Catalog, name: str) -> str:
    return catalog.store.get_desired_state(validate_name(name, "deployable name"))


def is_running(catalog: Catalog, name: str) -> bool:
    """Wanted started, or a DPE holds its lease."""
    validate_name(name, "deployable name")
    with catalog.store.snapshot():
        return catalog.store.get_desired_state(name) == "started" or lease_live(catalog, name)


def lease_live(catalog: Catalog, name: str) -> bool:
    lease = catalog.store.get_lease(name)
    return bool(lease and lease["holder"] and lease["expires_at"] > catalog.clock())


def request_cleanup(catalog: Catalog, name: str, body: dict[str, Any]) -> str | None:
    """Record a clean-up of failures for the DPE (its scope: "", ASSEMBLY or
    ASSEMBLY/RESOURCE), or None when the deployable does not run (a stop forgets
    every failure: there is nothing to clean up)."""
    request = validated(CleanupRequest, body)
    store = catalog.store
    with store.transaction():
        document = stored_document(catalog, name)
        scope = cleanup_scope(document, request.assembly, request.resource)
        if store.get_desired_state(name) != "started" and not lease_live(catalog, name):
            return None
        store.put_runtime(name, CLEANUP, scope, {"requested_at": catalog.clock()})
    return scope


def cleanup_scope(document: Deployable, assembly: str | None, resource: str | None) -> str:
    """The scope's key, once what it names is known to be in the document."""
    if resource is not None and assembly is None:
        raise InvalidInput(
            "invalid clean-up: a resource needs its assembly (ASSEMBLY/RESOURCE)",
            details=[{"path": "assembly", "message": "required with resource"}],
        )
    if assembly is None:
        return ""
    if document.assembly(assembly) is None:
        raise NotFound(f"deployable {document.name!r} has no assembly {assembly!r}")
    if resource is None:
        return assembly
    if document.resource(ResourceId(assembly, resource)) is None:
        raise NotFound(
            f"assembly {assembly!r} of deployable {document.name!r} has no resource {resource!r}"
        )
    return f"{assembly}/{resource}"
