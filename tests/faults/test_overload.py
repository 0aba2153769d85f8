"""A busy or stalled host is not a failed guest; a stalled guest still is.

Real cped, dped processes and local guests.  A dped stopped (SIGSTOP) for 10 s
and continued: its guests answered all along, so nothing is fenced and the same
dped goes on (the store lease outlasts the stop here, so that the DPE itself
judges what it missed).  cped stopped for 10 s: the DPEs never needed it,
nothing is fenced, no DPE is killed; nor when it stopped holding the store's
write lock (another process holds it meanwhile), so that the DPEs' writes
wait for it.  Two busy processes on both cores for 60 s
(self-ending, at the test's own niceness, like the daemons) while 50
deployables run: nothing is fenced.  Every process of one guest stopped: that
guest is still failed within its heartbeat timeout and the fresh probe, then
fenced and replaced.  The stop tests run in both monitoring modes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.control import process_alive
from foundation.keyfiles import key_paths
from foundation.paths import Paths
from tests.integration.conftest import CpedFactory
from tests.integration.test_lifecycle import CONFIG, Rig, dummy, instance_ids, shop

pytestmark = pytest.mark.integration

STOPPED_FOR = 10.0
PATIENT = CONFIG.replace("lease_ttl = 1s", "lease_ttl = 30s")  # cped waits out a 10 s stop
HOG_SECONDS = 60.0
HOG = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\n"
MANY = 50
PROBE_TIMEOUT = 1.0  # the fresh keepalive that confirms a silence (dpe.engine_liveness)


@pytest.fixture
def patient_rig(cped_factory: CpedFactory, pcloud_home: Paths, key_cache: Path) -> Iterator[Rig]:
    """A rig whose cped does not replace a DPE that misses 10 s of lease renewals."""
    shutil.copytree(key_cache, pcloud_home.keys_dir, dirs_exist_ok=True)
    made = Rig(pcloud_home, cped_factory, cped_factory(PATIENT))
    try:
        yield made
    finally:
        made.teardown()


def newest_event(rig: Rig) -> int:
    newest = rig.client.query_events(limit=1, order="desc")
    return int(newest[0]["id"]) if newest else 0


def trouble(rig: Rig, after: int) -> list[str]:
    """Fencings, failed assemblies and killed DPEs since event ``after``, every deployable."""
    found = []
    while page := rig.client.query_events(after_id=after, limit=1000):
        after = int(page[-1]["id"])
        for e in page:
            failed = e["assembly"] is not None and e["resource"] is None and e["state"] == "failed"
            if failed or e["state"] in ("fencing", "dpe-killed"):
                found.append(f"{e['deployable']}/{e['assembly']} {e['state']}: {e['reason']}")
    return found


def stop_for(pid: int, seconds: float) -> None:
    """SIGSTOP ``pid`` for ``seconds``, then SIGCONT (whatever interrupts the wait)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def nothing_is_replaced_across(rig: Rig, stall: Callable[[], None]) -> None:
    """shop runs, ``stall`` happens: 3 s after it (what a wrong conclusion would have
    done by then) nothing was fenced or failed, no instance and no DPE replaced."""
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    before = instance_ids(rig.running())
    dpeds = rig.dpes()
    mark = newest_event(rig)
    stall()
    time.sleep(3.0)
    after = rig.running()
    assert trouble(rig, mark) == []
    assert instance_ids(after) == before
    assert rig.dpes() == dpeds


@pytest.mark.usefixtures("both_modes")
def test_a_dped_stopped_for_10_s_fences_no_healthy_guest(patient_rig: Rig) -> None:
    def stop_the_dped() -> None:
        (dped,) = patient_rig.dpes()
        stop_for(dped, STOPPED_FOR)

    nothing_is_replaced_across(patient_rig, stop_the_dped)


@pytest.mark.usefixtures("both_modes")
def test_a_cped_stopped_for_10_s_fences_no_healthy_guest(rig: Rig) -> None:
    nothing_is_replaced_across(rig, lambda: stop_for(rig.cped.pid, STOPPED_FOR))


HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN IMMEDIATE')\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "db.execute('COMMIT')\n"
)


