"""What differs between the store's two databases, and nothing else.

``foundation.store`` writes its SQL once, in SQLite's spelling (``?``
parameters, ``REAL`` and ``INTEGER`` columns, ``AUTOINCREMENT`` ids,
``RETURNING``, ``ON CONFLICT``); a ``Dialect`` turns that text into what its
database takes and owns the few behaviours that cannot be written portably:
how a connection is opened and tuned, how a write transaction begins and
excludes other writers, how errors read, what time it is, and the event id
sequence.  ``SqliteDialect`` is here (the embedded default, standard library
only); ``foundation.store_pg.PostgresDialect`` is imported only when a
``postgresql://`` store is configured, so SQLite users never load psycopg.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from foundation.errors import Conflict, StoreError
from foundation.paths import STORE_MODE, private_file

DEFAULT_BUSY_TIMEOUT = 10.0


class WriteLock(StrEnum):
    """What a write transaction excludes (PostgreSQL only: SQLite has one writer)."""

    CATALOG = "catalog"  # read-modify-write of documents: one at a time, as on SQLite
    EVENTS = "events"  # ids must become visible in the order they are given


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor: ...

    def close(self) -> None: ...


class Dialect(Protocol):
    name: str  # "sqlite" or "postgresql"

    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""
        ...

    def connect(self) -> Connection: ...

    def sql(self, text: str) -> str:
        """A statement in SQLite's spelling, as this database takes it."""
        ...

    def ddl(self, text: str) -> str:
        """A schema statement, with this database's column types."""
        ...

    def begin(self, db: Connection, lock: WriteLock | None) -> None:
        """Begin a write transaction that excludes the writers ``lock`` names."""
        ...

    def lock(self, db: Connection, lock: WriteLock) -> None:
        """Inside a transaction: exclude the writers ``lock`` names until it ends."""
        ...

    def begin_read(self, db: Connection) -> None:
        """Begin a read-only transaction that sees one state."""
        ...

    def for_share(self, sql: str) -> str:
        """A SELECT that also keeps the rows it read from changing until commit."""
        ...

    def in_transaction(self, db: Connection) -> bool: ...

    def broken(self, db: Connection) -> bool:
        """The connection is lost (the next call opens a new one)."""
        ...

    @contextmanager
    def translated(self) -> Iterator[None]:
        """The database's errors as ``StoreError`` (``Conflict`` for a constraint)."""
        yield

    def now(self, db: Connection) -> float:
        """The store's clock, in seconds since the epoch: every member judges
        leases and heartbeats by this one clock."""
        ...

    def tables(self, db: Connection) -> set[str]: ...

    def event_id_high_water(self, db: Connection) -> int:
        """The largest event id ever given (pruned ones included)."""
        ...

    def set_event_id_high_water(self, db: Connection, value: int) -> None:
        """Make the next event id ``value + 1`` (import)."""
        ...

    def wake(self, db: Connection, kind: str, deployable: str) -> None:
        """Tell every member, at commit, what changed (``foundation.wakeup``)."""
        ...


class SqliteDialect:
    """One file, WAL, one writer at a time (``BEGIN IMMEDIATE``)."""

    name = "sqlite"

    def __init__(self, path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path, STORE_MODE)  # SQLite gives its -wal and -shm files this mode
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the store {self.path}: {error}") from error
        try:
            with self.translated():
                self._configure(db)
        except BaseException:
            db.close()
            raise
        return db

    def _configure(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the store {self.path} cannot use WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text

    def begin(self, db: Connection, lock: WriteLock | None) -> None:
        db.execute("BEGIN IMMEDIATE", ())  # the one write lock: nothing more to take

    def lock(self, db: Connection, lock: WriteLock) -> None:
        return None

    def begin_read(self, db: Connection) -> None:
        db.execute("BEGIN", ())

    def for_share(self, sql: str) -> str:
        return sql  # the write transaction already excludes every other writer

    def in_transaction(self, db: Connection) -> bool:
        return bool(getattr(db, "in_transaction", False))

    def broken(self, db: Connection) -> bool:
        return False

    @contextmanager
    def translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as error:
            raise Conflict(f"the change conflicts with stored data: {error}") from error
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise StoreError(
                    f"the store {self.path} is busy (locked by another process for too long)"
                ) from error
            raise StoreError(f"store error on {self.path}: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"store error on {self.path}: {error}") from error

    def now(self, db: Connection) -> float:
        return time.time()  # one host: its clock is the store's

    def tables(self, db: Connection) -> set[str]:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'", ()).fetchall()
        return {str(row[0]) for row in rows if not str(row[0]).startswith("sqlite_")}

    def event_id_high_water(self, db: Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'", ()).fetchone()
        return int(row[0]) if row else 0

    def set_event_id_high_water(self, db: Connection, value: int) -> None:
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'events'", ())
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (value,))

    def wake(self, db: Connection, kind: str, deployable: str) -> None:
        return None  # one host: its DPEs' datagrams wake cped (foundation.wakeup)
