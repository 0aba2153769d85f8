"""The Python client of cped's API: pcloudsh and other programs use it.

Standard library only (``http.client`` over an ``AF_UNIX`` socket), so a
one-shot command that imports it starts fast.  One method per route of
``cpe.route_table.ROUTES``, made from its declaration (method name =
operationId, arguments as ``cpe.routes`` shapes them: the path's names, then
the body, then the query by keyword); every call has a timeout (for a route
that waits before it answers, a stop, at least that wait and 10 s), returns the
decoded JSON (None for 204), and raises the ``foundation.errors`` class
matching the error code; ``Unavailable`` when cped cannot be reached.

A client can also reach cped's optional TCP listener: ``Remote`` is its
``https://HOST:PORT`` URL, the bearer token and the CA file that signed the
listener's certificate (``remote_from_environment`` reads them from
``PCLOUD_URL``, ``PCLOUD_TOKEN_FILE`` or ``PCLOUD_TOKEN``, and
``PCLOUD_CA_FILE``).  Plain ``http://`` is refused: the token never travels
in clear, and it never appears in an error message.

``PCLOUD_URL`` may list several members (``https://a:8443,https://b:8443``):
a request goes to the member that answered last, and when it cannot be
reached (no connection within ``CONNECT_TRY`` seconds) to the next one.
Only connecting moves on: a request that was sent is never sent again to
another member.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cpe.route_table import ROUTES
from cpe.routes import PREFIX, Call, Route
from foundation.errors import (
    Forbidden,
    InvalidInput,
    OperationTimeout,
    PcloudError,
    Unauthorized,
    Unavailable,
    from_dict,
)

DEFAULT_TIMEOUT = 10.0
STREAM_IDLE_TIMEOUT = 30.0  # cped sends a keepalive every few seconds on an idle stream
CONNECT_TRY = 3.0  # with several members: how long to try one before the next
ANSWER_MARGIN = 10.0  # beyond what a route waits: cped's own work before and after
Json = dict[str, Any]
RouteCall = Callable[..., Any]
ROUTE_BY_OPERATION = {route.operation_id: route for route in ROUTES}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Remote:
    """cped's TCP listener: TLS, and the bearer token every request carries."""

    host: str
    port: int
    token: str = field(repr=False)
    ca_file: str | None = None  # None: the system's certificate authorities
    others: tuple[tuple[str, int], ...] = ()  # more members to try, in order
    token_source: str = "the client"  # where the token came from, for a refusal's message

    @classmethod
    def from_url(
        cls, url: str, token: str, ca_file: str | None = None, token_source: str = "the client"
    ) -> Remote:
        """One ``https://HOST:PORT``, or several separated by commas or spaces."""
        endpoints = [_endpoint(one) for one in url.replace(",", " ").split()]
        if not endpoints:
            raise InvalidInput("cped's URL is empty: give https://HOST:PORT")
        token = _bearer_token(token)
        (host, port), *others = endpoints
        return cls(host, port, token, ca_file, tuple(others), token_source)

    def token_refused(self, error: Unauthorized) -> Unauthorized:
        """cped's 401, saying where the refused token came from (never the token)."""
        return Unauthorized(
            f"cped at {self.url} refused the bearer token of {self.token_source}:"
            f" {error.message} (cped takes the one in its token_file)",
            details=error.details,
            **error.context,
        )

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, self.port), *self.others]

    def first(self, host: str, port: int) -> Remote:
        """The same members, ``host:port`` tried first from now on."""
        rest = tuple(e for e in self.endpoints if e != (host, port))
        return replace(self, host=host, port=port, others=rest)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            raise InvalidInput(f"cannot use the CA file {self.ca_file}: {error}") from None


def _bearer_token(text: str) -> str:
    """The token as it can travel in a header: printable ASCII, no spaces.

    cped's own token file obeys the same rule; anything else (a newline pasted
    with it, a non-ASCII character) could never match, and would otherwise
    fail inside http.client.  The token is never quoted in the message.
    """
    token = text.strip()
    if not token:
        raise InvalidInput("an empty bearer token: cped's TCP listener requires one")
    if not all(" " < character <= "~" for character in token):
        raise InvalidInput(
            "the bearer token (PCLOUD_TOKEN_FILE or PCLOUD_TOKEN) must be one word of"
            " printable ASCII characters, without spaces or control characters"
        )
    return token


