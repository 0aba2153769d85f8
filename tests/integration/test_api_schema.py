"""Schemathesis against a real cped over its UNIX socket.

The OpenAPI document is fetched from the running cped (``/v1/openapi.json``)
and every operation is called with data generated from it: valid data
(positive) and data that breaks the schema (negative).  No answer may be a
server error (5xx, ``unavailable`` included: this cped supervises DPEs), and
every answer must match the document: a documented status, content type and
body schema; data that breaks the schema must be refused.

Requests go through a ``requests`` session whose adapter connects to the
UNIX socket (``UnixSocketAdapter``).  The event stream (server-sent events,
an answer that never ends) is left out; ``tests/unit/test_api.py`` covers
it.  ``PCLOUD_SCHEMA_EXAMPLES`` sets the examples per operation and mode
(default 15, the same ones every run: tens of seconds in all; set, new random
examples every run).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from cpe.route_table import ROUTES
from cpe.routes import PREFIX
from foundation.errors import PcloudError
from foundation.paths import Paths, resolve
from tests.conftest import make_home
from tests.integration.conftest import CpedProcess

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PCLOUD_SCHEMA_EXAMPLES", "15"))
# The default run is the same every time (no flaky CI); asking for more explores anew.
DERANDOMIZE = "PCLOUD_SCHEMA_EXAMPLES" not in os.environ
BASE_URL = "http://cped"  # the host is not used: the adapter connects to the socket
LEFT_OUT = {"stream_events"}  # an answer that never ends
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _UnixConnection(HTTPConnection):
    def __init__(self, socket_path: str, **kwargs: Any) -> None:
        super().__init__("localhost", **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else 10.0)
        sock.connect(self.socket_path)
        return sock


class _UnixPool(HTTPConnectionPool):
    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost", timeout=10.0)
        self.socket_path = socket_path

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self.socket_path, timeout=10.0)


class UnixSocketAdapter(HTTPAdapter):
    """Sends every request of a ``requests`` session to one UNIX socket."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.pool = _UnixPool(socket_path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> HTTPConnectionPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


@pytest.fixture(scope="module")
def fuzzed_cped() -> Iterator[CpedProcess]:
    home = make_home()
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    process = CpedProcess(paths)
    try:
        yield process.start()
    finally:
        _stop_everything(process, paths)
        shutil.rmtree(home, ignore_errors=True)


def _stop_everything(process: CpedProcess, paths: Paths) -> None:
    """Deployables the fuzzing happened to start are stopped, then cped."""
    try:
        for row in process.client.list_deployables():
            if row["desired"] == "started":
                pid = process.client.deployable_status(row["name"])["dpe"]["pid"]
                process.client.stop_deployable(row["name"], wait=10, kill_after=5)
                _kill_if_alive(pid)
    except PcloudError:
        pass
    finally:
        process.close()


def _kill_if_alive(pid: int | None) -> None:
    deadline = time.monotonic() + 5
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    if pid:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def session(fuzzed_cped: CpedProcess) -> Iterator[requests.Session]:
    with requests.Session() as opened:
        opened.mount(BASE_URL, UnixSocketAdapter(str(fuzzed_cped.paths.socket)))
        yield opened


@pytest.fixture(scope="module")
def schema(session: requests.Session) -> schemathesis.BaseSchema:
    """The document cped serves, as schemathesis reads it."""
    answer = session.get(f"{BASE_URL}{PREFIX}/openapi.json", timeout=10)
    assert answer.status_code == 200
    return schemathesis.openapi.from_dict(answer.json())


def _cases() -> list[Any]:
    """Every operation with valid data; with invalid data, those that take any input."""
    cases = []
    for op in ROUTES:
        if op.operation_id in LEFT_OUT:
            continue
        cases.append(pytest.param(op, GenerationMode.POSITIVE, id=f"{op.operation_id}-valid"))
        if op.path_params or op.query or op.request:
            cases.append(pytest.param(op, GenerationMode.NEGATIVE, id=f"{op.operation_id}-invalid"))
    return cases


@pytest.mark.parametrize(("route", "mode"), _cases())
def test_answers_match_the_document_and_are_never_server_errors(
    schema: schemathesis.BaseSchema,
    session: requests.Session,
    route: Any,
    mode: GenerationMode,
) -> None:
    operation = schema[PREFIX + route.path][route.method]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=BASE_URL, session=session)
        case.validate_response(response, checks=checks)

    check()
