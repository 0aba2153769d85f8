"""The API handlers through aiohttp's test client, on a real SQLite store.

Every rejected request is checked to leave the store exactly as it was.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import test_utils, web

import cpe.api
from cpe.api import DaemonInfo, StreamSettings, make_app
from cpe.openapi import openapi_document
from cpe.resource_templates import builtin_templates
from cpe.route_table import ROUTES
from cpe.routes import PREFIX
from foundation.config import Config, CpedSettings
from foundation.errors import InvalidInput
from foundation.events import Event
from foundation.store import Store

Client = test_utils.TestClient[web.Request, web.Application]


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Client]:
    config = Config(cped=CpedSettings(event_retention=None))  # events here are from 1970
    app = make_app(store, DaemonInfo(config), StreamSettings(keepalive=0.2, poll_interval=0.02))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def call(
    api: Client,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    if body is not None:
        data = json.dumps(body).encode()
    headers = {"Content-Type": content_type} if data is not None else {}
    async with api.request(method, PREFIX + path, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


def dump(store: Store) -> dict[str, list[Any]]:
    """Every row of every table, to check that a rejected request changed nothing."""
    with sqlite3.connect(store.path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(map(repr, db.execute(f"SELECT * FROM {n}"))) for n in names}


async def refused(
    api: Client, store: Store, status: int, method: str, path: str, body: Any = None, **kw: Any
) -> dict[str, Any]:
    """Make a request that must fail with ``status`` and change nothing; the error body."""
    before = dump(store)
    got, error = await call(api, method, path, body, **kw)
    assert got == status, error
    assert set(error) == {"code", "message", "details"}
    assert error["message"]
    assert dump(store) == before
    return dict(error)


def resource(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "class": "ocf", "provider": "heartbeat", "type": "Dummy", **extra}


async def make_assembly(api: Client, name: str, *resources: str) -> dict[str, Any]:
    status, doc = await call(
        api, "POST", "/assemblies", {"name": name, "resources": [resource(r) for r in resources]}
    )
    assert status == 201, doc
    return dict(doc)


async def make_deployable(api: Client, name: str, *assemblies: str) -> None:
    status, error = await call(api, "POST", "/deployables", {"name": name})
    assert status == 201, error
    for assembly in assemblies:
        status, error = await call(
            api, "POST", f"/deployables/{name}/assemblies", {"assembly": assembly}
        )
        assert status == 200, error


# -- health and the OpenAPI document ---------------------------------------------------


async def test_health(api: Client) -> None:
    status, body = await call(api, "GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["pid"] > 0 and body["uptime"] >= 0


async def test_openapi_describes_every_route_and_the_error_schema(api: Client) -> None:
    status, doc = await call(api, "GET", "/openapi.json")
    assert status == 200 and doc == json.loads(json.dumps(openapi_document()))
    assert doc["openapi"].startswith("3.1")
    registered = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert registered == documented == {(op.method, PREFIX + op.path) for op in ROUTES}
    assert set(doc["components"]["schemas"]["Error"]["required"]) == {"code", "message", "details"}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert any(s.startswith("2") for s in op["responses"])


# -- JEOS images ----------------------------------------------------------------------------


async def test_jeos_crud(api: Client, store: Store) -> None:
    status, rows = await call(api, "GET", "/jeos")
    assert status == 200 and [r["name"] for r in rows] == ["host"]
    status, doc = await call(api, "POST", "/jeos", {"name": "deb12", "path": "/img/deb12.qcow2"})
    assert status == 201 and doc["kind"] == "image" and doc["created"] > 0
    assert (await call(api, "GET", "/jeos/deb12")) == (200, doc)
    await refused(api, store, 409, "POST", "/jeos", {"name": "deb12", "path": "/x"})
    await refused(api, store, 409, "DELETE", "/jeos/host")
    await refused(api, store, 404, "DELETE", "/jeos/nope")
    assert (await call(api, "DELETE", "/jeos/deb12")) == (204, None)
    assert (await call(api, "GET", "/jeos/deb12"))[0] == 404


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("size", 10**30, "must be a whole number 0..9223372036854775807"),
        ("size", int("9" * 4000), "must be a whole number 0..9223372036854775807"),
        ("size", -1, "must be a whole number"),
        ("created", 1e308, "must be a time from 1970 to 9999"),
        ("created", -5.0, "must be a time from 1970 to 9999"),
        ("created", "yesterday", "seconds since the epoch"),
    ],
)
async def test_a_jeos_size_and_time_are_bounded_as_clients_can_hold_them(
    api: Client, store: Store, field: str, value: object, says: str
) -> None:
    body = {"name": "deb12", "path": "/img/deb12.qcow2", field: value}
    error = await refused(api, store, 400, "POST", "/jeos", body)
    assert says in json.dumps(error) and "9" * 100 not in json.dumps(error)
    body[field] = 1_000_000 if field == "size" else 1_700_000_000
    assert (await call(api, "POST", "/jeos", body))[0] == 201


async def test_a_jeos_used_by_an_assembly_cannot_be_deleted(api: Client, store: Store) -> None:
    await call(api, "POST", "/jeos", {"name": "deb12", "path": "/img/deb12.qcow2"})
    status, _ = await call(api, "POST", "/assemblies", {"name": "a1", "image": "deb12"})
    assert status == 201
    error = await refused(api, store, 409, "DELETE", "/jeos/deb12")
    assert error["details"] == {"assemblies": ["a1"]}


async def test_bad_jeos_lists_every_problem(api: Client, store: Store) -> None:
    body = {"name": "bad name", "path": "relative", "size": -1, "colour": "red"}
    error = await refused(api, store, 400, "POST", "/jeos", body)
    assert {p["path"] for p in error["details"]} == {"name", "path", "size", "colour"}


# -- assemblies and resources ----------------------------------------------------------------


async def test_assembly_crud_and_round_trip(api: Client, store: Store) -> None:
    doc = await make_assembly(api, "web", "httpd")
    assert len(doc["uuid"]) == 32 and doc["image"] == "host"
    status, rows = await call(api, "GET", "/assemblies")
    assert rows == [{**doc, "deployable": None}]
    assert (await call(api, "GET", "/assemblies/web")) == (200, doc)
    before = dump(store)
    assert (await call(api, "PUT", "/assemblies/web", doc)) == (200, doc)
    assert dump(store) == before
    changed = {**doc, "resources": [resource("httpd", monitor_interval="5s")]}
    status, stored = await call(api, "PUT", "/assemblies/web", changed)
    assert status == 200 and stored["resources"][0]["monitor_interval"] == 5
    assert (await call(api, "DELETE", "/assemblies/web")) == (204, None)
    assert (await call(api, "GET", "/assemblies/web"))[0] == 404


async def test_assembly_put_without_uuid_keeps_it(api: Client) -> None:
    doc = await make_assembly(api, "web")
    status, stored = await call(api, "PUT", "/assemblies/web", {"image": "host"})
    assert status == 200 and stored["uuid"] == doc["uuid"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "a/b"}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": ".."}, "name"),
        ({"name": "ok", "image": "nope"}, "image"),
        ({"name": "ok", "uuid": "not-a-uuid"}, "uuid"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "escalation": {"failures": "abc", "period": 10}}, "escalation.failures"),
        (
            {"name": "ok", "resources": [{"name": "r", "type": "Dummy", "monitor_interval": "x"}]},
            "resources[0].monitor_interval",
        ),
    ],
)
async def test_bad_assemblies_are_refused_with_the_path(
    api: Client, store: Store, body: dict[str, Any], path: str
) -> None:
    error = await refused(api, store, 400, "POST", "/assemblies", body)
    assert error["code"] == "invalid"
    assert path in [p["path"] for p in error["details"]]


async def test_assembly_duplicates_and_unknown_names(api: Client, store: Store) -> None:
    doc = await make_assembly(api, "web")
    await refused(api, store, 409, "POST", "/assemblies", {"name": "web"})
    await refused(api, store, 409, "POST", "/assemblies", {"name": "web2", "uuid": doc["uuid"]})
    await refused(api, store, 404, "PUT", "/assemblies/nope", {"name": "nope"})
    await refused(api, store, 404, "DELETE", "/assemblies/nope")
    await refused(api, store, 400, "PUT", "/assemblies/web", {**doc, "name": "other"})
    await refused(api, store, 409, "PUT", "/assemblies/web", {**doc, "uuid": "0" * 32})


async def test_resources(api: Client, store: Store) -> None:
    await make_assembly(api, "web")
    status, doc = await call(api, "POST", "/assemblies/web/resources", resource("r1"))
    assert status == 201 and doc["name"] == "r1"
    await refused(api, store, 409, "POST", "/assemblies/web/resources", resource("r1"))
    await refused(api, store, 404, "POST", "/assemblies/nope/resources", resource("r1"))
    error = await refused(
        api, store, 400, "POST", "/assemblies/web/resources", resource("r2", monitor_interval="10x")
    )
    assert error["details"][0]["path"] == "monitor_interval"
    changed = resource("r1", escalation={"failures": 3, "period": "1m"})
    status, doc = await call(api, "PUT", "/assemblies/web/resources/r1", changed)
    assert status == 200 and doc["escalation"] == {"failures": 3, "period": 60}
    await refused(api, store, 404, "PUT", "/assemblies/web/resources/r9", resource("r9"))
    await refused(api, store, 400, "PUT", "/assemblies/web/resources/r1", resource("r2"))
    assert (await call(api, "DELETE", "/assemblies/web/resources/r1")) == (204, None)
    await refused(api, store, 404, "DELETE", "/assemblies/web/resources/r1")


async def test_assembly_escalation(api: Client, store: Store) -> None:
    await make_assembly(api, "web")
    status, body = await call(
        api, "PUT", "/assemblies/web/escalation", {"failures": 2, "period": "10s"}
    )
    assert (status, body) == (200, {"failures": 2, "period": 10})
    error = await refused(
        api, store, 400, "PUT", "/assemblies/web/escalation", {"failures": "many", "period": 10}
    )
    assert [p["path"] for p in error["details"]] == ["failures"]
    await refused(api, store, 400, "PUT", "/assemblies/web/escalation", {"failures": 2})
    status, body = await call(
        api, "PUT", "/assemblies/web/escalation", {"failures": "INFINITY", "period": -1}
    )
    assert body == {"failures": 0, "period": 0}


# -- templates -------------------------------------------------------------------------------------


async def test_builtin_templates(api: Client) -> None:
    shipped = builtin_templates()
    originals = {"dummy", "postgresql", "httpd", "mysqld", "apache2", "qpidd", "ntpd"}
    originals |= {"aeolus-conductor", "conductor-dbomatic", "conductor-delayed_job"}
    originals |= {"deltacloud-core", "deltacloud-ec2-us-east-1", "deltacloud-ec2-us-west-1"}
    originals |= {"deltacloud-mock", "imagefactory", "condor"}
    assert originals | {"anything", "ssh-systemd"} == set(shipped)
    _status, rows = await call(api, "GET", "/templates")
    assert {r["name"] for r in rows} == set(shipped) and all(r["builtin"] for r in rows)
    _, dummy = await call(api, "GET", "/templates/dummy")
    assert dummy["resource"]["type"] == "Dummy" and dummy["resource"]["monitor_interval"] == 70
    assert dummy["resource"]["parameters"] == {"fake": "1"}
    assert "binfile" in shipped["anything"]["parameters_help"]
    assert shipped["ssh-systemd"]["resource"]["class"] == "systemd"


async def test_a_template_makes_a_resource(api: Client) -> None:
    await make_assembly(api, "web")
    _, template = await call(api, "GET", "/templates/httpd")
    status, _ = await call(
        api, "POST", "/assemblies/web/resources", {**template["resource"], "name": "www"}
    )
    assert status == 201


async def test_user_templates(api: Client, store: Store) -> None:
    body = {"name": "mine", "description": "d", "resource": {"type": "Dummy"}}
    status, doc = await call(api, "POST", "/templates", body)
    assert status == 201 and doc["builtin"] is False and doc["resource"]["class"] == "ocf"
    assert (await call(api, "GET", "/templates/mine")) == (200, doc)
    await refused(api, store, 409, "POST", "/templates", body)
    await refused(api, store, 409, "POST", "/templates", {**body, "name": "dummy"})
    await refused(api, store, 409, "DELETE", "/templates/dummy")
    error = await refused(
        api, store, 400, "POST", "/templates", {"name": "x", "resource": {"name": "r"}}
    )
    assert error["details"][0]["path"] == "resource.name"
    await refused(api, store, 400, "POST", "/templates", {"name": "x", "resource": {"class": "z"}})
    assert (await call(api, "DELETE", "/templates/mine")) == (204, None)
    await refused(api, store, 404, "DELETE", "/templates/mine")


# -- deployables -----------------------------------------------------------------------------------


async def test_deployable_membership_and_listing(api: Client, store: Store) -> None:
    await make_assembly(api, "db", "pgsql")
    await make_assembly(api, "web", "httpd")
    await make_deployable(api, "shop", "db", "web")
    _status, rows = await call(api, "GET", "/deployables")
    assert rows == [
        {
            "name": "shop",
            "uuid": rows[0]["uuid"],
            "infrastructure": "local",
            "assemblies": 2,
            "state": "stopped",
            "desired": "stopped",
            "desired_state": "stopped",
            "pending_reload": "",
        }
    ]
    _, doc = await call(api, "GET", "/deployables/shop")
    assert [a["name"] for a in doc["assemblies"]] == ["db", "web"]
    _, assemblies = await call(api, "GET", "/assemblies")
    assert {a["name"]: a["deployable"] for a in assemblies} == {"db": "shop", "web": "shop"}
    await refused(api, store, 409, "POST", "/deployables", {"name": "shop"})
    await refused(api, store, 409, "POST", "/deployables/shop/assemblies", {"assembly": "db"})
    await refused(api, store, 404, "POST", "/deployables/shop/assemblies", {"assembly": "nope"})
    await refused(api, store, 404, "POST", "/deployables/nope/assemblies", {"assembly": "db"})
    await refused(api, store, 400, "POST", "/deployables/shop/assemblies", {"assembly": "a/b"})
    await refused(api, store, 404, "DELETE", "/deployables/shop/assemblies/nope")


async def test_an_assembly_is_in_at_most_one_deployable(api: Client, store: Store) -> None:
    await make_assembly(api, "db")
    await make_deployable(api, "one", "db")
    await make_deployable(api, "two")
    error = await refused(
        api, store, 409, "POST", "/deployables/two/assemblies", {"assembly": "db"}
    )
    assert "one" in error["message"]


async def test_an_assembly_in_a_deployable_cannot_be_deleted(api: Client, store: Store) -> None:
    await make_assembly(api, "db")
    await make_deployable(api, "shop", "db")
    await refused(api, store, 409, "DELETE", "/assemblies/db")
    status, doc = await call(api, "DELETE", "/deployables/shop/assemblies/db")
    assert status == 200 and doc["assemblies"] == []
    assert (await call(api, "DELETE", "/assemblies/db")) == (204, None)


async def test_constraints(api: Client, store: Store) -> None:
    await make_assembly(api, "db", "pgsql")
    await make_assembly(api, "web", "httpd", "app")
    await make_assembly(api, "outside", "x")
    await make_deployable(api, "shop", "db", "web")
    path = "/deployables/shop/constraints"
    for first, then in (("db/pgsql", "web/app"), ("web/app", "web/httpd")):
        status, body = await call(api, "POST", path, {"first": first, "then": then})
        assert (status, body) == (201, {"first": first, "then": then})
    cycle = await refused(api, store, 400, "POST", path, {"first": "web/httpd", "then": "db/pgsql"})
    assert "cycle" in cycle["message"]
    await refused(api, store, 409, "POST", path, {"first": "db/pgsql", "then": "web/app"})
    error = await refused(api, store, 400, "POST", path, {"first": "outside/x", "then": "db/pgsql"})
    assert error["details"][0]["path"] == "first"
    await refused(api, store, 400, "POST", path, {"first": "db", "then": "web/app"})
    await refused(api, store, 400, "POST", path, {"first": "db/pgsql"})
    await refused(api, store, 400, "POST", path, {"first": "db/pgsql", "then": "web/app", "x": 1})
    # removing what a constraint uses is refused, whether resource or assembly
    await refused(api, store, 409, "DELETE", "/assemblies/web/resources/app")
    await refused(api, store, 409, "DELETE", "/deployables/shop/assemblies/db")
    await refused(api, store, 400, "DELETE", path + "?first=db/pgsql")
    await refused(api, store, 404, "DELETE", path + "?first=db/pgsql&then=web/httpd")
    status, _ = await call(api, "DELETE", path + "?first=db/pgsql&then=web/app")
    assert status == 204
    _, doc = await call(api, "GET", "/deployables/shop")
    assert doc["constraints"] == [{"first": "web/app", "then": "web/httpd"}]


async def web_referring_to_db(api: Client) -> None:
    """Assemblies db, and web whose resource app has the parameter db=@db:ipaddress."""
    await make_assembly(api, "db", "pgsql")
    web_doc = {
        "name": "web",
        "resources": [resource("app", parameters={"db": {"ref": "db:ipaddress"}})],
    }
    assert (await call(api, "POST", "/assemblies", web_doc))[0] == 201


async def test_references_may_wait_for_their_assembly_but_a_dpe_needs_it(
    api: Client, store: Store
) -> None:
    await web_referring_to_db(api)
    await make_deployable(api, "shop", "web")  # web refers to db, not in the deployable yet
    status, doc = await call(api, "GET", "/deployables/shop")
    assert status == 200 and [a["name"] for a in doc["assemblies"]] == ["web"]
    with pytest.raises(InvalidInput, match="refers to assembly 'db'"):
        store.get_document("shop")
    before = dump(store)
    assert (await call(api, "PUT", "/deployables/shop", doc)) == (200, doc)
    assert dump(store) == before
    await call(api, "POST", "/deployables/shop/assemblies", {"assembly": "db"})
    assert [a.name for a in store.get_document("shop").assemblies] == ["web", "db"]


async def test_an_assembly_a_parameter_refers_to_is_neither_removed_nor_deleted(
    api: Client, store: Store
) -> None:
    await web_referring_to_db(api)
    await make_deployable(api, "shop", "web", "db")
    says = "assembly 'db' is referred to by web/app (parameter db)"
    error = await refused(api, store, 409, "DELETE", "/deployables/shop/assemblies/db")
    assert says in error["message"]
    assert [a.name for a in store.get_document("shop").assemblies] == ["web", "db"]
    await call(api, "DELETE", "/deployables/shop/assemblies/web")  # the one that refers
    await call(api, "DELETE", "/deployables/shop/assemblies/db")
    error = await refused(api, store, 409, "DELETE", "/assemblies/db")
    assert says in error["message"]
    assert (await call(api, "DELETE", "/assemblies/web/resources/app"))[0] == 204
    assert (await call(api, "DELETE", "/assemblies/db"))[0] == 204


async def test_deployable_escalation(api: Client, store: Store) -> None:
    await make_deployable(api, "shop")
    path = "/deployables/shop/escalation"
    status, body = await call(api, "PUT", path, {"failures": 3, "period": "1h"})
    assert (status, body) == (200, {"failures": 3, "period": 3600})
    error = await refused(api, store, 400, "PUT", path, {"failures": "x", "period": "y"})
    assert {p["path"] for p in error["details"]} == {"failures", "period"}
    await refused(
        api, store, 404, "PUT", "/deployables/nope/escalation", {"failures": 1, "period": 1}
    )


async def test_get_put_round_trip_changes_nothing(api: Client, store: Store) -> None:
    await make_assembly(api, "db", "pgsql")
    await make_assembly(api, "web", "httpd")
    await make_deployable(api, "shop", "db", "web")
    await call(
        api, "POST", "/deployables/shop/constraints", {"first": "db/pgsql", "then": "web/httpd"}
    )
    await call(api, "PUT", "/deployables/shop/escalation", {"failures": 2, "period": 60})
    _, doc = await call(api, "GET", "/deployables/shop")
    before = dump(store)
    assert (await call(api, "PUT", "/deployables/shop", doc)) == (200, doc)
    assert dump(store) == before
    assert (await call(api, "GET", "/deployables/shop")) == (200, doc)


async def test_put_imports_a_whole_new_document(api: Client, store: Store) -> None:
    document = {
        "name": "blog",
        "infrastructure": "local",
        "assemblies": [
            {"name": "sql", "resources": [resource("mysqld")]},
            {
                "name": "wp",
                "resources": [resource("httpd", parameters={"db": {"ref": "sql:ipaddress"}})],
            },
        ],
        "constraints": [{"first": "sql/mysqld", "then": "wp/httpd"}],
    }
    status, doc = await call(api, "PUT", "/deployables/blog", document)
    assert status == 201, doc
    assert (await call(api, "GET", "/deployables/blog")) == (200, doc)
    _, rows = await call(api, "GET", "/assemblies")
    assert {r["name"]: r["deployable"] for r in rows} == {"sql": "blog", "wp": "blog"}
    # a re-import without uuids keeps the stored ones; a dropped assembly becomes free
    smaller = {**document, "assemblies": document["assemblies"][:1], "constraints": []}
    status, again = await call(api, "PUT", "/deployables/blog", smaller)
    assert status == 200 and again["uuid"] == doc["uuid"]
    assert again["assemblies"][0]["uuid"] == doc["assemblies"][0]["uuid"]
    _, rows = await call(api, "GET", "/assemblies")
    assert {r["name"]: r["deployable"] for r in rows} == {"sql": "blog", "wp": None}


async def test_bad_imports_change_nothing(api: Client, store: Store) -> None:
    await make_assembly(api, "taken")
    await make_deployable(api, "other", "taken")
    path = "/deployables/blog"
    await refused(api, store, 409, "PUT", path, {"assemblies": [{"name": "taken"}]})
    await refused(api, store, 400, "PUT", path, {"name": "different"})
    await refused(api, store, 400, "PUT", path, {"assemblies": [{"name": "a", "image": "nope"}]})
    error = await refused(
        api,
        store,
        400,
        "PUT",
        path,
        {
            "assemblies": [{"name": "a", "resources": [resource("r", monitor_interval="x")]}],
            "escalation": {"failures": "lots"},
            "constraints": [{"first": "a/r", "then": "a/zz"}],
        },
    )
    paths = {p["path"] for p in error["details"]}
    assert {"assemblies[0].resources[0].monitor_interval", "escalation.failures"} <= paths
    assert "constraints[0].then" in paths
    cyclic = {
        "assemblies": [{"name": "a", "resources": [resource("r1"), resource("r2")]}],
        "constraints": [{"first": "a/r1", "then": "a/r2"}, {"first": "a/r2", "then": "a/r1"}],
    }
    await refused(api, store, 400, "PUT", path, cyclic)


async def test_infrastructure_settings_are_checked_when_written(api: Client, store: Store) -> None:
    """A driver's own rules refuse a setting when it is written, not when a DPE starts."""
    bogus = {"name": "d3", "settings": {"bogus": "1", "network": "bogus"}}
    error = await refused(api, store, 400, "POST", "/deployables", bogus)
    assert {p["path"] for p in error["details"]} == {"settings.bogus", "settings.network"}
    assert "unknown setting" in error["message"]
    await refused(api, store, 400, "PUT", "/deployables/d3", bogus)
    libvirt = {"name": "vm", "infrastructure": "libvirt", "settings": {"memory": "lots"}}
    error = await refused(api, store, 400, "POST", "/deployables", libvirt)
    assert [p["path"] for p in error["details"]] == ["settings.memory"]
    good = {"name": "d3", "settings": {"subnet": "10.237.0.0/24", "boot_delay": "1s"}}
    status, doc = await call(api, "POST", "/deployables", good)
    assert status == 201, doc


