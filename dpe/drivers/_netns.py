"""Network namespaces for local guests (root only): one address per instance.

A bridge per subnet (``pcbr<crc32 of the subnet>``) holds the subnet's first
address on the host; each instance gets a network namespace ``pc-<id>`` with a
veth pair (``pcv<crc32 of the id>`` on the bridge, ``eth0`` inside) and the
lowest free address.  Namespaces have no default route: their traffic stays
between the host and the namespaces on the bridge.  Deleting the namespace
deletes its veth pair.

The bridge has a fixed MAC address of its own (``bridge_mac``).  A partition
of an instance is its veth going down (``extra["veth"]``).

The bridge is the host's, whatever ``PCLOUD_HOME`` a cped runs with, so addresses are
reserved host-wide: a file per address in ``HOST_DIR`` naming the namespace that holds
it, made under a host-wide lock (``reserve``).  A reservation whose namespace is gone
is free once it is older than ``RESERVATION_GRACE`` (a creation that died half-way).
The bridge goes when its last namespace does (``remove_bridge_if_unused``).

``host_netns``: the named network namespace holding the bridge and the
host ends of the veth pairs ("" = the caller's own), so DPEs running in
other namespaces (cluster members) share one guest network.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from foundation.errors import Conflict, Unavailable

NETNS_DIR = Path("/run/netns")
HOST_DIR = Path("/run/pacemaker-cloud/netns")  # host-wide, like the bridge
RESERVATION_GRACE = 120.0  # seconds a reservation holds without its namespace
IP = "ip"
_IP_TIMEOUT = 10.0


def bridge_name(subnet: ipaddress.IPv4Network) -> str:
    return f"pcbr{zlib.crc32(str(subnet).encode()):08x}"


def bridge_mac(subnet: ipaddress.IPv4Network) -> str:
    """A fixed, locally administered MAC address for the subnet's bridge."""
    digest = zlib.crc32(str(subnet).encode()).to_bytes(4, "big")
    return ":".join(f"{byte:02x}" for byte in (0x02, 0x70, *digest))


def guest_mac(address: ipaddress.IPv4Address) -> str:
    """A fixed, locally administered MAC address for a guest's address: an address
    used again by a new instance keeps its MAC, so the neighbour entries other
    namespaces (cluster members) still hold for it stay right, instead of
    pointing at a MAC that is gone for the seconds they take to expire."""
    return ":".join(f"{byte:02x}" for byte in (0x02, 0x71, *address.packed))


def veth_name(instance_id: str) -> str:
    return f"pcv{zlib.crc32(instance_id.encode()):08x}"


def netns_name(instance_id: str) -> str:
    return f"pc-{instance_id}"


def free_address(subnet: ipaddress.IPv4Network, used: Iterable[str]) -> ipaddress.IPv4Address:
    """The lowest host address of ``subnet`` that is not the bridge's nor used."""
    taken = {ipaddress.IPv4Address(a) for a in used} | {gateway(subnet)}
    for address in subnet.hosts():
        if address not in taken:
            return address
    raise Conflict(f"no free address left in {subnet} for a new instance")


