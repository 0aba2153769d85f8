"""The store's database file held by another process (an open ``BEGIN EXCLUSIVE``).

While it is held, cped still answers reads (WAL readers are not blocked) and
its health; a write waits for the store's busy timeout and then fails with a
clear store error naming the file, and changes nothing.  A write made while
the lock is held briefly succeeds once it is released.  Afterwards the file
passes SQLite's integrity check.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.client import Client
from foundation.errors import PcloudError, StoreError
from foundation.store import DEFAULT_BUSY_TIMEOUT
from tests.integration.conftest import CpedProcess
from tests.integration.test_lifecycle import Rig, shop

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield db
        db.execute("ROLLBACK")
    finally:
        db.close()


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_a_locked_store_gives_a_clear_error_and_changes_nothing(cped: CpedProcess) -> None:
    client = Client(cped.paths.socket, timeout=DEFAULT_BUSY_TIMEOUT + 10)
    client.create_assembly({"name": "before", "resources": []})
    with exclusive(cped.paths.store_file):
        assert client.health()["status"] == "ok"
        assert [a["name"] for a in client.list_assemblies()] == ["before"]
        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            client.create_assembly({"name": "during", "resources": []})
        waited = time.monotonic() - started
    message = str(refused.value)
    assert "busy" in message and str(cped.paths.store_file) in message, message
    assert "Traceback" not in message
    assert waited >= DEFAULT_BUSY_TIMEOUT * 0.9
    assert [a["name"] for a in client.list_assemblies()] == ["before"]
    client.create_assembly({"name": "after", "resources": []})  # recovered
    assert [a["name"] for a in client.list_assemblies()] == ["after", "before"]
    assert integrity(cped.paths.store_file) == "ok"
    assert "Traceback" not in cped.log()


def test_a_write_waits_for_a_brief_lock_and_then_succeeds(cped: CpedProcess) -> None:
    client = Client(cped.paths.socket, timeout=DEFAULT_BUSY_TIMEOUT + 10)
    held = threading.Event()
    failure: list[PcloudError] = []

    def write() -> None:
        held.wait()
        try:
            client.create_assembly({"name": "waited", "resources": []})
        except PcloudError as error:
            failure.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    with exclusive(cped.paths.store_file):
        held.set()
        time.sleep(1.0)
        assert writer.is_alive(), "the write did not wait for the lock"
    writer.join(DEFAULT_BUSY_TIMEOUT)
    assert not writer.is_alive() and failure == []
    assert [a["name"] for a in client.list_assemblies()] == ["waited"]
    assert integrity(cped.paths.store_file) == "ok"


def test_a_store_locked_longer_than_the_lease_leaves_one_dpe_and_one_instance_each(
    rig: Rig,
) -> None:
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    before = rig.running()
    with exclusive(rig.paths.store_file):
        time.sleep(3.0)  # three lease lifetimes: the DPE cannot renew
    rig.until(lambda: _lease_held_by_supervised_dpe(rig.status()), 15.0, "a DPE holding the lease")
    after = rig.running(within=25.0)
    time.sleep(1.0)
    assert len(rig.dpes()) == 1, "two DPEs for one deployable"
    inits = [p for p, argv in rig.processes().items() if "_guest_init.py" in " ".join(argv)]
    assert len(inits) == 2, "duplicate or lost instance"
    assert None not in {a["instance"] for a in after["assemblies"]}
    assert integrity(rig.paths.store_file) == "ok"
    assert "Traceback" not in rig.cped.log()
    if after["dpe"]["pid"] != before["dpe"]["pid"]:  # the DPE fenced itself and was replaced
        assert after["dpe"]["lease_epoch"] > before["dpe"]["lease_epoch"]


def _lease_held_by_supervised_dpe(status: dict[str, Any]) -> bool:
    """The DPE cped supervises is the one holding the lease (holder is ``host:pid``)."""
    dpe = status["dpe"]
    holder = str(dpe.get("lease_holder") or "")
    return dpe["supervision"] == "running" and holder.endswith(f":{dpe['pid']}")


def test_cped_answers_its_health_while_the_store_is_locked(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    rig.running()
    quick = Client(rig.paths.socket, timeout=2.0)
    with exclusive(rig.paths.store_file):
        time.sleep(1.5)  # the supervisor and the DPE now wait on the lock
        started = time.monotonic()
        try:
            health = quick.health()
        finally:
            took = time.monotonic() - started
    assert health["status"] == "ok" and took < 1.0