async def test_without_a_supervisor_the_lifecycle_is_unavailable(api: Client, store: Store) -> None:
    await make_deployable(api, "shop")
    for action in ("start", "stop", "reload"):
        error = await refused(api, store, 503, "POST", f"/deployables/shop/{action}")
        assert error["code"] == "unavailable" and "without a DPE supervisor" in error["message"]
        await refused(api, store, 404, "POST", f"/deployables/nope/{action}")
    status, body = await call(api, "GET", "/deployables/shop/status")
    assert status == 200 and body["state"] == "stopped" and body["dpe"]["alive"] is False
    await refused(api, store, 404, "GET", "/deployables/nope/status")


async def test_deleting_a_running_deployable_needs_force(api: Client, store: Store) -> None:
    await make_assembly(api, "db")
    await make_deployable(api, "shop", "db")
    store.set_desired_state("shop", "started")
    await refused(api, store, 409, "DELETE", "/deployables/shop")
    await refused(api, store, 400, "DELETE", "/deployables/shop?force=maybe")
    assert (await call(api, "DELETE", "/deployables/shop?force=true")) == (204, None)
    assert (await call(api, "GET", "/assemblies/db"))[0] == 200
    await refused(api, store, 404, "DELETE", "/deployables/shop")


async def test_a_live_lease_also_counts_as_running(api: Client, store: Store) -> None:
    await make_deployable(api, "shop")
    store.acquire_lease("shop", "dped-1", 1, ttl=3600.0, now=time.time())
    await refused(api, store, 409, "DELETE", "/deployables/shop")


