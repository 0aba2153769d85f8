"""Following cped's live event stream across restarts of cped.

``EventFollower`` yields each new event once, in order.  When the stream is
lost (cped stopped or restarted, no keepalive) it says so once, waits with a
capped exponential back-off and resumes after the last event it saw, so no
event stored meanwhile is missed.  ``stop()`` -- from another thread, a
timer or a signal -- ends it promptly, also while it waits for an event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from foundation.backoff import Backoff, Retries
from foundation.errors import PcloudError
from pcloudsh.output import Notice

JsonDict = dict[str, Any]
RECONNECT_BACKOFF = Backoff(initial=0.5, maximum=10.0)


class EventSource(Protocol):
    def query_events(self, **filters: Any) -> list[JsonDict]: ...
    def stream_events(self, **filters: Any) -> Iterator[JsonDict]: ...


def newest_event_id(source: Any, **filters: Any) -> int:
    """The id of the newest event (of ``filters``' events), 0 when there is none:
    what comes after it is new."""
    newest = source.query_events(**filters, order="desc", limit=1)
    return int(newest[0].get("id") or 0) if newest else 0


class EventFollower:
    def __init__(
        self,
        source: EventSource,
        filters: dict[str, Any] | None = None,
        *,
        after_id: int | None = None,
        backoff: Backoff = RECONNECT_BACKOFF,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.source = source
        self.filters = dict(filters or {})
        self.after_id = after_id  # None: start after the newest event when connected
        self.backoff = backoff
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait  # True: stopped while waiting

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """End the iteration: now if it waits to reconnect, else at the next read."""
        self._stopped.set()
        interrupt = getattr(self.source, "interrupt", None)
        if interrupt is not None:
            interrupt()  # unblocks a read in progress

    def __iter__(self) -> Iterator[JsonDict | Notice]:
        retries, lost = Retries(self.backoff), False
        while not self.stopped:
            try:
                self._connect()
                if lost:
                    yield Notice("event stream back")
                retries.reset()
                lost = False
                yield from self._stream()
            except PcloudError as error:
                if self.stopped:
                    return
                if not lost:
                    yield Notice(f"lost the event stream: {error.message}; reconnecting")
                lost = True
            if self._pause(retries.failed()):
                return

    def _pause(self, delay: float) -> bool:
        """Wait before reconnecting; True when stopped (before or meanwhile)."""
        return self.stopped or self._wait(delay) or self.stopped

    def _connect(self) -> None:
        """Ask cped for its newest event: proves it answers, and where to start."""
        newest = newest_event_id(self.source)
        if self.after_id is None:
            self.after_id = newest

    def _stream(self) -> Iterator[JsonDict]:
        stream = self.source.stream_events(**self.filters, after_id=self.after_id)
        try:
            for event in stream:
                if self.stopped:
                    return
                self.after_id = max(self.after_id or 0, int(event.get("id") or 0))
                yield event
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the connection, now rather than when collected
