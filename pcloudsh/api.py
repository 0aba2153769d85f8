"""What pcloudsh asks of cped, and the connection to it.

``Api`` lists the calls the commands make; ``connect`` returns the real
client of ``cpe.client`` (standard library HTTP over the UNIX socket, so a
one-shot command starts fast).  Unit tests pass a hand-written fake instead.

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
    def health(self) -> JsonDict: ...
    def cluster_status(self) -> JsonDict: ...

    # JEOS images
    def list_jeos(self) -> list[JsonDict]: ...
    def get_jeos(self, name: str) -> JsonDict: ...
    def create_jeos(self, doc: JsonDict) -> JsonDict: ...
    def delete_jeos(self, name: str) -> Any: ...

    # assemblies and their resources
    def list_assemblies(self) -> list[JsonDict]: ...
    def get_assembly(self, name: str) -> JsonDict: ...
    def create_assembly(self, doc: JsonDict) -> JsonDict: ...
    def delete_assembly(self, name: str) -> Any: ...
    def add_resource(self, assembly: str, doc: JsonDict) -> JsonDict: ...
    def update_resource(self, assembly: str, resource: str, doc: JsonDict) -> JsonDict: ...
    def remove_resource(self, assembly: str, resource: str) -> Any: ...
    def set_assembly_escalation(self, assembly: str, failures: Any, period: Any) -> Any: ...

    # resource templates
    def list_templates(self) -> list[JsonDict]: ...
    def get_template(self, name: str) -> JsonDict: ...

    # deployables
    def list_deployables(self) -> list[JsonDict]: ...
    def get_deployable(self, name: str) -> JsonDict: ...
    def create_deployable(
        self, name: str, infrastructure: str, settings: dict[str, str] | None = None
    ) -> JsonDict: ...
    def put_deployable(self, name: str, doc: JsonDict) -> JsonDict: ...
    def delete_deployable(self, name: str, force: bool = False) -> Any: ...
    def add_deployable_assembly(self, deployable: str, assembly: str) -> Any: ...
    def remove_deployable_assembly(self, deployable: str, assembly: str) -> Any: ...
    def add_constraint(self, deployable: str, first: str, then: str) -> Any: ...
    def remove_constraint(self, deployable: str, first: str, then: str) -> Any: ...
    def set_deployable_escalation(self, deployable: str, failures: Any, period: Any) -> Any: ...

    # services and colocations
    def add_service(self, deployable: str, doc: JsonDict) -> JsonDict: ...
    def update_service(self, deployable: str, name: str, doc: JsonDict) -> JsonDict: ...
    def remove_service(self, deployable: str, name: str) -> Any: ...
    def move_service(self, deployable: str, name: str, assembly: str) -> JsonDict: ...
    def add_colocation(self, deployable: str, service: str, with_: str, score: Any) -> Any: ...
    def remove_colocation(self, deployable: str, service: str, with_: str) -> Any: ...

    # lifecycle
    def start_deployable(self, name: str) -> Any: ...
    def stop_deployable(self, name: str) -> Any: ...
    def reload_deployable(self, name: str) -> Any: ...
    def deployable_status(self, name: str) -> JsonDict: ...
    def deployable_cib(self, name: str) -> JsonDict: ...
    def simulate_deployable(
        self, name: str, fail: list[str] | None = None, policy_engine: str | None = None
    ) -> JsonDict: ...

    # events
    def query_events(self, **filters: Any) -> list[JsonDict]: ...
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
