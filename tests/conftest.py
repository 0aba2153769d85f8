"""Fixtures shared by every test tier.

- ``pcloud_home``: a fresh ``Paths`` under a short temporary ``PCLOUD_HOME``
  (UNIX socket paths must stay under 107 bytes, so not pytest's long tmp_path);
  the directory is removed afterwards.
- ``store``: a ``foundation.store.Store`` opened on a real SQLite file in that home.
- ``postgres``: a real PostgreSQL server (``tests.postgres.PgServer``) for the
  whole session, started on first use (initdb into a temporary directory, on a
  UNIX socket) and stopped by pid at the end; ``pg_url``: the URL of a new,
  empty database on it for one test (dropped afterwards).
- every test runs with the same terminal settings, whatever the terminal of the
  person or machine running it (``TERM``, ``NO_COLOR``, ``COLUMNS``...), and
  with Ctrl-C (SIGINT) heard, however the run was started.

The fixture that runs a real cped lives in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from foundation.paths import Paths, resolve
from foundation.store import Store
from tests.postgres import PgServer, binaries

# Properties are checked, not timed: a loaded CI machine must not turn a slow
# example into a failure (timing belongs in bench/).
settings.register_profile("pcloud", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pcloud")


def pytest_configure(config: pytest.Config) -> None:
    """A run started in the background by a non-interactive shell inherits SIGINT
    ignored, and so would every pcloudsh and cped it starts (an ignored signal stays
    ignored across exec): the tests of what Ctrl-C does would see nothing happen.
    A handler is reset to the default in each child, so the children hear it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# What rich and the shell read of the terminal: pinned, so a test that checks
# colours or widths behaves the same under TERM=dumb, NO_COLOR or a narrow window.
TERMINAL = {"TERM": "xterm-256color"}
TERMINAL_UNSET = ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "CLICOLOR_FORCE")


@pytest.fixture(autouse=True)
def same_terminal_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TERMINAL.items():
        monkeypatch.setenv(name, value)
    for name in TERMINAL_UNSET:
        monkeypatch.delenv(name, raising=False)


def make_home() -> Path:
    """A new, short temporary directory to use as PCLOUD_HOME (caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))


@pytest.fixture
def pcloud_home() -> Iterator[Paths]:
    home = make_home()
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    try:
        yield paths
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def store(pcloud_home: Paths) -> Iterator[Store]:
    opened = Store.open(pcloud_home.store_file)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    if binaries() is None:
        pytest.skip("PostgreSQL's server is not installed (make deps installs postgresql)")
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PgServer) -> Iterator[str]:
    url = postgres.database()
    try:
        yield url
    finally:
        postgres.drop(url)
