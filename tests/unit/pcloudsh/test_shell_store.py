"""store_migrate, store_export and store_import in-process, on a real SQLite file and
a real PostgreSQL database: the move from one to the other, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

from foundation.events import Event
from foundation.paths import Paths
from foundation.store import MIGRATIONS, Store
from foundation.store_transfer import FORMAT
from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode
from pcloudsh.testing import run


def shell(paths: Paths) -> Environment:
    return Environment(paths=paths, width=100, color=False)


def test_sqlite_moves_to_postgresql(pcloud_home: Paths, pg_url: str, tmp_path: Path) -> None:
    old = Store.open(pcloud_home.store_file)
    old.insert_template("web", {"class": "ocf", "type": "apache"})
    old.append_event(Event(1.0, "shop", "running", "before the move"))
    old.close()
    env = shell(pcloud_home)
    dump = tmp_path / "old.jsonl"
    out, err, status = run(env, f"--json store_export {dump}")
    assert status == ExitCode.OK, err
    assert json.loads(out)["rows"]["templates"] == 1
    out, err, status = run(env, f"store_import {dump} --store {pg_url}")
    assert status == ExitCode.OK, err
    assert out.startswith("imported ") and " rows into " in out and "pcloud@" in out
    moved = Store.open_url(pg_url)
    try:
        assert [t["name"] for t in moved.list_templates()] == ["web"]
        assert [e.reason for e in moved.query_events()] == ["before the move"]
    finally:
        moved.close()
    _, err, status = run(env, f"store_import {dump} --store {pg_url}")
    assert status == ExitCode.USAGE and "not empty" in err


def test_migrate_reports_the_schema_version(pcloud_home: Paths, pg_url: str) -> None:
    out, err, status = run(shell(pcloud_home), f"--json store_migrate --store {pg_url}")
    assert status == ExitCode.OK, err
    assert json.loads(out)["schema_version"] == len(MIGRATIONS)


def test_bad_files_are_refused_with_their_reason(pcloud_home: Paths, tmp_path: Path) -> None:
    env = shell(pcloud_home)
    _, err, status = run(env, f"store_import {tmp_path / 'absent.jsonl'}")
    assert status == ExitCode.USAGE and "cannot read" in err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    _, err, status = run(env, f"store_import {garbage}")
    assert status == ExitCode.USAGE and "line 1" in err
    _, err, status = run(env, "store_migrate --store mysql://db/x")
    assert status == ExitCode.USAGE and "postgresql://" in err


def test_export_of_an_absent_store_creates_nothing(pcloud_home: Paths, tmp_path: Path) -> None:
    env = shell(pcloud_home)
    absent = tmp_path / "no" / "such" / "store.sqlite"
    _, err, status = run(env, f"store_export - --store {absent}")
    assert (status, err) == (ExitCode.USAGE, f"pcloudsh: error: {absent}: no such store\n")
    assert not (tmp_path / "no").exists()
    _, err, status = run(env, f"store_export {tmp_path} --store {tmp_path / 'x.sqlite'}")
    assert status == ExitCode.USAGE and "no such store" in err
    _, err, status = run(env, "store_export -")
    assert status == ExitCode.USAGE and f"{pcloud_home.store_file}: no such store" in err
    assert list(tmp_path.iterdir()) == [] and not pcloud_home.store_file.exists()
    _, err, status = run(env, f"store_export - --store {tmp_path}")
    assert (status, err) == (ExitCode.USAGE, f"pcloudsh: error: {tmp_path}: is a directory\n")


def test_a_refused_import_leaves_no_new_store(pcloud_home: Paths, tmp_path: Path) -> None:
    env = shell(pcloud_home)
    exports = tmp_path / "exports"
    exports.mkdir()
    header = {"format": FORMAT, "schema_version": len(MIGRATIONS)}
    refused = {
        "bad-line.jsonl": "hello\n",
        "not-an-export.jsonl": '{"format": "something else"}\n',
        "future.jsonl": json.dumps({**header, "schema_version": 999}) + "\n",
    }
    new = tmp_path / "new" / "dir" / "store.sqlite"
    for name, text in refused.items():
        (exports / name).write_text(text)
        _, err, status = run(env, f"store_import {exports / name} --store {new}")
        assert status == ExitCode.USAGE and "line 1" in err, name
        assert not (tmp_path / "new").exists(), name


def test_a_refused_import_leaves_an_existing_store_as_it_was(
    pcloud_home: Paths, tmp_path: Path
) -> None:
    existing = tmp_path / "store.sqlite"
    Store.open(existing).close()
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    _, err, status = run(shell(pcloud_home), f"store_import {garbage} --store {existing}")
    assert status == ExitCode.USAGE and "line 1" in err
    garbage.unlink()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_migrate_of_an_absent_store_creates_nothing(pcloud_home: Paths, tmp_path: Path) -> None:
    env = shell(pcloud_home)
    absent = tmp_path / "no" / "such" / "store.sqlite"
    _, err, status = run(env, f"store_migrate --store {absent}")
    assert (status, err) == (ExitCode.USAGE, f"pcloudsh: error: {absent}: no such store\n")
    assert not (tmp_path / "no").exists()
    _, err, status = run(env, "store_migrate")
    assert status == ExitCode.USAGE and f"{pcloud_home.store_file}: no such store" in err
    assert not pcloud_home.store_file.exists()


def test_migrate_of_an_existing_sqlite_store(pcloud_home: Paths) -> None:
    Store.open(pcloud_home.store_file).close()
    out, err, status = run(shell(pcloud_home), "--json store_migrate")
    assert status == ExitCode.OK, err
    assert json.loads(out)["schema_version"] == len(MIGRATIONS)
