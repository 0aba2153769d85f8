"""Where the web console exists, against a real cped: on the TLS listener
only, behind a login; the UNIX socket never serves it (a cped without a
listener does not even load it)."""

from __future__ import annotations

import http.client
import re
import secrets
import socket
import ssl
import urllib.parse

import pytest

from foundation.paths import Paths
from tests.integration.conftest import CpedFactory
from tests.integration.test_api_access import Tls, make_tls, reload

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(pcloud_home: Paths) -> Tls:
    return make_tls(pcloud_home.config_dir / "tls")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def over_socket(paths: Paths, path: str) -> int:
    connection = UnixConnection(str(paths.socket))
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def over_tls(tls: Tls, path: str) -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", tls.port, timeout=5, context=context)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_console_is_behind_a_login_on_the_tls_listener_only(
    listener: Tls, cped_factory: CpedFactory, pcloud_home: Paths
) -> None:
    tls = listener
    cped_factory(tls.config())
    overview = over_tls(tls, "/console/")
    assert (overview.status, overview.getheader("Location")) == (303, "/console/login")
    assert "script-src 'self'" in str(overview.getheader("Content-Security-Policy"))
    assert over_tls(tls, "/console/login").status == 200
    assert over_tls(tls, "/console/events").status == 401
    assert over_tls(tls, "/v1/deployables").status == 401  # the API still wants its token
    assert over_socket(pcloud_home, "/console/login") == 404
    assert over_socket(pcloud_home, "/v1/health") == 200


def test_a_cped_without_a_listener_has_no_console(
    cped_factory: CpedFactory, pcloud_home: Paths
) -> None:
    cped_factory()
    assert over_socket(pcloud_home, "/console/login") == 404


def login(tls: Tls) -> str:
    """A console session's cookie, from a login with the token."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", tls.port, timeout=5, context=context)
    form = urllib.parse.urlencode({"token": tls.token, "user": "alice"})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        connection.request("POST", "/console/login", body=form, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 303, response.status
    found = re.search(r"pcloud_console=([^;]+)", str(response.getheader("Set-Cookie")))
    assert found is not None
    return found[1]


def page(tls: Tls, path: str, cookie: str) -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", tls.port, timeout=5, context=context)
    connection.request("GET", path, headers={"Cookie": f"pcloud_console={cookie}"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_replacing_the_token_ends_the_sessions_opened_with_it(
    listener: Tls, cped_factory: CpedFactory
) -> None:
    tls = listener
    cped = cped_factory(tls.config())
    cookie = login(tls)
    assert page(tls, "/console/", cookie).status == 200
    tls.token_file.write_text(secrets.token_urlsafe(32) + "\n")
    reload(cped, tls.config())
    ended = page(tls, "/console/", cookie)
    assert (ended.status, ended.getheader("Location")) == (303, "/console/login")
    assert "1 console session(s) ended" in cped.log()
