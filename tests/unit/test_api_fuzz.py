"""Any JSON body, any name, through the route table as cped takes them: each is
answered or refused with a PcloudError, and a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpe.catalog import Catalog, runstate
from cpe.route_table import ROUTES
from cpe.routes import Route
from foundation.errors import PcloudError
from foundation.store import Store
from tests.unit.inprocess import InProcessCped

NAMES = st.sampled_from(["db", "web", "shop", "pg", "x", "a/b", "..", "", "db/pg", "web/www"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 100),
    st.floats(allow_nan=False),
    NAMES,
    st.sampled_from(["INFINITY", "10s", "-1", "ocf", "lsb", "Dummy", "db:ipaddress"]),
)
KEYS = st.sampled_from(
    [
        "name",
        "uuid",
        "image",
        "resources",
        "escalation",
        "failures",
        "period",
        "class",
        "type",
        "provider",
        "parameters",
        "ref",
        "assemblies",
        "constraints",
        "first",
        "then",
        "assembly",
        "monitor_interval",
        "timeouts",
        "infrastructure",
        "settings",
        "heartbeat",
        "path",
        "resource",
        "description",
        "x",
    ]
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
BODIES = st.dictionaries(KEYS, JSON, max_size=6)


# The routes that take a body, each with the names of its path (an existing object).
BODY_ROUTES = [route for route in ROUTES if route.request is not None]
EXISTING = {"assembly": "web", "resource": "www", "service": "cache"}


def names_of(route: Route) -> tuple[str, ...]:
    default = "web" if route.path.startswith("/assemblies") else "shop"
    return tuple(EXISTING.get(name, default) for name in route.path_params)


@pytest.fixture(scope="module")
def cped(tmp_path_factory: pytest.TempPathFactory) -> InProcessCped:
    cped = InProcessCped(Store.open(tmp_path_factory.mktemp("fuzz") / "store.sqlite"))
    cped.create_assembly({"name": "db", "resources": [{"name": "pg", "type": "Dummy"}]})
    cped.create_assembly({"name": "web", "resources": [{"name": "www", "type": "Dummy"}]})
    cped.create_deployable({"name": "shop"})
    cped.add_deployable_assembly("shop", {"assembly": "db"})
    cped.add_deployable_assembly("shop", {"assembly": "web"})
    service = {"name": "cache", "type": "Dummy", "locations": [{"assembly": "db"}]}
    cped.add_service("shop", service)
    return cped


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda route: route.operation_id)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES)
def test_any_body_is_answered_or_refused_cleanly(
    cped: InProcessCped, route: Route, body: dict[str, Any]
) -> None:
    before = cped.tables()
    try:
        cped.call(route, *names_of(route), body)
    except PcloudError as error:
        assert error.message
        assert cped.tables() == before
    cped.get_deployable("shop")  # whatever happened, the stored deployable still validates


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.dictionaries(KEYS | st.sampled_from(["limit", "order", "since"]), SCALARS))
def test_any_event_query_is_answered_or_refused_cleanly(
    cped: InProcessCped, query: dict[str, Any]
) -> None:
    try:
        cped.query_events(**{key: str(value) for key, value in query.items()})
    except PcloudError as error:
        assert error.message


# The routes that take names only, and what the lifecycle asks of the catalog.
NAMED_ROUTES = [
    route
    for route in ROUTES
    if route.path_params and route.request is None and route.query is None
    if route.target.startswith("cpe.catalog")
]
RUN_STATE: dict[str, Callable[[Catalog, str], Any]] = {
    "prepare_start": runstate.prepare_start,
    "runnable_document": runstate.runnable_document,
    "want_stopped": runstate.want_stopped,
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(NAMED_ROUTES), first=NAMES, second=NAMES)
def test_any_name_is_answered_or_refused_cleanly(
    cped: InProcessCped, route: Route, first: str, second: str
) -> None:
    before = cped.tables()
    try:
        cped.call(route, *(first, second)[: len(route.path_params)])
    except PcloudError as error:
        assert error.message
        assert cped.tables() == before


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operation=st.sampled_from(sorted(RUN_STATE)), name=NAMES)
def test_the_run_state_of_any_name_is_answered_or_refused_cleanly(
    cped: InProcessCped, operation: str, name: str
) -> None:
    before = cped.tables()
    try:
        RUN_STATE[operation](cped.context.catalog, name)
    except PcloudError as error:
        assert error.message
        assert cped.tables() == before
