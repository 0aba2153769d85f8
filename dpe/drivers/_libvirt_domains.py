"""libvirt calls on the driver's domains; they block: run them in a worker thread.

Each turns libvirt's "no such domain" (and its kin) into an answer where that
is one (``None``, ``GONE``), and lets other libvirt errors through
(``libvirt_errors`` makes them ``Unavailable``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]

from dpe.drivers._libvirt_xml import METADATA_NS, InstanceMeta
from dpe.interfaces import Instance, InstanceState
from foundation.errors import Unavailable

CONSOLE = "console.log"  # the serial console's log, in the instance's directory
RUNNING_STATES = (
    libvirt.VIR_DOMAIN_RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED,  # frozen, not dead: the heartbeat decides
)
METADATA_ELEMENT = libvirt.VIR_DOMAIN_METADATA_ELEMENT
LIVE_AND_CONFIG = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG


@contextlib.contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise Unavailable(f"{what}: libvirt: {exc.get_error_message()}") from None


def connection_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def lookup(conn: Any, name: str) -> Any:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def read_meta(domain: Any) -> InstanceMeta | None:
    try:
        return InstanceMeta.from_xml(domain.metadata(METADATA_ELEMENT, METADATA_NS))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise


def power_off(domain: Any) -> None:
    try:
        domain.destroy()  # qemu is killed (SIGTERM, then SIGKILL) before this returns
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (
            libvirt.VIR_ERR_OPERATION_INVALID,
            libvirt.VIR_ERR_NO_DOMAIN,
        ):
            raise


def undefine(domain: Any) -> None:
    try:
        domain.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def domain_state(domain: Any, ready: bool) -> InstanceState:
    try:
        code = domain.state()[0]
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return InstanceState.GONE
        raise
    if code in RUNNING_STATES:
        return InstanceState.RUNNING if ready else InstanceState.PENDING
    return InstanceState.STOPPED


def leased_address(domain: Any) -> str:
    try:
        interfaces = domain.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return ""
    for interface in (interfaces or {}).values():
        for entry in interface.get("addrs") or []:
            if entry.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                return str(entry["addr"])
    return ""


def to_instance(meta: InstanceMeta, state: InstanceState, uri: str) -> Instance:
    return Instance(
        instance_id=meta.instance_id,
        deployable=meta.deployable,
        assembly=meta.assembly,
        address=meta.address,
        hostname=meta.assembly.replace("_", "-").rstrip("-."),
        ssh_host=meta.ssh_host,
        ssh_port=meta.ssh_port,
        state=state,
        created_at=meta.created_at,
        extra={
            "domain": meta.instance_id,
            "uri": uri,
            "network": meta.network,
            "dir": meta.directory,
            "console": str(Path(meta.directory) / CONSOLE),
        },
    )


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
