"""Live events in the interactive shell: a background thread follows cped's stream.

Each new event (and each word about the stream itself: lost, back) goes to
``show``; the shell turns them into alerts printed above the prompt.  The
thread reconnects with back-off while cped restarts, and ``stop()`` ends it
within ``JOIN_TIMEOUT`` (the shell's ``quit``, or ``events_live off``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pcloudsh.follow import EventFollower, EventSource
from pcloudsh.output import Notice

JOIN_TIMEOUT = 2.0
Shown = dict[str, Any] | Notice


class LiveEvents:
    def __init__(self, connect: Callable[[], EventSource], show: Callable[[Shown], None]) -> None:
        self.connect = connect
        self.show = show
        self.filters: dict[str, Any] = {}
        self.muted = False  # events are dropped meanwhile (the shell follows them itself)
        self._follower: EventFollower | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, filters: dict[str, Any] | None = None) -> None:
        """Follow new events (of the given deployable, if any); restarts if already on."""
        self.stop()
        self.filters = dict(filters or {})
        self._follower = EventFollower(self.connect(), self.filters)
        self._thread = threading.Thread(
            target=self._run, args=(self._follower,), name="pcloudsh-live-events", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = JOIN_TIMEOUT) -> None:
        follower, thread = self._follower, self._thread
        self._follower = self._thread = None
        if follower is not None:
            follower.stop()
        if thread is not None:
            thread.join(timeout)

    def _run(self, follower: EventFollower) -> None:
        try:
            for item in follower:
                if not (self.muted and isinstance(item, dict)):
                    self.show(item)
        except Exception as error:  # noqa: BLE001 - a thread has no caller: say it, then end
            self.show(Notice(f"live events stopped: {error}"))
