"""The store: catalog, runtime state, leases and the event log in one SQLite file.

cped owns it and serves it through the API; dped processes open the same file
to write runtime state, renew their lease and append events.

Why plain ``sqlite3`` with a thin layer, not SQLAlchemy Core: the schema is a
handful of tables holding JSON documents; transactions must start with
``BEGIN IMMEDIATE`` (so two processes never deadlock upgrading a read lock), which
``sqlite3`` states directly and SQLAlchemy's pysqlite dialect only through event
hooks; and it adds no dependency or import cost to dped.  All SQL lives in this
module (hence its size) and stays portable (``INSERT ... ON CONFLICT``, savepoints, no SQLite
functions), so the PostgreSQL step for scale-out replaces the connection factory,
the ``?`` paramstyle and the two ``AUTOINCREMENT`` / ``PRAGMA`` lines, not the
callers.

Durability: WAL with ``synchronous=NORMAL``.  A commit is appended to the WAL
before ``COMMIT`` returns, so once a request is acknowledged, a crash or
``kill -9`` of any process loses nothing; only a power loss or kernel crash can
drop the last commits (which ``FULL`` would protect at an fsync per commit).

Concurrency: every write is one ``BEGIN IMMEDIATE`` transaction; a second
process waits up to ``busy_timeout`` for the write lock.  A ``Store`` object may
be shared by threads (calls are serialised by a lock), but each process opens
its own.
"""

from __future__ import annotations

import json
import platform
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foundation.errors import Conflict, NotFound, StoreError
from foundation.events import Event
from foundation.model import Deployable, parse
from foundation.paths import STORE_MODE, private_file

DEFAULT_BUSY_TIMEOUT = 10.0
HOST_JEOS = "host"  # the built-in JEOS: assemblies that run on this machine (local driver)
DESIRED_STATES = ("stopped", "started")
LEASE_KEYS = ("holder", "pid", "epoch", "expires_at", "renewed_at")

Migration = Callable[[sqlite3.Connection], None]


# ---------------------------------------------------------------------------
# schema


