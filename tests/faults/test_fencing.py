"""An instance that stops answering while its processes live (SIGSTOP of its sshd).

The DPE must detect it by the heartbeat and fence it before replacing it:
the old instance's processes are gone before a new instance of the assembly
exists.  A sampler watches the guests' processes the whole time, so an
overlap of even a few milliseconds is seen.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cpe.control import process_alive
from tests.faults.test_agent_faults import in_order
from tests.integration.test_lifecycle import Rig, shop
from tests.integration.test_local_driver_support import signal_the_living

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_modes")]


def inits_of(rig: Rig, assembly: str) -> set[int]:
    """pids of the guest inits of ``assembly`` (one per instance)."""
    marker = f"/shop/{assembly}/"
    return {
        pid
        for pid, argv in rig.processes().items()
        if "_guest_init.py" in " ".join(argv) and marker in " ".join(argv)
    }


def sshds_of(init_pid: int) -> list[int]:
    namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and os.readlink(entry / "ns" / "pid") == namespace
                and (entry / "comm").read_text().strip() == "sshd"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_frozen_sshd_is_fenced_before_its_replacement_starts(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    before = rig.running()
    (old,) = inits_of(rig, "a1")
    overlaps: list[set[int]] = []
    done = threading.Event()

    def sample() -> None:
        """Seeing a new instance, then the old one still alive, is an overlap."""
        while not done.is_set():
            new = inits_of(rig, "a1") - {old}
            if new and process_alive(old):
                overlaps.append(new)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        frozen = signal_the_living(sshds_of(old), signal.SIGSTOP)
        assert frozen
        rig.until(lambda: inits_of(rig, "a1") - {old}, 15.0, "a new a1 instance")
        after = rig.running()
    finally:
        done.set()
        sampler.join()
    assert overlaps == [], "the old and the new a1 instance ran at the same time"
    assert not inits_of(rig, "a1") & {old}
    assert all(not Path(f"/proc/{pid}").exists() for pid in frozen), "a frozen sshd survived"
    old_id = next(a["instance"] for a in before["assemblies"] if a["name"] == "a1")
    events = rig.client.query_events(deployable="shop", assembly="a1", limit=1000)
    story = [f"{e['state']}: {e['reason']}" for e in events]
    assert in_order(
        story,
        [
            "failed: no heartbeat for",
            "fencing: fencing the failed instance",
            f"stopped: instance {old_id} destroyed",
            "creating: creating an instance",
        ],
    ), story
    a2 = [a["instance"] for s in (before, after) for a in s["assemblies"] if a["name"] == "a2"]
    assert a2[0] == a2[1], "a2 was disturbed"
    time.sleep(0.3)
    assert len(inits_of(rig, "a1")) == 1
