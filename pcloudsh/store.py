"""The store itself: migrate its schema, export it, import an export.

These act on the database directly, not through cped: a store can be
migrated before any cped starts on it, and moved from SQLite to PostgreSQL
(``store_export`` from the old one, ``store = postgresql://...`` in
``[cped]``, ``store_import`` into the new one, then start the members).
``--store`` names another store than the configured one: a ``postgresql://``
URL or an SQLite file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import takewhile
from pathlib import Path
from typing import TextIO

from foundation.errors import InvalidInput
from pcloudsh.definition import Arg, Noun, command
from pcloudsh.documents import utf8_text
from pcloudsh.output import Raw, Result, counted, done
from pcloudsh.values import check_file

STORE_ARG = Arg(
    "--store",
    metavar="URL_OR_FILE",
    help="a postgresql:// URL or an SQLite file (default: [cped] store of the configuration,"
    " else the SQLite store in the state directory)",
)


class StoreCommands(Noun):
    category = "Store"

    @command(STORE_ARG)
    def store_migrate(self, args: argparse.Namespace) -> Result:
        """Bring the store's schema up to this version (cped also does on start).

        Safe to repeat and to run while members use the store: a schema that
        is current is left alone, and migrations run in one transaction.  A
        store that does not exist is refused and not created (cped creates
        its store when it starts; store_import fills a new one).
        """
        self._refuse_absent(args.store)
        with self.env.open_store(args.store) as store:
            version, where = store.schema_version(), store.location
        return done(
            f"the store {where} is at schema version {version}",
            store=where,
            schema_version=version,
        )

    @command(Arg("file", help="where to write the export ('-': standard output)"), STORE_ARG)
    def store_export(self, args: argparse.Namespace) -> Result:
        """Write the whole store (catalog, runtime state, leases, events) as JSON lines.

        Read in one consistent snapshot; cped may keep running meanwhile.
        """
        from foundation.store_transfer import export_store

        self._refuse_absent(args.store)
        with self.env.open_store(args.store) as store:
            where = store.location
            if args.file == "-":
                counts = export_store(store, self.env.stdout)
                return Result({"store": where, "rows": counts}, Raw(""))
            counts = _export_to(Path(args.file), lambda out: export_store(store, out))
        rows = sum(counts.values())
        return done(
            f"exported {counted(rows, 'row', 'rows')} of {where} to {args.file}",
            store=where,
            rows=counts,
        )

    @command(Arg("file", help="an export made by store_export ('-': standard input)"), STORE_ARG)
    def store_import(self, args: argparse.Namespace) -> Result:
        """Load an export into a new, empty store of the same schema version.

        All or nothing: a bad line, another schema version or a store that
        already has a catalog is refused and nothing changes (a store that
        did not exist is not left behind).  Event ids are
        kept; leases keep their epoch, not their holder.
        """
        from foundation.store_transfer import import_store

        lines = self.env.stdin if args.file == "-" else _read_lines(Path(args.file))
        with (
            _removed_if_refused(self.env.store_file(args.store)),
            self.env.open_store(args.store) as store,
        ):
            where = store.location
            counts = import_store(store, lines)
        rows = sum(counts.values())
        return done(
            f"imported {counted(rows, 'row', 'rows')} into {where}", store=where, rows=counts
        )

    def _refuse_absent(self, where: str | None) -> None:
        """Opening an SQLite file creates it: a command that needs an existing store
        checks first."""
        file = self.env.store_file(where)
        if file is not None:
            check_file(str(file), missing="no such store")


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None
    return utf8_text(data, str(path)).splitlines()


@contextmanager
def _removed_if_refused(file: Path | None) -> Iterator[None]:
    """A refused import leaves no new store behind (an existing one it leaves unchanged:
    the import is one transaction)."""
    created = [] if file is None else _absent(file)
    try:
        yield
    except BaseException:
        for path in created:
            with suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
        raise


def _absent(file: Path) -> list[Path]:
    """What opening an SQLite file may create that is not there yet, directories last."""
    companions = [file.with_name(file.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    directories = takewhile(lambda directory: not directory.exists(), file.parents)
    return [path for path in (file, *companions) if not os.path.lexists(path)] + list(directories)


def _export_to(path: Path, write: Callable[[TextIO], dict[str, int]]) -> dict[str, int]:
    """Write through a temporary file renamed into place: never half an export."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            counts = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counts
