"""The cloud's own view of our servers: the servers list read every
``poll_interval`` and, when ``notifications`` names the cloud's RabbitMQ, nova's
versioned notifications (``openstack_notify``), the list then read only as a
slow check.  A server of ours that is gone, shut off or in ERROR is reported
once, whichever path saw it first.  When the API does not answer, that is a
notice, the reading backs off, and nothing is reported about the servers: an
unreachable cloud is never a reason to fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dpe.drivers._openstack_cloud import Server
from dpe.drivers._openstack_settings import OpenStackSettings
from dpe.interfaces import InstanceState
from foundation.errors import PcloudError

log = logging.getLogger("dpe.drivers.openstack")

StateCallback = Callable[[str, InstanceState], None]
MAX_POLL_BACKOFF = 60.0
SLOW_POLL = 30.0  # the servers list as a safety net while notifications arrive


class WatchedDriver(Protocol):
    """What the watch asks of the driver (``OpenStackDriver``)."""

    settings: OpenStackSettings

    async def servers_listed(self) -> list[Server]: ...

    def deaths(self, servers: list[Server]) -> dict[str, InstanceState]: ...

    def watches(self, server_id: str) -> bool: ...

    def forget(self, server_id: str) -> None: ...

    def notice(self, text: str) -> None: ...


class Watch:
    def __init__(self, task: asyncio.Task[None], stop: Callable[[], None]) -> None:
        self.task = task
        self.stop = stop

    def close(self) -> None:
        self.task.cancel()
        self.stop()


class ServerPoller:
    """Reads the servers list every ``poll_interval`` (every ``SLOW_POLL`` while nova's
    notifications arrive); reports each death once, whichever path saw it first."""

    def __init__(self, driver: WatchedDriver, callback: StateCallback) -> None:
        self.driver = driver
        self.callback = callback
        self.reported: dict[str, InstanceState] = {}
        self.down_since: float | None = None
        self.failures = 0
        self.listener: Any = None  # openstack_notify.NotificationListener

    def listen(self, broker_file: Path) -> None:
        """Also take nova's notifications from the broker the file names."""
        from dpe.drivers.openstack_notify import Broker, NotificationListener

        loop = asyncio.get_running_loop()

        def deliver(server_id: str, state: InstanceState, event: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self.report, server_id, state, event)

        def notice(text: str) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.driver.notice, text)

        self.listener = NotificationListener(Broker.from_file(broker_file), deliver, notice)
        self.listener.start()

    def start(self) -> Watch:
        task = asyncio.create_task(self.run(), name="openstack-poller")
        return Watch(task, self.listener.stop if self.listener is not None else lambda: None)

    async def run(self) -> None:
        while True:
            answered = await self.once()
            interval = self.driver.settings.poll_interval
            if self.listener is not None and self.listener.connected.is_set():
                interval = max(interval, SLOW_POLL)
            await asyncio.sleep(self.once_delay(answered, interval))

    def report(self, server_id: str, state: InstanceState, source: str) -> None:
        """A death seen by either path: once per server and state, for servers of ours."""
        if not self.driver.watches(server_id) or self.reported.get(server_id) is state:
            return
        self.reported[server_id] = state
        log.info("server %s %s (%s)", server_id, state, source)
        if state is InstanceState.GONE:
            self.driver.forget(server_id)
        self.callback(server_id, state)

    def once_delay(self, answered: bool, interval: float) -> float:
        if answered:
            return interval
        return float(min(interval * 2.0**self.failures, MAX_POLL_BACKOFF))

    async def once(self) -> bool:
        """One reading; False when the cloud did not answer."""
        try:
            servers = await self.driver.servers_listed()
        except PcloudError as error:
            self.unreachable(error)
            return False
        self.reachable()
        for server_id, state in self.driver.deaths(servers).items():
            self.report(server_id, state, "servers list")
        return True

    def unreachable(self, error: PcloudError) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.driver.notice(
                f"the cloud's API does not answer ({error}): its servers are not watched "
                "through it meanwhile (the heartbeat still runs; no server is fenced for this)"
            )

    def reachable(self) -> None:
        if self.down_since is not None:
            silent = time.monotonic() - self.down_since
            self.driver.notice(f"the cloud's API answers again, after {silent:.0f} s")
        self.down_since = None
        self.failures = 0