def gateway(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The host's address on the bridge: the subnet's first host address."""
    return next(subnet.hosts())


def used_addresses(instances_dir: Path, subnet: ipaddress.IPv4Network) -> list[str]:
    """Addresses of every recorded instance (any deployable) inside ``subnet``."""
    used = []
    for metadata in instances_dir.glob("*/*/*/instance.json"):
        try:
            address = json.loads(metadata.read_text()).get("address", "")
            if ipaddress.IPv4Address(address) in subnet:
                used.append(address)
        except (OSError, ValueError, AttributeError):
            continue
    return used


@contextlib.contextmanager
def host_lock(host_dir: Path = HOST_DIR) -> Iterator[None]:
    """Held while addresses are reserved or a bridge is removed, by every cped home."""
    host_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(host_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def reserve(
    subnet: ipaddress.IPv4Network,
    used: Iterable[str],
    netns: str,
    host_dir: Path = HOST_DIR,
    netns_dir: Path = NETNS_DIR,
) -> ipaddress.IPv4Address:
    """The lowest address of ``subnet`` free on this host (not in ``used`` nor reserved
    by any cped home), reserved for ``netns``.  Call under ``host_lock``."""
    address = free_address(subnet, [*used, *reserved(host_dir, netns_dir)])
    (host_dir / str(address)).write_text(netns)
    return address


def reserved(host_dir: Path = HOST_DIR, netns_dir: Path = NETNS_DIR) -> list[str]:
    """Addresses held on this host: their namespace exists, or is still being made."""
    held = []
    for path in host_dir.glob("*.*.*.*"):
        with contextlib.suppress(OSError):
            netns = path.read_text().strip()
            young = time.time() - path.stat().st_mtime < RESERVATION_GRACE
            if young or (netns and (netns_dir / netns).exists()):
                held.append(path.name)
    return held


def release(address: str, netns: str, host_dir: Path = HOST_DIR) -> None:
    """Free ``address`` if ``netns`` still holds it (another may hold it by now)."""
    path = host_dir / address
    with contextlib.suppress(OSError):
        if path.read_text().strip() == netns:
            path.unlink()


async def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; raises ``Unavailable`` with its message when it fails."""
    process = await asyncio.create_subprocess_exec(
        IP,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(_IP_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise Unavailable(f"ip {' '.join(args)}: no answer within {_IP_TIMEOUT:g} s") from None
    if check and process.returncode != 0:
        raise Unavailable(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def _on(host_netns: str) -> tuple[str, ...]:
    return ("-n", host_netns) if host_netns else ()


async def _link_exists(name: str, host_netns: str) -> bool:
    if not host_netns:
        return Path("/sys/class/net", name).exists()  # noqa: ASYNC240 - sysfs never blocks
    return bool(
        (await ip(*_on(host_netns), "-o", "link", "show", "dev", name, check=False)).strip()
    )


async def ensure_bridge(subnet: ipaddress.IPv4Network, host_netns: str = "") -> str:
    """Create the subnet's bridge with the host's address, unless it exists."""
    bridge, on = bridge_name(subnet), _on(host_netns)
    if not await _link_exists(bridge, host_netns):
        await ip(*on, "link", "add", bridge, "type", "bridge", check=False)
    host = f"{gateway(subnet)}/{subnet.prefixlen}"
    if host.split("/")[0] not in await ip(*on, "-4", "-o", "addr", "show", "dev", bridge):
        await ip(*on, "addr", "add", host, "dev", bridge, check=False)
    await _fix_mac(bridge, bridge_mac(subnet), host_netns)
    await ip(*on, "link", "set", bridge, "up")
    return bridge


async def remove_bridge_if_unused(subnet: ipaddress.IPv4Network, host_netns: str = "") -> bool:
    """Delete the subnet's bridge (its address and route go with it) once no namespace
    is on it nor about to be: True if it went.  Under ``host_lock``: a reservation
    comes before a namespace is attached, and attaching makes the bridge again."""
    bridge = bridge_name(subnet)
    if not await _bridge_is_empty(bridge, host_netns):
        return False
    if any(ipaddress.IPv4Address(a) in subnet for a in reserved()):
        return False
    await ip(*_on(host_netns), "link", "delete", bridge, "type", "bridge", check=False)
    return True


async def _bridge_is_empty(bridge: str, host_netns: str) -> bool:
    """True if the bridge exists with no port on it."""
    if not host_netns:
        return _bridge_here_is_empty(bridge)
    if not await _link_exists(bridge, host_netns):
        return False
    shown = await ip(*_on(host_netns), "-o", "link", "show", "master", bridge, check=False)
    return not shown.strip()


def _bridge_here_is_empty(bridge: str) -> bool:
    """The same in this network namespace (sysfs reads never block)."""
    ports = Path("/sys/class/net", bridge, "brif")
    return ports.exists() and not any(ports.iterdir())


async def _fix_mac(bridge: str, mac: str, host_netns: str = "") -> None:
    """A bridge without an address of its own takes its ports' lowest, so it
    would change as instances come and go, and every namespace's neighbour
    entry for the host would go stale (their answers lost for seconds)."""
    shown = await ip(*_on(host_netns), "-o", "link", "show", "dev", bridge)
    if f"link/ether {mac}" not in shown:
        await ip(*_on(host_netns), "link", "set", bridge, "address", mac)


async def add_namespace(
    netns: str,
    veth: str,
    bridge: str,
    address: ipaddress.IPv4Address,
    prefixlen: int,
    host_netns: str = "",
) -> None:
    """A namespace with ``eth0`` at ``address``, its peer ``veth`` on ``bridge``."""
    on = _on(host_netns)
    await ip("netns", "add", netns)
    peer = ("name", "eth0", "address", guest_mac(address), "netns", netns)
    await ip(*on, "link", "add", veth, "type", "veth", "peer", *peer)
    await ip(*on, "link", "set", veth, "master", bridge, "up")
    await ip("-n", netns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
    await ip("-n", netns, "link", "set", "eth0", "up")
    await ip("-n", netns, "link", "set", "lo", "up")
    # the host may still map the address to a former instance's MAC (for seconds)
    await ip(*on, "neigh", "flush", "to", str(address), "dev", bridge, check=False)


async def delete_namespace(netns: str, veth: str, host_netns: str = "") -> None:
    """Delete the namespace (and so its veth pair); nothing if already gone."""
    if (NETNS_DIR / netns).exists():
        await ip("netns", "delete", netns)
    if veth and await _link_exists(veth, host_netns):
        await ip(*_on(host_netns), "link", "delete", veth, check=False)
