"""The web console in a real browser, against a real cped serving it on its TLS
listener (loopback, a self-signed certificate made here) and running a real
local deployable.

One cped and one deployable serve the whole module, and the browser the
whole session (they take seconds to come up); the tests run in order, as an
operator would: log in, look at the overview and the deployable, kill a
service and watch its failure and recovery arrive without reloading, then
stop and start it from the page.
Screenshots (PNG) go to ``PCLOUD_CONSOLE_SCREENSHOTS`` when it names a
directory (``docs/`` keeps the README's), else to the module's temporary
directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from foundation.errors import PcloudError
from foundation.paths import Paths, resolve
from images.keys import write_assembly_keys
from tests.conftest import make_home
from tests.integration.browser import available
from tests.integration.conftest import CpedProcess
from tests.integration.test_api_access import Tls, make_tls
from tests.integration.test_lifecycle import CONFIG

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

USER = "alice"


class Site:
    """cped with its TLS listener, and the deployable ``shop`` running."""

    def __init__(self, paths: Paths, tls: Tls, cped: CpedProcess, sleep_arg: str) -> None:
        self.paths, self.tls, self.cped, self.sleep_arg = paths, tls, cped, sleep_arg
        self.url = f"https://127.0.0.1:{tls.port}/console"

    def status(self) -> dict[str, Any]:
        return self.cped.client.deployable_status("shop")

    def service_pids(self) -> list[int]:
        """The sleeper ``anything`` runs in the guest (its argument is this module's own)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[:2] == [b"/bin/sleep", self.sleep_arg.encode()]:
                    found.append(int(entry.name))
        return found


def shop(sleep_arg: str) -> dict[str, Any]:
    return {
        "name": "shop",
        "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
        "assemblies": [
            {
                "name": "web",
                "resources": [
                    {
                        "name": "app",
                        "type": "anything",
                        "monitor_interval": 0.5,
                        "parameters": {"binfile": "/bin/sleep", "cmdline_options": sleep_arg},
                    },
                    {"name": "cache", "type": "Dummy", "monitor_interval": 1},
                ],
            }
        ],
    }


def until(condition: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            value = condition()
        except (PcloudError, StaleElementReferenceException):
            value = None  # not yet; or the part of the page was just refreshed
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    home = make_home()
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    tls = make_tls(paths.config_dir / "tls")
    paths.config_file.write_text(CONFIG.replace("[cped]\n", tls.config(), 1))
    write_assembly_keys(paths.keys_dir, "web")
    cped = CpedProcess(paths).start()
    sleep_arg = f"86400.{secrets.randbelow(10**6)}"
    made = Site(paths, tls, cped, sleep_arg)
    try:
        cped.client.put_deployable("shop", shop(sleep_arg))
        cped.client.start_deployable("shop")
        until(lambda: running(made), 30, "shop running")
        yield made
    finally:
        with contextlib.suppress(PcloudError):
            cped.client.stop_deployable("shop")
        cped.close()
        for pid in made.service_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def running(site: Site) -> bool:
    status = site.status()
    states = {status["state"], *(a["state"] for a in status["assemblies"])}
    states |= {r["state"] for a in status["assemblies"] for r in a["resources"]}
    return states == {"running"} and len(site.service_pids()) == 1


@pytest.fixture(scope="module")
def browser(chromium: WebDriver, site: Site) -> WebDriver:
    """The session's browser without a cookie for this host (cookies ignore ports)."""
    chromium.get(f"{site.url}/login")
    chromium.delete_all_cookies()
    return chromium


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("PCLOUD_CONSOLE_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def at(browser: WebDriver, url: str, within: float = 10) -> None:
    """Wait until the browser shows ``url`` (a click does not wait for the next page)."""
    until(lambda: browser.current_url == url and ready(browser), within, f"at {url}")


def ready(browser: WebDriver) -> bool:
    return bool(browser.execute_script("return document.readyState") == "complete")


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def timeline(driver: WebDriver) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def logged_in(browser: WebDriver, site: Site) -> None:
    """A console session, through the login form unless the browser has one already."""
    browser.get(site.url + "/login")
    if browser.get_cookie("pcloud_console") is not None:
        return
    browser.find_element(By.NAME, "user").send_keys(USER)
    browser.find_element(By.NAME, "token").send_keys(site.tls.token)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    at(browser, site.url + "/")


def save(driver: WebDriver, shots: Path, name: str) -> None:
    path = shots / name
    assert driver.save_screenshot(str(path)), path
    assert path.read_bytes().startswith(b"\x89PNG")


# -- the tests: each makes (or ends) the session it needs ------------------------------


def test_a_browser_without_a_session_is_sent_to_the_login(site: Site, browser: WebDriver) -> None:
    browser.get(site.url + "/login")
    browser.delete_all_cookies()
    browser.get(site.url + "/")
    assert browser.current_url == site.url + "/login"
    browser.find_element(By.NAME, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    until(lambda: "the token is not valid" in browser.page_source, 10, "the refusal")
    assert browser.get_cookie("pcloud_console") is None


def test_log_in_and_see_the_overview(site: Site, browser: WebDriver, shots: Path) -> None:
    browser.get(site.url + "/login")
    browser.delete_all_cookies()
    logged_in(browser, site)
    cookie = browser.get_cookie("pcloud_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#overview tbody td")]
    assert cells[:4] == ["shop", "running", "started", "1/1"]
    until(lambda: browser.find_element(By.ID, "live").is_displayed(), 10, "live updates on")
    save(browser, shots, "console-overview.png")


def test_a_killed_service_fails_and_recovers_live_without_reload(
    site: Site, browser: WebDriver, shots: Path
) -> None:
    logged_in(browser, site)
    browser.get(site.url + "/")
    browser.find_element(By.LINK_TEXT, "shop").click()
    at(browser, site.url + "/deployables/shop")
    assert "app" in text_of(browser, "status") and "anything" in text_of(browser, "status")
    until(lambda: browser.find_element(By.ID, "live").is_displayed(), 10, "live updates on")
    browser.execute_script("window.notReloaded = true")
    [pid] = site.service_pids()
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    def seen(state: str) -> bool:
        return any(row[3] == "app" and row[4] == state for row in timeline(browser))

    until(lambda: seen("failed"), 20, "the failure in the timeline")
    until(lambda: seen("running") and timeline(browser)[0][4] != "failed", 20, "the recovery")
    until(lambda: "1 recovery" in text_of(browser, "recovery-count"), 10, "the chart updated")
    until(lambda: "running" in text_of(browser, "deployable-state"), 10, "the status updated")
    took = time.monotonic() - started
    assert browser.execute_script("return window.notReloaded") is True  # the same page
    assert browser.find_elements(By.CSS_SELECTOR, "#chart circle.mark")
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline tr.fresh")
    assert took < 30
    save(browser, shots, "console-deployable.png")


def test_stop_and_start_from_the_page(site: Site, browser: WebDriver, shots: Path) -> None:
    logged_in(browser, site)
    browser.get(site.url + "/deployables/shop")
    at(browser, site.url + "/deployables/shop")
    browser.find_element(By.ID, "action-stop").click()
    at(browser, site.url + "/deployables/shop/confirm/stop")
    assert "Stop shop?" in browser.page_source
    save(browser, shots, "console-confirm-stop.png")
    browser.find_element(By.ID, "confirm").click()
    at(browser, site.url + "/deployables/shop", within=30)
    until(lambda: site.status()["state"] == "stopped", 20, "shop stopped")
    assert site.service_pids() == []
    rows = timeline(browser)
    assert any(r[4] == "stop-requested" and f"by {USER}" in r[5] for r in rows)

    browser.find_element(By.ID, "action-start").click()
    at(browser, site.url + "/deployables/shop/confirm/start")
    browser.find_element(By.ID, "confirm").click()
    at(browser, site.url + "/deployables/shop", within=30)
    until(lambda: running(site), 30, "shop running again")
    until(lambda: text_of(browser, "deployable-state") == "running", 15, "the page says running")
    assert any(r[4] == "start-requested" and f"by {USER}" in r[5] for r in timeline(browser))
    save(browser, shots, "console-after-start.png")
