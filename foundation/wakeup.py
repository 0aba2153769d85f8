"""Wake-ups from the DPEs to cped: "deployable X stored something, look".

dped processes write their events and their lease straight into the store, so
cped would have to poll the store to notice them.  Instead a dped sends cped a
datagram on a UNIX socket in the runtime directory (``Paths.wake_socket``)
right after it commits an event (``event NAME``) or takes or gives up its
lease (``lease NAME``); cped looks at the store then, and otherwise sleeps.

On PostgreSQL the store sends the same wake-ups to every member sharing it
(``foundation.store_pg``: ``NOTIFY`` at commit), for events and leases
whichever member's DPE wrote them, and for a desired state changed through any
member's API (``desired NAME``): members learn of each other's changes as a
cped learns of its own DPEs'.

A wake-up is a hint, never data: the store stays the only source of truth.
Sending never blocks a DPE: with no cped listening, or its socket buffer full,
the datagram is dropped, and cped notices the change later (its fallback
looks), never loses it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NamedTuple

EVENT = "event"  # an event was committed
LEASE = "lease"  # the DPE took or gave up its lease
DESIRED = "desired"  # the deployable's desired state changed, or it was deleted (PostgreSQL)
KINDS = frozenset({EVENT, LEASE, DESIRED})
MAX_DATAGRAM = 256  # a kind, a space and a deployable name (at most 63 characters)


class Wake(NamedTuple):
    kind: str
    deployable: str


def encode(kind: str, deployable: str) -> bytes:
    return f"{kind} {deployable}".encode()


def decode(data: bytes) -> Wake | None:
    """The wake-up in ``data``, or None when it is not one (ignored, never fatal)."""
    try:
        kind, deployable = data.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if kind not in KINDS or not deployable:
        return None
    return Wake(kind, deployable)


class WakeSender:
    """A DPE's side: fire-and-forget datagrams to cped's wake socket."""

    def __init__(self, path: Path) -> None:
        self._path = os.fsencode(path)
        self._socket: socket.socket | None = None

    def send(self, kind: str, deployable: str) -> None:
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(encode(kind, deployable), self._path)
        except OSError:
            pass  # no cped listening, or it is behind: the store has it all the same

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
