"""Changes waiting for a reload: the diff of the stored document against the one the
DPE recorded, its event, and what status and the list say; through the API's
handlers on a real SQLite store (the DPE's record is written as a DPE writes it)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cpe.pending_notice import PendingNotices
from cpe.route_table import ROUTES
from foundation.document_diff import document_diff, is_empty, summary
from foundation.model import parse
from foundation.runtime_kinds import DOCUMENT
from foundation.store import Store
from tests.unit.test_api import Client, api, call, make_assembly, make_deployable

__all__ = ["api"]  # the fixture


def running(**extra: Any) -> dict[str, Any]:
    doc = {
        "name": "shop",
        "uuid": "00000000-0000-4000-8000-000000000001",
        "assemblies": [
            {
                "name": "web",
                "uuid": "00000000-0000-4000-8000-000000000002",
                "resources": [{"name": "www", "type": "Dummy", "parameters": {"state": "/s"}}],
            },
            {
                "name": "db",
                "uuid": "00000000-0000-4000-8000-000000000003",
                "resources": [{"name": "pg", "type": "Dummy"}],
            },
        ],
        "constraints": [{"first": "db/pg", "then": "web/www"}],
    }
    return parse(doc | extra).to_dict()


def test_the_same_document_has_no_difference() -> None:
    assert is_empty(document_diff(running(), running()))


def test_each_part_that_differs_is_named_with_what_changed() -> None:
    old = running()
    new = running(heartbeat={"interval": 2}, constraints=[])
    web = new["assemblies"][0]
    web["resources"][0]["parameters"]["state"] = "/t"
    web["resources"].append({**web["resources"][0], "name": "extra"})
    new["assemblies"] = [web]  # db removed
    diff = document_diff(old, new)
    assert diff["assemblies"] == {"added": [], "removed": ["db"], "changed": []}
    assert diff["resources"]["added"] == ["web/extra"]
    assert diff["resources"]["removed"] == ["db/pg"]
    assert diff["resources"]["changed"] == [{"name": "web/www", "fields": ["parameters.state"]}]
    assert diff["constraints"] == {"added": [], "removed": ["db/pg then web/www"]}
    assert diff["settings"]["changed"] == [
        {"name": "heartbeat.interval", "running": 1, "stored": 2}
    ]
    assert summary(diff) == (
        "1 assembly removed (db), 1 resource added (web/extra), 1 resource removed (db/pg),"
        " 1 resource changed (web/www), 1 constraint removed (db/pg then web/www),"
        " 1 setting changed (heartbeat.interval)"
    )


async def shop(api: Client, store: Store) -> None:
    """shop of web (www) as a DPE runs it: its document recorded."""
    await make_assembly(api, "web", "www")
    await make_deployable(api, "shop", "web")
    status, document = await call(api, "GET", "/deployables/shop")
    assert status == 200
    store.put_runtime("shop", DOCUMENT, "", document)


async def test_a_change_to_a_running_deployable_is_pending_until_reloaded(
    api: Client, store: Store
) -> None:
    await shop(api, store)
    assert (await call(api, "GET", "/deployables/shop/diff"))[1]["pending"] is False
    changed = {"name": "www", "type": "Dummy", "monitor_interval": "5s"}
    status, _ = await call(api, "PUT", "/assemblies/web/resources/www", changed)
    assert status == 200

    status, diff = await call(api, "GET", "/deployables/shop/diff")
    assert (status, diff["running"], diff["pending"]) == (200, True, True)
    assert diff["resources"]["changed"] == [{"name": "web/www", "fields": ["monitor_interval"]}]
    assert diff["summary"] == "1 resource changed (web/www)"
    status, body = await call(api, "GET", "/deployables/shop/status")
    assert body["pending_reload"] == "1 resource changed (web/www)"
    status, rows = await call(api, "GET", "/deployables")
    assert rows[0]["pending_reload"] == "1 resource changed (web/www)"
    events = [e for e in store.query_events(deployable="shop") if e.state == "changes-pending"]
    assert [e.reason for e in events] == [
        "changes pending reload: 1 resource changed (web/www) (deployable_reload shop applies them)"
    ]

    # the same request again changes nothing new: no second event
    await call(api, "PUT", "/assemblies/web/resources/www", changed)
    assert (
        len([e for e in store.query_events(deployable="shop") if e.state == "changes-pending"]) == 1
    )
    # a second change is told
    await call(api, "PUT", "/deployables/shop/escalation", {"failures": 3, "period": 60})
    reasons = [
        e.reason for e in store.query_events(deployable="shop") if e.state == "changes-pending"
    ]
    assert reasons[-1].startswith(
        "changes pending reload: 1 resource changed (web/www), 2 settings changed"
        " (escalation.failures, escalation.period)"
    )

    # the DPE reloaded: it records what it runs now, and nothing is pending
    store.put_runtime("shop", DOCUMENT, "", (await call(api, "GET", "/deployables/shop"))[1])
    status, diff = await call(api, "GET", "/deployables/shop/diff")
    assert (diff["pending"], diff["summary"]) == (False, "")
    assert (await call(api, "GET", "/deployables/shop/status"))[1]["pending_reload"] == ""


async def test_a_stopped_deployable_has_nothing_pending(api: Client, store: Store) -> None:
    await make_assembly(api, "web", "www")
    await make_deployable(api, "shop", "web")
    await call(api, "PUT", "/deployables/shop/escalation", {"failures": 3, "period": 60})
    status, diff = await call(api, "GET", "/deployables/shop/diff")
    assert (status, diff["running"], diff["pending"]) == (200, False, False)
    assert [e for e in store.query_events(deployable="shop") if e.state == "changes-pending"] == []
    assert (await call(api, "GET", "/deployables/nosuch/diff"))[0] == 404


def test_a_deployable_deleted_before_it_is_looked_at_is_no_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A PUT and a DELETE of one deployable at once: the DELETE may commit before
    the PUT's notice looks; nothing waits for a reload then, and nothing failed."""
    route = next(r for r in ROUTES if r.method == "PUT" and r.path == "/deployables/{name}")
    notices = PendingNotices()
    with caplog.at_level(logging.INFO, logger="cpe.pending"):
        assert notices.after_change(store, route, ["gone"]) is None
    assert caplog.records == []