def _endpoint(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed [IPv6 address, a port out of range
        parts, port = None, None
    if parts is None or parts.scheme != "https" or not parts.hostname or port is None:
        raise InvalidInput(f"cped's URL must be https://HOST:PORT (TLS is required), not {url!r}")
    return parts.hostname, port


def remote_from_environment(environ: Mapping[str, str]) -> Remote | None:
    """The TCP listener named by ``PCLOUD_URL``, or None (then: the UNIX socket)."""
    url = environ.get("PCLOUD_URL")
    if not url:
        return None
    token_file = environ.get("PCLOUD_TOKEN_FILE")
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"cannot read PCLOUD_TOKEN_FILE {token_file}: {error}") from None
        source = f"PCLOUD_TOKEN_FILE {token_file}"
    elif environ.get("PCLOUD_TOKEN"):
        token, source = environ["PCLOUD_TOKEN"], "PCLOUD_TOKEN"
    else:
        raise InvalidInput("PCLOUD_URL is set: set PCLOUD_TOKEN_FILE (or PCLOUD_TOKEN) too")
    return Remote.from_url(url, token, environ.get("PCLOUD_CA_FILE") or None, source)


class _TlsConnection(http.client.HTTPSConnection):
    def __init__(self, remote: Remote, timeout: float) -> None:
        super().__init__(remote.host, remote.port, timeout=timeout, context=remote.tls_context())


class Client:
    def __init__(
        self,
        socket_path: Path | str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        remote: Remote | None = None,
    ) -> None:
        """A client of cped on ``socket_path``, or on its TCP listener if ``remote``."""
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.remote = remote

    @property
    def endpoint(self) -> str:
        return self.remote.url if self.remote is not None else self.socket_path

    def __getattr__(self, operation: str) -> RouteCall:
        """The method of a route: ``client.get_deployable("shop")`` (see ``cpe.routes``)."""
        route = ROUTE_BY_OPERATION.get(operation)
        if route is None:
            raise AttributeError(f"cped's API has no operation {operation!r}")
        return partial(self.call, route)

    def call(self, route: Route, *args: Any, **query: Any) -> Any:
        """Make the route's request; its JSON answer (None for 204) checked for its kind."""
        call = route.shape(args, query)
        answer = self._call(route.method, call.url, call.body, self._timeout_for(call))
        if route.response is not None and route.status != 204:
            kind = list if route.answers_a_list else dict
            if not isinstance(answer, kind):
                raise PcloudError(
                    f"cped answered {route.method} {call.url} with {type(answer).__name__}"
                )
        return answer

    def stream_events(
        self, idle_timeout: float = STREAM_IDLE_TIMEOUT, **filters: Any
    ) -> Generator[Json, None, None]:
        """Live events as cped stores them (deployable, assembly, resource, after_id).

        Without ``after_id`` only new events come; ``after_id=0`` replays the
        whole log first.  Ends with ``Unavailable`` when cped closes the stream
        (it stops); resume with ``after_id`` = the last event's id.
        """
        url = ROUTE_BY_OPERATION["stream_events"].shape((), filters).url
        connection = self._connection(idle_timeout)
        try:
            response = self._send(connection, "GET", url, None)
            if response.status != 200:
                self._decode(response.status, response.read())
            yield from _server_sent_events(response)
            raise Unavailable("cped closed the event stream (it is stopping or restarting)")
        except PcloudError:
            raise
        except TimeoutError:
            raise OperationTimeout(
                f"no event and no keepalive from cped for {idle_timeout:g} s"
            ) from None
        except (http.client.HTTPException, ConnectionError, ssl.SSLError) as error:
            raise Unavailable(f"lost the event stream from cped: {error}") from None
        finally:
            connection.close()

    # -- plumbing -----------------------------------------------------------------------

    def _timeout_for(self, call: Call) -> float:
        """The client's timeout, or longer for a route that waits before it answers
        (a stop: its ``wait``, 20 s by default): the answer would come after the
        client gave up, and the stop goes on regardless."""
        waits = call.route.waits
        asked = call.query.get("wait")
        if asked is not None:
            from foundation.spelling import parse_duration

            with contextlib.suppress(ValueError):
                waits = parse_duration(asked, maximum=math.inf)
        return max(self.timeout, waits + ANSWER_MARGIN) if waits else self.timeout

    def _call(self, method: str, url: str, body: Json | None, timeout: float) -> Any:
        connection = self._connection(timeout)
        path = url.split("?", 1)[0].removeprefix(PREFIX)
        try:
            response = self._send(connection, method, url, body)
            data = response.read()
        except PcloudError:
            raise
        except TimeoutError:
            raise OperationTimeout(
                f"cped did not answer {method} {path} within {timeout:g} s"
            ) from None
        except (http.client.HTTPException, ConnectionError, ssl.SSLError) as error:
            raise Unavailable(
                f"lost the connection to cped during {method} {path}: {error}"
            ) from None
        finally:
            connection.close()
        return self._decode(response.status, data)

    def _decode(self, status: int, data: bytes) -> Any:
        try:
            return _decode(status, data)
        except Unauthorized as error:
            raise self.remote.token_refused(error) if self.remote else error from None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.remote is not None:
            return _TlsConnection(self.remote, timeout)
        return _UnixConnection(self.socket_path, timeout)

    def _connected(self, connection: http.client.HTTPConnection) -> None:
        """Called once a connection is made (a subclass may keep it)."""

    def _send(
        self, connection: http.client.HTTPConnection, method: str, url: str, body: Json | None
    ) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json"}
        if self.remote is not None:
            headers["Authorization"] = f"Bearer {self.remote.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self._connect(connection)
        connection.request(method, url, body=payload, headers=headers)
        return connection.getresponse()

    def _connect(self, connection: http.client.HTTPConnection) -> None:
        if self.remote is not None and self.remote.others:
            self._connect_any(connection, self.remote)
        else:
            self._connect_one(connection)
        self._connected(connection)

    def _connect_any(self, connection: http.client.HTTPConnection, remote: Remote) -> None:
        """The first member that takes the connection (each tried ``CONNECT_TRY`` s)."""
        timeout, failure = connection.timeout, None
        for host, port in remote.endpoints:
            connection.host, connection.port = host, port
            connection.timeout = min(CONNECT_TRY, timeout or CONNECT_TRY)
            try:
                self._connect_one(connection)
            except (Unavailable, TimeoutError) as error:
                connection.close()
                failure = error
                continue
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            self.remote = remote.first(host, port)
            return
        tried = ", ".join(f"{h}:{p}" for h, p in remote.endpoints)
        raise Unavailable(f"no member of cped answers ({tried}): {failure}") from None

    def _connect_one(self, connection: http.client.HTTPConnection) -> None:
        where = self.endpoint if self.remote is None else f"{connection.host}:{connection.port}"
        try:
            connection.connect()
        except ssl.SSLError as error:
            raise Unavailable(
                f"no TLS session with cped at {where}: {error.reason or error}"
            ) from None
        except (FileNotFoundError, ConnectionRefusedError):
            # `pcloudsh start` starts this host's cped, not one behind a URL
            hint = "; `pcloudsh start` starts it" if self.remote is None else ""
            raise Unavailable(
                f"cped is not running (nothing answers on {where}){hint}", socket=where
            ) from None
        except PermissionError:
            raise Forbidden(
                f"permission denied on cped's socket {self.socket_path}: run as its owner or"
                " as a member of the group set by socket_group in the configuration",
                socket=self.socket_path,
            ) from None
        except OSError as error:
            if isinstance(error, TimeoutError):
                raise
            raise Unavailable(f"cannot connect to cped on {where}: {error}") from None


def _decode(status: int, data: bytes) -> Any:
    if status >= 400:
        _raise_for(status, data)
    if status == 204 or not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise PcloudError(f"cped sent a malformed answer (HTTP {status}): {data[:80]!r}") from None


def _raise_for(status: int, data: bytes) -> None:
    try:
        error = json.loads(data)
    except ValueError:
        error = None
    if isinstance(error, dict) and "code" in error:
        raise from_dict(error)
    raise PcloudError(f"cped answered HTTP {status}: {data[:200].decode(errors='replace')}")


def _server_sent_events(response: http.client.HTTPResponse) -> Iterator[Json]:
    """Decode an event stream: one JSON event per message, keepalive comments skipped."""
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
