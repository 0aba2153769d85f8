"""cpe.client against a canned HTTP server on a UNIX socket (in-process, no network)."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.client import Client
from cpe.route_table import ROUTES
from foundation.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OperationTimeout,
    PcloudError,
    Unavailable,
)
from foundation.paths import Paths


class Canned:
    """What the fake cped answers next, and what it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.content_type = "application/json"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.hang = threading.Event()  # set: take the request and never answer...
        self.release = threading.Event()  # ...until this is set
        self.delay = 0.0  # seconds before answering (a stop that waits)


def make_handler(canned: Canned) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request_line = self.rfile.readline().decode().split()
            headers: dict[str, str] = {}
            while (line := self.rfile.readline().decode().strip()) != "":
                key, _, value = line.partition(":")
                headers[key.lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            canned.requests.append((request_line[0], request_line[1], headers, body))
            if canned.hang.is_set():
                canned.release.wait(5)
                return
            time.sleep(canned.delay)
            reason = "OK" if canned.status < 400 else "Error"
            head = f"HTTP/1.1 {canned.status} {reason}\r\nContent-Type: {canned.content_type}\r\n"
            head += f"Content-Length: {len(canned.body)}\r\nConnection: close\r\n\r\n"
            self.wfile.write(head.encode() + canned.body)

    return Handler


@pytest.fixture
def fake(pcloud_home: Paths) -> Iterator[tuple[Client, Canned]]:
    canned = Canned()
    server = socketserver.ThreadingUnixStreamServer(str(pcloud_home.socket), make_handler(canned))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Client(pcloud_home.socket, timeout=0.5), canned
    finally:
        canned.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def answer(canned: Canned, status: int, body: Any) -> None:
    canned.status = status
    canned.body = body if isinstance(body, bytes) else json.dumps(body).encode()


def test_there_is_one_client_method_per_route(tmp_path: Path) -> None:
    client = Client(tmp_path / "cped.sock")
    assert all(callable(getattr(client, route.operation_id)) for route in ROUTES)
    with pytest.raises(AttributeError, match="no operation 'get_nothing'"):
        client.get_nothing  # noqa: B018 (the attribute is the test)


def test_a_call_takes_the_names_then_the_body(tmp_path: Path) -> None:
    client = Client(tmp_path / "cped.sock")
    with pytest.raises(TypeError, match=r"takes assembly, resource and a body \(3 arguments\)"):
        client.update_resource("web", {"name": "www"})


def test_requests_carry_json_and_quoted_names(fake: tuple[Client, Canned]) -> None:
    client, canned = fake
    answer(canned, 201, {"name": "r1"})
    assert client.add_resource("web", {"name": "r1"}) == {"name": "r1"}
    method, target, headers, body = canned.requests[-1]
    assert (method, target) == ("POST", "/v1/assemblies/web/resources")
    assert headers["content-type"] == "application/json" and json.loads(body) == {"name": "r1"}
    answer(canned, 204, b"")
    client.remove_constraint("shop", first="a/r", then="b/s")
    assert canned.requests[-1][1] == "/v1/deployables/shop/constraints?first=a%2Fr&then=b%2Fs"
    client.delete_assembly("a b")
    assert canned.requests[-1][1] == "/v1/assemblies/a%20b"
    answer(canned, 200, [])
    client.query_events(deployable="d", limit=5, since=None)
    assert canned.requests[-1][1] == "/v1/events?deployable=d&limit=5"


@pytest.mark.parametrize(
    ("code", "cls"),
    [("invalid", InvalidInput), ("not_found", NotFound), ("conflict", Conflict)],
)
def test_errors_are_rebuilt_by_code(
    fake: tuple[Client, Canned], code: str, cls: type[PcloudError]
) -> None:
    client, canned = fake
    details = [{"path": "name", "message": "bad"}]
    answer(canned, 400, {"code": code, "message": "it went wrong", "details": details})
    with pytest.raises(cls) as caught:
        client.get_assembly("x")
    assert caught.value.message == "it went wrong" and caught.value.details == details


def test_answers_that_are_not_the_api(fake: tuple[Client, Canned]) -> None:
    client, canned = fake
    answer(canned, 502, b"<html>bad gateway</html>")
    with pytest.raises(PcloudError, match="HTTP 502"):
        client.health()
    answer(canned, 200, b"not json")
    with pytest.raises(PcloudError, match="malformed"):
        client.health()
    answer(canned, 200, [1, 2])
    with pytest.raises(PcloudError, match="list"):
        client.health()


def test_a_silent_cped_times_out(fake: tuple[Client, Canned]) -> None:
    client, canned = fake
    canned.hang.set()
    with pytest.raises(OperationTimeout, match="did not answer"):
        client.list_jeos()


def test_a_stop_that_waits_is_given_its_wait_beyond_the_client_timeout(
    fake: tuple[Client, Canned],
) -> None:
    client, canned = fake  # the client's timeout: 0.5 s
    answer(canned, 202, {"deployable": "shop", "state": "stopping"})
    canned.delay = 1.0
    assert client.stop_deployable("shop", wait="800ms")["state"] == "stopping"
    assert canned.requests[-1][1] == "/v1/deployables/shop/stop?wait=800ms"
    with pytest.raises(OperationTimeout, match=r"within 0\.5 s"):
        client.list_jeos()  # a route that does not wait keeps the client's timeout


def test_no_socket_means_cped_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="pcloudsh start"):
        Client(tmp_path / "absent.sock").health()


