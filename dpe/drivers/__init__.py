"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``;
driver modules are imported only when asked for (each may need its own
library).  Bad settings raise ``InvalidInput`` naming the key.

Optional extension of the seam: a driver that can report instance deaths as
they happen (libvirt's lifecycle events) is also an ``InstanceWatcher``.  The
engine may subscribe once per driver::

    if isinstance(driver, InstanceWatcher):
        watch = await driver.watch(on_instance_state)   # in the engine's loop
        ...
        watch.close()

``on_instance_state(instance_id, state)`` then runs in that asyncio loop (never
in another thread) when an instance stopped or crashed (``STOPPED``) or was
undefined (``GONE``) by someone else than the driver's own ``destroy``.  It is a
hint that arrives at once, not a replacement for the heartbeat: events can be
lost (a libvirtd restart), repeated, or name instances the engine no longer
uses, so the callback checks the id and treats the state as a failure of that
instance.  A driver may also offer ``heartbeat_defaults`` (a
``dpe.model.Heartbeat``) suited to its guests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from dpe.errors import InvalidInput, Unavailable
from dpe.interfaces import Driver, InstanceState
from dpe.paths import Paths

AVAILABLE = ("local", "libvirt")


class Watch(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class InstanceWatcher(Protocol):
    async def watch(self, callback: Callable[[str, InstanceState], None]) -> Watch: ...


def make_driver(name: str, paths: Paths, settings: Mapping[str, str] | None = None) -> Driver:
    """The driver for infrastructure ``name`` (local, libvirt, openstack)."""
    if name == "local":
        from dpe.drivers.local import LocalDriver

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
