"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``.
The libvirt driver is imported only when asked for: it needs libvirt-python,
which a host running only local deployables may not have.  Bad settings raise
``InvalidInput`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from dpe.drivers.local import LocalDriver
from dpe.interfaces import Driver
from foundation.errors import InvalidInput, Unavailable
from foundation.paths import Paths

AVAILABLE = ("local", "libvirt")


def make_driver(name: str, paths: Paths, settings: Mapping[str, str] | None = None) -> Driver:
    """The driver for infrastructure ``name`` (local, libvirt, openstack)."""
    if name == "local":
        return LocalDriver(paths, settings or {})
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
