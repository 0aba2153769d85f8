"""Supervision with real processes: DPEs killed, cped killed, cped started again.

A real cped, real dped processes, local sshd guests with ``ocf:heartbeat:Dummy``
(see ``test_lifecycle.py`` for the rig and its short intervals).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from typing import Any

import pytest

from cpe import control
from tests.integration.test_lifecycle import Rig, instance_ids, is_dped, key_cache, rig, shop

pytestmark = pytest.mark.integration
__all__ = ["key_cache", "rig"]  # fixtures shared with test_lifecycle.py

REPLACEMENT_BOUND = 2.0  # seconds from kill -9 to a new DPE holding a higher epoch


def guest_pids(rig: Rig) -> set[int]:
    """The instances' own processes: everything of the home but DPEs and the guest
    agents they run (an agent lives as long as its DPE's SSH session; the next DPE
    starts its own)."""
    return {
        pid
        for pid, argv in rig.processes().items()
        if not is_dped(argv) and not is_guest_agent(argv)
    }


def is_guest_agent(argv: list[str]) -> bool:
    return "--lock" in argv and any("/agent-" in word for word in argv)


def lease_renewed_at(rig: Rig, name: str = "shop") -> float:
    """When the DPE last renewed its lease (read from the store: cped may be down)."""
    with sqlite3.connect(rig.paths.store_file) as db:
        row = db.execute("SELECT renewed_at FROM leases WHERE deployable = ?", (name,)).fetchone()
    return float(row[0]) if row else 0.0


def replaced(rig: Rig, old: dict[str, Any]) -> dict[str, Any]:
    """Wait until a new DPE holds the lease with a higher epoch; its dpe record."""

    def new_holder() -> dict[str, Any] | None:
        dpe = rig.status()["dpe"]
        fresh = dpe["pid"] not in (None, old["pid"]) and dpe["lease_holder"] is not None
        return dpe if fresh and dpe["lease_epoch"] > old["lease_epoch"] else None

    return dict(rig.until(new_holder, 10.0, "a new DPE with a higher lease epoch"))


def test_a_killed_dpe_is_replaced_at_once_and_adopts_the_instances(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    before = rig.running()
    guests = guest_pids(rig)
    killed_at = time.monotonic()
    os.kill(before["dpe"]["pid"], signal.SIGKILL)
    dpe = replaced(rig, before["dpe"])
    took = time.monotonic() - killed_at
    print(f"DPE replaced (new pid holds epoch {dpe['lease_epoch']}) in {took:.2f} s")
    assert took < REPLACEMENT_BOUND
    after = rig.running()
    assert instance_ids(after) == instance_ids(before), "an instance was re-created"
    assert guest_pids(rig) >= guests - {before["dpe"]["pid"]}
    assert rig.dpes() == [dpe["pid"]]
    assert any(
        kind == "dpe-restarting" and "status -9 (SIGKILL); restarting in 0.1 s (attempt 1)" in why
        for kind, why in rig.dpe_events()
    )


def test_ten_kills_in_a_row_back_off_and_the_deployable_recovers(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    first = rig.running()
    victim = first["dpe"]["pid"]
    for _ in range(10):
        os.kill(victim, signal.SIGKILL)
        victim = rig.until(
            lambda old=victim: next((p for p in rig.dpes() if p != old), None),
            within=10.0,
            what="a replacement DPE process",
        )
    delays = [
        float(m.group(1))
        for kind, why in rig.dpe_events()
        if kind == "dpe-restarting" and (m := re.search(r"restarting in ([\d.]+) s", why))
    ]
    print("back-off delays:", delays)
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 0.8]
    assert len(delays) == 10 and max(delays) == 0.8
    after = rig.running(within=20.0)
    assert after["dpe"]["pid"] == victim and rig.dpes() == [victim]
    assert instance_ids(after) == instance_ids(first), "an instance was re-created"


def test_a_killed_cped_leaves_the_dpe_running_and_a_new_cped_adopts_it(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    before = rig.running()
    pid = before["dpe"]["pid"]
    rig.cped.kill()
    killed_at = time.time()
    rig.until(lambda: lease_renewed_at(rig) > killed_at + 1.0, what="renewals without cped")
    assert rig.dpes() == [pid]
    rig.new_cped()
    adopted = rig.running()
    assert adopted["dpe"]["pid"] == pid and adopted["dpe"]["adopted"] is True
    assert adopted["dpe"]["lease_epoch"] == before["dpe"]["lease_epoch"]
    assert ("dpe-adopted", f"adopted the running dpe (pid {pid}, lease epoch 1)") in (
        rig.dpe_events()
    )
    time.sleep(0.5)
    assert rig.dpes() == [pid], "a duplicate DPE was started"
    assert instance_ids(adopted) == instance_ids(before)

    # an adopted DPE is not cped's child: its death is still noticed at once
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    dpe = replaced(rig, adopted["dpe"])
    assert time.monotonic() - killed_at < REPLACEMENT_BOUND
    assert dpe["adopted"] is False
    assert any("exited with an unknown status" in why for _, why in rig.dpe_events())


def test_an_orderly_cped_stop_leaves_the_dpe_running(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    pid = rig.running()["dpe"]["pid"]
    stopped_cped = control.stop(rig.paths)  # as ``pcloudsh stop`` does
    assert stopped_cped["pid"] == rig.cped.pid and stopped_cped["still_running"] == ["shop"]
    assert rig.cped.stop() == 0
    assert rig.dpes() == [pid]
    rig.new_cped()
    assert rig.running()["dpe"]["pid"] == pid
    stopped = rig.client.stop_deployable("shop")
    assert stopped["state"] == "stopped" and stopped["dpe"]["pid"] == pid
    assert rig.processes() == {}


def test_a_new_cped_starts_what_should_run_and_stops_what_should_not(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.put_deployable("idle", shop("a2", name="idle"))
    rig.client.start_deployable("shop")
    rig.client.start_deployable("idle")
    shop_pid = rig.running("shop")["dpe"]["pid"]
    idle_pid = rig.running("idle")["dpe"]["pid"]
    rig.cped.kill()
    os.kill(shop_pid, signal.SIGKILL)  # both die: nobody holds shop's lease any more
    os.kill(idle_pid, signal.SIGKILL)
    rig.until(lambda: rig.dpes("shop") == [] and rig.dpes("idle") == [], 5.0, "DPEs gone")
    with sqlite3.connect(rig.paths.store_file) as db:  # as if stopped while cped was down
        db.execute("UPDATE deployables SET desired_state = 'stopped' WHERE name = 'idle'")
    assert guest_pids(rig), "instances outlive their DPE"
    rig.new_cped()
    assert rig.running("shop")["dpe"]["pid"] not in (None, shop_pid)
    rig.until(
        lambda: rig.status("idle")["state"] == "stopped" and rig.dpes("idle") == [],
        15.0,
        "idle stopped and its DPE gone",
    )
    assert rig.status("idle")["assemblies"][0]["instance"] is None


# -- a DPE late because it could not run ---------------------------------------------------

DOUBT_LIMIT = (
    6.0  # 6 lease times (lease_ttl = 1 s here): the longest a DPE that cannot run is waited for
)


def test_a_dpe_stopped_for_four_lease_times_is_not_killed(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    before = rig.running()["dpe"]
    os.kill(before["pid"], signal.SIGSTOP)
    try:
        time.sleep(4.0)  # its lease expired 3 s ago
    finally:
        os.kill(before["pid"], signal.SIGCONT)
    resumed_at = time.time()
    rig.until(lambda: lease_renewed_at(rig) > resumed_at, what="the lease renewed again")
    dpe = rig.status()["dpe"]
    assert (dpe["pid"], dpe["lease_epoch"]) == (before["pid"], before["lease_epoch"])
    assert rig.dpes() == [before["pid"]]
    assert not [why for kind, why in rig.dpe_events() if kind == "dpe-killed"]
    log = rig.until(
        lambda: "renewed its lease again, not killed" in (text := rig.cped.log()) and text,
        what="cped's note of the late DPE",
    )
    found = re.search(r"could run [\d.]+ s \(waited [\d.]+ s for a CPU, stopped ([\d.]+) s\)", log)
    assert found and float(found.group(1)) >= 2.0  # the doubt began once the lease was overdue


def test_a_dpe_stopped_beyond_the_limit_is_killed_and_replaced(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    before = rig.running()["dpe"]
    os.kill(before["pid"], signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        dpe = rig.until(
            lambda: (d := rig.status()["dpe"])["pid"] not in (None, before["pid"]) and d,
            within=DOUBT_LIMIT + 10.0,
            what="a new DPE",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(before["pid"], signal.SIGCONT)
    took = time.monotonic() - stopped_at
    print(f"stopped DPE replaced after {took:.1f} s")
    assert took >= DOUBT_LIMIT
    (killed,) = [why for kind, why in rig.dpe_events() if kind == "dpe-killed"]
    assert killed.startswith(f"dpe (pid {before['pid']}) has not renewed its lease for")
    found = re.search(
        r"could run ([\d.]+) s \(waited [\d.]+ s for a CPU, stopped ([\d.]+) s\)", killed
    )
    assert found and float(found.group(1)) < 1.0 and float(found.group(2)) >= DOUBT_LIMIT - 1.0
    assert rig.running()["dpe"]["pid"] == dpe["pid"]
