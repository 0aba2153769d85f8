"""Three (or more) cped members in network namespaces of their own, one guest network.

The layout, all created by the tests and removed by them:

- a bridge in the tests' own network namespace holds a private /24 of its
  own (``10.238.R.0/24``, R random): its first address is this namespace's,
  and PostgreSQL (``tests.postgres.PgServer``) listens there;
- this namespace gets a name (``ip netns attach``) so that every member's
  local driver puts its guests' links on that bridge (``[dped]
  local_bridge_netns``): a guest is reachable from every member, as a VM on
  a cloud network is;
- each member is a network namespace ``pcm-TAG-N`` with one veth pair, its
  host end on the bridge, ``eth0`` at ``.200+N`` inside; its cped runs there
  (``nsenter --net``), and so do the dpeds it starts.  A partition is that
  veth's host end going down: the member loses the store, the other members
  and the guests at once, as a host losing its link does.

Members' addresses sit at the top of the subnet, guests take the lowest free
ones (the local driver's rule), so they never meet below 200 guests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import socket
import subprocess
from dataclasses import dataclass, field

from dpe.drivers import _netns

IP_TIMEOUT = 10


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, timeout=IP_TIMEOUT, capture_output=True)


@dataclass
class NetnsRig:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(f"10.238.{random.randrange(256)}.0/24")
    )
    members: list[int] = field(default_factory=list)

    @property
    def host_netns(self) -> str:
        """The name given to the tests' own network namespace (guests' bridge)."""
        return f"pch-{self.tag}"

    @property
    def gateway(self) -> str:
        return str(_netns.gateway(self.subnet))

    @property
    def bridge(self) -> str:
        return _netns.bridge_name(self.subnet)

    def member_netns(self, index: int) -> str:
        return f"pcm-{self.tag}-{index}"

    def member_veth(self, index: int) -> str:
        return f"pcm{self.tag}{index}"  # the host end, on the bridge

    def member_address(self, index: int) -> str:
        return str(self.subnet.network_address + 200 + index)

    # -- up and down ---------------------------------------------------------------

    def up(self) -> None:
        ip("netns", "attach", self.host_netns, str(os.getpid()))
        asyncio.run(_netns.ensure_bridge(self.subnet))

    def add_member(self, index: int) -> str:
        netns, veth = self.member_netns(index), self.member_veth(index)
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", netns, "addr", "add", f"{self.member_address(index)}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        self.members.append(index)
        return netns

    def partition(self, index: int) -> None:
        ip("link", "set", self.member_veth(index), "down")

    def heal(self, index: int) -> None:
        ip("link", "set", self.member_veth(index), "up")

    def down(self) -> None:
        """Members' namespaces (their veths go with them), the name, the bridge."""
        for index in self.members:
            ip("netns", "delete", self.member_netns(index), check=False)
        ip("netns", "delete", self.host_netns, check=False)  # only the name: it is ours
        ip("link", "delete", self.bridge, check=False)

    def free_port(self) -> int:
        with socket.socket() as probe:
            probe.bind((self.gateway, 0))
            return int(probe.getsockname()[1])
