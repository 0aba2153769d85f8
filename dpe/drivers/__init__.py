"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``;
driver modules are imported only when asked for (each may need its own
library).  Bad settings raise ``InvalidInput`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from dpe.errors import InvalidInput
from dpe.interfaces import Driver
from dpe.paths import Paths

AVAILABLE = ("local",)


def make_driver(name: str, paths: Paths, settings: Mapping[str, str] | None = None) -> Driver:
    """The driver for infrastructure ``name`` (local, libvirt, openstack)."""
    if name == "local":
        from dpe.drivers.local import LocalDriver

        return LocalDriver(paths, settings or {})
    raise InvalidInput(
        f"infrastructure {name!r} has no driver here (available: {', '.join(AVAILABLE)})"
    )
