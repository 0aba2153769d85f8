"""Infrastructure drivers, chosen by the deployable's ``infrastructure`` name.

``make_driver(name, paths, settings)`` returns a ``dpe.interfaces.Driver``.
The libvirt and openstack drivers are imported only when asked for: they need
libvirt-python and openstacksdk, which a host running only local deployables
may not have.  Bad settings raise ``InvalidInput`` naming the key;
``check_settings`` raises the same before anything runs, so that cped refuses
bad settings when they are written.  ``check_with_cloud`` is what cped asks
next: for openstack, that the cloud has the flavor, network, security group
and availability zone named (blocking: run it in a thread).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dpe.drivers._libvirt_settings import LibvirtSettings
from dpe.drivers.local import LocalDriver, LocalSettings
from dpe.interfaces import Driver
from foundation.errors import InvalidInput, Unavailable
from foundation.paths import Paths

AVAILABLE = ("local", "libvirt", "openstack")


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
    if name == "openstack":
        return _openstack_driver(paths, settings or {})
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


def setting_names(name: str) -> tuple[str, ...]:
    """Every setting the driver of infrastructure ``name`` accepts."""
    from dpe.drivers import _libvirt_settings, _openstack_settings, local

    known = {
        "local": local.SETTING_NAMES,
        "libvirt": _libvirt_settings.SETTING_NAMES,
        "openstack": _openstack_settings.SETTING_NAMES,
    }
    return known[name]


def check_settings(name: str, settings: Mapping[str, str]) -> None:
    """Refuse ``settings`` the driver of ``name`` would refuse (InvalidInput, every
    problem named ``settings.KEY``); a driver not on this host is not checked here."""
    root = os.geteuid() == 0
    if name == "local":
        LocalSettings.parse(settings, root=root)
    elif name == "libvirt":
        LibvirtSettings.parse(settings, _ANY_PATHS, root=root)
    elif name == "openstack":
        from dpe.drivers._openstack_settings import OpenStackSettings

        OpenStackSettings.parse(settings, _ANY_PATHS)


def _openstack_driver(paths: Paths, settings: Mapping[str, str]) -> Driver:
    from dpe.drivers._openstack_settings import OpenStackSettings

    parsed = OpenStackSettings.parse(settings, paths)  # bad input first, without the SDK
    try:
        from dpe.drivers.openstack_sdk import SdkCloud
    except ImportError as exc:
        raise Unavailable(
            "the openstack infrastructure needs openstacksdk (the 'openstack' extra), "
            f"which is not importable: {exc}"
        ) from None
    from dpe.drivers.openstack import OpenStackDriver

    return OpenStackDriver(paths, parsed, SdkCloud.connect)


def check_with_cloud(name: str, paths: Paths, settings: Mapping[str, str]) -> None:
    """InvalidInput naming what the infrastructure does not have (blocking)."""
    if name != "openstack":
        return
    driver = _openstack_driver(paths, settings)
    from dpe.drivers.openstack import OpenStackDriver, check_settings

    assert isinstance(driver, OpenStackDriver)

    async def check() -> None:
        try:
            await check_settings(driver)
        finally:
            await driver.close()

    asyncio.run(check())


def purge_images(
    name: str,
    paths: Paths,
    settings: Mapping[str, str],
    assemblies: list[str],
    public_keys: list[str],
) -> dict[str, list[str]]:
    """Remove what the infrastructure keeps for these assemblies (openstack: the
    images uploaded and the key pairs); what was removed, by kind (blocking)."""
    if name != "openstack":
        return {}
    driver = _openstack_driver(paths, settings)
    from dpe.drivers.openstack import OpenStackDriver

    assert isinstance(driver, OpenStackDriver)

    async def purge() -> dict[str, list[str]]:
        try:
            return await driver.purge(assemblies, public_keys)
        finally:
            await driver.close()

    return asyncio.run(purge())
