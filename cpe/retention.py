"""Event retention: events older than ``event_retention`` are deleted.

cped prunes when it starts and then every ``PRUNE_EVERY`` seconds, reading
the setting each time (a SIGHUP changes it).  ``forever`` keeps every event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from foundation.errors import PcloudError

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0


async def prune_forever(
    prune: Callable[[float], Awaitable[int]],
    retention: Callable[[], float | None],
    now: Callable[[], float],
    every: float = PRUNE_EVERY,
) -> None:
    """Prune old events now and every ``every`` seconds, until cancelled."""
    while True:
        await prune_once(prune, retention(), now())
        await asyncio.sleep(every)


async def prune_once(
    prune: Callable[[float], Awaitable[int]], retention: float | None, now: float
) -> int:
    """Delete the events older than ``retention``; a store error is logged, not fatal."""
    if retention is None:
        return 0
    try:
        deleted = await prune(now - retention)
    except PcloudError as error:
        log.warning("event retention: could not delete old events: %s", error)
        return 0
    if deleted:
        log.info("event retention: deleted %d events older than %g s", deleted, retention)
    return deleted
