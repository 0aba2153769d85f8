"""A ``cpe.client.Client`` whose event stream another thread can end at once.

A stream waiting for cped's next event blocks in a socket read; ``stop()`` of
an ``EventFollower`` (quitting the shell, the end of ``--timeout``) calls
``interrupt()``, which shuts the socket down so the read returns.  Once
interrupted, the client stays so: a connection it opens later is shut down
as soon as it is made, so a stop that races with a reconnection still ends it.
One client serves one follower.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from cpe.client import DEFAULT_TIMEOUT, Client, _UnixConnection


class InterruptibleClient(Client):
    def __init__(self, socket_path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(socket_path, timeout)
        self._lock = threading.Lock()
        self._interrupted = False
        self._current: _UnixConnection | None = None

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._current is not None:
                _shut_down(self._current.sock)

    def _connection(self, timeout: float) -> _UnixConnection:
        return _Connection(self, self.socket_path, timeout)

    def _connected(self, connection: _UnixConnection) -> None:
        with self._lock:
            self._current = connection
            if self._interrupted:
                _shut_down(connection.sock)


class _Connection(_UnixConnection):
    def __init__(self, client: InterruptibleClient, path: str, timeout: float) -> None:
        super().__init__(path, timeout)
        self._client = client

    def connect(self) -> None:
        super().connect()
        self._client._connected(self)


def _shut_down(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by its owner
            sock.shutdown(socket.SHUT_RDWR)
