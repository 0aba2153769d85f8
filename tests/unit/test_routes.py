"""The route table holds together: every model it names exists, every target takes
what a request brings, and a call is shaped into the request cped expects."""

from __future__ import annotations

import inspect

import pytest

from cpe import answers, bodies, dispatch, openapi
from cpe.bodies import Query
from cpe.route_table import ROUTES
from cpe.routes import EVENT_STREAM, Route

IDS = [route.operation_id for route in ROUTES]


def test_operations_and_paths_are_declared_once() -> None:
    assert len(set(IDS)) == len(IDS)
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_every_model_a_route_names_exists(route: Route) -> None:
    if route.request is not None:
        assert route.request in bodies.MODELS
    if route.query is not None:
        assert issubclass(bodies.MODELS[route.query], Query)
    if route.response is not None:
        assert route.response.strip("[]") in {**bodies.MODELS, **answers.MODELS}


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_every_target_takes_what_a_request_brings(route: Route) -> None:
    """The path's names, the body, the query's fields by keyword: nothing else required."""
    target = dispatch.target_of(route)
    parameters = list(inspect.signature(target.function).parameters.values())[1:]  # its context
    if route.media == EVENT_STREAM:
        parameters = parameters[1:]  # the stream's HTTP request
    positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    brought = len(route.path_params) + (1 if route.request else 0)
    query = set(bodies.MODELS[route.query].model_fields) if route.query else set()
    named = {p.name for p in positional[brought:]} | {
        p.name for p in parameters if p.kind is p.KEYWORD_ONLY
    }
    assert len(positional) >= brought
    assert query == named
    assert all(p.default is not p.empty for p in positional[brought:] if p.name not in query)


def test_a_call_becomes_the_request() -> None:
    by_id = dict(zip(IDS, ROUTES, strict=True))
    call = by_id["remove_colocation"].shape(("sh op",), {"service": "a", "with_": "b"})
    assert call.url == "/v1/deployables/sh%20op/colocations?service=a&with=b"
    call = by_id["add_resource"].shape(("web", {"name": "www"}), {})
    assert (call.url, call.body) == ("/v1/assemblies/web/resources", {"name": "www"})
    call = by_id["simulate_deployable"].shape(("shop",), {"fail": ["a", "b/c"], "x": None})
    assert call.url == "/v1/deployables/shop/simulate?fail=a%2Cb%2Fc"
    call = by_id["delete_deployable"].shape(("shop",), {"force": True})
    assert call.url == "/v1/deployables/shop?force=true"
    with pytest.raises(TypeError, match="takes name and a body"):
        by_id["put_deployable"].shape(("shop",), {})


def test_the_document_describes_bodies_with_the_models_that_check_them() -> None:
    schemas = openapi.openapi_document()["components"]["schemas"]
    resource = schemas["Resource"]
    assert resource["additionalProperties"] is False
    assert resource["required"] == ["name", "type"]
    assert resource["properties"]["class"]["enum"] == ["ocf", "lsb", "systemd"]
    assert "Error" in schemas and "Problem" in schemas
    query = openapi.openapi_document()["paths"]["/v1/events"]["get"]["parameters"]
    limit = next(p for p in query if p["name"] == "limit")
    assert limit["in"] == "query" and limit["schema"]["type"] == "integer"
