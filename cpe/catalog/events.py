"""The event log, queried (``GET /events``; the live stream is ``cpe.eventstream``'s)."""

from __future__ import annotations

from typing import Any

from cpe.catalog import Catalog


def query(
    catalog: Catalog,
    *,
    deployable: str | None = None,
    assembly: str | None = None,
    resource: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
    order: str = "asc",
) -> list[dict[str, Any]]:
    """Events matching every filter given (``cpe.bodies.EventQuery``): oldest first
    (``asc``, page on with ``after_id``) or newest first (``desc``, with ``before_id``)."""
    events = catalog.store.query_events(
        deployable=deployable,
        assembly=assembly,
        resource=resource,
        since=since,
        until=until,
        after_id=after_id,
        before_id=before_id,
        limit=limit,
        newest_first=order == "desc",
    )
    return [event.to_dict() for event in events]
