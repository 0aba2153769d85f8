"""A real cped for integration tests.

Fixtures:

- ``cped``: a cped running in the foreground (``cped --foreground``) on the
  test's own short temporary ``PCLOUD_HOME`` (the ``pcloud_home`` fixture of
  ``tests/conftest.py``); ``cped.client`` is a ``cpe.client.Client`` for it.
- ``cped_factory``: ``cped_factory(config=None, *args, start=True)`` makes more
  (on the same ``pcloud_home``), for tests that need a configuration file,
  several starts or a process that must fail.
- ``chromium``: one headless chromium (through chromium-driver and Selenium,
  ``tests/integration/browser.py``) for the whole session: it takes seconds to
  start, so every browser test shares it and starts from an empty cookie jar.

A ``CpedProcess`` is the test's own child: ``stop()`` sends SIGTERM by pid and
waits, ``kill()`` sends SIGKILL, ``restart()`` starts it again on the same home.
Everything a test started is stopped by pid afterwards (SIGKILL if SIGTERM does
not do it), so no cped outlives its test.  cped's standard error (its log in
the foreground) is in ``log()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cpe.client import Client
from cpe.control import cped_command, cped_environment
from foundation.errors import PcloudError
from foundation.paths import Paths

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

START_TIMEOUT = 10.0


class CpedProcess:
    def __init__(self, paths: Paths, args: tuple[str, ...] = ()) -> None:
        self.paths = paths
        self.args = args
        self.client = Client(paths.socket, timeout=5.0)
        self.proc: subprocess.Popen[bytes] | None = None
        self._logs: list[Path] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None, "cped is not started"
        return self.proc.pid

    def log_dir(self) -> Path:
        return self.paths.state_dir

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to answer."""
        log_file = self.log_dir() / f"cped-test-{len(self._logs)}.log"
        self._logs.append(log_file)
        with log_file.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [*cped_command(), "--foreground", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=cped_environment(self.paths),
            )
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> CpedProcess:
        """Start and wait until ``/v1/health`` answers (or fail with cped's log)."""
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"cped exited with {proc.returncode}:\n{self.log()}")
            try:
                if self.client.health()["pid"] == proc.pid:
                    return self
            except PcloudError:
                pass
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"cped did not answer within {timeout} s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> CpedProcess:
        self.stop()
        return self.start()

    def close(self) -> None:
        try:
            self.stop(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._logs if p.exists())


CpedFactory = Callable[..., CpedProcess]


@pytest.fixture
def cped_factory(pcloud_home: Paths) -> Iterator[CpedFactory]:
    started: list[CpedProcess] = []

    def make(config: str | None = None, *args: str, start: bool = True) -> CpedProcess:
        if config is not None:
            pcloud_home.config_file.write_text(config)
        process = CpedProcess(pcloud_home, args)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.close()


@pytest.fixture
def cped(cped_factory: CpedFactory) -> CpedProcess:
    return cped_factory()


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    # imported here: only the browser tests need Selenium
    from tests.integration.browser import Browser, available

    if (missing := available()) is not None:
        pytest.skip(missing)
    started = Browser.start()
    try:
        yield started.driver
    finally:
        started.close()
