"""The store on a real SQLite file: schema, migrations, transactions, runtime, leases, events."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from foundation.errors import Conflict, NotFound, StoreError
from foundation.events import Event
from foundation.model import Assembly, Resource, new_uuid
from foundation.paths import Paths
from foundation.store import HOST_JEOS, MIGRATIONS, Store


def assembly_doc(name: str, image: str = HOST_JEOS) -> dict[str, Any]:
    resource = Resource(name="r1")
    return Assembly(name=name, uuid=new_uuid(), image=image, resources=(resource,)).to_dict()


def deployable_doc(name: str, assemblies: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": new_uuid(),
        "infrastructure": "local",
        "settings": {},
        "heartbeat": {"interval": 1, "timeout": 3, "health_interval": 10},
        "escalation": {"failures": "INFINITY", "period": "INFINITY"},
        "assemblies": assemblies,
        "constraints": [],
    }


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


# -- schema and migrations ------------------------------------------------------


def test_new_store_has_the_whole_schema_in_wal_mode(store: Store) -> None:
    expected = {"schema_version", "jeos", "templates", "deployables", "assemblies"}
    expected |= {"runtime", "leases", "events"}
    assert expected <= tables(store.path)
    assert store.schema_version() == len(MIGRATIONS)
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_builtin_host_jeos_exists(store: Store) -> None:
    assert store.get_jeos(HOST_JEOS)["kind"] == "host"


def test_reopening_migrates_nothing_and_keeps_data(pcloud_home: Paths) -> None:
    first = Store.open(pcloud_home.store_file)
    first.insert_jeos({"name": "deb12", "kind": "image", "path": "/x.qcow2"})
    first.close()
    for _ in range(2):
        again = Store.open(pcloud_home.store_file)
        assert again.schema_version() == len(MIGRATIONS)
        assert [j["name"] for j in again.list_jeos()] == ["deb12", HOST_JEOS]
        again.close()


def test_an_old_schema_is_migrated_forward(pcloud_home: Paths) -> None:
    old = Store.open(pcloud_home.store_file, migrations=MIGRATIONS[:1])
    assert old.schema_version() == 1
    assert "events" not in tables(pcloud_home.store_file)
    old.insert_assembly(assembly_doc("a1"))
    old.close()
    new = Store.open(pcloud_home.store_file)
    assert new.schema_version() == len(MIGRATIONS)
    assert new.get_assembly("a1")["name"] == "a1"
    assert new.append_event(Event(1.0, "d", "started", "test")).id == 1
    new.close()


def test_a_newer_schema_is_refused(pcloud_home: Paths) -> None:
    Store.open(pcloud_home.store_file).close()
    with sqlite3.connect(pcloud_home.store_file) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        Store.open(pcloud_home.store_file)


def test_an_unopenable_path_is_a_store_error(pcloud_home: Paths) -> None:
    blocker = pcloud_home.state_dir / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(blocker / "store.sqlite")


# -- transactions -----------------------------------------------------------------


def test_a_failing_multi_step_write_changes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_jeos({"name": "deb12", "kind": "image", "path": "/x"})
        store.insert_assembly(assembly_doc("a1", image="deb12"))
        store.put_runtime("d", "instance", "a1", {"state": "running"})
        raise RuntimeError("fail in the middle")
    assert [j["name"] for j in store.list_jeos()] == [HOST_JEOS]
    assert store.list_assemblies() == []
    assert store.get_runtime("d") == {}


def test_a_failing_nested_step_is_undone_alone(store: Store) -> None:
    with store.transaction():
        store.insert_assembly(assembly_doc("kept"))
        with pytest.raises(Conflict):
            store.insert_assembly(assembly_doc("kept"))
    assert [doc["name"] for doc, _ in store.list_assemblies()] == ["kept"]


def test_a_snapshot_sees_one_state_and_refuses_writes(pcloud_home: Paths, store: Store) -> None:
    other = Store.open(pcloud_home.store_file)
    try:
        with store.snapshot():
            before = store.list_jeos()
            other.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
            assert store.list_jeos() == before
            with pytest.raises(RuntimeError):
                store.put_runtime("d", "instance", "a", {})
        assert len(store.list_jeos()) == len(before) + 1
    finally:
        other.close()


def test_a_foreign_key_violation_is_a_conflict(store: Store) -> None:
    with pytest.raises(Conflict):
        store.insert_assembly(assembly_doc("a1", image="no-such-image"))
    assert store.list_assemblies() == []


def test_a_write_waits_for_another_writer_then_reports_busy(pcloud_home: Paths) -> None:
    holder = Store.open(pcloud_home.store_file)
    other = Store.open(pcloud_home.store_file, busy_timeout=0.05)
    try:
        with holder.transaction():
            holder.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
            with pytest.raises(StoreError, match="busy"):
                other.put_runtime("d", "instance", "a", {})
        other.put_runtime("d", "instance", "a", {"ok": True})
        assert holder.get_runtime("d") == {"instance": {"a": {"ok": True}}}
    finally:
        holder.close()
        other.close()


# -- catalog rows -------------------------------------------------------------------


def test_duplicates_and_missing_rows(store: Store) -> None:
    store.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
    with pytest.raises(Conflict):
        store.insert_jeos({"name": "j1", "kind": "image", "path": "/y"})
    with pytest.raises(NotFound):
        store.get_jeos("nope")
    with pytest.raises(NotFound):
        store.delete_assembly("nope")
    with pytest.raises(NotFound):
        store.update_deployable(deployable_doc("nope", []))
    with pytest.raises(NotFound):
        store.get_template("nope")


def test_document_assembles_the_deployable_and_its_assemblies(store: Store) -> None:
    with store.transaction():
        store.insert_deployable(deployable_doc("d1", ["a2", "a1"]))
        store.insert_assembly(assembly_doc("a1"), deployable="d1")
        store.insert_assembly(assembly_doc("a2"), deployable="d1")
    document = store.get_document("d1")
    assert [a.name for a in document.assemblies] == ["a2", "a1"]
    assert store.assembly_owner("a1") == "d1"
    assert store.list_deployables()[0][1] == "stopped"


def test_deleting_a_deployable_frees_assemblies_and_drops_runtime(store: Store) -> None:
    with store.transaction():
        store.insert_deployable(deployable_doc("d1", ["a1"]))
        store.insert_assembly(assembly_doc("a1"), deployable="d1")
    store.put_runtime("d1", "instance", "a1", {"state": "running"})
    store.acquire_lease("d1", "h", 1, 5.0, now=100.0)
    store.delete_deployable("d1")
    assert store.assembly_owner("a1") is None
    assert store.get_runtime("d1") == {}
    assert store.get_lease("d1") is None
    with pytest.raises(NotFound):
        store.delete_deployable("d1")


def test_desired_state(store: Store) -> None:
    store.insert_deployable(deployable_doc("d1", []))
    store.set_desired_state("d1", "started")
    assert store.get_desired_state("d1") == "started"
    with pytest.raises(ValueError):
        store.set_desired_state("d1", "dancing")


# -- runtime state -------------------------------------------------------------------


def test_runtime_put_get_and_delete_at_each_level(store: Store) -> None:
    store.put_runtime("d", "instance", "a1", {"state": "pending"})
    store.put_runtime("d", "instance", "a1", {"state": "running"})
    store.put_runtime("d", "instance", "a2", {"state": "running"})
    store.put_runtime("d", "resource", "a1/r1", {"state": "started"})
    store.put_runtime("other", "deployable", "", {"state": "started"})
    assert store.get_runtime("d") == {
        "instance": {"a1": {"state": "running"}, "a2": {"state": "running"}},
        "resource": {"a1/r1": {"state": "started"}},
    }
    store.delete_runtime("d", "instance", "a1")
    assert set(store.get_runtime("d")["instance"]) == {"a2"}
    store.delete_runtime("d", "resource")
    assert set(store.get_runtime("d")) == {"instance"}
    store.delete_runtime("d")
    assert store.get_runtime("d") == {}
    assert store.get_runtime("other") == {"deployable": {"": {"state": "started"}}}
    with pytest.raises(ValueError):
        store.delete_runtime("d", key="a1")


# -- leases ------------------------------------------------------------------------------


def test_lease_is_exclusive_while_live(store: Store) -> None:
    assert store.get_lease("d") is None
    assert store.acquire_lease("d", "A", 11, ttl=5.0, now=100.0) == 1
    assert store.acquire_lease("d", "B", 12, ttl=5.0, now=104.0) is None
    assert store.acquire_lease("d", "A", 11, ttl=5.0, now=104.0) == 1  # already ours
    lease = store.get_lease("d")
    assert lease == {"holder": "A", "pid": 11, "epoch": 1, "expires_at": 109.0, "renewed_at": 104.0}


def test_takeover_after_expiry_grows_the_epoch_and_fences_the_old_holder(store: Store) -> None:
    assert store.acquire_lease("d", "A", 11, ttl=5.0, now=100.0) == 1
    assert store.renew_lease("d", "A", 1, ttl=5.0, now=103.0)
    assert store.acquire_lease("d", "B", 12, ttl=5.0, now=108.0) == 2
    assert not store.renew_lease("d", "A", 1, ttl=5.0, now=108.5)
    assert store.renew_lease("d", "B", 2, ttl=5.0, now=109.0)
    assert store.get_lease("d")["pid"] == 12  # type: ignore[index]


def test_an_expired_lease_cannot_be_renewed(store: Store) -> None:
    store.acquire_lease("d", "A", 11, ttl=5.0, now=100.0)
    assert not store.renew_lease("d", "A", 1, ttl=5.0, now=105.0)


def test_release_keeps_the_epoch_for_the_next_holder(store: Store) -> None:
    store.acquire_lease("d", "A", 11, ttl=5.0, now=100.0)
    store.release_lease("d", "B", 1)  # not B's: nothing happens
    assert store.get_lease("d")["holder"] == "A"  # type: ignore[index]
    store.release_lease("d", "A", 1)
    released = store.get_lease("d")
    assert released is not None and released["holder"] is None and released["epoch"] == 1
    assert not store.renew_lease("d", "A", 1, ttl=5.0, now=101.0)
    assert store.acquire_lease("d", "B", 12, ttl=5.0, now=101.0) == 2


# -- events ---------------------------------------------------------------------------------


def add_events(store: Store) -> list[Event]:
    specs = [
        ("d1", None, None, "started"),
        ("d1", "a1", None, "running"),
        ("d1", "a1", "r1", "failed"),
        ("d2", "b1", None, "running"),
        ("d1", "a1", "r1", "started"),
    ]
    return [
        store.append_event(Event(100.0 + i, d, state, f"reason {i}", a, r))
        for i, (d, a, r, state) in enumerate(specs)
    ]


def test_events_get_increasing_ids(store: Store) -> None:
    ids = [e.id or 0 for e in add_events(store)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert store.last_event_id() == ids[-1]


def test_event_filters(store: Store) -> None:
    events = add_events(store)
    assert store.query_events(deployable="d2") == [events[3]]
    assert store.query_events(deployable="d1", resource="r1") == [events[2], events[4]]
    assert store.query_events(assembly="a1", since=102.0) == [events[2], events[4]]
    assert store.query_events(until=100.5) == [events[0]]


def test_event_paging_both_ways(store: Store) -> None:
    events = add_events(store)
    first = store.query_events(limit=2)
    assert first == events[:2]
    assert store.query_events(after_id=first[-1].id, limit=2) == events[2:4]
    newest = store.query_events(newest_first=True, limit=2)
    assert newest == [events[4], events[3]]
    assert store.query_events(newest_first=True, before_id=newest[-1].id, limit=2) == [
        events[2],
        events[1],
    ]


def test_events_written_by_another_process_are_visible(pcloud_home: Paths, store: Store) -> None:
    writer = Store.open(pcloud_home.store_file)
    try:
        written = writer.append_event(Event(1.0, "d", "failed", "monitor returned 7"))
    finally:
        writer.close()
    assert store.query_events() == [written]


def test_old_events_are_pruned_in_batches_and_ids_are_never_reused(store: Store) -> None:
    for i in range(7):
        store.append_event(Event(100.0 + i, "d", "running", f"event {i}"))
    assert store.prune_events(older_than=105.0, batch=2) == 5  # three batches
    kept = store.query_events(after_id=0)
    assert [e.reason for e in kept] == ["event 5", "event 6"]
    assert store.prune_events(older_than=105.0) == 0
    assert store.prune_events(older_than=1000.0) == 2
    assert store.last_event_id() == 0
    assert store.append_event(Event(200.0, "d", "running", "after")).id == 8


def test_the_store_file_is_its_owners_only_even_when_it_was_not(tmp_path: Path) -> None:
    made = tmp_path / "new.sqlite"
    Store.open(made).close()
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    older = tmp_path / "older.sqlite"
    Store.open(older).close()
    older.chmod(0o644)  # as an older version left it
    Store.open(older).close()
    assert stat.S_IMODE(older.stat().st_mode) == 0o600
