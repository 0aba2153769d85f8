"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``.
The libvirt driver is imported only when asked for: it needs libvirt-python,
which a host running only local deployables may not have.  Bad settings raise
``InvalidInput`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dpe.drivers.local import LocalDriver
from dpe.interfaces import Driver
from foundation.errors import InvalidInput, Unavailable
from foundation.paths import Paths

AVAILABLE = ("local", "libvirt")


@dataclass(frozen=True)
class LocalHost:
    """Where this member's local driver keeps instances and their bridge (``[dped]``)."""

    instances_dir: Path | None = None
    bridge_netns: str = ""


def make_driver(
    name: str,
    paths: Paths,
    settings: Mapping[str, str] | None = None,
    local: LocalHost | None = None,
) -> Driver:
    """The driver for infrastructure ``name`` (local, libvirt, openstack)."""
    if name == "local":
        host = local or LocalHost()
        return LocalDriver(
            paths, settings or {}, instances_dir=host.instances_dir, bridge_netns=host.bridge_netns
        )
    if name == "libvirt":
        return _libvirt_driver(paths, settings or {})
    raise InvalidInput(
        f"infrastructure {name!r} has no driver here (available: {', '.join(AVAILABLE)})"
    )


def _libvirt_driver(paths: Paths, settings: Mapping[str, str]) -> Driver:
    try:
        from dpe.drivers.libvirt import LibvirtDriver
    except ImportError as exc:
        raise Unavailable(
            f"the libvirt infrastructure needs libvirt-python, which is not importable: {exc}"
        ) from None
    return LibvirtDriver(paths, settings)
