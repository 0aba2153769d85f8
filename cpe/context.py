"""What answering a request may use: the catalog, the lifecycle, the daemon's own
information, the store and its thread, and the event feed.

cped builds one ``Context`` per API application (``cpe.api.make_app``); the
tests build one around a temporary store and call routes in-process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cpe.access import Access
from cpe.catalog import Catalog
from cpe.cluster import Cluster
from cpe.eventfeed import EventFeed
from cpe.lifecycle import Lifecycle
from cpe.pending_notice import PendingNotices
from foundation.config import Config
from foundation.store import Store

StoreCall = Callable[..., Awaitable[Any]]  # run a function on the store thread


@dataclass
class DaemonInfo:
    """What health reports; the daemon replaces ``config`` and ``access`` on reload."""

    config: Config
    started: float = field(default_factory=time.monotonic)
    access: Access | None = None  # None: no access check (in-process tests)
    on_reload: list[Callable[[], None]] = field(default_factory=list)  # after SIGHUP


@dataclass(frozen=True)
class StreamSettings:
    keepalive: float = 5.0  # seconds between keepalive comments on an idle stream
    # while a stream is open, how often the event log is looked at besides the
    # wake-ups that say an event was stored (a fallback for a wake-up lost)
    poll_interval: float = 1.0


@dataclass
class Context:
    catalog: Catalog
    lifecycle: Lifecycle
    info: DaemonInfo
    in_store: StoreCall
    feed: EventFeed | None = None  # None: no event stream (in-process tests)
    streams: StreamSettings = field(default_factory=StreamSettings)
    cluster: Cluster | None = None  # one member among several sharing the store
    pending: PendingNotices = field(default_factory=PendingNotices)

    @property
    def store(self) -> Store:
        return self.catalog.store

    def holding(self, kind: type) -> Any:
        """The object of class ``kind`` the context holds (a route's target may be its method)."""
        for value in (self.catalog, self.lifecycle, self.info):
            if isinstance(value, kind):
                return value
        raise LookupError(f"the API context holds no {kind.__name__}")
