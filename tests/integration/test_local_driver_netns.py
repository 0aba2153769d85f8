"""Local guests in their own network namespaces (root): addresses, reachability, partitions."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dpe.drivers import _netns
from dpe.drivers.local import LocalDriver
from dpe.transport import SshTransport
from foundation.errors import Conflict, OperationTimeout
from foundation.keyfiles import AssemblyKeys
from foundation.paths import Paths, resolve
from tests.conftest import make_home
from tests.integration import test_local_driver_support as support
from tests.integration.test_local_driver_support import (
    CONNECT_TIMEOUT,
    assembly,
    destroy_everything,
    instance_processes,
    still_alive,
)

# fixtures
key_dir, ssh_keys = support.key_dir, support.ssh_keys

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    ),
]


@pytest.fixture
async def netns_driver(pcloud_home: Paths) -> AsyncIterator[LocalDriver]:
    # a subnet of its own, so that concurrent test runs do not meet
    subnet = ipaddress.IPv4Network(f"10.236.{random.randrange(100, 250)}.0/29")
    driver = LocalDriver(pcloud_home, {"network": "netns", "subnet": str(subnet)})
    try:
        yield driver
    finally:
        await destroy_everything(driver)
        subprocess.run(
            ["ip", "link", "delete", _netns.bridge_name(subnet)], check=False, timeout=10
        )


async def test_each_instance_has_its_own_address_and_they_reach_each_other(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    web = await netns_driver.create("shop", assembly("web"), ssh_keys)
    db = await netns_driver.create("shop", assembly("db"), ssh_keys)
    subnet = netns_driver.settings.subnet
    assert web.address != db.address
    assert {ipaddress.IPv4Address(web.address), ipaddress.IPv4Address(db.address)} < set(subnet)
    assert web.ssh_host == web.address and web.ssh_port == 22
    connection = await SshTransport().connect(web, ssh_keys, CONNECT_TIMEOUT)
    try:
        own = await connection.run("ip -4 -o addr show dev eth0", 5)
        assert f"inet {web.address}/" in own.stdout
        peer = await connection.run(f"echo > /dev/tcp/{db.address}/22 && echo reached", 5)
        assert peer.stdout.strip() == "reached"
        routes = await connection.run("ip route show default", 5)
        assert routes.stdout.strip() == ""  # no way out of the subnet
    finally:
        await connection.close()


async def test_a_partition_makes_the_keepalive_time_out(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    web = await netns_driver.create("shop", assembly("web"), ssh_keys)
    connection = await SshTransport().connect(web, ssh_keys, CONNECT_TIMEOUT)
    veth = web.extra["veth"]
    try:
        subprocess.run(["ip", "link", "set", veth, "down"], check=True, timeout=10)
        with pytest.raises(OperationTimeout):
            await connection.keepalive(0.5)
        subprocess.run(["ip", "link", "set", veth, "up"], check=True, timeout=10)
        for _ in range(50):  # TCP retransmits the lost request
            try:
                await connection.keepalive(0.5)
                break
            except OperationTimeout:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("no keepalive answer after the partition healed")
    finally:
        await connection.close()


async def test_destroy_removes_the_namespace_and_frees_the_address(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    first = await netns_driver.create("shop", assembly("web"), ssh_keys)
    processes = instance_processes(first)
    await netns_driver.destroy(first.instance_id)
    assert still_alive(processes) == []
    assert not (Path("/run/netns") / first.extra["netns"]).exists()
    assert not (Path("/sys/class/net") / first.extra["veth"]).exists()
    second = await netns_driver.create("shop", assembly("web"), ssh_keys)
    assert second.address == first.address


async def test_a_full_subnet_is_a_clear_error(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    hosts = netns_driver.settings.subnet.num_addresses - 3  # network, broadcast, bridge
    for _ in range(hosts):
        await netns_driver.create("shop", assembly("web"), ssh_keys)
    with pytest.raises(Conflict, match="no free address"):
        await netns_driver.create("shop", assembly("web"), ssh_keys)
    assert len(await netns_driver.list("shop")) == hosts


async def test_instances_coming_and_going_do_not_cut_off_the_others(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    """A bridge takes the lowest MAC address of its ports unless it has one of
    its own: it must keep one address, or every namespace's neighbour entry for
    the host goes stale when a port comes or goes, and their answers are lost."""
    bridge = Path("/sys/class/net", _netns.bridge_name(netns_driver.settings.subnet))
    db = await netns_driver.create("shop", assembly("db"), ssh_keys)
    connection = await SshTransport().connect(db, ssh_keys, CONNECT_TIMEOUT)
    try:
        mac = (bridge / "address").read_text()
        for _ in range(5):  # a new port has a lower MAC than db's half the time
            web = await netns_driver.create("shop", assembly("web"), ssh_keys)
            assert (bridge / "address").read_text() == mac
            await connection.keepalive(1.0)
            await netns_driver.destroy(web.instance_id)
            assert (bridge / "address").read_text() == mac
            await connection.keepalive(1.0)
    finally:
        await connection.close()


async def test_two_homes_on_one_subnet_never_share_an_address_and_the_bridge_goes_last(
    netns_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    """The bridge is the host's: a second cped home's instances get other addresses,
    and the bridge (with its address and route) goes with the last namespace."""
    subnet = netns_driver.settings.subnet
    other_home = make_home()
    other = LocalDriver(
        resolve({"PCLOUD_HOME": str(other_home)}), {"network": "netns", "subnet": str(subnet)}
    )
    bridge = Path("/sys/class/net", _netns.bridge_name(subnet))
    try:
        mine = await netns_driver.create("shop", assembly("web"), ssh_keys)
        theirs = await other.create("shop", assembly("web"), ssh_keys)
        assert mine.address != theirs.address
        connection = await SshTransport().connect(theirs, ssh_keys, CONNECT_TIMEOUT)
        await connection.close()
        await netns_driver.destroy(mine.instance_id)
        assert bridge.exists()  # the other home's instance is still on it
        await other.destroy(theirs.instance_id)
        assert not bridge.exists()
        routes = subprocess.run(
            ["ip", "-4", "route", "show", str(subnet)], capture_output=True, text=True, timeout=10
        )
        assert routes.stdout.strip() == ""
    finally:
        await destroy_everything(other)
        shutil.rmtree(other_home, ignore_errors=True)
