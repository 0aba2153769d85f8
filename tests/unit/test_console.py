"""The web console against the real application (aiohttp's test client, a real
SQLite store): who may see and act, what the browser is told, and that
nothing the page shows is HTML made of stored text.

aiohttp's test server speaks plain HTTP, so the Secure session cookie is
carried by hand (a browser sends it only over TLS; the integration tests use
a real browser on the TLS listener).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import test_utils, web
from markupsafe import escape

from cpe.access import Access
from cpe.api import DaemonInfo, StreamSettings, make_app
from cpe.console import mount
from cpe.console.actions import ACTIONS
from cpe.console.chart import recovery_chart
from cpe.console.guard import COOKIE, CSP
from cpe.console.sessions import Sessions
from cpe.console.summary import TimelineFilter, recoveries
from foundation.config import Config, CpedSettings
from foundation.events import Event
from foundation.store import Store

TOKEN = "console-test-token-0123456789"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
Client = test_utils.TestClient[web.Request, web.Application]


class FakeClock:
    """The sessions' and the pages' time (``foundation.clock.Clock``)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Console:
    client: Client
    store: Store
    clock: FakeClock
    cookie: str = ""
    csrf: str = ""

    async def get(self, path: str, **headers: str) -> tuple[int, str, Any]:
        async with self.client.get(
            path, headers=self._headers(headers), allow_redirects=False
        ) as response:
            return response.status, await response.text(), response.headers

    async def post(self, path: str, form: dict[str, str], **headers: str) -> tuple[int, str, Any]:
        async with self.client.post(
            path, data=form, headers=self._headers(headers), allow_redirects=False
        ) as response:
            return response.status, await response.text(), response.headers

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.cookie}"} | extra if self.cookie else extra

    async def login(self, user: str = "alice") -> None:
        status, _, headers = await self.post("/console/login", {"token": TOKEN, "user": user})
        assert status == 303, status
        self.cookie = re.search(f"{COOKIE}=([^;]+)", headers["Set-Cookie"])[1]  # type: ignore[index]
        _, page, _ = await self.get("/console/")
        self.csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]  # type: ignore[index]


@pytest.fixture
async def console(store: Store) -> AsyncIterator[Console]:
    access = Access(frozenset({0, os.geteuid()}), token=TOKEN.encode())
    config = Config(cped=CpedSettings(event_retention=None))
    clock = FakeClock()
    info = DaemonInfo(config, access=access)
    app = make_app(store, info, StreamSettings(0.2, 0.02), clock=clock)
    mount(app, Sessions(clock.time))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        made = Console(client, store, clock)
        await put_shop(made)
        yield made


