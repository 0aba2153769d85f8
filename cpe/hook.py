"""The event hook: ``[cped] event_hook`` runs once for every new event.

The successor of the original's ``<deployable>.sh`` hook.  The command gets
the event as JSON on its standard input and in the environment
(``PCLOUD_EVENT_ID``, ``PCLOUD_TIME``, ``PCLOUD_DEPLOYABLE``, ``PCLOUD_ASSEMBLY``,
``PCLOUD_RESOURCE``, ``PCLOUD_STATE``, ``PCLOUD_REASON``); events are handled
one at a time in id order, each hook killed after ``event_hook_timeout``.  A
failing hook is logged and does not stop the next one.  Events stored while cped
was not running are not replayed: the hook starts with the events that arrive
after cped started (or after the hook was configured by SIGHUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from cpe.eventfeed import EventFeed
from foundation.config import CpedSettings
from foundation.errors import StoreError
from foundation.events import Event

log = logging.getLogger("cped.hook")

HOOK_FALLBACK = 60.0  # a configured hook also looks this often (the feed wakes it sooner)


class EventHook:
    def __init__(
        self,
        feed: EventFeed,
        fetch_after: Callable[[int], Awaitable[list[Event]]],
        settings: Callable[[], CpedSettings],
    ) -> None:
        self.feed = feed
        self.fetch_after = fetch_after
        self.settings = settings
        self._reconfigured = asyncio.Event()

    async def _reload(self) -> None:
        """Until the configuration is read again or the feed closes."""
        self._reconfigured.clear()
        closing = asyncio.ensure_future(self.feed.closing())
        reloaded = asyncio.ensure_future(self._reconfigured.wait())
        try:
            await asyncio.wait({closing, reloaded}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            reloaded.cancel()

    def reconfigured(self) -> None:
        """The configuration was read again (SIGHUP): the hook may be set or unset."""
        self._reconfigured.set()

    async def run(self, start_after: int) -> None:
        """Handle events newer than ``start_after`` until the feed closes.

        Without a hook configured it waits for a reload, not for events: an
        idle cped with no hook does not wake for them.  A hook set by SIGHUP
        starts with the events after the reload."""
        last = start_after
        while not self.feed.closed:
            if not self.settings().event_hook:
                await self._reload()
                last = await self.feed.look()  # nothing ran before: no backlog
                continue
            await self.feed.wait_after(last, HOOK_FALLBACK)
            try:
                events = await self.fetch_after(last)
            except StoreError as error:
                log.warning("event hook: cannot read the event log: %s", error)
                continue
            for event in events:
                last = event.id or last
                await self._run_one(event)

    async def _run_one(self, event: Event) -> None:
        settings = self.settings()
        command = settings.event_hook
        if not command:
            return
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **hook_environment(event)},
                start_new_session=True,
            )
        except OSError as error:
            log.error("event hook %s cannot run: %s", command[0], error)
            return
        await self._finish(process, event, settings.event_hook_timeout)

    async def _finish(
        self, process: asyncio.subprocess.Process, event: Event, timeout: float
    ) -> None:
        payload = json.dumps(event.to_dict()).encode()
        try:
            _, errors = await asyncio.wait_for(process.communicate(payload), timeout)
        except TimeoutError:
            log.warning("event hook: killed after %g s on event %s", timeout, event.id)
            await _kill(process)
            return
        except asyncio.CancelledError:
            await _kill(process)
            raise
        if process.returncode != 0:
            text = errors.decode(errors="replace").strip()[-500:]
            log.warning("event hook exited %s on event %s: %s", process.returncode, event.id, text)


def hook_environment(event: Event) -> dict[str, str]:
    return {
        "PCLOUD_EVENT_ID": str(event.id),
        "PCLOUD_TIME": repr(event.time),
        "PCLOUD_DEPLOYABLE": event.deployable,
        "PCLOUD_ASSEMBLY": event.assembly or "",
        "PCLOUD_RESOURCE": event.resource or "",
        "PCLOUD_STATE": event.state,
        "PCLOUD_REASON": event.reason,
    }


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the hook and whatever it started (it leads its own session)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
