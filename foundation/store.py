"""The store: catalog, runtime state, leases, members and the event log.

cped owns it and serves it through the API; dped processes open the same
store to write runtime state, renew their lease and append events.  It lives
in one SQLite file (the embedded default) or in a PostgreSQL database shared
by several cped members (``store = postgresql://...`` in ``[cped]``).

Why plain DB-API with a thin dialect layer (``foundation.store_dialect``), not
SQLAlchemy Core: the schema is a handful of tables holding JSON documents and
every statement is short and already portable (``INSERT ... ON CONFLICT``,
``RETURNING``, savepoints), so what differs between the two databases is not
the SQL but the behaviour around it -- how a write transaction excludes other
writers (SQLite's ``BEGIN IMMEDIATE``; an advisory lock on PostgreSQL), whose
clock judges a lease, how event ids become visible in order, how a lost
connection is noticed.  A dialect of a dozen small methods says exactly that;
SQLAlchemy would add a dependency and its import cost to every dped, and
still need those hooks (its pysqlite dialect reaches ``BEGIN IMMEDIATE`` only
through event listeners).  All SQL lives in this module (hence its size),
written once; the schema and its migrations are the same for both databases.

Durability: SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit is in
the WAL before ``COMMIT`` returns, so once a request is acknowledged a crash or
``kill -9`` of any process loses nothing (only a power loss can drop the last
commits).  PostgreSQL commits are durable as its server is configured.

Concurrency: a write is one transaction.  Catalog writes exclude each other
(SQLite: every writer does; PostgreSQL: ``WriteLock.CATALOG``).  Leases are
compare-and-set on their epoch; a DPE's writes (runtime, events) name its
lease (``Fence``) and are refused with ``LeaseLost`` once the epoch moved on,
while holding the lease row so no takeover commits in between.  A ``Store``
may be shared by threads (calls are serialised by a lock); each process opens
its own.
"""

from __future__ import annotations

import contextlib
import json
import platform
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import Conflict, LeaseLost, NotFound, StoreError
from foundation.events import Event
from foundation.model import Deployable, parse
from foundation.store_dialect import (
    DEFAULT_BUSY_TIMEOUT,
    Connection,
    Cursor,
    Dialect,
    SqliteDialect,
    WriteLock,
)
from foundation.wakeup import DESIRED, EVENT, LEASE

HOST_JEOS = "host"  # the built-in JEOS: assemblies that run on this machine (local driver)
DESIRED_STATES = ("stopped", "started")
__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "HOST_JEOS",
    "MIGRATIONS",
    "Fence",
    "Store",
    "WriteLock",
    "open_store",
]
LEASE_KEYS = ("holder", "pid", "epoch", "expires_at", "renewed_at")


class Schema:
    """What a migration writes with: statements in the store's one spelling."""

    def __init__(self, dialect: Dialect, db: Connection) -> None:
        self.dialect = dialect
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        schema = sql.lstrip().upper().startswith(("CREATE", "ALTER"))
        text = self.dialect.ddl(sql) if schema else self.dialect.sql(sql)
        return self._db.execute(text, args)


Migration = Callable[[Schema], None]


@dataclass(frozen=True)
class Fence:
    """The lease a DPE writes under: its writes land only while it is the holder."""

    holder: str
    epoch: int


# ---------------------------------------------------------------------------
# schema


def _catalog_tables(db: Schema) -> None:
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


def _engine_tables(db: Schema) -> None:
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


def _cluster_tables(db: Schema) -> None:
    """Members, the assemblies' keys every member may need, requests between members."""
    db.execute(
        "CREATE TABLE members (name TEXT PRIMARY KEY, url TEXT, host TEXT NOT NULL,"
        " pid INTEGER NOT NULL, started REAL NOT NULL, heartbeat REAL NOT NULL,"
        " state TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE assembly_keys (assembly TEXT PRIMARY KEY, public_key TEXT NOT NULL,"
        " host_public_key TEXT NOT NULL, private_key TEXT NOT NULL,"
        " host_private_key TEXT NOT NULL, updated REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE requests (deployable TEXT NOT NULL, kind TEXT NOT NULL,"
        " seq INTEGER NOT NULL, PRIMARY KEY (deployable, kind))"
    )


