"""A whole store moved from SQLite to PostgreSQL (export, import), and refusals
that change nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from foundation.errors import Conflict, InvalidInput
from foundation.events import Event
from foundation.paths import Paths
from foundation.store import HOST_JEOS, Store
from foundation.store_transfer import export_store, import_store
from tests.unit.test_store import assembly_doc, deployable_doc


@pytest.fixture
def source(pcloud_home: Paths) -> Iterator[Store]:
    store = Store.open(pcloud_home.store_file)
    store.insert_jeos({"name": "deb12", "kind": "image", "path": "/x.qcow2"})
    store.insert_template("web", {"class": "ocf", "provider": "heartbeat", "type": "apache"})
    with store.transaction():
        store.insert_deployable(deployable_doc("shop", ["a1", "a2"]))
        store.insert_assembly(assembly_doc("a1", image="deb12"), deployable="shop")
        store.insert_assembly(assembly_doc("a2"), deployable="shop")
    store.set_desired_state("shop", "started")
    store.put_runtime("shop", "instance", "a1", {"instance_id": "a1-1"})
    for holder in ("h:1", "h:2", "h:3"):
        store.acquire_lease("shop", holder, 1, 5.0, now=100.0 * int(holder[-1]))
    for i in range(5):
        store.append_event(Event(100.0 + i, "shop", "running", f"event {i}"))
    store.prune_events(older_than=102.0)  # ids 1 and 2 gone: the next one is still 6
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def target(pg_url: str) -> Iterator[Store]:
    store = Store.open_url(pg_url)
    try:
        yield store
    finally:
        store.close()


def exported(store: Store) -> str:
    out = io.StringIO()
    export_store(store, out)
    return out.getvalue()


def test_sqlite_to_postgresql_keeps_everything(source: Store, target: Store) -> None:
    counts = import_store(target, exported(source).splitlines())
    assert counts["events"] == 3 and counts["assemblies"] == 2
    assert target.list_jeos() == source.list_jeos()
    assert target.list_templates() == source.list_templates()
    assert target.list_deployables() == source.list_deployables()
    assert target.get_document("shop") == source.get_document("shop")
    assert target.get_runtime("shop") == source.get_runtime("shop")
    assert target.query_events() == source.query_events()
    assert target.append_event(Event(200.0, "shop", "running", "after")).id == 6


def test_leases_keep_their_epoch_but_not_their_holder(source: Store, target: Store) -> None:
    import_store(target, exported(source).splitlines())
    lease = target.get_lease("shop")
    assert lease is not None and lease["epoch"] == 3 and lease["holder"] is None
    assert target.acquire_lease("shop", "m1:9", 9, 5.0) == 4  # never back to an old epoch


def test_a_store_that_is_not_empty_is_refused_and_unchanged(source: Store, target: Store) -> None:
    target.insert_template("mine", {"class": "ocf"})
    with pytest.raises(Conflict, match="not empty"):
        import_store(target, exported(source).splitlines())
    assert [t["name"] for t in target.list_templates()] == ["mine"]
    assert target.list_deployables() == []


def test_a_bad_line_is_named_and_nothing_is_imported(source: Store, target: Store) -> None:
    lines = exported(source).splitlines()
    lines.insert(5, json.dumps({"table": "assemblies", "row": {"name": "x"}}))
    with pytest.raises(InvalidInput, match="line 6"):
        import_store(target, lines)
    lines[5] = "{not json"
    with pytest.raises(InvalidInput, match="line 6: not JSON"):
        import_store(target, lines)
    assert [j["name"] for j in target.list_jeos()] == [HOST_JEOS]
    assert target.list_deployables() == [] and target.query_events() == []


def test_another_schema_version_is_refused(source: Store, target: Store) -> None:
    lines = exported(source).splitlines()
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, "schema_version": header["schema_version"] + 1})
    with pytest.raises(InvalidInput, match="schema version"):
        import_store(target, lines)
    with pytest.raises(InvalidInput, match="empty"):
        import_store(target, [])


@pytest.mark.parametrize("depth", [900, 100_000])
def test_a_line_nested_too_deeply_is_named_and_nothing_is_imported(
    source: Store, target: Store, depth: int
) -> None:
    lines = exported(source).splitlines()
    lines.insert(5, '{"table": "events", "row": {"x": ' + "[" * depth + "]" * depth + "}}")
    with pytest.raises(InvalidInput, match="line 6: nested too deeply"):
        import_store(target, lines)
    assert target.list_deployables() == [] and target.query_events() == []
