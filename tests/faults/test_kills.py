"""SIGKILL of dped and of cped at random moments during start, recovery and reload.

The moment is drawn from a seeded random generator (the seed is in every
failure message, ``PCLOUD_FAULT_SEED`` replays it).  After each kill the
deployable must converge (every assembly and resource running, a live DPE),
with exactly one instance per assembly (no duplicate, checked on the guests'
own processes), every event acknowledged before the kill still in the log,
and event ids that only grow.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import pytest

from tests.integration.test_lifecycle import Rig, dummy, shop

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_modes")]

SEED = int(os.environ.get("PCLOUD_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
ASSEMBLIES = ("a1", "a2")


@pytest.fixture
def chance() -> random.Random:
    return random.Random(SEED)


def guest_inits(rig: Rig) -> list[int]:
    return [pid for pid, argv in rig.processes().items() if "_guest_init.py" in " ".join(argv)]


def event_ids(rig: Rig) -> list[int]:
    """Every event id of the deployable, oldest first (paged)."""
    ids: list[int] = []
    while page := rig.client.query_events(
        deployable="shop", after_id=ids[-1] if ids else 0, limit=1000
    ):
        ids += [int(e["id"]) for e in page]
    return ids


def kill_dpe(rig: Rig) -> int:
    pid = int(rig.until(lambda: rig.status()["dpe"]["pid"], what="a DPE pid"))
    os.kill(pid, signal.SIGKILL)
    return pid


def lease_epoch(rig: Rig) -> int:
    lease = rig.client.deployable_status("shop")["dpe"].get("lease_epoch")
    return int(lease or 0)


def converged(
    rig: Rig, acknowledged: list[int], what: str, killed: int = 0, epoch: int = 0
) -> dict[str, Any]:
    """The invariants after a kill (``killed``: the DPE pid that must be replaced)."""
    rig.until(lambda: rig.status()["dpe"]["pid"] not in (None, killed), 15.0, "a new DPE")
    if killed:  # the replacement's takeover of the lease, not the old runtime, counts
        rig.until(lambda: lease_epoch(rig) > epoch, 15.0, "a higher lease epoch")
    status = rig.running(within=25.0)
    time.sleep(0.6)  # a duplicate would show up as a second guest by now
    context = f"{what} (PCLOUD_FAULT_SEED={SEED})"
    instances = [a["instance"] for a in status["assemblies"]]
    assert len(set(instances)) == len(ASSEMBLIES), context
    assert len(guest_inits(rig)) == len(ASSEMBLIES), f"duplicate or lost instance: {context}"
    assert len(rig.dpes()) == 1, f"not exactly one DPE: {context}"
    ids = event_ids(rig)
    assert ids == sorted(set(ids)), f"event ids reused or out of order: {context}"
    assert set(acknowledged) <= set(ids), f"an acknowledged event was lost: {context}"
    return status


def test_dped_killed_at_random_moments_of_its_start(rig: Rig, chance: random.Random) -> None:
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    for attempt in range(3):
        rig.client.start_deployable("shop")
        time.sleep(chance.uniform(0.0, 1.2))
        acknowledged = event_ids(rig)
        killed = kill_dpe(rig)
        converged(rig, acknowledged, f"start {attempt}", killed)
        rig.client.stop_deployable("shop")
        assert guest_inits(rig) == []


def test_dped_killed_at_a_random_moment_of_a_recovery(rig: Rig, chance: random.Random) -> None:
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    rig.client.start_deployable("shop")
    before = rig.running()
    for attempt in range(2):
        os.kill(chance.choice(guest_inits(rig)), signal.SIGKILL)  # an instance dies
        time.sleep(chance.uniform(0.0, 1.0))
        acknowledged, epoch = event_ids(rig), lease_epoch(rig)
        killed = kill_dpe(rig)
        after = converged(rig, acknowledged, f"recovery {attempt}", killed, epoch)
        assert after["dpe"]["lease_epoch"] > before["dpe"]["lease_epoch"]
        before = after


def test_dped_killed_at_a_random_moment_of_a_reload(rig: Rig, chance: random.Random) -> None:
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    rig.client.start_deployable("shop")
    before = rig.running()
    rig.client.add_resource("a1", dummy("extra"))
    rig.client.reload_deployable("shop")
    time.sleep(chance.uniform(0.0, 0.8))
    acknowledged, epoch = event_ids(rig), lease_epoch(rig)
    killed = kill_dpe(rig)
    after = converged(rig, acknowledged, "reload", killed, epoch)
    a1 = next(a for a in after["assemblies"] if a["name"] == "a1")
    assert {r["name"] for r in a1["resources"]} == {"a1-d", "extra"}
    assert {a["instance"] for a in after["assemblies"]} == {
        a["instance"] for a in before["assemblies"]
    }, "a reload re-created an instance"


def test_cped_killed_at_a_random_moment_of_a_start(rig: Rig, chance: random.Random) -> None:
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    rig.client.start_deployable("shop")
    time.sleep(chance.uniform(0.0, 1.2))
    acknowledged = event_ids(rig)
    rig.cped.kill()
    rig.new_cped()
    converged(rig, acknowledged, "cped killed during start")


def test_cped_and_dped_killed_together_during_a_recovery(rig: Rig, chance: random.Random) -> None:
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    rig.client.start_deployable("shop")
    rig.running()
    os.kill(chance.choice(guest_inits(rig)), signal.SIGKILL)
    time.sleep(chance.uniform(0.0, 0.8))
    acknowledged = event_ids(rig)
    rig.cped.kill()
    (killed,) = rig.dpes()
    os.kill(killed, signal.SIGKILL)
    rig.new_cped()
    converged(rig, acknowledged, "cped and dped killed during a recovery", killed)