def _catalog_tables(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE jeos (name TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    db.execute("CREATE TABLE templates (name TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE deployables (name TEXT PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
        " doc TEXT NOT NULL, desired_state TEXT NOT NULL DEFAULT 'stopped')"
    )
    db.execute(
        "CREATE TABLE assemblies (name TEXT PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
        " image TEXT NOT NULL REFERENCES jeos(name),"
        " deployable TEXT REFERENCES deployables(name), doc TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX assemblies_deployable ON assemblies(deployable)")
    db.execute("CREATE INDEX assemblies_image ON assemblies(image)")
    db.execute("INSERT INTO jeos (name, doc) VALUES (?, ?)", (HOST_JEOS, _dump(_host_jeos())))


def _engine_tables(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE runtime (deployable TEXT NOT NULL, kind TEXT NOT NULL,"
        " key TEXT NOT NULL, doc TEXT NOT NULL, updated REAL NOT NULL,"
        " PRIMARY KEY (deployable, kind, key))"
    )
    db.execute(
        "CREATE TABLE leases (deployable TEXT PRIMARY KEY, holder TEXT, pid INTEGER,"
        " epoch INTEGER NOT NULL, expires_at REAL NOT NULL, renewed_at REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,"
        " deployable TEXT NOT NULL, assembly TEXT, resource TEXT,"
        " state TEXT NOT NULL, reason TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX events_subject ON events(deployable, assembly, resource, id)")
    db.execute("CREATE INDEX events_time ON events(time)")


# Append only: version N is reached by applying MIGRATIONS[:N] in order.
MIGRATIONS: tuple[Migration, ...] = (_catalog_tables, _engine_tables)


def _host_jeos() -> dict[str, Any]:
    return {
        "name": HOST_JEOS,
        "kind": "host",
        "path": None,
        "arch": platform.machine(),
        "release": "",
        "size": None,
        "checksum": None,
        "created": 0,
    }


# ---------------------------------------------------------------------------
# the store


class Store:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting: 0 = none, 1 = BEGIN, >1 = savepoints
        self._reading = False  # inside snapshot(): writes are a programming error

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Store:
        """Open (creating and migrating the schema as needed)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            private_file(path, STORE_MODE)  # SQLite gives its -wal and -shm files the same mode
            connection = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the store {path}: {error}") from error
        store = cls(connection, path)
        try:
            store._configure(busy_timeout)
            store._migrate(migrations)
        except BaseException:
            connection.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _configure(self, busy_timeout: float) -> None:
        with _translated(self.path):
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"the store {self.path} cannot use WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self.schema_version()
            if current > len(migrations):
                raise StoreError(
                    f"the store {self.path} has schema version {current}, newer than this"
                    f" program knows ({len(migrations)}): upgrade pacemaker-cloud"
                )
            for migration in migrations[current:]:
                migration(self._db)
            self._db.execute("DELETE FROM schema_version")
            self._db.execute("INSERT INTO schema_version VALUES (?)", (len(migrations),))

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    # -- transactions ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested use joins it (as a savepoint)."""
        if self._reading:
            raise RuntimeError("a store write inside a read snapshot")
        with self._lock, _translated(self.path):
            self._depth += 1
            savepoint = f"sp{self._depth}"
            try:
                self._db.execute(
                    "BEGIN IMMEDIATE" if self._depth == 1 else f"SAVEPOINT {savepoint}"
                )
                try:
                    yield
                    self._db.execute("COMMIT" if self._depth == 1 else f"RELEASE {savepoint}")
                except BaseException:
                    self._rollback(savepoint)
                    raise
            finally:
                self._depth -= 1

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read of several statements (joins an open transaction)."""
        with self._lock, _translated(self.path):
            if self._depth:
                yield
                return
            self._depth, self._reading = 1, True
            try:
                self._db.execute("BEGIN")
                try:
                    yield
                finally:
                    self._db.execute("ROLLBACK")
            finally:
                self._depth, self._reading = 0, False

    def _rollback(self, savepoint: str) -> None:
        if self._depth == 1:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        else:
            self._db.execute(f"ROLLBACK TO {savepoint}")
            self._db.execute(f"RELEASE {savepoint}")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock, _translated(self.path):
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock, _translated(self.path):
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement in a transaction; returns the number of rows changed."""
        with self.transaction():
            return int(self._db.execute(sql, args).rowcount)

    # -- JEOS images ----------------------------------------------------------

    def list_jeos(self) -> list[dict[str, Any]]:
        return [_load(row[0]) for row in self._all("SELECT doc FROM jeos ORDER BY name")]

    def get_jeos(self, name: str) -> dict[str, Any]:
        row = self._one("SELECT doc FROM jeos WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no such JEOS image: {name!r}", jeos=name)
        return _load(row[0])

    def insert_jeos(self, doc: dict[str, Any]) -> None:
        with self.transaction():
            if self._one("SELECT 1 FROM jeos WHERE name = ?", (doc["name"],)):
                raise Conflict(f"JEOS image {doc['name']!r} already exists", jeos=doc["name"])
            self._db.execute(
                "INSERT INTO jeos (name, doc) VALUES (?, ?)", (doc["name"], _dump(doc))
            )

    def delete_jeos(self, name: str) -> None:
        if not self._write("DELETE FROM jeos WHERE name = ?", (name,)):
            raise NotFound(f"no such JEOS image: {name!r}", jeos=name)

    def assemblies_using_image(self, image: str) -> list[str]:
        rows = self._all("SELECT name FROM assemblies WHERE image = ? ORDER BY name", (image,))
        return [row[0] for row in rows]

    # -- assemblies -----------------------------------------------------------

    def list_assemblies(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every assembly document with the deployable it belongs to (or None)."""
        rows = self._all("SELECT doc, deployable FROM assemblies ORDER BY name")
        return [(_load(doc), owner) for doc, owner in rows]

    def get_assembly(self, name: str) -> dict[str, Any]:
        return self._assembly_row(name)[0]

    def assembly_owner(self, name: str) -> str | None:
        return self._assembly_row(name)[1]

    def _assembly_row(self, name: str) -> tuple[dict[str, Any], str | None]:
        row = self._one("SELECT doc, deployable FROM assemblies WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no such assembly: {name!r}", assembly=name)
        return _load(row[0]), row[1]

    def assembly_with_uuid(self, uuid: str) -> str | None:
        row = self._one("SELECT name FROM assemblies WHERE uuid = ?", (uuid,))
        return row[0] if row else None

    def insert_assembly(self, doc: dict[str, Any], deployable: str | None = None) -> None:
        with self.transaction():
            if self._one("SELECT 1 FROM assemblies WHERE name = ?", (doc["name"],)):
                raise Conflict(f"assembly {doc['name']!r} already exists", assembly=doc["name"])
            self._db.execute(
                "INSERT INTO assemblies (name, uuid, image, deployable, doc) VALUES (?, ?, ?, ?, ?)",
                (doc["name"], doc["uuid"], doc["image"], deployable, _dump(doc)),
            )

    def update_assembly(self, doc: dict[str, Any]) -> None:
        changed = self._write(
            "UPDATE assemblies SET uuid = ?, image = ?, doc = ? WHERE name = ?",
            (doc["uuid"], doc["image"], _dump(doc), doc["name"]),
        )
        if not changed:
            raise NotFound(f"no such assembly: {doc['name']!r}", assembly=doc["name"])

    def set_assembly_owner(self, name: str, deployable: str | None) -> None:
        sql = "UPDATE assemblies SET deployable = ? WHERE name = ?"
        if not self._write(sql, (deployable, name)):
            raise NotFound(f"no such assembly: {name!r}", assembly=name)

    def delete_assembly(self, name: str) -> None:
        if not self._write("DELETE FROM assemblies WHERE name = ?", (name,)):
            raise NotFound(f"no such assembly: {name!r}", assembly=name)

    # -- user resource templates ---------------------------------------------

    def list_templates(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT name, doc FROM templates ORDER BY name")
        return [{"name": name, **_load(doc)} for name, doc in rows]

    def get_template(self, name: str) -> dict[str, Any]:
        row = self._one("SELECT doc FROM templates WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no such resource template: {name!r}", template=name)
        return {"name": name, **_load(row[0])}

    def insert_template(self, name: str, doc: dict[str, Any]) -> None:
        with self.transaction():
            if self._one("SELECT 1 FROM templates WHERE name = ?", (name,)):
                raise Conflict(f"resource template {name!r} already exists", template=name)
            self._db.execute("INSERT INTO templates (name, doc) VALUES (?, ?)", (name, _dump(doc)))

    def delete_template(self, name: str) -> None:
        if not self._write("DELETE FROM templates WHERE name = ?", (name,)):
            raise NotFound(f"no such resource template: {name!r}", template=name)

    # -- deployables ----------------------------------------------------------
    # The row holds the deployable-level document: name, uuid, infrastructure,
    # settings, heartbeat, escalation, the assembly names in order and the
    # constraints; the assemblies themselves are rows of their own.

    def list_deployables(self) -> list[tuple[dict[str, Any], str]]:
        """(deployable-level document, desired state) for every deployable."""
        rows = self._all("SELECT doc, desired_state FROM deployables ORDER BY name")
        return [(_load(doc), state) for doc, state in rows]

    def get_deployable(self, name: str) -> dict[str, Any]:
        """The deployable-level document (assembly names, not documents)."""
        row = self._one("SELECT doc FROM deployables WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no such deployable: {name!r}", deployable=name)
        return _load(row[0])

    def deployable_with_uuid(self, uuid: str) -> str | None:
        row = self._one("SELECT name FROM deployables WHERE uuid = ?", (uuid,))
        return row[0] if row else None

    def insert_deployable(self, doc: dict[str, Any]) -> None:
        with self.transaction():
            if self._one("SELECT 1 FROM deployables WHERE name = ?", (doc["name"],)):
                raise Conflict(f"deployable {doc['name']!r} already exists", deployable=doc["name"])
            self._db.execute(
                "INSERT INTO deployables (name, uuid, doc) VALUES (?, ?, ?)",
                (doc["name"], doc["uuid"], _dump(doc)),
            )

    def update_deployable(self, doc: dict[str, Any]) -> None:
        sql = "UPDATE deployables SET uuid = ?, doc = ? WHERE name = ?"
        if not self._write(sql, (doc["uuid"], _dump(doc), doc["name"])):
            raise NotFound(f"no such deployable: {doc['name']!r}", deployable=doc["name"])

    def delete_deployable(self, name: str) -> None:
        """Delete it with its runtime state and lease; its assemblies become free."""
        with self.transaction():
            self._db.execute(
                "UPDATE assemblies SET deployable = NULL WHERE deployable = ?", (name,)
            )
            self._db.execute("DELETE FROM runtime WHERE deployable = ?", (name,))
            self._db.execute("DELETE FROM leases WHERE deployable = ?", (name,))
            if not self._db.execute("DELETE FROM deployables WHERE name = ?", (name,)).rowcount:
                raise NotFound(f"no such deployable: {name!r}", deployable=name)

    def desired_states(self) -> dict[str, str]:
        """name -> desired state of every deployable (no documents read)."""
        return dict(self._all("SELECT name, desired_state FROM deployables ORDER BY name"))

    def get_desired_state(self, name: str) -> str:
        row = self._one("SELECT desired_state FROM deployables WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no such deployable: {name!r}", deployable=name)
        return str(row[0])

    def set_desired_state(self, name: str, state: str) -> None:
        if state not in DESIRED_STATES:
            raise ValueError(f"not a desired state: {state!r}")
        sql = "UPDATE deployables SET desired_state = ? WHERE name = ?"
        if not self._write(sql, (state, name)):
            raise NotFound(f"no such deployable: {name!r}", deployable=name)

    def document_dict(self, name: str) -> dict[str, Any]:
        """The whole document as stored, assemblies expanded (not validated)."""
        with self.snapshot():
            doc = self.get_deployable(name)
            assemblies = [self.get_assembly(a) for a in doc.get("assemblies", [])]
        return {**doc, "assemblies": assemblies}

    def get_document(self, name: str) -> Deployable:
        """The full validated document (what a DPE runs)."""
        return parse(self.document_dict(name))

    # -- runtime state (written by DPEs) -------------------------------------

    def put_runtime(self, deployable: str, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO runtime (deployable, kind, key, doc, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (deployable, kind, key) DO UPDATE"
            " SET doc = excluded.doc, updated = excluded.updated",
            (deployable, kind, key, _dump(doc), time.time()),
        )

    def delete_runtime(
        self, deployable: str, kind: str | None = None, key: str | None = None
    ) -> None:
        """Delete one entry, one kind, or all of a deployable's runtime state."""
        if key is not None and kind is None:
            raise ValueError("a runtime key needs its kind")
        sql, args = "DELETE FROM runtime WHERE deployable = ?", [deployable]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if key is not None:
            sql, args = sql + " AND key = ?", [*args, key]
        self._write(sql, args)

    def get_runtime(
        self, deployable: str, kind: str | None = None
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """kind -> key -> document (of one ``kind`` only, if given)."""
        sql, args = "SELECT kind, key, doc FROM runtime WHERE deployable = ?", [deployable]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        rows = self._all(sql + " ORDER BY kind, key", args)
        state: dict[str, dict[str, dict[str, Any]]] = {}
        for kind, key, doc in rows:
            state.setdefault(kind, {})[key] = _load(doc)
        return state

    # -- events -----------------------------------------------------------------

    def append_event(self, event: Event) -> Event:
        """Store an event; once this returns it is acknowledged (committed)."""
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO events (time, deployable, assembly, resource, state, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.time,
                    event.deployable,
                    event.assembly,
                    event.resource,
                    event.state,
                    event.reason,
                ),
            )
            event_id = cursor.lastrowid
        return Event(
            event.time,
            event.deployable,
            event.state,
            event.reason,
            event.assembly,
            event.resource,
            event_id,
        )

    def query_events(
        self,
        *,
        deployable: str | None = None,
        assembly: str | None = None,
        resource: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events matching every filter given, at most ``limit``.

        Oldest first by default: page forward with ``after_id`` = the last id
        seen.  ``newest_first`` gives the latest ones; page backward with
        ``before_id`` = the last (smallest) id seen.  ``since``/``until`` bound
        the time (inclusive).
        """
        filters = {
            "deployable = ?": deployable,
            "assembly = ?": assembly,
            "resource = ?": resource,
            "time >= ?": since,
            "time <= ?": until,
            "id > ?": after_id,
            "id < ?": before_id,
        }
        used = {clause: value for clause, value in filters.items() if value is not None}
        where = " AND ".join(used) or "1 = 1"
        order = "DESC" if newest_first else "ASC"
        rows = self._all(
            "SELECT id, time, deployable, assembly, resource, state, reason FROM events"
            f" WHERE {where} ORDER BY id {order} LIMIT ?",
            [*used.values(), max(0, limit)],
        )
        return [Event(r[1], r[2], r[5], r[6], r[3], r[4], r[0]) for r in rows]

    def last_event_id(self) -> int:
        row = self._one("SELECT max(id) FROM events")
        return int(row[0]) if row and row[0] is not None else 0

    def prune_events(self, older_than: float, batch: int = 5_000) -> int:
        """Delete the events from before ``older_than``; how many went.

        In batches, each its own transaction, so writers (DPEs appending
        events, renewing leases) wait for one batch at most.  Ids are never
        reused (AUTOINCREMENT): ``after_id`` cursors stay valid.
        """
        deleted = 0
        while True:
            with self.transaction():
                cursor = self._db.execute(
                    "DELETE FROM events WHERE id IN"
                    " (SELECT id FROM events WHERE time < ? ORDER BY id LIMIT ?)",
                    (older_than, batch),
                )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted

    # -- the DPE lease (one row per deployable) --------------------------------
    # The epoch grows on every takeover and survives release, so a DPE that lost
    # its lease can never renew it by accident (holder and epoch must both match).

    def acquire_lease(
        self, deployable: str, holder: str, pid: int, ttl: float, now: float
    ) -> int | None:
        """The lease's epoch if it was free, expired or already ours; else None."""
        with self.transaction():
            row = self._one(
                "SELECT holder, epoch, expires_at FROM leases WHERE deployable = ?", (deployable,)
            )
            if row is None:
                self._db.execute(
                    "INSERT INTO leases (deployable, holder, pid, epoch, expires_at, renewed_at)"
                    " VALUES (?, ?, ?, 1, ?, ?)",
                    (deployable, holder, pid, now + ttl, now),
                )
                return 1
            current_holder, epoch, expires_at = row
            if current_holder == holder:
                new_epoch = int(epoch)
            elif current_holder is None or expires_at <= now:
                new_epoch = int(epoch) + 1
            else:
                return None
            self._db.execute(
                "UPDATE leases SET holder = ?, pid = ?, epoch = ?, expires_at = ?, renewed_at = ?"
                " WHERE deployable = ?",
                (holder, pid, new_epoch, now + ttl, now, deployable),
            )
            return new_epoch

    def renew_lease(self, deployable: str, holder: str, epoch: int, ttl: float, now: float) -> bool:
        """Extend our lease; False if it expired or was taken over (then stop acting)."""
        changed = self._write(
            "UPDATE leases SET expires_at = ?, renewed_at = ?"
            " WHERE deployable = ? AND holder = ? AND epoch = ? AND expires_at > ?",
            (now + ttl, now, deployable, holder, epoch, now),
        )
        return changed == 1

    def release_lease(self, deployable: str, holder: str, epoch: int) -> None:
        """Give the lease up (if still ours); the epoch is kept."""
        self._write(
            "UPDATE leases SET holder = NULL, pid = NULL, expires_at = 0"
            " WHERE deployable = ? AND holder = ? AND epoch = ?",
            (deployable, holder, epoch),
        )

    def list_leases(self) -> dict[str, dict[str, Any]]:
        """deployable -> its lease (as ``get_lease``), for every lease ever held."""
        rows = self._all(
            "SELECT deployable, holder, pid, epoch, expires_at, renewed_at FROM leases"
        )
        return {row[0]: dict(zip(LEASE_KEYS, row[1:], strict=True)) for row in rows}

    def get_lease(self, deployable: str) -> dict[str, Any] | None:
        """{holder, pid, epoch, expires_at, renewed_at}; None if never held.

        After a release, holder and pid are None and expires_at is 0.
        """
        row = self._one(
            "SELECT holder, pid, epoch, expires_at, renewed_at FROM leases WHERE deployable = ?",
            (deployable,),
        )
        if row is None:
            return None
        return dict(zip(LEASE_KEYS, row, strict=True))


# ---------------------------------------------------------------------------
# helpers


@contextmanager
def _translated(path: Path) -> Iterator[None]:
    """sqlite3 errors become StoreError (or Conflict for a constraint violation)."""
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise Conflict(f"the change conflicts with stored data: {error}") from error
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise StoreError(
                f"the store {path} is busy (locked by another process for too long)"
            ) from error
        raise StoreError(f"store error on {path}: {error}") from error
    except sqlite3.Error as error:
        raise StoreError(f"store error on {path}: {error}") from error


def _dump(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _load(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise StoreError(f"a stored document is not a JSON object: {text[:60]!r}")
    return doc
