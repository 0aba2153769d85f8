"""cped's ear for the DPEs' wake-ups (``foundation.wakeup``): a datagram socket.

Each wake-up is handed to ``on_wake`` as it arrives, in the loop; what it
means is the receiver's business (the event feed looks at the store if
someone waits for events; the supervisor looks at the deployable's lease or
progress).  Anything that is not a wake-up is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from foundation.wakeup import MAX_DATAGRAM, Wake, decode

log = logging.getLogger("cped.wakeups")

OnWake = Callable[[Wake], None]
SOCKET_MODE = 0o600  # cped's own user: its DPEs
RECEIVE_BUFFER = 1 << 20  # bursts while many DPEs start; the kernel may give less


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
