"""A network partition between the engine and an instance (network-namespace mode).

Each instance of the deployable runs in its own network namespace on a bridge
(``settings.network = netns``, a private /28 of its own).  The host side of
one instance's veth pair goes down: its processes live on, but the engine no
longer hears it.  The DPE must notice (no heartbeat), fence the instance
(every process of it gone, its namespace and veth deleted) and only then
create a new one; when the link is brought back up, there is nothing to bring
back: the old instance never reappears beside the new one, and the other
assembly is not disturbed.  The short form partitions once; the long form
(``PCLOUD_SOAK=1``) ten times, alternately each assembly's instance.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.control import process_alive
from dpe.drivers import _netns
from tests.faults.soaking import Tally, long_or_short
from tests.faults.test_agent_faults import in_order
from tests.faults.test_fencing import inits_of
from tests.integration.test_lifecycle import Rig, shop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("both_modes"),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    ),
]

PARTITIONS = int(long_or_short(10, 1))  # alternately a1's and a2's instance


@pytest.fixture
def subnet() -> Iterator[ipaddress.IPv4Network]:
    """A subnet of the test's own (concurrent runs do not meet); its bridge is
    deleted afterwards (the rig's teardown has destroyed the instances)."""
    network = ipaddress.IPv4Network(
        f"10.237.{random.randrange(0, 256)}.{16 * random.randrange(16)}/28"
    )
    yield network
    subprocess.run(["ip", "link", "delete", _netns.bridge_name(network)], check=False, timeout=10)


@pytest.fixture
def netns_rig(rig: Rig, subnet: ipaddress.IPv4Network) -> Iterator[Rig]:
    yield rig
    rig.teardown()  # before the bridge goes: the instances' veths are its ports
    bridge = _netns.bridge_name(subnet)
    ports = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True, timeout=10
    )
    assert ports.stdout.strip() == "", f"instances' veths left on the bridge: {ports.stdout}"


def link(veth: str, state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "link", "set", veth, state], capture_output=True, text=True, timeout=10
    )


def row(status: dict[str, Any], assembly: str) -> dict[str, Any]:
    return next(a for a in status["assemblies"] if a["name"] == assembly)


def partition(rig: Rig, tally: Tally, assembly: str, subnet: ipaddress.IPv4Network) -> float:
    """Partition ``assembly``'s instance; check what follows; seconds to recover."""
    other = "a2" if assembly == "a1" else "a1"
    before = rig.running(within=40.0)
    since = rig.client.query_events(deployable="shop", limit=1)  # the newest event
    old_id, old_address = row(before, assembly)["instance"], row(before, assembly)["address"]
    assert ipaddress.IPv4Address(old_address) in subnet
    (old_init,) = inits_of(rig, assembly)
    veth, netns = _netns.veth_name(old_id), _netns.netns_name(old_id)
    assert Path("/sys/class/net", veth).exists() and (_netns.NETNS_DIR / netns).exists()

    partitioned = time.monotonic()
    assert link(veth, "down").returncode == 0
    tally.fault("veth down between the engine and an instance")
    rig.until(lambda: inits_of(rig, assembly) - {old_init}, 20.0, f"a new {assembly} instance")
    after = rig.running(within=30.0)
    recovered = time.monotonic() - partitioned

    tally.check("the old instance's processes are gone", not process_alive(old_init))
    tally.check("its network namespace is deleted", not (_netns.NETNS_DIR / netns).exists())
    back = link(veth, "up")  # the link "returns": nothing of the old instance is left to join
    tally.check("its veth is deleted (the link cannot return)", back.returncode != 0, back.stdout)
    time.sleep(1.5)  # three heartbeats: a revived instance would be seen by now
    final = rig.running()
    new_id = row(final, assembly)["instance"]
    tally.check("a new instance replaced it", new_id not in (None, old_id))
    same = new_id == row(after, assembly)["instance"]
    tally.check("the replacement stays (no second replacement)", same)
    tally.check("one instance after the link returns", len(inits_of(rig, assembly)) == 1)
    undisturbed = row(before, other)["instance"] == row(final, other)["instance"]
    tally.check("the other assembly is not disturbed", undisturbed)
    after_id = int(since[0]["id"]) if since else 0
    events = rig.client.query_events(
        deployable="shop", assembly=assembly, after_id=after_id, limit=1000
    )
    story = [f"{e['state']}: {e['reason']}" for e in events]
    expected = [
        "failed: no heartbeat for",
        "fencing: fencing the failed instance",
        f"stopped: instance {old_id} destroyed",
        "creating: creating an instance",
        "running:",
    ]
    fenced_first = in_order(story, expected)
    tally.check("detected, fenced, destroyed, then re-created", fenced_first, str(story))
    return recovered


def test_a_partitioned_instance_is_detected_fenced_and_replaced_once(
    netns_rig: Rig, subnet: ipaddress.IPv4Network
) -> None:
    rig, tally = netns_rig, Tally("network partition")
    document = shop("a1", "a2") | {"settings": {"network": "netns", "subnet": str(subnet)}}
    rig.client.put_deployable("shop", document)
    rig.client.start_deployable("shop")
    recoveries = []
    try:
        for round_ in range(PARTITIONS):
            recoveries.append(partition(rig, tally, ("a1", "a2")[round_ % 2], subnet))
    finally:
        tally.figures["partition_to_running_s"] = [round(s, 2) for s in recoveries]
        tally.save()
    assert tally.violations == [], tally.violations
