"""Changes waiting for a reload: the stored document against the one the DPE runs.

A running DPE records the document it runs (runtime kind ``document``, on
start and after each reload); a change to the catalog goes to the store at
once but reaches the DPE only with ``deployable_reload``.  ``diff`` answers
``GET /deployables/{name}/diff``; ``pending`` is what status and the list
show.  Without a recorded document (stopped, or a DPE still starting) nothing
is pending: the next DPE runs the stored document.
"""

from __future__ import annotations

from typing import Any

from cpe.catalog import Catalog
from cpe.catalog.documents import parse_catalog_document
from foundation.document_diff import SECTIONS, document_diff, is_empty, summary
from foundation.errors import InvalidInput
from foundation.model import validate_name
from foundation.runtime_kinds import DOCUMENT
from foundation.store import Store


def diff(catalog: Catalog, name: str) -> dict[str, Any]:
    """What a reload would change, by part (empty sections when nothing would)."""
    validate_name(name, "deployable name")
    store = catalog.store
    with store.snapshot():
        stored = store.document_dict(name)
        running = running_document(store, name)
    changes = changes_between(running, stored)
    empty: dict[str, Any] = {s: {} for s in SECTIONS}
    return {
        "deployable": name,
        "running": running is not None,
        "pending": bool(changes),
        "summary": summary(changes) if changes else "",
        **(changes or empty),
    }


def pending(store: Store, name: str) -> str:
    """A line saying what waits for a reload ("" when nothing does)."""
    running = running_document(store, name)
    if running is None:
        return ""
    changes = changes_between(running, store.document_dict(name))
    return summary(changes) if changes else ""


def running_document(store: Store, name: str) -> dict[str, Any] | None:
    return store.get_runtime(name, DOCUMENT).get(DOCUMENT, {}).get("")


def changes_between(
    running: dict[str, Any] | None, stored: dict[str, Any]
) -> dict[str, Any] | None:
    """The difference, or None when there is none (or no DPE recorded what it runs)."""
    if running is None:
        return None
    changes = document_diff(running, canonical(stored))
    return None if is_empty(changes) else changes


def canonical(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored document as a DPE records it (``Deployable.to_dict``)."""
    try:
        return parse_catalog_document(stored).to_dict()
    except InvalidInput:
        return stored  # the catalog keeps documents valid; compare as stored all the same
