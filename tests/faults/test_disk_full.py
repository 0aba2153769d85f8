"""The store's disk full: its state directory on a small tmpfs the test mounts
(as root) and fills with a file, then frees.

While the disk is full, a write through the API fails with a store error that
names the cause and the file (no traceback anywhere in cped's log) and
changes nothing; reads and health still answer.  When space returns, writes
succeed again; every write acknowledged before (assemblies, events) is still
there, also after a restart of cped; SQLite's integrity check passes.  With a
deployable running through it, the deployable converges afterwards with one
DPE and one instance per assembly (once in the short form, five times in the
long form, ``PCLOUD_SOAK=1``).  The tmpfs is unmounted after the test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation.errors import StoreError
from foundation.paths import Paths
from tests.faults.soaking import Tally, long_or_short
from tests.faults.test_kills import event_ids, guest_inits
from tests.integration.conftest import CpedProcess
from tests.integration.test_lifecycle import CONFIG, Rig, shop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts a tmpfs)"),
]

TMPFS_SIZE = "12m"
FULL_CYCLES = int(long_or_short(5, 1))  # with a deployable running
BIG = "x" * 4000  # a parameter value near the model's limit: documents that need new pages


class OutsideLogCped(CpedProcess):
    """A cped whose log is outside the full state directory (so it is kept)."""

    def log_dir(self) -> Path:
        return self.paths.config_dir


@pytest.fixture
def small_state(pcloud_home: Paths) -> Iterator[Paths]:
    """The state directory on its own small tmpfs, unmounted afterwards."""
    state = pcloud_home.state_dir
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "pcloud-test", str(state)],
        check=True,
        timeout=10,
    )
    try:
        pcloud_home.ensure()
        yield pcloud_home
    finally:
        unmount(state)


def unmount(directory: Path, within: float = 10.0) -> None:
    """Unmount once the processes of the test let go: cped's dped template exits
    only after it sees cped's socket close, with its log still open until then."""
    deadline = time.monotonic() + within
    while subprocess.run(["umount", str(directory)], timeout=10, check=False).returncode:
        if time.monotonic() > deadline:
            raise AssertionError(f"{directory} still busy: held by {holders(directory)}")
        time.sleep(0.2)


def holders(directory: Path) -> list[int]:
    """The pids with a file open below ``directory``."""
    found = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(f"{directory}/"):
                found.add(int(fd.parts[2]))
    return sorted(found)


@pytest.fixture
def started(small_state: Paths) -> Iterator[list[OutsideLogCped]]:
    """cped processes of the test (on ``small_state``), stopped by pid afterwards
    (before the tmpfs is unmounted)."""
    made: list[OutsideLogCped] = []
    yield made
    for process in made:
        process.close()


def new_cped(paths: Paths, started: list[OutsideLogCped]) -> OutsideLogCped:
    process = OutsideLogCped(paths)
    started.append(process)
    return process.start()  # type: ignore[return-value]


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` with one file; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 4096, 512):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return filler


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def assembly(name: str) -> dict[str, Any]:
    resource = {
        "name": "r",
        "type": "Dummy",
        "parameters": {f"p{i}": BIG for i in range(4)},
    }
    return {"name": name, "resources": [resource]}


def test_a_full_disk_refuses_writes_clearly_and_recovers(
    small_state: Paths, started: list[OutsideLogCped]
) -> None:
    tally = Tally("store disk full")
    cped = new_cped(small_state, started)
    client = cped.client
    acknowledged = []
    for i in range(3):
        acknowledged.append(client.create_assembly(assembly(f"before{i}"))["name"])
    filler = fill(small_state.state_dir)
    tally.fault("state file system full")
    refused: StoreError | None = None
    for i in range(2000):  # pages the store already has may take a few more
        try:
            acknowledged.append(client.create_assembly(assembly(f"during{i}"))["name"])
        except StoreError as error:
            refused = error
            break
    assert refused is not None, "no write failed on a full disk"
    message = str(refused)
    tally.check("the error names the cause", "disk is full" in message, message)
    tally.check("the error names the store", str(small_state.store_file) in message, message)
    tally.check("reads answer", client.health()["status"] == "ok")
    names = {a["name"] for a in client.list_assemblies()}
    tally.check("a refused write changes nothing", f"during{i}" not in names, str(names))
    tally.check("acknowledged writes are there", set(acknowledged) <= names)

    filler.unlink()
    after = client.create_assembly(assembly("after"))["name"]
    tally.check("writes succeed when space returns", after == "after")
    cped.stop()
    cped = new_cped(small_state, started)
    names = {a["name"] for a in cped.client.list_assemblies()}
    tally.check("acknowledged writes survive a restart", set(acknowledged) | {after} <= names)
    tally.check("no corruption (integrity_check)", integrity(small_state.store_file) == "ok")
    log = "".join(p.log() for p in started)
    tally.check("no traceback in cped's log", "Traceback" not in log, log[-2000:])
    tally.figures["writes_acknowledged_on_the_full_disk"] = i
    tally.save()
    assert tally.violations == [], tally.violations


def settled(rig: Rig, within: float = 40.0) -> dict[str, Any] | None:
    """The status once every resource runs under a live DPE.  A DPE that exited
    on the full disk still looks running until cped notices (a fraction of a
    second after the store is writable again)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):
            status = rig.running(within=max(1.0, deadline - time.monotonic()))
            if status["dpe"]["pid"] in rig.dpes():
                return status
        time.sleep(0.1)
    return None


def full_disk_cycle(rig: Rig, tally: Tally, paths: Paths) -> bool:
    """Fill the disk under a running deployable, kill an instance, free the disk:
    check the invariants; whether the deployable converged."""
    rig.running(within=40.0)
    acknowledged = event_ids(rig)
    filler = fill(paths.state_dir)
    tally.fault("state file system full")
    os.kill(guest_inits(rig)[0], signal.SIGKILL)  # events to record, a recovery to do
    tally.fault("SIGKILL of an instance")
    time.sleep(3.0)  # three lease lifetimes on a full disk
    tally.check("status answers on a full disk", rig.status()["name"] == "shop")
    filler.unlink()
    status = settled(rig)
    tally.check("the deployable converges when space returns", status is not None)
    time.sleep(0.6)
    tally.check("exactly one DPE", len(rig.dpes()) == 1, str(rig.dpes()))
    tally.check("one instance per assembly", len(guest_inits(rig)) == 2)
    lost = set(acknowledged) - set(event_ids(rig))
    tally.check("no acknowledged event lost", not lost, str(sorted(lost)))
    tally.check("no corruption (integrity_check)", integrity(paths.store_file) == "ok")
    return status is not None


def test_a_running_deployable_survives_a_full_disk(
    small_state: Paths, started: list[OutsideLogCped], key_cache: Path
) -> None:
    tally = Tally("store disk full, deployable running")
    shutil.copytree(key_cache, small_state.keys_dir, dirs_exist_ok=True)
    small_state.config_file.write_text(CONFIG)
    rig = Rig(
        small_state, lambda *_: new_cped(small_state, started), new_cped(small_state, started)
    )
    try:
        rig.client.put_deployable("shop", shop("a1", "a2"))
        rig.client.start_deployable("shop")
        for _ in range(FULL_CYCLES):
            if not full_disk_cycle(rig, tally, small_state):
                break
        log = rig.cped.log()
        tally.check("no traceback in cped's log", "Traceback" not in log, log[-2000:])
        tally.check("cped's log names the cause", "database or disk is full" in log, log[-2000:])
    finally:
        rig.teardown()
        tally.save()
    assert tally.violations == [], tally.violations
