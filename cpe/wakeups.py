"""cped's ear for wake-ups (``foundation.wakeup``), from two sources.

- its own DPEs: datagrams on a UNIX socket (``listen_for_wakeups``);
- on PostgreSQL, every member's: the store sends the same wake-up with
  ``NOTIFY`` in the transaction that commits the change (``foundation.store_pg``),
  so a DPE another member started, a lease that member's DPE released or a
  desired state its API changed reaches this member too
  (``StoreWakeups``, a connection of its own that ``LISTEN``s).

Each wake-up is handed to one ``on_wake``, whatever its source, as it arrives,
in the loop; what it means is the receiver's business (the event feed looks at
the store if someone waits for events; the supervisor looks at the deployable's
lease, progress or desired state).  Anything that is not a wake-up is ignored.
Notifications are lost with their connection (PostgreSQL restarting): each
time it listens again, ``on_missed`` says to look at everything once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from foundation.store import Store
from foundation.wakeup import MAX_DATAGRAM, Wake, decode

log = logging.getLogger("cped.wakeups")

OnWake = Callable[[Wake], None]
SOCKET_MODE = 0o600  # cped's own user: its DPEs
RECEIVE_BUFFER = 1 << 20  # bursts while many DPEs start; the kernel may give less
LISTEN_RETRY = 1.0  # after a lost listening connection
LISTEN_CHECK = 5.0  # a quiet listening connection is checked this often


class WakeListener(asyncio.DatagramProtocol):
    def __init__(self, on_wake: OnWake) -> None:
        self.on_wake = on_wake
        self.received = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        wake = decode(data[:MAX_DATAGRAM])
        if wake is not None:
            self.received += 1
            self.on_wake(wake)

    def error_received(self, exc: Exception) -> None:
        log.warning("wake-up socket: %s", exc)


async def listen_for_wakeups(
    path: Path, on_wake: OnWake
) -> tuple[asyncio.DatagramTransport, WakeListener]:
    """Bind ``path`` (replacing a socket a killed cped left) and hand on every wake-up."""
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(
        lambda: WakeListener(on_wake), sock=bound_socket(path)
    )
    return transport, listener


def bound_socket(path: Path) -> socket.socket:
    """A datagram socket bound at ``path`` (local calls only: it never blocks for long)."""
    path.unlink(missing_ok=True)  # cped holds the pidfile lock: no other cped uses it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(str(path))
        os.chmod(path, SOCKET_MODE)
    except OSError:
        sock.close()
        raise
    return sock


def stop_listening(transport: asyncio.DatagramTransport, path: Path) -> None:
    transport.close()
    path.unlink(missing_ok=True)


class StoreWakeups:
    """``LISTEN`` for the store's wake-ups on a PostgreSQL connection of its own (a task)."""

    def __init__(
        self, conninfo: str, channel: str, on_wake: OnWake, on_missed: Callable[[], None]
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self.on_wake = on_wake
        self.on_missed = on_missed
        self.connected = False
        self.received = 0  # wake-ups so far (tests and the benchmark read it)

    async def run(self) -> None:
        import psycopg  # only members on PostgreSQL load it

        while True:
            try:
                await self._listen()
            except psycopg.Error as error:
                log.warning("store wake-ups lost (%s): listening again", _line(error))
            self.connected = False
            self.on_missed()  # something may have come meanwhile
            await asyncio.sleep(LISTEN_RETRY)

    async def _listen(self) -> None:
        from psycopg import AsyncConnection, sql

        async with await AsyncConnection.connect(self._conninfo, autocommit=True) as db:
            await db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.connected = True
            self.on_missed()  # catch up with what came before listening
            while True:
                async for notice in db.notifies(timeout=LISTEN_CHECK):
                    self._received(notice.payload)
                await db.execute("SELECT 1")  # quiet: is the connection still there?

    def _received(self, payload: str) -> None:
        wake = decode(payload.encode()[:MAX_DATAGRAM])
        if wake is not None:
            self.received += 1
            self.on_wake(wake)


def store_wakeups(
    store: Store, on_wake: OnWake, on_missed: Callable[[], None]
) -> StoreWakeups | None:
    """A listener when the store is PostgreSQL (SQLite: None; one host, the socket's)."""
    conninfo = getattr(store.dialect, "conninfo", None)
    if store.dialect.name != "postgresql" or conninfo is None:
        return None
    from foundation.store_pg import WAKE_CHANNEL

    return StoreWakeups(conninfo(), WAKE_CHANNEL, on_wake, on_missed)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
