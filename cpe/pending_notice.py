"""An event when a change to a running deployable starts waiting for a reload.

The catalog stores a change at once; the running DPE applies it only on
``deployable_reload``.  After each request that changed the catalog, the
deployable it touched (directly, or through one of its assemblies) is
compared with what its DPE runs (``cpe.catalog.pending``); when something new
now waits, an event says what and how to apply it.  What was last told is
kept per deployable, with the document it was measured against, so a change
made again after a reload is told again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from cpe.catalog.pending import changes_between, running_document
from cpe.routes import Route
from foundation.document_diff import summary
from foundation.errors import NotFound, PcloudError
from foundation.events import Event
from foundation.store import Store

log = logging.getLogger("cpe.pending")
STATE = "changes-pending"
_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
_CATALOG_WRITES = ("cpe.catalog.", "cpe.operations:put_deployable")


@dataclass
class PendingNotices:
    told: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (summary, running)

    def after_change(self, store: Store, route: Route, names: list[str]) -> Event | None:
        """The event to tell (already stored), if the request left something new pending."""
        name = _deployable_touched(store, route, names)
        if name is None:
            return None
        try:
            return self._notice(store, name)
        except NotFound:  # deleted meanwhile (a request that came after): nothing waits
            self.told.pop(name, None)
            return None
        except PcloudError as error:
            log.error("deployable=%s: cannot tell what waits for a reload: %s", name, error)
            return None

    def _notice(self, store: Store, name: str) -> Event | None:
        with store.snapshot():
            running = running_document(store, name)
            changes = changes_between(running, store.document_dict(name))
        if not changes:
            self.told.pop(name, None)
            return None
        told = (summary(changes), json.dumps(running, sort_keys=True))
        if self.told.get(name) == told:
            return None
        self.told[name] = told
        reason = f"changes pending reload: {told[0]} (deployable_reload {name} applies them)"
        log.info("deployable=%s: %s", name, reason)
        return store.append_event(Event(time.time(), name, STATE, reason))


def catalog_write(route: Route) -> bool:
    return route.method in _CHANGING and route.target.startswith(_CATALOG_WRITES)


def _deployable_touched(store: Store, route: Route, names: list[str]) -> str | None:
    """The deployable a catalog write changed, if it names one that may run."""
    if not catalog_write(route):
        return None
    if route.path.startswith("/deployables/{name}") and names:
        return names[0]
    if route.path.startswith("/assemblies/{") and names:
        try:
            return store.assembly_owner(names[0])
        except NotFound:
            return None  # deleted by the request
    return None
