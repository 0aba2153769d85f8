"""Settings of the libvirt infrastructure driver (no libvirt import here).

``uri``           libvirt URI (default ``qemu:///system`` as root, else ``qemu:///session``)
``network``       ``user`` (default: qemu user-mode networking, the guest's port 22
                  forwarded to a free loopback port) or the name of a libvirt network
                  (NAT with DHCP, such as ``default``: the address comes from its leases)
``domain_type``   ``auto`` (default: ``kvm`` when KVM is usable, else ``qemu``, i.e. TCG),
                  ``kvm`` or ``qemu``
``memory``        MiB per VM (default 1024);  ``cpus`` (default 2: one doubles boot time)
``images``        directory of the assembly disks ``<assembly>.qcow2``
                  (default ``<state>/images/assemblies``)
``jeos_images``   directory of the JEOS images ``<jeos>/jeos.json`` whose kernel, initrd
                  and command line boot the VM directly (default ``<state>/images/jeos``)
``start_timeout`` a duration: from define until the guest's sshd answers (default 240 s,
                  for guests emulated without KVM on a busy host)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from foundation.model import Heartbeat, Problems, duration_setting
from foundation.paths import Paths

START_TIMEOUT = 240.0
DEFAULT_MEMORY_MB = 1024
DEFAULT_CPUS = 2
USER_NETWORK = "user"
DOMAIN_TYPES = ("auto", "kvm", "qemu")
# An SSH keepalive to an emulated guest can stall for seconds while the host is busy
# (TCG, other VMs booting); the libvirt events report a dead VM at once anyway.
HEARTBEAT = Heartbeat(interval=2.0, timeout=15.0, health_interval=30.0)
_NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
SETTING_NAMES = (
    "uri",
    "network",
    "domain_type",
    "memory",
    "cpus",
    "images",
    "jeos_images",
    "start_timeout",
)


def default_uri(root: bool) -> str:
    return "qemu:///system" if root else "qemu:///session"


@dataclass(frozen=True)
class LibvirtSettings:
    uri: str
    images: Path
    jeos_images: Path
    network: str = USER_NETWORK
    domain_type: str = "auto"
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: int = DEFAULT_CPUS
    start_timeout: float = START_TIMEOUT

    @classmethod
    def parse(
        cls, settings: Mapping[str, str], paths: Paths, *, root: bool | None = None
    ) -> LibvirtSettings:
        """Typed settings; every problem reported at once, naming the key."""
        root = os.geteuid() == 0 if root is None else root
        problems = Problems()
        for key in settings:
            if key not in SETTING_NAMES:
                problems.add(
                    f"settings.{key}", f"unknown setting (known: {', '.join(SETTING_NAMES)})"
                )
        parsed = cls(
            uri=_uri(settings.get("uri", default_uri(root)), problems),
            images=_directory(settings, "images", paths.images_dir / "assemblies", problems),
            jeos_images=_directory(settings, "jeos_images", paths.images_dir / "jeos", problems),
            network=_network(settings.get("network", USER_NETWORK), problems),
            domain_type=_domain_type(settings.get("domain_type", "auto"), problems),
            memory_mb=_count(settings, "memory", DEFAULT_MEMORY_MB, 128, 65536, problems),
            cpus=_count(settings, "cpus", DEFAULT_CPUS, 1, 64, problems),
            start_timeout=duration_setting(
                settings.get("start_timeout"), START_TIMEOUT, "settings.start_timeout", problems
            ),
        )
        problems.raise_if_any("invalid settings for the libvirt infrastructure")
        return parsed

    @property
    def user_network(self) -> bool:
        return self.network == USER_NETWORK


def _uri(value: str, problems: Problems) -> str:
    if not re.match(r"[a-z][a-z0-9+]*://", value) or any(c.isspace() for c in value):
        problems.add("settings.uri", f"not a libvirt URI: {value!r}")
    return value


def _directory(settings: Mapping[str, str], key: str, default: Path, problems: Problems) -> Path:
    value = settings.get(key)
    if value is None:
        return default
    if not value.startswith("/"):
        problems.add(f"settings.{key}", f"must be an absolute directory, not {value!r}")
    return Path(value)


def _network(value: str, problems: Problems) -> str:
    if not _NETWORK_RE.match(value):
        problems.add("settings.network", f"must be 'user' or a libvirt network name, not {value!r}")
    return value


def _domain_type(value: str, problems: Problems) -> str:
    if value not in DOMAIN_TYPES:
        problems.add("settings.domain_type", f"must be one of {', '.join(DOMAIN_TYPES)}")
    return value


def _count(
    settings: Mapping[str, str], key: str, default: int, low: int, high: int, problems: Problems
) -> int:
    value = settings.get(key)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        problems.add(f"settings.{key}", f"must be a whole number from {low} to {high}")
        return default
    return int(value)