def hold_write_lock(store: Path, seconds: float) -> None:
    """Another process of this host holds the store's write lock for ``seconds``."""
    command = [sys.executable, "-c", HOLD_LOCK, str(store), str(seconds)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert holder.wait(timeout=seconds + 10.0) == 0
        finally:
            if holder.poll() is None:
                holder.kill()


@pytest.mark.usefixtures("both_modes")
def test_a_cped_stopped_in_a_write_fences_no_healthy_guest(rig: Rig) -> None:
    """cped stopped for 8 s holding the store's write lock: the DPEs' writes wait."""

    def stop_cped_in_a_write() -> None:
        os.kill(rig.cped.pid, signal.SIGSTOP)
        try:
            hold_write_lock(rig.paths.store_file, 8.0)
        finally:
            os.kill(rig.cped.pid, signal.SIGCONT)

    nothing_is_replaced_across(rig, stop_cped_in_a_write)


def guest_processes(rig: Rig, assembly: str) -> list[int]:
    """Every process of the assembly's instance (its pid namespace)."""
    marker = f"/shop/{assembly}/"
    (init,) = [
        pid
        for pid, argv in rig.processes().items()
        if "_guest_init.py" in " ".join(argv) and marker in " ".join(argv)
    ]
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                found.append(int(entry.name))
    return found


@pytest.mark.usefixtures("both_modes")
def test_a_stopped_guest_is_still_fenced_within_its_bounds(rig: Rig) -> None:
    document = shop("a1", "a2")
    rig.client.put_deployable("shop", document)
    rig.client.start_deployable("shop")
    before = instance_ids(rig.running())
    frozen = guest_processes(rig, "a1")
    mark = newest_event(rig)
    stopped_at = time.time()
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        rig.until(lambda: "fencing" in states_of(rig, mark, "a1"), 15.0, "a1 fenced")
        after = rig.running(within=30.0)
    finally:
        for pid in frozen:  # the fence killed them; a survivor must not stay stopped
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    failed = next(e for e in events_of(rig, mark, "a1") if e["state"] == "failed")
    bound = document["heartbeat"]["timeout"] + PROBE_TIMEOUT + 1.0  # 1 s for a busy host
    assert failed["time"] - stopped_at <= bound, failed
    assert "no heartbeat" in failed["reason"], failed
    assert not any(process_alive(pid) for pid in frozen), "a stopped guest process survived"
    assert instance_ids(after)["a1"] != before["a1"]
    assert instance_ids(after)["a2"] == before["a2"]


def events_of(rig: Rig, after: int, assembly: str) -> list[dict[str, Any]]:
    page = rig.client.query_events(deployable="shop", assembly=assembly, after_id=after, limit=1000)
    return [e for e in page if e["resource"] is None]


def states_of(rig: Rig, after: int, assembly: str) -> list[str]:
    return [e["state"] for e in events_of(rig, after, assembly)]


def small(name: str) -> dict[str, Any]:
    """One assembly (``<name>a1``), one Dummy monitored every 10 s, the default heartbeat."""
    resource = dummy(f"{name}-d") | {"monitor_interval": 10}
    return {"name": name, "assemblies": [{"name": f"{name}a1", "resources": [resource]}]}


def copy_keys(rig: Rig, assemblies: list[str]) -> None:
    """Each assembly the key pairs of a1 (making keys is not what is tested)."""
    made = key_paths(rig.paths.keys_dir, "a1")
    for assembly in assemblies:
        for source, target in zip(made, key_paths(rig.paths.keys_dir, assembly), strict=True):
            shutil.copy2(source, target)


def hogs(seconds: float) -> list[subprocess.Popen[bytes]]:
    """A busy process per core, each ending by itself after ``seconds``."""
    count = os.cpu_count() or 2
    return [
        subprocess.Popen([sys.executable, "-c", HOG, str(seconds)], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]


def all_running(rig: Rig, names: list[str]) -> bool:
    states = {row["name"]: row["state"] for row in rig.client.list_deployables()}
    return all(states.get(name) == "running" for name in names)


def test_a_cpu_hog_on_every_core_fences_none_of_50_deployables(rig: Rig) -> None:
    names = [f"busy{i:02d}" for i in range(MANY)]
    copy_keys(rig, [f"{name}a1" for name in names])
    for name in names:
        rig.client.put_deployable(name, small(name))
    for name in names:
        rig.client.start_deployable(name)
    rig.until(lambda: all_running(rig, names), 600.0, f"{MANY} deployables running")
    before = {name: instance_ids(rig.status(name)) for name in names}
    mark = newest_event(rig)
    busy = hogs(HOG_SECONDS)
    try:
        for hog in busy:
            hog.wait(HOG_SECONDS + 60)
    finally:
        for hog in busy:  # ours, by pid, if one outlived its own end
            if hog.poll() is None:
                hog.kill()
                hog.wait(10)
    time.sleep(5.0)  # what a wrong conclusion would have done by now
    assert trouble(rig, mark) == []
    rig.until(lambda: all_running(rig, names), 60.0, f"{MANY} deployables running after")
    assert {name: instance_ids(rig.status(name)) for name in names} == before
