"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``.
The libvirt driver is imported only when asked for: it needs libvirt-python,
which a host running only local deployables may not have.  Bad settings raise
``InvalidInput`` naming the key; ``check_settings`` raises the same before anything
runs, so that cped refuses bad settings when they are written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dpe.drivers._libvirt_settings import LibvirtSettings
from dpe.drivers.local import LocalDriver, LocalSettings
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


# Only the defaults of the libvirt image directories derive from the paths: a
# placeholder checks the settings as well as the real ones.
_ANY_PATHS = Paths(config_dir=Path("."), state_dir=Path("."), runtime_dir=Path("."))


def check_settings(name: str, settings: Mapping[str, str]) -> None:
    """Refuse ``settings`` the driver of ``name`` would refuse (InvalidInput, every
    problem named ``settings.KEY``); a driver not on this host is not checked here."""
    root = os.geteuid() == 0
    if name == "local":
        LocalSettings.parse(settings, root=root)
    elif name == "libvirt":
        LibvirtSettings.parse(settings, _ANY_PATHS, root=root)
