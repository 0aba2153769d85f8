"""Moving a whole store from one database to another (SQLite to PostgreSQL).

``export_store`` writes JSON lines read in one snapshot: a header (format,
schema version, the highest event id ever given), then one line per row of
each table, in an order that satisfies the foreign keys.  ``import_store``
reads them into an empty store of the same schema version, in one
transaction: any bad line, a different schema version or a store that already
holds a catalog is refused with a message naming the line, and nothing
changes.  Event ids are kept (and the id sequence continues after the highest
ever given, so ``after_id`` cursors stay valid); leases keep their epoch but
not their holder (a fencing token never goes back, and no DPE of the old
store holds a lease in the new one).  Members are not moved: they register
themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from foundation.document import check_depth, nested_too_deeply, number_too_long
from foundation.errors import Conflict, InvalidInput
from foundation.store import EXPORTED as TABLES
from foundation.store import HOST_JEOS, Store

FORMAT = "pacemaker-cloud-store"
CATALOG = ("templates", "deployables", "assemblies", "events")


def export_store(store: Store, out: TextIO) -> dict[str, int]:
    """Write the store to ``out``; the number of rows of each table."""
    counts: dict[str, int] = {}
    with store.snapshot():
        header = {
            "format": FORMAT,
            "schema_version": store.schema_version(),
            "event_id_high_water": store.event_id_high_water(),
        }
        out.write(json.dumps(header, sort_keys=True) + "\n")
        for table, columns in TABLES.items():
            counts[table] = 0
            for row in store.dump_rows(table):
                line = {"table": table, "row": dict(zip(columns, row, strict=True))}
                out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
                counts[table] += 1
    return counts


def import_store(store: Store, lines: Iterable[str]) -> dict[str, int]:
    """Load an export into ``store`` (empty, same schema); rows per table."""
    numbered = enumerate(lines, start=1)
    header = _header(numbered, store.schema_version())
    counts = dict.fromkeys(TABLES, 0)
    with store.transaction():
        _refuse_unless_empty(store)
        for _number, table, row in _rows(numbered):
            store.load_row(table, _prepared(table, row))
            counts[table] += 1
        store.set_event_id_high_water(
            max(int(header.get("event_id_high_water") or 0), store.last_event_id())
        )
    return counts


def _header(numbered: Iterator[tuple[int, str]], version: int) -> dict[str, Any]:
    first = next(numbered, None)
    if first is None:
        raise InvalidInput("the export is empty: nothing imported")
    header = _json(first[0], first[1])
    if header.get("format") != FORMAT:
        raise InvalidInput(f"line 1: not a {FORMAT} export")
    if header.get("schema_version") != version:
        raise InvalidInput(
            f"line 1: the export has schema version {header.get('schema_version')}, this store"
            f" {version}: open the source with this version of pacemaker-cloud first"
            " (it migrates), then export again"
        )
    return header


def _rows(numbered: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for number, text in numbered:
        if not text.strip():
            continue
        line = _json(number, text)
        table, row = line.get("table"), line.get("row")
        if table not in TABLES or not isinstance(row, dict):
            raise InvalidInput(f"line {number}: not a row of a known table")
        if set(row) != set(TABLES[table]):
            raise InvalidInput(
                f"line {number}: a {table} row needs exactly {', '.join(TABLES[table])}"
            )
        yield number, table, row


def _json(number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"line {number}: not JSON ({number_too_long(error) or error})") from None
    except RecursionError:
        raise InvalidInput(f"line {number}: {nested_too_deeply()}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"line {number}: not a JSON object")
    try:
        check_depth(value)
    except InvalidInput as error:
        raise InvalidInput(f"line {number}: {error}") from None
    return value


def _prepared(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    if table == "leases":  # keep the epoch, drop the holder of another store's era
        row = {**row, "holder": None, "pid": None, "expires_at": 0.0}
    return tuple(row[column] for column in TABLES[table])


def _refuse_unless_empty(store: Store) -> None:
    filled = [table for table in CATALOG if store.count_rows(table)]
    jeos = [j["name"] for j in store.list_jeos() if j["name"] != HOST_JEOS]
    if filled or jeos:
        raise Conflict(
            f"the target store {store.location} is not empty ({', '.join(filled or ['jeos'])}):"
            " import only into a new store; nothing changed"
        )