async def put_shop(console: Console) -> None:
    document = {
        "name": "shop",
        "assemblies": [
            {"name": "web", "resources": [{"name": "www", "type": "Dummy"}]},
            {"name": "web2"},
        ],
        "services": [
            {
                "name": "db",
                "type": "Dummy",
                "locations": [{"assembly": "web", "score": 100}, {"assembly": "web2"}],
            }
        ],
    }
    async with console.client.put(
        "/v1/deployables/shop", json=document, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert response.status == 201, await response.text()


def dump(store: Store) -> dict[str, list[str]]:
    with sqlite3.connect(store.path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(map(repr, db.execute(f"SELECT * FROM {n}"))) for n in names}


# -- access ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/console/", "/console/deployables/shop"])
async def test_pages_without_a_session_redirect_to_the_login(console: Console, path: str) -> None:
    status, _, headers = await console.get(path)
    assert (status, headers["Location"]) == (303, "/console/login")


async def test_the_event_stream_and_the_api_refuse_a_browser_without_credentials(
    console: Console,
) -> None:
    assert (await console.get("/console/events"))[0] == 401
    assert (await console.get("/v1/deployables"))[0] == 401
    console.cookie = "made-up"
    assert (await console.get("/console/events"))[0] == 401


async def test_a_wrong_token_is_refused_with_401_and_no_cookie(console: Console) -> None:
    status, page, headers = await console.post(
        "/console/login", {"token": TOKEN + "x", "user": "alice"}
    )
    assert status == 401 and "the token is not valid" in page
    assert "Set-Cookie" not in headers


async def test_the_session_cookie_is_httponly_secure_and_strict(console: Console) -> None:
    _, _, headers = await console.post("/console/login", {"token": TOKEN, "user": "alice"})
    cookie = headers["Set-Cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/console"):
        assert attribute in cookie
    assert TOKEN not in cookie


async def test_a_session_expires(console: Console) -> None:
    await console.login()
    assert (await console.get("/console/"))[0] == 200
    console.clock.now += 8 * 3600 + 1
    assert (await console.get("/console/"))[0] == 303


async def test_a_user_name_with_html_is_refused(console: Console) -> None:
    status, page, headers = await console.post("/console/login", {"token": TOKEN, "user": HOSTILE})
    assert status == 400 and "Set-Cookie" not in headers
    assert "<script>" not in page


async def test_logout_ends_the_session(console: Console) -> None:
    await console.login()
    assert (await console.post("/console/logout", {"csrf": console.csrf}))[0] == 303
    assert (await console.get("/console/"))[0] == 303


# -- CSRF and origin --------------------------------------------------------------------


@pytest.mark.parametrize("form", [{}, {"csrf": "forged"}])
async def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(
    console: Console, form: dict[str, str]
) -> None:
    await console.login()
    before = dump(console.store)
    status, page, _ = await console.post("/console/deployables/shop/actions/stop", form)
    assert status == 403 and "CSRF" in page
    assert dump(console.store) == before


async def test_an_action_from_another_origin_is_refused(console: Console) -> None:
    await console.login()
    before = dump(console.store)
    status, _, _ = await console.post(
        "/console/deployables/shop/actions/stop",
        {"csrf": console.csrf},
        Origin="https://evil.example",
    )
    assert status == 403
    assert dump(console.store) == before


async def test_an_action_refused_by_the_api_shows_its_message_and_changes_nothing(
    console: Console,
) -> None:
    await console.login()
    before = dump(console.store)
    status, page, _ = await console.post(
        "/console/deployables/shop/actions/start", {"csrf": console.csrf}
    )
    assert status == 503 and "without a DPE supervisor" in page
    status, page, _ = await console.post(
        "/console/deployables/nothing/actions/stop", {"csrf": console.csrf}
    )
    assert status == 404 and "no such deployable" in page
    assert dump(console.store) == before


# -- what the browser is told ------------------------------------------------------------


PAGES = ["/console/login", "/console/", "/console/deployables/shop", "/console/deployables/x/"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_forbids_inline_scripts_and_has_none(console: Console, path: str) -> None:
    await console.login()
    _, page, headers = await console.get(path)
    policy = headers["Content-Security-Policy"]
    assert policy == CSP and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []  # no inline script
    assert re.findall(r"\s(style|on[a-z]+)=", page) == []  # no inline style or handler


async def test_static_files_carry_the_policy_too(console: Console) -> None:
    status, script, headers = await console.get("/console/static/console.js")
    assert status == 200 and "EventSource" in script
    assert headers["Content-Security-Policy"] == CSP


async def test_html_in_stored_text_and_in_the_url_is_shown_as_text(console: Console) -> None:
    await console.login()
    console.store.append_event(Event(console.clock.now, "shop", "failed", HOSTILE, "web", "www"))
    console.store.append_event(Event(console.clock.now, "shop", "failed", "x", HOSTILE))
    _, page, _ = await console.get("/console/deployables/shop")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    status, page, _ = await console.get("/console/deployables/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert status in (400, 404) and "<script>alert(1)" not in page


# -- pages -------------------------------------------------------------------------------


async def test_the_overview_lists_each_deployable_with_its_health(console: Console) -> None:
    await console.login()
    console.store.append_event(Event(console.clock.now - 60, "shop", "failed", "monitor: 7", "web"))
    console.store.append_event(Event(console.clock.now - 7200, "shop", "failed", "old", "web"))
    _, page, _ = await console.get("/console/")
    row = re.search(
        r"<tr>\s*<td><a href=\"/console/deployables/shop\">shop</a>.*?</tr>", page, re.S
    )
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[0], re.S)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in cells[1:]] == [
        "stopped", "stopped", "0/2", "1", "not running", "none",
    ]  # fmt: skip


async def test_the_deployable_page_shows_the_tree_timeline_and_chart(console: Console) -> None:
    await console.login()
    now = console.clock.now
    console.store.append_event(
        Event(now - 30, "shop", "failed", "monitor returned 7", "web", "www")
    )
    console.store.append_event(Event(now - 28, "shop", "running", "started", "web", "www"))
    _, page, _ = await console.get("/console/deployables/shop")
    assert 'data-resource="web/www"' in page and "ocf:heartbeat:Dummy" in page
    assert "monitor returned 7" in page
    assert page.count('<circle class="mark"') == 1 and "web/www: failed" in page
    assert "1 recovery in the last 24 hours" in page
    _, filtered, _ = await console.get("/console/deployables/shop?level=assembly")
    assert "monitor returned 7" not in filtered


async def test_the_confirmation_asks_before_acting(console: Console) -> None:
    await console.login()
    status, page, _ = await console.get("/console/deployables/shop/confirm/stop")
    assert status == 200 and "Stop shop?" in page and console.csrf in page
    assert (await console.get("/console/deployables/shop/confirm/explode"))[0] == 404


async def test_a_service_move_goes_through_the_api_and_is_an_event_with_its_user(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cped")
    await console.login("bob")
    _, page, _ = await console.get("/console/deployables/shop")
    assert 'action="/console/deployables/shop/confirm/move"' in page
    _, page, _ = await console.get(
        "/console/deployables/shop/confirm/move?service=db&assembly=web2"
    )
    assert 'name="service" value="db"' in page and 'name="assembly" value="web2"' in page
    form = {"csrf": console.csrf, "service": "db", "assembly": "web2"}
    status, _, headers = await console.post("/console/deployables/shop/actions/move", form)
    assert (status, headers["Location"]) == (303, "/console/deployables/shop")
    [event] = console.store.query_events(deployable="shop", newest_first=True, limit=1)
    assert event.state == "move-requested" and event.reason.startswith("by bob from the web")
    logged = [r.getMessage() for r in caplog.records if r.name == "cped.console"]
    peer, note = event.reason.removeprefix("by bob from the web console (").split("): ", 1)
    assert logged == [f"console action by bob from {peer}: move shop: {note}"]


async def test_a_move_to_an_assembly_the_service_may_not_use_is_refused(console: Console) -> None:
    await console.login()
    before = dump(console.store)
    form = {"csrf": console.csrf, "service": "db", "assembly": "nowhere"}
    status, page, _ = await console.post("/console/deployables/shop/actions/move", form)
    assert status in (400, 409) and "nowhere" in page
    assert dump(console.store) == before


async def test_cleanup_is_offered_only_when_cped_has_its_route(console: Console) -> None:
    await console.login()
    _, page, _ = await console.get("/console/deployables/shop")
    if ACTIONS["cleanup"].operation_id is None:
        assert 'class="button disabled"' in page and "Clean up" in page
        status, page, _ = await console.get("/console/deployables/shop/confirm/cleanup")
        assert status == 404 and "no route" in page
    else:
        assert 'id="action-cleanup"' in page


# -- the recoveries ------------------------------------------------------------------------


def test_a_recovery_is_the_time_from_failure_to_running_per_subject() -> None:
    events = [
        Event(100.0, "d", "failed", "", "a", "r"),
        Event(101.0, "d", "failed", "", "b"),
        Event(102.0, "d", "failed", "", "a", "r"),  # the same recovery
        Event(103.5, "d", "running", "", "a", "r"),
        Event(104.0, "d", "running", "", "a", "x"),  # never failed
        Event(106.0, "d", "running", "", "b"),
    ]
    found = [(r.subject, r.seconds) for r in recoveries(events)]
    assert found == [("a/r", 3.5), ("b", 5.0)]


def test_the_chart_keeps_the_last_24_hours_and_scales_to_the_longest() -> None:
    events = [
        Event(0.0, "d", "failed", "", "a"),  # older than a day
        Event(10.0, "d", "running", "", "a"),
        Event(90_000.0, "d", "failed", "", "a"),
        Event(90_004.0, "d", "running", "", "a"),
    ]
    chart = recovery_chart(recoveries(events), now=100_000.0)
    assert len(chart.marks) == 1 and chart.y_ticks[-1].label == "5 s"
    assert chart.marks[0].y > chart.top  # 4 s of 5: below the top line


def test_the_timeline_filter_by_level_assembly_and_resource() -> None:
    resource = {"assembly": "a", "resource": "r"}
    assert TimelineFilter("resource").keeps(resource)
    assert not TimelineFilter("assembly").keeps(resource)
    assert not TimelineFilter(assembly="b").keeps(resource)
    chosen = TimelineFilter.from_query({"level": "resource", "assembly": " a ", "resource": ""})
    assert chosen == TimelineFilter("resource", "a")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("level=<b>", "level: one of deployable, assembly, resource, not '<b>'"),
        ("assembly=a b", "assembly: not a name: 'a b'"),
        ("resource=..%2F", "resource: not a name: '../'"),
    ],
)
async def test_a_filter_the_form_cannot_send_is_refused_by_its_field(
    console: Console, query: str, named: str
) -> None:
    await console.login()
    status, page, _ = await console.get(f"/console/deployables/shop?{query}")
    assert status == 400 and escape(named) in page  # as the page shows text
    assert "<b>" not in page