# -- malformed requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "words"),
    [
        (b"{not json", "application/json", "malformed JSON"),
        (b"", "application/json", "malformed JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b'{"name": NaN}', "application/json", "NaN"),
        (
            b'{"name": "web", "image": "host", "name": "db"}',
            "application/json",
            "'name' appears twice",
        ),
        (b"\xff\xfe", "application/json", "UTF-8"),
        (b'{"name": "caf\xe9"}', "application/json; charset=latin-1", "charset=latin-1"),
        (b'{"name": "x"}', "text/plain", "Content-Type"),
        (b'{"name": "x"}', "application/x-www-form-urlencoded", "Content-Type"),
    ],
)
async def test_malformed_bodies_are_400(
    api: Client, store: Store, data: bytes, content_type: str, words: str
) -> None:
    error = await refused(
        api, store, 400, "POST", "/assemblies", data=data, content_type=content_type
    )
    assert words in error["message"]


@pytest.mark.parametrize(
    ("path", "data", "where"),
    [
        (
            "/assemblies",
            b'{"name": "b2", "resources": [{"name": "r", "type": "Dummy",'
            b' "parameters": {"k": "x\\ud800"}}]}',
            "resources[0].parameters.k: holds a lone surrogate (\\ud800)",
        ),
        ("/assemblies", b'{"name": "b2", "image": "\\udfff"}', "image: holds a lone surrogate"),
        ("/jeos", b'{"name": "j", "path": "/tmp/\\ud83d.qcow2"}', "path: holds a lone"),
    ],
)
async def test_a_lone_surrogate_is_400_naming_where_it_is(
    api: Client, store: Store, path: str, data: bytes, where: str
) -> None:
    """JSON's \\ud800 escape reads as text UTF-8 cannot hold (the store could not)."""
    error = await refused(api, store, 400, "POST", path, data=data)
    assert where in error["message"] and "not a character" in error["message"]


