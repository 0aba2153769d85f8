"""The service, colocation and move routes, on a real SQLite store."""

from __future__ import annotations

from typing import Any

from cpe.openapi import openapi_document
from foundation.store import Store
from tests.unit.test_api import Client, api, call, make_assembly, make_deployable, refused

__all__ = ["api"]  # the fixture


def service(name: str, *locations: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    places = [{"assembly": a, "score": s} for a, s in locations]
    return {"name": name, "type": "Dummy", "locations": places, **extra}


async def shop(api: Client) -> None:
    for name in ("n1", "n2", "web"):
        await make_assembly(api, name, *(("app",) if name == "web" else ()))
    await make_deployable(api, "shop", "n1", "n2", "web")


async def test_services_are_added_changed_and_removed_with_the_document_valid(
    api: Client, store: Store
) -> None:
    await shop(api)
    path = "/deployables/shop/services"
    status, body = await call(api, "POST", path, service("db", ("n1", 100), ("n2", 50)))
    assert status == 201, body
    assert body["locations"] == [{"assembly": "n1", "score": 100}, {"assembly": "n2", "score": 50}]
    await refused(api, store, 409, "POST", path, service("db", ("n1", 0)))
    error = await refused(api, store, 400, "POST", path, service("x", ("nowhere", 1)))
    assert error["details"][0]["path"] == "locations[0].assembly"
    await refused(api, store, 400, "POST", path, service("y", ("n1", "lots")))
    changed = service("db", ("n1", 10), ("n2", "INFINITY"), stickiness=5)
    status, body = await call(api, "PUT", path + "/db", changed)
    assert (status, body["stickiness"]) == (200, 5)
    status, _ = await call(
        api, "POST", "/deployables/shop/constraints", {"first": "db", "then": "web/app"}
    )
    assert status == 201
    await refused(api, store, 409, "DELETE", path + "/db")  # a constraint names it
    await refused(api, store, 404, "DELETE", path + "/ghost")
    await call(api, "DELETE", "/deployables/shop/constraints?first=db&then=web/app")
    status, _ = await call(api, "DELETE", path + "/db")
    assert status == 204
    _, doc = await call(api, "GET", "/deployables/shop")
    assert doc.get("services", []) == []


async def test_colocations(api: Client, store: Store) -> None:
    await shop(api)
    path = "/deployables/shop/services"
    await call(api, "POST", path, service("db", ("n1", 100), ("n2", 50)))
    await call(api, "POST", path, service("replica", ("n1", 0), ("n2", 0)))
    colocations = "/deployables/shop/colocations"
    body = {"service": "replica", "with": "db", "score": "-INFINITY"}
    status, answer = await call(api, "POST", colocations, body)
    assert (status, answer) == (201, body)
    await refused(api, store, 409, "POST", colocations, body)
    await refused(api, store, 400, "POST", colocations, {"service": "db", "with": "ghost"})
    await refused(api, store, 409, "DELETE", path + "/db")
    await refused(api, store, 404, "DELETE", colocations + "?service=db&with=replica")
    cycle = {"service": "db", "with": "replica", "score": 50}  # accepted, as in Pacemaker
    assert await call(api, "POST", colocations, cycle) == (201, cycle)
    for query in ("?service=replica&with=db", "?service=db&with=replica"):
        status, _ = await call(api, "DELETE", colocations + query)
        assert status == 204


async def test_a_move_request_is_recorded_for_the_dpe(api: Client, store: Store) -> None:
    await shop(api)
    await call(api, "POST", "/deployables/shop/services", service("db", ("n1", 1), ("n2", 0)))
    move = "/deployables/shop/services/db/move"
    await refused(api, store, 400, "POST", move, {"assembly": "web"})
    await refused(api, store, 404, "POST", "/deployables/shop/services/x/move", {"assembly": "n1"})
    await refused(api, store, 400, "POST", move, {"assembly": "n2", "now": True})
    status, answer = await call(api, "POST", move, {"assembly": "n2"})
    assert status == 202
    assert (answer["service"], answer["to"]) == ("db", "n2")
    assert "not running" in answer["note"]
    assert store.get_runtime("shop")["move"]["db"]["to"] == "n2"


async def test_a_resource_may_refer_to_a_service_s_address(api: Client, store: Store) -> None:
    await shop(api)
    await call(api, "POST", "/deployables/shop/services", service("db", ("n1", 1), ("n2", 0)))
    body = {"name": "www", "type": "Dummy", "parameters": {"db": {"ref": "db:ipaddress"}}}
    status, answer = await call(api, "POST", "/assemblies/web/resources", body)
    assert status == 201, answer
    status, doc = await call(api, "GET", "/deployables/shop")
    assert status == 200, doc
    assert doc["assemblies"][2]["resources"][1]["parameters"]["db"] == {"ref": "db:ipaddress"}


async def test_the_simulation_explains_each_placement_as_its_schema_says(api: Client) -> None:
    await shop(api)
    path = "/deployables/shop/services"
    await call(api, "POST", path, service("db", ("n1", 100), ("n2", 50), stickiness=20))
    status, answer = await call(api, "GET", "/deployables/shop/simulate?fail=n1")
    assert status == 200, answer
    (placement,) = answer["placements"]
    assert (placement["current"], placement["target"], placement["moves"]) == ("n1", "n2", True)
    assert placement["reason"] == "assembly n1 is failed (score 50 on n2)"
    n1, n2 = placement["candidates"]
    assert (n1["allowed"], n1["why_not"]) == (False, "assembly n1 is failed")
    assert n2["terms"] == [{"score": 50, "why": "location score"}]
    assert placement["explanation"][0] == "db moves from n1 to n2: " + placement["reason"]
    schemas = openapi_document()["components"]["schemas"]
    for name, value in (("Placement", placement), ("PlacementCandidate", n1)):
        assert set(schemas[name]["required"]) <= set(value) <= set(schemas[name]["properties"])