# What an export holds: table -> columns, parents before children (foundation.store_transfer).
EXPORTED: dict[str, tuple[str, ...]] = {
    "jeos": ("name", "doc"),
    "templates": ("name", "doc"),
    "deployables": ("name", "uuid", "doc", "desired_state"),
    "assemblies": ("name", "uuid", "image", "deployable", "doc"),
    "runtime": ("deployable", "kind", "key", "doc", "updated"),
    "leases": ("deployable", "holder", "pid", "epoch", "expires_at", "renewed_at"),
    "events": ("id", "time", "deployable", "assembly", "resource", "state", "reason"),
    "assembly_keys": (
        "assembly",
        "public_key",
        "host_public_key",
        "private_key",
        "host_private_key",
        "updated",
    ),
}

# Append only: version N is reached by applying MIGRATIONS[:N] in order.
MIGRATIONS: tuple[Migration, ...] = (_catalog_tables, _engine_tables, _cluster_tables)
KEY_FIELDS = ("public_key", "host_public_key", "private_key", "host_private_key")
MEMBER_STATES = ("up", "left")


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
    def __init__(self, dialect: Dialect, connection: Connection) -> None:
        self.dialect = dialect
        self._db: Connection | None = connection
        self.path: Path | None = getattr(dialect, "path", None)  # the SQLite file, if one
        self.location = dialect.describe()  # where, for messages (never a password)
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting: 0 = none, 1 = BEGIN, >1 = savepoints
        self._held: set[WriteLock] = set()  # the write locks of the open transaction
        self._reading = False  # inside snapshot(): writes are a programming error
        self._begun = False  # a transaction is open on the connection

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] | None = None,
    ) -> Store:
        """Open the SQLite store at ``path`` (creating and migrating the schema as needed)."""
        return cls.with_dialect(SqliteDialect(path, busy_timeout), migrations)

    @classmethod
    def open_url(
        cls,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] | None = None,
        application: str = "pcloud",
    ) -> Store:
        """Open the PostgreSQL store at ``url`` (migrating the schema as needed)."""
        from foundation.store_pg import PostgresDialect  # psycopg only when asked for

        return cls.with_dialect(PostgresDialect(url, busy_timeout, application), migrations)

    @classmethod
    def with_dialect(cls, dialect: Dialect, migrations: Sequence[Migration] | None) -> Store:
        store = cls(dialect, dialect.connect())
        try:
            store._migrate(MIGRATIONS if migrations is None else migrations)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction():
            schema = Schema(self.dialect, self._conn())
            schema.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self.schema_version()
            if current > len(migrations):
                raise StoreError(
                    f"the store {self.location} has schema version {current}, newer than this"
                    f" program knows ({len(migrations)}): upgrade pacemaker-cloud"
                )
            for migration in migrations[current:]:
                migration(schema)
            self._exec("DELETE FROM schema_version")
            self._exec("INSERT INTO schema_version VALUES (?)", (len(migrations),))

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    def tables(self) -> set[str]:
        with self._lock, self._translated():
            return self.dialect.tables(self._conn())

    def now(self) -> float:
        """The store's clock (PostgreSQL's server, SQLite's host), seconds since the epoch."""
        with self._lock, self._translated():
            return self.dialect.now(self._conn())

    # -- connection and transactions -------------------------------------------

    def _conn(self) -> Connection:
        """The connection; a lost one is replaced, but never inside a transaction."""
        if self._db is not None and self.dialect.broken(self._db):
            if self._begun:
                raise StoreError(
                    f"lost the connection to the store {self.location} (the transaction is lost)"
                )
            self._drop()
        if self._db is None:
            self._db = self.dialect.connect()
        return self._db

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                db.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Database errors become StoreError (Conflict for a constraint violation)."""
        with self.dialect.translated():
            yield

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._conn().execute(self.dialect.sql(sql), args)

    def _statement(self, sql: str, args: Sequence[Any]) -> Cursor:
        """One write statement that guards itself, atomic on its own (the
        connection is in autocommit); inside a transaction it joins it."""
        if self._reading:
            raise RuntimeError("a store write inside a read snapshot")
        with self._lock, self._translated():
            return self._exec(sql, args)

    @contextmanager
    def transaction(self, lock: WriteLock | None = WriteLock.CATALOG) -> Iterator[None]:
        """One write transaction; nested use joins it (as a savepoint).

        ``lock``: which writers it excludes on PostgreSQL (SQLite excludes
        all); None for the statements that guard themselves (leases, a DPE's
        fenced writes).
        """
        if self._reading:
            raise RuntimeError("a store write inside a read snapshot")
        with self._lock, self._translated():
            self._depth += 1
            savepoint = f"sp{self._depth}"
            try:
                self._begin(savepoint, lock)
                try:
                    yield
                    self._exec("COMMIT" if self._depth == 1 else f"RELEASE {savepoint}")
                except BaseException:
                    self._rollback(savepoint)
                    raise
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._held.clear()
                    self._begun = False

    def _begin(self, savepoint: str, lock: WriteLock | None) -> None:
        db = self._conn()
        if self._depth == 1:
            self._begun = True
            try:
                self.dialect.begin(db, lock)
            except BaseException:
                self._rollback(savepoint)
                raise
            self._held = {lock} if lock is not None else set()
            return
        self._take(lock)
        self._exec(f"SAVEPOINT {savepoint}")

    def _take(self, lock: WriteLock | None) -> None:
        """Inside a transaction: also exclude ``lock``'s writers (once)."""
        if lock is not None and lock not in self._held:
            self.dialect.lock(self._conn(), lock)
            self._held.add(lock)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read of several statements (joins an open transaction)."""
        with self._lock, self._translated():
            if self._depth:
                yield
                return
            db = self._conn()
            self._depth, self._reading, self._begun = 1, True, True
            try:
                self.dialect.begin_read(db)
                try:
                    yield
                finally:
                    self._end_read(db)
            finally:
                self._depth, self._reading, self._begun = 0, False, False

    def _end_read(self, db: Connection) -> None:
        if self.dialect.broken(db):
            self._drop()
        elif self.dialect.in_transaction(db):
            db.execute("ROLLBACK", ())

    def _rollback(self, savepoint: str) -> None:
        db = self._db
        if db is None or self.dialect.broken(db):
            if self._depth == 1:
                self._drop()  # the server ended the transaction with the connection
            return
        if self._depth == 1:
            if self.dialect.in_transaction(db):
                db.execute("ROLLBACK", ())
        else:
            self._exec(f"ROLLBACK TO {savepoint}")
            self._exec(f"RELEASE {savepoint}")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock, self._translated():
            return self._exec(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._translated():
            return self._exec(sql, args).fetchall()

    def _write(
        self, sql: str, args: Sequence[Any] = (), lock: WriteLock | None = WriteLock.CATALOG
    ) -> int:
        """Run one statement in a transaction; returns the number of rows changed."""
        with self.transaction(lock):
            return int(self._exec(sql, args).rowcount)

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
            self._exec("INSERT INTO jeos (name, doc) VALUES (?, ?)", (doc["name"], _dump(doc)))

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
            self._exec(
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
        with self.transaction():
            if not self._exec("DELETE FROM assemblies WHERE name = ?", (name,)).rowcount:
                raise NotFound(f"no such assembly: {name!r}", assembly=name)
            self._exec("DELETE FROM assembly_keys WHERE assembly = ?", (name,))

    # -- assembly keys (shared by members; private keys sealed by foundation.keyshare)

    def put_assembly_keys(self, assembly: str, keys: dict[str, str]) -> None:
        values = [keys[field] for field in KEY_FIELDS]
        with self.transaction(None):
            now = self.dialect.now(self._conn())
            self._exec(
                f"INSERT INTO assembly_keys (assembly, {', '.join(KEY_FIELDS)}, updated)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (assembly) DO UPDATE SET"
                " public_key = excluded.public_key, host_public_key = excluded.host_public_key,"
                " private_key = excluded.private_key,"
                " host_private_key = excluded.host_private_key, updated = excluded.updated",
                (assembly, *values, now),
            )

    def get_assembly_keys(self, assembly: str) -> dict[str, str] | None:
        row = self._one(
            f"SELECT {', '.join(KEY_FIELDS)} FROM assembly_keys WHERE assembly = ?", (assembly,)
        )
        return dict(zip(KEY_FIELDS, row, strict=True)) if row else None

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
            self._exec("INSERT INTO templates (name, doc) VALUES (?, ?)", (name, _dump(doc)))

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
            self._exec(
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
            self._exec("UPDATE assemblies SET deployable = NULL WHERE deployable = ?", (name,))
            self._exec("DELETE FROM runtime WHERE deployable = ?", (name,))
            self._exec("DELETE FROM leases WHERE deployable = ?", (name,))
            self._exec("DELETE FROM requests WHERE deployable = ?", (name,))
            if not self._exec("DELETE FROM deployables WHERE name = ?", (name,)).rowcount:
                raise NotFound(f"no such deployable: {name!r}", deployable=name)
            self.dialect.wake(self._conn(), DESIRED, name)

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
        with self.transaction():
            if not self._exec(sql, (state, name)).rowcount:
                raise NotFound(f"no such deployable: {name!r}", deployable=name)
            self.dialect.wake(self._conn(), DESIRED, name)

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
    # A DPE passes its ``Fence``: the write lands only while its lease is the
    # deployable's; otherwise LeaseLost and nothing changes.  cped's own writes
    # (requested moves, clean-up) pass none.

    def put_runtime(
        self,
        deployable: str,
        kind: str,
        key: str,
        doc: dict[str, Any],
        fence: Fence | None = None,
    ) -> None:
        with self.transaction(None if fence else WriteLock.CATALOG):
            now = self._fenced(deployable, fence)
            self._exec(
                "INSERT INTO runtime (deployable, kind, key, doc, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (deployable, kind, key) DO UPDATE"
                " SET doc = excluded.doc, updated = excluded.updated",
                (deployable, kind, key, _dump(doc), now),
            )

    def delete_runtime(
        self,
        deployable: str,
        kind: str | None = None,
        key: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Delete one entry, one kind, or all of a deployable's runtime state."""
        if key is not None and kind is None:
            raise ValueError("a runtime key needs its kind")
        sql, args = "DELETE FROM runtime WHERE deployable = ?", [deployable]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if key is not None:
            sql, args = sql + " AND key = ?", [*args, key]
        with self.transaction(None if fence else WriteLock.CATALOG):
            self._fenced(deployable, fence)
            self._exec(sql, args)

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

    def _fenced(self, deployable: str, fence: Fence | None) -> float:
        """Inside a write: the store's time, once ``fence`` (if any) is known to
        hold the lease now; the lease row is held until commit (no takeover
        commits in between)."""
        now = self.dialect.now(self._conn())
        if fence is None:
            return now
        row = self._one(
            self.dialect.for_share(
                "SELECT 1 FROM leases WHERE deployable = ? AND holder = ? AND epoch = ?"
                " AND expires_at > ?"
            ),
            (deployable, fence.holder, fence.epoch, now),
        )
        if row is None:
            raise LeaseLost(
                f"the lease of {deployable} (epoch {fence.epoch}) is no longer held by"
                f" {fence.holder}: write refused",
                deployable=deployable,
            )
        return now

    # -- events -----------------------------------------------------------------

    def append_event(self, event: Event, fence: Fence | None = None) -> Event:
        """Store an event; once this returns it is acknowledged (committed).

        Ids are given one transaction at a time and so become visible in
        order; listeners are told at commit (PostgreSQL's NOTIFY)."""
        with self.transaction(None):
            self._fenced(event.deployable, fence)
            self._take(WriteLock.EVENTS)
            row = self._exec(
                "INSERT INTO events (time, deployable, assembly, resource, state, reason)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    event.time,
                    event.deployable,
                    event.assembly,
                    event.resource,
                    event.state,
                    event.reason,
                ),
            ).fetchone()
            event_id = int(row[0])
            self.dialect.wake(self._conn(), EVENT, event.deployable)
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
        reused: ``after_id`` cursors stay valid.
        """
        deleted = 0
        while True:
            with self.transaction(None):
                count = self._exec(
                    "DELETE FROM events WHERE id IN"
                    " (SELECT id FROM events WHERE time < ? ORDER BY id LIMIT ?)",
                    (older_than, batch),
                ).rowcount
            deleted += count
            if count < batch:
                return deleted

    # -- members (cped processes sharing this store) -----------------------------
    # Heartbeats and ages are the store's clock: members never compare their own.

    def join_member(
        self,
        name: str,
        host: str,
        pid: int,
        url: str | None,
        ttl: float,
        gone: Callable[[str, int], bool] = lambda _host, _pid: False,
    ) -> None:
        """Register this cped as member ``name``; Conflict if a live other process has it
        (``gone(host, pid)``: that process is known to be dead, its name free at once)."""
        with self.transaction():
            now = self.dialect.now(self._conn())
            row = self._one(
                "SELECT host, pid, heartbeat, state FROM members WHERE name = ?", (name,)
            )
            live = bool(row) and row[3] == "up" and now - row[2] < ttl
            if live and (row[0], row[1]) != (host, pid) and not gone(row[0], row[1]):
                raise Conflict(
                    f"member name {name!r} is in use by pid {row[1]} on {row[0]} (heartbeat"
                    f" {now - row[2]:.1f} s ago): give this cped another [cped] member"
                )
            self._exec(
                "INSERT INTO members (name, url, host, pid, started, heartbeat, state)"
                " VALUES (?, ?, ?, ?, ?, ?, 'up') ON CONFLICT (name) DO UPDATE SET"
                " url = excluded.url, host = excluded.host, pid = excluded.pid,"
                " started = excluded.started, heartbeat = excluded.heartbeat, state = 'up'",
                (name, url, host, pid, now, now),
            )

    def heartbeat_member(self, name: str, host: str, pid: int) -> float:
        """Renew this member's heartbeat; the store's time.  Conflict if the name was
        taken over (another cped with the same name while this one was silent)."""
        with self.transaction(None):
            now = self.dialect.now(self._conn())
            changed = self._exec(
                "UPDATE members SET heartbeat = ? WHERE name = ? AND host = ? AND pid = ?",
                (now, name, host, pid),
            ).rowcount
        if not changed:
            raise Conflict(f"member {name!r} is now registered by another cped")
        return now

    def leave_member(self, name: str, host: str, pid: int) -> None:
        self._write(
            "UPDATE members SET state = 'left' WHERE name = ? AND host = ? AND pid = ?",
            (name, host, pid),
            lock=None,
        )

    def list_members(self) -> tuple[float, list[dict[str, Any]]]:
        """(the store's time, every member with its heartbeat's age), by name."""
        with self.snapshot():
            now = self.dialect.now(self._conn())
            rows = self._all(
                "SELECT name, url, host, pid, started, heartbeat, state FROM members ORDER BY name"
            )
        keys = ("name", "url", "host", "pid", "started", "heartbeat", "state")
        members = [dict(zip(keys, row, strict=True)) for row in rows]
        for member in members:
            member["age"] = max(0.0, now - float(member["heartbeat"]))
        return now, members

    # -- requests to whichever member runs a deployable -----------------------------

    def add_request(self, deployable: str, kind: str) -> int:
        """Count one more ``kind`` request (start, reload, requests) for ``deployable``; its number."""
        with self.transaction(None):
            row = self._exec(
                "INSERT INTO requests (deployable, kind, seq) VALUES (?, ?, 1)"
                " ON CONFLICT (deployable, kind) DO UPDATE SET seq = requests.seq + 1"
                " RETURNING seq",
                (deployable, kind),
            ).fetchone()
        return int(row[0])

    def list_requests(self) -> dict[tuple[str, str], int]:
        rows = self._all("SELECT deployable, kind, seq FROM requests")
        return {(row[0], row[1]): int(row[2]) for row in rows}

    # -- whole tables (export and import) ----------------------------------------

    def dump_rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of an exported table, in key order (call inside ``snapshot``)."""
        columns = _exported(table)
        rows = self._all(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}")
        return [tuple(row) for row in rows]

    def load_row(self, table: str, values: Sequence[Any]) -> None:
        """Insert one exported row (the built-in JEOS is replaced, not duplicated),
        inside the caller's transaction (an import is one)."""
        if not self._depth:
            raise RuntimeError("load_row outside a transaction")
        columns = _exported(table)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        if table == "jeos":
            sql += " ON CONFLICT (name) DO UPDATE SET doc = excluded.doc"
        with self._translated():
            self._exec(sql, values)

    def count_rows(self, table: str) -> int:
        _exported(table)
        row = self._one(f"SELECT count(*) FROM {table}")
        return int(row[0])

    def event_id_high_water(self) -> int:
        """The largest event id ever given, pruned ones included."""
        with self._lock, self._translated():
            return max(self.dialect.event_id_high_water(self._conn()), self.last_event_id())

    def set_event_id_high_water(self, value: int) -> None:
        """The next event id is ``value + 1`` (after an import)."""
        with self.transaction(WriteLock.EVENTS):
            self.dialect.set_event_id_high_water(self._conn(), value)

    # -- the DPE lease (one row per deployable) --------------------------------
    # The epoch grows on every takeover and survives release, so a DPE that lost
    # its lease can never renew it by accident (holder and epoch must both match).
    # Each change is one guarded statement (compare-and-set), safe with several
    # members writing at once.  ``now`` None: the store's clock (production);
    # tests give their own.

    def acquire_lease(
        self, deployable: str, holder: str, pid: int, ttl: float, now: float | None = None
    ) -> int | None:
        """The lease's epoch if it was free, expired or already ours; else None."""
        with self.transaction(None):
            at = self.dialect.now(self._conn()) if now is None else now
            row = self._exec(
                "INSERT INTO leases (deployable, holder, pid, epoch, expires_at, renewed_at)"
                " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (deployable) DO NOTHING RETURNING epoch",
                (deployable, holder, pid, at + ttl, at),
            ).fetchone()
            if row is None:
                row = self._exec(
                    "UPDATE leases SET pid = ?, expires_at = ?, renewed_at = ?,"
                    " epoch = CASE WHEN holder = ? THEN epoch ELSE epoch + 1 END, holder = ?"
                    " WHERE deployable = ? AND (holder = ? OR holder IS NULL OR expires_at <= ?)"
                    " RETURNING epoch",
                    (pid, at + ttl, at, holder, holder, deployable, holder, at),
                ).fetchone()
            if row is not None:
                self.dialect.wake(self._conn(), LEASE, deployable)
        return int(row[0]) if row is not None else None

    def renew_lease(
        self, deployable: str, holder: str, epoch: int, ttl: float, now: float | None = None
    ) -> bool:
        """Extend our lease; False if it expired or was taken over (then stop acting).

        One statement, its own transaction: every DPE runs this every second,
        and without BEGIN and COMMIT around it an idle DPE's renewal costs half
        the CPU on SQLite (a statement that writes takes the write lock before
        it reads, as ``BEGIN IMMEDIATE``) and two round trips instead of four on
        PostgreSQL.  The clock is read first: the guard only needs a time no
        later than the write's.
        """
        at = self.now() if now is None else now
        changed = self._statement(
            "UPDATE leases SET expires_at = ?, renewed_at = ?"
            " WHERE deployable = ? AND holder = ? AND epoch = ? AND expires_at > ?",
            (at + ttl, at, deployable, holder, epoch, at),
        ).rowcount
        return changed == 1

    def release_lease(self, deployable: str, holder: str, epoch: int) -> None:
        """Give the lease up (if still ours); the epoch is kept."""
        with self.transaction(None):
            released = self._exec(
                "UPDATE leases SET holder = NULL, pid = NULL, expires_at = 0"
                " WHERE deployable = ? AND holder = ? AND epoch = ?",
                (deployable, holder, epoch),
            ).rowcount
            if released:
                self.dialect.wake(self._conn(), LEASE, deployable)

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


def open_store(
    url: str | None,
    sqlite_file: Path,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    application: str = "pcloud",
) -> Store:
    """The configured store: PostgreSQL at ``url`` (``[cped] store``), else SQLite."""
    if url:
        return Store.open_url(url, busy_timeout=busy_timeout, application=application)
    return Store.open(sqlite_file, busy_timeout=busy_timeout)


# ---------------------------------------------------------------------------
# helpers


def _exported(table: str) -> tuple[str, ...]:
    """The columns of an exported table; names nothing else (they become SQL)."""
    if table not in EXPORTED:
        raise ValueError(f"not an exported table: {table!r}")
    return EXPORTED[table]


def _dump(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _load(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise StoreError(f"a stored document is not a JSON object: {text[:60]!r}")
    return doc