@pytest.mark.parametrize(
    ("encoding", "words"),
    [
        ("gzip", "the request body is not valid gzip data"),
        ("deflate", "the request body is not valid deflate data"),
        ("bogus", "Content-Encoding 'bogus' is not one cped reads (identity, gzip, deflate)"),
    ],
)
async def test_a_body_not_as_its_content_encoding_says_is_400(
    api: Client, store: Store, encoding: str, words: str
) -> None:
    before = dump(store)
    body = b'{"name": "ce1", "image": "host"}'  # not encoded at all
    status, error = await _raw_post(api, "/assemblies", body, encoding)
    assert status == 400 and words in error["message"], error
    assert dump(store) == before
    status, _ = await _raw_post(api, "/assemblies", gzip.compress(body), "gzip")
    assert status == 201  # what it says it is, it is read


async def _raw_post(api: Client, path: str, body: bytes, encoding: str) -> tuple[int, Any]:
    """POST in one write, as curl sends a small request (aiohttp's client writes the
    body apart, and the server's parser may close before it reads the answer)."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    head = (
        f"POST {PREFIX}{path} HTTP/1.1\r\nHost: cped\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_unknown_routes_methods_and_query_parameters(api: Client, store: Store) -> None:
    error = await refused(api, store, 404, "GET", "/nothing-here")
    assert error["code"] == "not_found"
    error = await refused(api, store, 405, "PATCH", "/assemblies")
    assert error["code"] == "invalid" and "(allowed: GET, HEAD, POST)" in error["message"]
    async with api.request("DELETE", PREFIX + "/health") as response:
        assert (response.status, response.headers["Allow"]) == (405, "GET,HEAD")
    error = await refused(api, store, 400, "GET", "/jeos?colour=red")
    assert error["details"] == [{"path": "colour", "message": "unknown query parameter"}]
    error = await refused(api, store, 400, "GET", "/events?colour=red")  # a route with a query
    assert error["details"] == [{"path": "colour", "message": "unknown query parameter"}]


async def test_an_action_whose_request_requires_nothing_takes_no_body_as_empty(
    api: Client, store: Store
) -> None:
    """``curl -X POST .../cleanup``: no body, no Content-Type, is a clean-up of all."""
    await make_deployable(api, "shop")
    async with api.post(PREFIX + "/deployables/shop/cleanup") as response:
        answer = await response.json()
    assert response.status == 200 and answer["scope"] == "", answer
    await refused(api, store, 400, "PUT", "/deployables/shop", data=b"")  # a PUT replaces
    _, doc = await call(api, "GET", "/openapi.json")
    paths = doc["paths"]
    assert paths["/v1/deployables/{name}/cleanup"]["post"]["requestBody"]["required"] is False
    assert paths["/v1/deployables/{name}"]["put"]["requestBody"]["required"] is True


async def test_head_answers_as_get_does_without_a_body(api: Client, store: Store) -> None:
    await make_assembly(api, "web")
    async with api.get(PREFIX + "/assemblies/web") as got:
        body = await got.read()
    async with api.head(PREFIX + "/assemblies/web") as head:
        assert (head.status, await head.read()) == (200, b"")
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
        assert int(head.headers["Content-Length"]) == len(body)
    async with api.head(PREFIX + "/assemblies/nosuch") as missing:
        assert missing.status == 404
    async with api.head(PREFIX + "/events/stream") as stream:  # its answer never ends
        assert stream.status == 405


async def test_a_missing_half_of_an_escalation_is_worded_once(api: Client, store: Store) -> None:
    await make_assembly(api, "web")
    error = await refused(api, store, 400, "PUT", "/assemblies/web/escalation", {"failures": 3})
    assert error["details"] == [{"path": "period", "message": "required: use INFINITY to disable"}]


async def test_a_number_where_a_string_belongs_is_named_in_json_words(
    api: Client, store: Store
) -> None:
    error = await refused(api, store, 400, "POST", "/assemblies", {"name": 123, "image": 1.5})
    assert error["details"] == [
        {"path": "name", "message": "must be a string, not a number"},
        {"path": "image", "message": "must be a string, not a number"},
    ]


async def test_a_body_on_a_route_that_takes_none_is_refused_not_dropped(
    api: Client, store: Store
) -> None:
    await make_assembly(api, "web")
    await make_deployable(api, "shop", "web")
    error = await refused(api, store, 400, "DELETE", "/deployables/shop", {"force": True})
    assert error["message"] == (
        "DELETE /v1/deployables/shop takes no request body (its settings, if any, are query"
        " parameters)"
    )
    status, _ = await call(api, "DELETE", "/deployables/shop", data=b"")  # Content-Length: 0
    assert status == 204


async def test_a_body_that_stalls_is_refused_after_the_body_timeout(
    api: Client, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpe.api, "BODY_TIMEOUT", 0.3)

    async def stalling() -> AsyncIterator[bytes]:
        yield b'{"name": '
        await asyncio.sleep(5)  # longer than the timeout: the rest never comes in time
        yield b'"web"}'

    before = dump(store)
    headers = {"Content-Type": "application/json"}
    async with api.post(PREFIX + "/assemblies", data=stalling(), headers=headers) as response:
        error = await response.json()
    assert response.status == 400
    assert error["message"] == "the request body did not arrive within 0.3 s"
    assert dump(store) == before


async def test_a_query_parameter_given_twice_is_refused_by_name(api: Client, store: Store) -> None:
    await make_assembly(api, "web")
    await make_deployable(api, "shop", "web")
    error = await refused(api, store, 400, "DELETE", "/deployables/shop?force=false&force=true")
    assert error["details"] == [{"path": "force", "message": "given more than once"}]
    error = await refused(api, store, 400, "GET", "/events?limit=1&order=desc&limit=500")
    assert error["details"] == [{"path": "limit", "message": "given more than once"}]


@pytest.mark.parametrize("name", ["a%2Fb", "a%20b", "..", "-x", "x" * 64])
async def test_bad_names_in_urls(api: Client, store: Store, name: str) -> None:
    status, body = await call(api, "GET", f"/assemblies/{name}")
    assert status in (400, 404) and body["code"] in ("invalid", "not_found")
    before = dump(store)
    status, body = await call(api, "PUT", f"/deployables/{name}", {})
    assert status in (400, 404) and dump(store) == before


# -- events -------------------------------------------------------------------------------------------


def add_events(store: Store, count: int, deployable: str = "d1") -> list[Event]:
    return [
        store.append_event(Event(1000.0 + i, deployable, "running", f"reason {i}", "a1"))
        for i in range(count)
    ]


async def test_event_query_filters_and_paging(api: Client, store: Store) -> None:
    events = add_events(store, 5) + add_events(store, 2, "d2")
    status, rows = await call(api, "GET", "/events?deployable=d2")
    assert status == 200 and [r["id"] for r in rows] == [e.id for e in events[5:]]
    _, page1 = await call(api, "GET", "/events?limit=3")
    _, page2 = await call(api, "GET", f"/events?limit=3&after_id={page1[-1]['id']}")
    assert [r["id"] for r in page1 + page2] == [e.id for e in events[:6]]
    _, newest = await call(api, "GET", "/events?order=desc&limit=2")
    assert [r["id"] for r in newest] == [events[6].id, events[5].id]
    _, timed = await call(api, "GET", "/events?deployable=d1&since=1001&until=1002")
    assert [r["reason"] for r in timed] == ["reason 1", "reason 2"]
    assert rows[0] == events[5].to_dict()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=5000",
        "limit=x",
        "since=yesterday",
        "since=nan",
        "until=inf",
        "since=-Infinity",
        "order=up",
        "after_id=-1",
        "deployable=a/b",
        "colour=red",
    ],
)
async def test_bad_event_queries(api: Client, store: Store, query: str) -> None:
    await refused(api, store, 400, "GET", f"/events?{query}")


async def test_an_id_of_thousands_of_digits_is_refused_in_the_api_s_own_words(
    api: Client, store: Store
) -> None:
    error = await refused(api, store, 400, "GET", "/events?after_id=" + "9" * 5000)
    message = error["message"] + json.dumps(error["details"])
    assert "must be a whole number 0..9223372036854775807" in message
    assert "(5000 characters)" in message and "sys." not in message and "9" * 100 not in message


async def test_the_event_query_bounds_the_document_serves_are_those_applied(
    api: Client, store: Store
) -> None:
    _, doc = await call(api, "GET", "/openapi.json")
    parameters = doc["paths"]["/v1/events"]["get"]["parameters"]
    bounded = {p["name"]: p["schema"] for p in parameters if "minimum" in p["schema"]}
    assert {"limit", "after_id", "before_id"} <= set(bounded)
    for name, schema in bounded.items():
        for inside in (schema["minimum"], schema["maximum"]):
            assert (await call(api, "GET", f"/events?{name}={inside}"))[0] == 200, (name, inside)
        for outside in (schema["minimum"] - 1, schema["maximum"] + 1):
            await refused(api, store, 400, "GET", f"/events?{name}={outside}")


async def read_sse(response: Any, count: int) -> list[dict[str, Any]]:
    """Parse ``count`` events from a server-sent event stream."""
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if not line:
            if current:
                events.append({"id": int(current["id"]), **json.loads(current["data"])})
            current = {}
            continue
        key, _, value = line.partition(": ")
        current[key] = value
    return events


async def test_event_stream_delivers_history_and_new_events(api: Client, store: Store) -> None:
    old = add_events(store, 3)
    async with api.get(PREFIX + "/events/stream?after_id=0") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        history = await read_sse(response, 3)
        assert [e["id"] for e in history] == [e.id for e in old]
        new = store.append_event(Event(2000.0, "d9", "failed", "monitor returned 7"))
        (live,) = await read_sse(response, 1)
        assert live == new.to_dict()


async def test_event_stream_honours_last_event_id_and_filters(api: Client, store: Store) -> None:
    events = add_events(store, 4)
    add_events(store, 2, "other")
    headers = {"Last-Event-ID": str(events[1].id)}
    async with api.get(PREFIX + "/events/stream?deployable=d1", headers=headers) as response:
        got = await read_sse(response, 2)
        assert [e["id"] for e in got] == [events[2].id, events[3].id]
        store.append_event(Event(3000.0, "other", "x", "y"))
        mine = store.append_event(Event(3001.0, "d1", "x", "y"))
        (live,) = await read_sse(response, 1)
        assert live["id"] == mine.id


async def test_event_stream_by_default_sends_only_new_events(api: Client, store: Store) -> None:
    add_events(store, 2)
    async with api.get(PREFIX + "/events/stream") as response:
        await asyncio.sleep(0.05)
        new = store.append_event(Event(4000.0, "d1", "new", "only this one"))
        (live,) = await read_sse(response, 1)
        assert live["id"] == new.id


async def test_bad_stream_queries(api: Client, store: Store) -> None:
    await refused(api, store, 400, "GET", "/events/stream?after_id=x")
    await refused(api, store, 400, "GET", "/events/stream?limit=3")


async def test_a_bad_last_event_id_is_refused_naming_the_header(api: Client) -> None:
    async with api.get(PREFIX + "/events/stream", headers={"Last-Event-ID": "-1"}) as response:
        error = await response.json()
    assert response.status == 400 and error["message"].startswith("invalid header:")
    assert [problem["path"] for problem in error["details"]] == ["Last-Event-ID"]


@pytest.mark.parametrize(
    ("path", "body", "where", "says"),
    [
        (
            "/assemblies/web/resources",
            resource("x", monitor_interval=99999999999999),
            "monitor_interval",
            "at most 1 day",
        ),
        (
            "/assemblies/web/resources",
            resource("x", timeouts={"start": "2d"}),
            "timeouts.start",
            "at most 1 day",
        ),
        (
            "/assemblies/web/resources",
            resource("x", monitor_interval=5e-324),
            "monitor_interval",
            "too short: 5e-324 (at least 100 ms)",
        ),
        (
            "/assemblies/web/resources",
            resource("x", timeouts={"start": 1e-300}),
            "timeouts.start",
            "at least 100 ms",
        ),
        (
            "/assemblies/web/resources",
            resource("x", escalation={"failures": 99999999999999999999999, "period": 60}),
            "escalation.failures",
            "at most 1000000",
        ),
        (
            "/assemblies/web/escalation",
            {"failures": 3, "period": "400d"},
            "period",
            "at most 365 days",
        ),
        (
            "/assemblies/web/resources",
            {"name": "x", "type": "anything", "parameters": {"binfile": "relative/path"}},
            "resources[1].parameters.binfile",
            "must be an absolute path",
        ),
        (
            "/assemblies/web/resources",
            resource("x", parameters={"peer": {"ref": "nosuch:ipaddress"}}),
            "resources[1].parameters.peer",
            "no such assembly",
        ),
        (
            "/deployables/shop",
            {
                "name": "shop",
                "assemblies": [
                    {"name": "web", "resources": [resource("x", parameters={"p": "@nosuch:ip"})]},
                    {
                        "name": "db",
                        "resources": [
                            resource("y", parameters={"peer": {"ref": "nosuch:ipaddress"}})
                        ],
                    },
                ],
            },
            "assemblies[1].resources[0].parameters.peer",
            "no such assembly",
        ),
    ],
)
async def test_values_are_checked_when_written(
    api: Client, store: Store, path: str, body: dict[str, Any], where: str, says: str
) -> None:
    await make_assembly(api, "web", "www")
    method = "PUT" if path.endswith(("/escalation", "/shop")) else "POST"
    error = await refused(api, store, 400, method, path, body)
    problems = {p["path"]: p["message"] for p in error["details"]}
    assert says in problems.get(where, ""), error
