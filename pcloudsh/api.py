"""What pcloudsh asks of cped, and the connection to it.

``Api`` is cped's API as the commands call it; ``connect`` returns the real
client of ``cpe.client`` (standard library HTTP over the UNIX socket, so a
one-shot command starts fast).  Unit tests pass cped's own rules, called
in-process on a temporary store.

With ``PCLOUD_URL=https://HOST:PORT`` in the environment, pcloudsh talks to
cped's TLS listener instead, with the bearer token of ``PCLOUD_TOKEN_FILE``
(or ``PCLOUD_TOKEN``) and the CA certificate of ``PCLOUD_CA_FILE``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

from foundation.errors import PcloudError, Unavailable
from foundation.paths import Paths

JsonDict = dict[str, Any]
PROBE_TIMEOUT = 2.0  # asking cped for its health after an Unavailable


class CpedUnreachable(Unavailable):
    """cped does not answer on its socket (as opposed to cped answering "unavailable")."""


class OperationFailed(PcloudError):
    """cped refused an operation in the current state (a failure, not bad input)."""


class Api(Protocol):
    """cped's API: one method per route of ``cpe.route_table`` (``cpe.client`` makes them
    from the table: ``api.get_deployable("shop")``), and the live event stream."""

    def __getattr__(self, operation: str) -> Callable[..., Any]: ...
    def stream_events(self, **filters: Any) -> Iterator[JsonDict]: ...


def connect(paths: Paths, timeout: float) -> Api:
    """The client of cped's API on its UNIX socket (or its TLS listener: PCLOUD_URL)."""
    from cpe.client import Client, remote_from_environment

    remote = remote_from_environment(os.environ)
    probe = Client(paths.socket, timeout=PROBE_TIMEOUT, remote=remote).health
    client = Client(paths.socket, timeout=timeout, remote=remote)
    return cast(Api, ReachabilityCheck(client, probe))


class ReachabilityCheck:
    """Wraps the client so "cped is not reachable" is told apart from cped answering 503.

    On ``Unavailable`` it asks cped for its health: if cped answers, the error was
    cped's own (a failure); if not, cped is unreachable (exit status 3).
    """

    def __init__(self, client: Any, probe: Callable[[], Any] | None = None) -> None:
        self._client = client
        self._probe = probe or client.health

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Unavailable as error:
                raise self._classified(error) from None

        return call

    def stream_events(self, **filters: Any) -> Iterator[JsonDict]:
        try:
            yield from self._client.stream_events(**filters)
        except Unavailable as error:
            raise self._classified(error) from None

    def _classified(self, error: Unavailable) -> Unavailable:
        if isinstance(error, CpedUnreachable):
            return error
        try:
            self._probe()
        except PcloudError:
            return CpedUnreachable(error.message, details=error.details)
        return error


def connect_events(paths: Paths) -> Any:
    """A client of its own for one event stream, which ``interrupt()`` can end from any thread."""
    from cpe.client import remote_from_environment
    from pcloudsh.streamclient import InterruptibleClient

    return InterruptibleClient(paths.socket, remote=remote_from_environment(os.environ))
