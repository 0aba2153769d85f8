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
import http.client
import socket
import threading
from pathlib import Path

from cpe.client import DEFAULT_TIMEOUT, Client, Remote


class InterruptibleClient(Client):
    def __init__(
        self,
        socket_path: Path | str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        remote: Remote | None = None,
    ) -> None:
        super().__init__(socket_path, timeout, remote=remote)
        self._lock = threading.Lock()
        self._interrupted = False
        self._current: http.client.HTTPConnection | None = None

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._current is not None:
                _shut_down(self._current.sock)

    def _connected(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._current = connection
            if self._interrupted:
                _shut_down(connection.sock)


def _shut_down(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by its owner
            sock.shutdown(socket.SHUT_RDWR)
