"""libvirt's event loop, and lifecycle events handed to asyncio callbacks.

libvirt delivers domain events only to a process that registered an event loop
implementation before opening its connections.  The default implementation runs
in one daemon thread per process (``ensure_event_thread``), independent of any
asyncio loop, so a driver works from any loop (tests create one per test).
A ``Subscription`` hands each event to its callback in the subscriber's asyncio
loop, with ``call_soon_threadsafe``: callbacks never run in libvirt's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt  # type: ignore[import-untyped]

from dpe.drivers._libvirt_xml import DOMAIN_PREFIX
from dpe.interfaces import InstanceState

log = logging.getLogger(__name__)

StateCallback = Callable[[str, InstanceState], None]

_lock = threading.Lock()
_started = False

# lifecycle event -> what it means for the instance (others: nothing to report)
_LIFECYCLE: dict[int, InstanceState] = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED: InstanceState.STOPPED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: InstanceState.STOPPED,
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: InstanceState.GONE,
}


def ensure_event_thread() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _started
    with _lock:
        if _started:
            return
        libvirt.registerErrorHandler(_quiet, None)  # errors are raised, not printed
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_events, name="libvirt-events", daemon=True).start()
        _started = True


def _run_events() -> None:
    while True:
        if libvirt.virEventRunDefaultImpl() < 0:
            log.warning("libvirt event loop iteration failed")


def _quiet(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; the driver raises them instead."""


def lifecycle_state(event: int) -> InstanceState | None:
    return _LIFECYCLE.get(event)


class Subscription:
    """Lifecycle events of the driver's domains, delivered to ``callback`` in ``loop``."""

    def __init__(
        self,
        callback: StateCallback,
        loop: asyncio.AbstractEventLoop,
        ignore: Callable[[str], bool],
    ) -> None:
        self.callback = callback
        self.loop = loop
        self.ignore = ignore
        self.callback_id: int | None = None
        self.connection: Any = None
        self.closed = False

    def register(self, connection: Any) -> None:
        self.connection = connection
        self.callback_id = connection.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )

    def close(self) -> None:
        """Stop the events (idempotent)."""
        self.closed = True
        if self.callback_id is None:
            return
        callback_id, self.callback_id = self.callback_id, None
        # when the connection is gone, the registration went with it
        with contextlib.suppress(libvirt.libvirtError):
            self.connection.domainEventDeregisterAny(callback_id)

    def _on_lifecycle(self, _conn: Any, domain: Any, event: int, detail: int, _op: Any) -> None:
        """In libvirt's thread: no libvirt call here (the domain name is cached)."""
        name = domain.name()
        state = lifecycle_state(event)
        if state is None or not name.startswith(DOMAIN_PREFIX) or self.ignore(name):
            return
        log.info("instance %s: libvirt event %d/%d -> %s", name, event, detail, state)
        # a closed loop: nobody listens any more
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.callback, name, state)
