"""A real browser for the console's tests: Debian's chromium in headless mode,
driven by Debian's chromium-driver through Selenium.

``Browser.start`` runs chromedriver on a free loopback port (our own child,
stopped by its pid) and opens one chromium session with a new, empty profile
and every background connection turned off (the tests' traffic stays on
loopback).  The test certificate is accepted for this session only.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
START_TIMEOUT = 30.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
)


def available() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return (
        f"not installed: {', '.join(missing)} (make installs chromium chromium-driver)"
        if missing
        else None
    )


@dataclass
class Browser:
    driver: WebDriver
    chromedriver: subprocess.Popen[bytes]
    profile: Path

    @classmethod
    def start(cls) -> Browser:
        port = _free_port()
        profile = Path(tempfile.mkdtemp(prefix="pc-chromium-", dir="/tmp"))
        process = subprocess.Popen(
            [str(CHROMEDRIVER), f"--port={port}", "--allowed-ips=127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/status", process)
            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
                options.add_argument(flag)
            options.accept_insecure_certs = True  # the test's own self-signed certificate
            driver = webdriver.Remote(f"http://127.0.0.1:{port}", options=options)
        except BaseException:
            _stop(process)
            shutil.rmtree(profile, ignore_errors=True)
            raise
        driver.set_page_load_timeout(20)
        return cls(driver, process, profile)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()  # chromium exits with its session
        _stop(self.chromedriver)
        shutil.rmtree(self.profile, ignore_errors=True)


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromedriver exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"chromedriver did not answer on {url} within {START_TIMEOUT:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