def test_a_socket_nobody_listens_on_is_unavailable(pcloud_home: Paths) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(pcloud_home.socket))
    stale.close()  # the file stays, nothing listens
    with pytest.raises(Unavailable, match="not running"):
        Client(pcloud_home.socket).health()


def test_server_sent_events_are_decoded(fake: tuple[Client, Canned]) -> None:
    client, canned = fake
    events = [{"id": 1, "state": "running"}, {"id": 2, "state": "failed"}]
    stream = b": keepalive\n\n" + b"".join(
        f"id: {e['id']}\nevent: event\ndata: {json.dumps(e)}\n\n".encode() for e in events
    )
    canned.content_type = "text/event-stream"
    answer(canned, 200, stream)
    received = []
    with pytest.raises(Unavailable, match="closed the event stream"):
        for event in client.stream_events(deployable="d", after_id=0):
            received.append(event)
    assert received == events
    assert canned.requests[-1][1] == "/v1/events/stream?deployable=d&after_id=0"


def test_a_refused_stream_raises_the_error(fake: tuple[Client, Canned]) -> None:
    client, canned = fake
    answer(canned, 400, {"code": "invalid", "message": "bad after_id", "details": None})
    with pytest.raises(InvalidInput, match="bad after_id"):
        next(client.stream_events(after_id="x"))


# -- several members in PCLOUD_URL ---------------------------------------------------------


def test_several_member_urls_are_parsed_in_order() -> None:
    from cpe.client import Remote, remote_from_environment

    remote = remote_from_environment(
        {"PCLOUD_URL": "https://a:1, https://[::1]:2,https://c:3", "PCLOUD_TOKEN": "t"}
    )
    assert remote is not None and remote.endpoints == [("a", 1), ("::1", 2), ("c", 3)]
    assert remote.first("c", 3).endpoints == [("c", 3), ("a", 1), ("::1", 2)]
    with pytest.raises(InvalidInput, match="https://HOST:PORT"):
        Remote.from_url("https://a:1,http://b:2", "t")
    with pytest.raises(InvalidInput, match="empty"):
        Remote.from_url(" , ", "t")


class PlainClient(Client):
    """The TLS client's member choice, over plain HTTP to a loopback server."""

    def _connection(self, timeout: float) -> Any:
        import http.client

        assert self.remote is not None
        return http.client.HTTPConnection(self.remote.host, self.remote.port, timeout=timeout)


def test_a_member_that_does_not_answer_is_skipped_and_the_next_remembered() -> None:
    from cpe.client import Remote

    canned = Canned()
    answer(canned, 200, {"status": "ok"})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), make_handler(canned))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    with socket.socket() as closed:  # a port nobody listens on (bound, never listening)
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
        try:
            live = server.server_address[1]
            remote = Remote("127.0.0.1", dead, "t", others=(("127.0.0.1", live),))
            client = PlainClient("/nonexistent", timeout=2.0, remote=remote)
            assert client.health() == {"status": "ok"}
            assert client.remote is not None and client.remote.port == live
            assert client.health() == {"status": "ok"} and len(canned.requests) == 2
            assert canned.requests[0][2]["authorization"] == "Bearer t"
            nobody = Remote("127.0.0.1", dead, "t", others=(("127.0.0.1", dead),))
            with pytest.raises(Unavailable, match="no member of cped answers"):
                PlainClient("/nonexistent", timeout=2.0, remote=nobody).health()
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
