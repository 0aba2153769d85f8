"""Any JSON body: the catalog answers or refuses with a PcloudError, and a refusal
changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpe.catalog import Catalog
from foundation.errors import PcloudError
from foundation.store import Store

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

OPERATIONS: dict[str, Callable[[Catalog, dict[str, Any]], Any]] = {
    "create_jeos": lambda c, b: c.create_jeos(b),
    "create_assembly": lambda c, b: c.create_assembly(b),
    "put_assembly": lambda c, b: c.put_assembly("web", b),
    "add_resource": lambda c, b: c.add_resource("web", b),
    "update_resource": lambda c, b: c.update_resource("web", "www", b),
    "set_assembly_escalation": lambda c, b: c.set_assembly_escalation("web", b),
    "create_template": lambda c, b: c.create_template(b),
    "create_deployable": lambda c, b: c.create_deployable(b),
    "put_deployable": lambda c, b: c.put_deployable("shop", b),
    "add_deployable_assembly": lambda c, b: c.add_deployable_assembly("shop", b),
    "add_constraint": lambda c, b: c.add_constraint("shop", b),
    "set_deployable_escalation": lambda c, b: c.set_deployable_escalation("shop", b),
    "query_events": lambda c, b: c.query_events({k: str(v) for k, v in b.items()}),
}


def dump(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(map(repr, db.execute(f"SELECT * FROM {n}"))) for n in names}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    store = Store.open(tmp_path_factory.mktemp("fuzz") / "store.sqlite")
    catalog = Catalog(store)
    catalog.create_assembly({"name": "db", "resources": [{"name": "pg", "type": "Dummy"}]})
    catalog.create_assembly({"name": "web", "resources": [{"name": "www", "type": "Dummy"}]})
    catalog.create_deployable({"name": "shop"})
    catalog.add_deployable_assembly("shop", {"assembly": "db"})
    catalog.add_deployable_assembly("shop", {"assembly": "web"})
    return catalog


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES)
def test_any_body_is_answered_or_refused_cleanly(
    catalog: Catalog, operation: str, body: dict[str, Any]
) -> None:
    before = dump(catalog.store.path)
    try:
        OPERATIONS[operation](catalog, body)
    except PcloudError as error:
        assert error.message
        assert dump(catalog.store.path) == before
    catalog.get_deployable("shop")  # whatever happened, the stored deployable still validates


NAMED_OPERATIONS: dict[str, Callable[[Catalog, str, str], Any]] = {
    "get_jeos": lambda c, a, b: c.get_jeos(a),
    "delete_jeos": lambda c, a, b: c.delete_jeos(a),
    "get_assembly": lambda c, a, b: c.get_assembly(a),
    "delete_assembly": lambda c, a, b: c.delete_assembly(a),
    "remove_resource": lambda c, a, b: c.remove_resource(a, b),
    "get_template": lambda c, a, b: c.get_template(a),
    "delete_template": lambda c, a, b: c.delete_template(a),
    "get_deployable": lambda c, a, b: c.get_deployable(a),
    "delete_deployable": lambda c, a, b: c.delete_deployable(a),
    "remove_deployable_assembly": lambda c, a, b: c.remove_deployable_assembly(a, b),
    "remove_constraint": lambda c, a, b: c.remove_constraint("shop", a, b),
    "prepare_start": lambda c, a, b: c.prepare_start(a),
    "runnable_document": lambda c, a, b: c.runnable_document(a),
    "want_stopped": lambda c, a, b: c.want_stopped(a),
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operation=st.sampled_from(sorted(NAMED_OPERATIONS)), first=NAMES, second=NAMES)
def test_any_name_is_answered_or_refused_cleanly(
    catalog: Catalog, operation: str, first: str, second: str
) -> None:
    before = dump(catalog.store.path)
    try:
        NAMED_OPERATIONS[operation](catalog, first, second)
    except PcloudError as error:
        assert error.message
        assert dump(catalog.store.path) == before
