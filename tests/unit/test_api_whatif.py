"""``GET /deployables/{name}/cib`` and ``/simulate`` through aiohttp's test client,
on a real SQLite store with runtime records as a DPE writes them (the builtin
planner only: crm_simulate is for the integration tests)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from foundation.store import Store
from tests.unit.test_api import Client, api, call, make_assembly, make_deployable, refused

__all__ = ["api"]  # the fixture


async def two_tier(api: Client) -> None:
    """db/pg, and web/app ordered after it."""
    await make_assembly(api, "db", "pg")
    await make_assembly(api, "web", "app")
    await make_deployable(api, "shop", "db", "web")
    status, error = await call(
        api, "POST", "/deployables/shop/constraints", {"first": "db/pg", "then": "web/app"}
    )
    assert status == 201, error


def record_running(store: Store) -> None:
    """What a DPE records once everything runs."""
    for n, assembly in enumerate(("db", "web")):
        instance = {"instance_id": f"i-{n}", "address": f"10.0.0.{n}", "hostname": assembly}
        store.put_runtime("shop", "instance", assembly, instance)
        store.put_runtime("shop", "assembly", assembly, {"state": "running", "failures": []})
    for rid in ("db/pg", "web/app"):
        doc = {
            "state": "running",
            "last_op": "start",
            "last_rc": 0,
            "failures": [],
            "applied": {"agent": "ocf:heartbeat:Dummy", "params": {}},
        }
        store.put_runtime("shop", "resource", rid, doc)
    store.put_runtime("shop", "deployable", "", {"state": "running", "failures": []})


def steps(answer: dict[str, Any]) -> list[str]:
    return [a["text"] for a in answer["actions"]]


async def test_the_cib_of_a_deployable_not_running_has_no_status(api: Client) -> None:
    await two_tier(api)
    status, answer = await call(api, "GET", "/deployables/shop/cib")
    assert status == 200, answer
    assert answer["source"] == "document" and answer["state"] == "stopped"
    cib = ET.fromstring(answer["cib"])
    assert [n.get("uname") for n in cib.iterfind("configuration/nodes/node")] == ["db", "web"]
    assert {p.get("id") for p in cib.iter("primitive")} == {"rsc_db_pg", "rsc_web_app"}
    status_section = cib.find("status")
    assert status_section is not None and len(status_section) == 0


async def test_the_cib_of_a_running_deployable_carries_what_its_dpe_recorded(
    api: Client, store: Store
) -> None:
    await two_tier(api)
    record_running(store)
    status, answer = await call(api, "GET", "/deployables/shop/cib")
    assert status == 200, answer
    assert answer["source"] == "runtime" and answer["state"] == "running"
    cib = ET.fromstring(answer["cib"])
    states = {n.get("uname"): n.get("crmd") for n in cib.iter("node_state")}
    assert states == {"db": "online", "web": "online"}
    ops = {(o.get("operation_key"), o.get("rc-code")) for o in cib.iter("lrm_rsc_op")}
    assert ("rsc_db_pg_start_0", "0") in ops


async def test_a_resource_failure_restarts_it_and_what_is_ordered_after_it(
    api: Client, store: Store
) -> None:
    await two_tier(api)
    record_running(store)
    status, answer = await call(api, "GET", "/deployables/shop/simulate?fail=db/pg")
    assert status == 200, answer
    assert answer["source"] == "runtime" and answer["policy_engine"] == "builtin"
    assert answer["failures"] == ["db/pg"] and not answer["given_up"]
    texts = steps(answer)
    assert texts.index("stop web/app") < texts.index("stop db/pg") < texts.index("start db/pg")
    assert texts.index("start db/pg") < texts.index("start web/app")
    numbers = {a["text"]: a["step"] for a in answer["actions"]}
    start_app = next(a for a in answer["actions"] if a["text"] == "start web/app")
    assert numbers["start db/pg"] in start_app["after"]
    for action in answer["actions"]:
        assert all(step < action["step"] for step in action["after"])
    assert answer["dot"].startswith('digraph "shop"') and '"start db/pg"' in answer["dot"]


async def test_not_running_it_is_simulated_from_the_steady_state(api: Client) -> None:
    await two_tier(api)
    status, answer = await call(api, "GET", "/deployables/shop/simulate")
    assert status == 200, answer
    assert answer["source"] == "steady_state" and answer["actions"] == []
    status, answer = await call(api, "GET", "/deployables/shop/simulate?fail=web")
    assert status == 200, answer
    texts = steps(answer)
    assert texts[:2] == ["fence web", "create web"]


async def test_bad_parts_and_engines_are_refused_and_change_nothing(
    api: Client, store: Store
) -> None:
    await two_tier(api)
    record_running(store)
    error = await refused(api, store, 400, "GET", "/deployables/shop/simulate?fail=db/nope,cache")
    assert "no resource 'nope' in assembly 'db'" in error["message"]
    assert "no assembly 'cache' in deployable shop" in error["message"]
    assert [problem["path"] for problem in error["details"]] == ["fail[0]", "fail[1]"]
    error = await refused(api, store, 400, "GET", "/deployables/shop/simulate?policy_engine=magic")
    assert "policy_engine" in error["message"] and "builtin, pacemaker" in error["message"]
    await refused(api, store, 400, "GET", "/deployables/shop/simulate?fail=a/b/c")
    await refused(api, store, 404, "GET", "/deployables/nope/simulate")
    await refused(api, store, 404, "GET", "/deployables/nope/cib")


async def test_a_failed_deployable_would_do_nothing_and_says_why(api: Client, store: Store) -> None:
    await two_tier(api)
    record_running(store)
    store.put_runtime("shop", "deployable", "", {"state": "failed", "failures": []})
    status, answer = await call(api, "GET", "/deployables/shop/simulate?fail=db/pg")
    assert status == 200, answer
    assert answer["given_up"] and answer["actions"] == []
    assert answer["notes"][-1] == "shop is failed: no recovery until it is started again"
