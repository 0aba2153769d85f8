"""The store on a real SQLite file and on a real PostgreSQL database (the session's
server): schema, migrations, transactions, runtime, leases, fenced writes, events.

Every test that does not name its database runs on both (``backend``); the
few about one database's own behaviour (SQLite's WAL and busy writer,
PostgreSQL's catalog lock and lost connections) say so in their names."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from foundation.errors import Conflict, InvalidInput, LeaseLost, NotFound, StoreError
from foundation.events import Event
from foundation.model import Assembly, Resource, new_uuid
from foundation.paths import Paths
from foundation.store import HOST_JEOS, MIGRATIONS, Fence, Store


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


@dataclass
class Backend:
    """One database under test: ``open()`` gives another Store on it (as another process would)."""

    name: str
    open: Callable[..., Store]
    raw: Callable[[str], None]  # run one SQL statement behind the store's back


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, pcloud_home: Paths) -> Backend:
    if request.param == "sqlite":
        path = pcloud_home.store_file

        def raw_sqlite(sql: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql)

        return Backend("sqlite", lambda **kw: Store.open(path, **kw), raw_sqlite)
    url = request.getfixturevalue("pg_url")

    def raw_pg(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql)

    return Backend("postgresql", lambda **kw: Store.open_url(url, **kw), raw_pg)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


# -- schema and migrations ------------------------------------------------------


def test_new_store_has_the_whole_schema(store: Store) -> None:
    expected = {"schema_version", "jeos", "templates", "deployables", "assemblies"}
    expected |= {"runtime", "leases", "events"}
    assert expected <= store.tables()
    assert store.schema_version() == len(MIGRATIONS)


def test_sqlite_store_is_in_wal_mode(pcloud_home: Paths) -> None:
    Store.open(pcloud_home.store_file).close()
    assert "events" in tables(pcloud_home.store_file)
    with sqlite3.connect(pcloud_home.store_file) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_builtin_host_jeos_exists(store: Store) -> None:
    assert store.get_jeos(HOST_JEOS)["kind"] == "host"


def test_names_sort_in_byte_order_on_every_database(store: Store) -> None:
    for name in ("b", "B", "a-1", "a_1", "A", "é"):
        store.insert_template(name, {"class": "ocf"})
    assert [t["name"] for t in store.list_templates()] == ["A", "B", "a-1", "a_1", "b", "é"]


def test_reopening_migrates_nothing_and_keeps_data(backend: Backend) -> None:
    first = backend.open()
    first.insert_jeos({"name": "deb12", "kind": "image", "path": "/x.qcow2"})
    first.close()
    for _ in range(2):
        again = backend.open()
        assert again.schema_version() == len(MIGRATIONS)
        assert [j["name"] for j in again.list_jeos()] == ["deb12", HOST_JEOS]
        again.close()


def test_an_old_schema_is_migrated_forward(backend: Backend) -> None:
    old = backend.open(migrations=MIGRATIONS[:1])
    assert old.schema_version() == 1
    assert "events" not in old.tables()
    old.insert_assembly(assembly_doc("a1"))
    old.close()
    new = backend.open()
    assert new.schema_version() == len(MIGRATIONS)
    assert new.get_assembly("a1")["name"] == "a1"
    assert new.append_event(Event(1.0, "d", "started", "test")).id == 1
    new.close()


def test_a_newer_schema_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.raw("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        backend.open()


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


def test_a_snapshot_sees_one_state_and_refuses_writes(backend: Backend, store: Store) -> None:
    other = backend.open()
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


def test_sqlite_write_waits_for_another_writer_then_reports_busy(pcloud_home: Paths) -> None:
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


def test_a_renewal_joins_the_callers_transaction_and_rolls_back_with_it(store: Store) -> None:
    store.acquire_lease("d", "A", 11, ttl=5.0, now=100.0)
    with pytest.raises(RuntimeError, match="changed my mind"), store.transaction(None):
        assert store.renew_lease("d", "A", 1, ttl=5.0, now=103.0)
        raise RuntimeError("changed my mind")
    assert store.get_lease("d")["expires_at"] == 105.0  # type: ignore[index]
    with pytest.raises(RuntimeError, match="read snapshot"), store.snapshot():
        store.renew_lease("d", "A", 1, ttl=5.0, now=103.0)


def test_sqlite_a_renewal_is_one_statement_that_waits_for_another_writer(
    pcloud_home: Paths,
) -> None:
    """Every DPE renews every second: no BEGIN and COMMIT around the UPDATE,
    yet the write lock is taken and waited for as by any write."""
    holder = Store.open(pcloud_home.store_file)
    other = Store.open(pcloud_home.store_file, busy_timeout=0.05)
    try:
        epoch = other.acquire_lease("d", "m1:7", 7, ttl=30.0) or 0
        statements: list[str] = []
        other._conn().set_trace_callback(statements.append)  # type: ignore[attr-defined]
        assert other.renew_lease("d", "m1:7", epoch, ttl=30.0)
        assert [s.split()[0] for s in statements] == ["UPDATE"]
        with holder.transaction():
            holder.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
            with pytest.raises(StoreError, match="busy"):
                other.renew_lease("d", "m1:7", epoch, ttl=30.0)
        assert other.renew_lease("d", "m1:7", epoch, ttl=30.0)
        assert not other._conn().in_transaction  # type: ignore[attr-defined]
    finally:
        holder.close()
        other.close()


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


def test_events_written_by_another_process_are_visible(backend: Backend, store: Store) -> None:
    writer = backend.open()
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


# -- several writers at once (as several members and their DPEs are) -------------------------


def test_only_one_of_many_concurrent_takeovers_wins(backend: Backend, store: Store) -> None:
    store.acquire_lease("d", "old", 1, ttl=5.0, now=100.0)
    stores = [backend.open() for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    won: list[int | None] = [None] * len(stores)

    def take(i: int) -> None:
        barrier.wait()
        won[i] = stores[i].acquire_lease("d", f"m{i}:1", i, ttl=5.0, now=200.0)

    try:
        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for opened in stores:
            opened.close()
    assert sorted(w for w in won if w is not None) == [2], won
    lease = store.get_lease("d")
    assert lease is not None and lease["epoch"] == 2 and lease["holder"] != "old"


def test_events_appended_concurrently_are_read_in_order_without_a_gap(
    backend: Backend, store: Store
) -> None:
    writers, per_writer = 4, 40
    written: list[int] = []
    done = threading.Event()

    def write(i: int) -> None:
        opened = backend.open()
        try:
            for n in range(per_writer):
                event = opened.append_event(Event(float(n), f"d{i}", "running", f"{i}/{n}"))
                written.append(event.id or 0)
        finally:
            opened.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    while not done.is_set():  # a follower reading "after the last id seen" as streams do
        done.set() if not any(t.is_alive() for t in threads) else None
        after = seen[-1] if seen else 0
        seen += [e.id or 0 for e in store.query_events(after_id=after, limit=1000)]
    for thread in threads:
        thread.join()
    seen += [e.id or 0 for e in store.query_events(after_id=seen[-1] if seen else 0, limit=1000)]
    assert len(written) == writers * per_writer
    assert seen == sorted(written), "the follower skipped or repeated an event"


# -- a DPE's writes are fenced by its lease epoch -----------------------------------------------


def test_writes_under_a_held_lease_land(store: Store) -> None:
    epoch = store.acquire_lease("d", "m1:7", 7, ttl=30.0)
    assert epoch == 1
    fence = Fence("m1:7", epoch)
    store.put_runtime("d", "instance", "a1", {"id": "i-1"}, fence=fence)
    event = store.append_event(Event(1.0, "d", "running", "up"), fence=fence)
    store.delete_runtime("d", "instance", "a1", fence=fence)
    assert store.get_runtime("d") == {}
    assert store.query_events() == [event]


def test_writes_of_a_former_holder_are_refused_and_change_nothing(store: Store) -> None:
    old = Fence("m1:7", store.acquire_lease("d", "m1:7", 7, ttl=30.0) or 0)
    store.put_runtime("d", "instance", "a1", {"id": "i-1"}, fence=old)
    store.release_lease("d", old.holder, old.epoch)
    new = Fence("m2:9", store.acquire_lease("d", "m2:9", 9, ttl=30.0) or 0)
    assert new.epoch == old.epoch + 1
    with pytest.raises(LeaseLost):
        store.put_runtime("d", "instance", "a1", {"id": "stale"}, fence=old)
    with pytest.raises(LeaseLost):
        store.delete_runtime("d", fence=old)
    with pytest.raises(LeaseLost):
        store.append_event(Event(1.0, "d", "failed", "stale"), fence=old)
    assert store.get_runtime("d") == {"instance": {"a1": {"id": "i-1"}}}
    assert store.query_events() == []
    store.put_runtime("d", "instance", "a1", {"id": "i-2"}, fence=new)
    assert store.get_runtime("d")["instance"]["a1"] == {"id": "i-2"}


def test_an_expired_lease_fences_its_holder_even_before_a_takeover(store: Store) -> None:
    now = store.now()
    epoch = store.acquire_lease("d", "m1:7", 7, ttl=0.5, now=now - 10.0)  # long expired
    with pytest.raises(LeaseLost):
        store.put_runtime("d", "resource", "a1/r", {}, fence=Fence("m1:7", epoch or 0))


def test_leases_are_judged_by_the_store_clock(store: Store) -> None:
    before = store.now()
    store.acquire_lease("d", "m1:7", 7, ttl=5.0)
    lease = store.get_lease("d")
    assert lease is not None
    assert before <= lease["renewed_at"] <= store.now()
    assert lease["expires_at"] == pytest.approx(lease["renewed_at"] + 5.0)


# -- PostgreSQL's own behaviour ------------------------------------------------------------------


def test_postgres_catalog_writes_wait_for_each_other_but_not_dpe_writes(pg_url: str) -> None:
    holder = Store.open_url(pg_url)
    other = Store.open_url(pg_url, busy_timeout=0.3)
    try:
        epoch = other.acquire_lease("d", "m1:7", 7, ttl=30.0) or 0
        with holder.transaction():
            holder.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
            with pytest.raises(StoreError, match="busy"):
                other.insert_template("t1", {"class": "ocf"})
            other.put_runtime("d", "instance", "a", {"ok": True}, fence=Fence("m1:7", epoch))
            assert other.renew_lease("d", "m1:7", epoch, ttl=30.0)
            other.append_event(Event(1.0, "d", "running", "meanwhile"))
        other.insert_template("t1", {"class": "ocf"})
        assert [t["name"] for t in holder.list_templates()] == ["t1"]
    finally:
        holder.close()
        other.close()


def test_postgres_a_lost_connection_fails_one_call_and_is_replaced(pg_url: str) -> None:
    store = Store.open_url(pg_url)
    try:
        store.insert_jeos({"name": "j1", "kind": "image", "path": "/x"})
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError, match=r"unreachable|lost"):
            store.list_jeos()
        assert [j["name"] for j in store.list_jeos()] == [HOST_JEOS, "j1"]
    finally:
        store.close()


def test_postgres_url_with_a_password_is_refused_and_never_shown(pg_url: str) -> None:
    from foundation.store_pg import check_url, redacted

    secret = pg_url.replace("pcloud@", "pcloud:s3cret@")
    with pytest.raises(InvalidInput, match="passfile") as refused:
        check_url(secret)
    assert "s3cret" not in str(refused.value)
    assert "s3cret" not in redacted(secret)
    with pytest.raises(InvalidInput, match="postgresql://"):
        check_url("mysql://x/y")


def test_the_store_file_is_its_owners_only_even_when_it_was_not(tmp_path: Path) -> None:
    made = tmp_path / "new.sqlite"
    Store.open(made).close()
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    older = tmp_path / "older.sqlite"
    Store.open(older).close()
    older.chmod(0o644)  # as an older version left it
    Store.open(older).close()
    assert stat.S_IMODE(older.stat().st_mode) == 0o600


def test_sqlite_opened_twice_in_a_process_still_sees_other_processes_writes(
    tmp_path: Path,
) -> None:
    """Closing any descriptor of a file drops the process's POSIX locks on it, SQLite's
    included.  Were the store file opened and closed to set its mode while a connection
    is open, another process closing its own last would believe itself the last one,
    delete the WAL under this one, and leave it reading a frozen copy for ever."""
    path = tmp_path / "store.sqlite"
    first = Store.open(path)
    second = Store.open(path)  # cped opens the store more than once
    writer = (
        "import sys; from pathlib import Path; from foundation.store import Store\n"
        "s = Store.open(Path(sys.argv[1])); s.acquire_lease('shop', 'other:1', 1, 30.0)\n"
        "s.close()\n"
    )
    try:
        subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=30)
        assert Path(f"{path}-wal").exists()  # the first connection still counts
        for store in (first, second):
            lease = store.get_lease("shop")
            assert lease is not None and lease["holder"] == "other:1"
    finally:
        first.close()
        second.close()
