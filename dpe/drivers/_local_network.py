"""A local instance's network: loopback with a free port, or a namespace of its own."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from dpe.drivers import _netns
from dpe.drivers._local_instance import InstanceRecord
from dpe.drivers._sockets import LOOPBACK, free_port


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    netns: str = ""
    veth: str = ""


class Network:
    host_netns = ""  # where the host side of guests' links lives ("": here)

    async def prepare(self) -> None:
        return None

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        raise NotImplementedError

    async def attach(self, record: InstanceRecord) -> None:
        return None

    async def release(self, record: InstanceRecord) -> None:
        return None


class Loopback(Network):
    """sshd on 127.0.0.1, a free port each."""

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        return Endpoint(LOOPBACK, free_port())


class NetnsNetwork(Network):
    """A network namespace each, port 22 on its own address (see ``_netns``)."""

    def __init__(self, subnet: ipaddress.IPv4Network, host_netns: str = "") -> None:
        self.subnet = subnet
        self.bridge = _netns.bridge_name(subnet)
        self.host_netns = host_netns

    async def prepare(self) -> None:
        await _netns.ensure_bridge(self.subnet, self.host_netns)

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        """An address no instance of this host has, whichever cped home made it: the
        bridge is the host's (see ``_netns``)."""
        used = _netns.used_addresses(instances_dir, self.subnet)
        netns, veth = _netns.netns_name(instance_id), _netns.veth_name(instance_id)
        with _netns.host_lock():
            address = _netns.reserve(self.subnet, used, netns)
        return Endpoint(str(address), 22, netns, veth)

    async def attach(self, record: InstanceRecord) -> None:
        await _netns.delete_namespace(record.netns, record.veth, self.host_netns)  # a retry's
        await _netns.ensure_bridge(self.subnet, self.host_netns)  # the last instance may have gone
        address = ipaddress.IPv4Address(record.address)
        await _netns.add_namespace(
            record.netns, record.veth, self.bridge, address, self.subnet.prefixlen, self.host_netns
        )

    async def release(self, record: InstanceRecord) -> None:
        """The instance is gone: its namespace, its address, and the bridge if it was
        the last one on it."""
        await _netns.delete_namespace(record.netns, record.veth, self.host_netns)
        with _netns.host_lock():
            _netns.release(record.address, record.netns)
            await _netns.remove_bridge_if_unused(self.subnet, self.host_netns)
