"""Settings of the openstack infrastructure driver (no openstacksdk import here).

``cloud``             the cloud's name in the operator's ``clouds.yaml`` (required); the
                      credentials stay there, never in the store, logs or events
``clouds_file``       an absolute path to that ``clouds.yaml`` (default: openstacksdk's own
                      search: ``OS_CLIENT_CONFIG_FILE``, ``~/.config/openstack``, ``/etc/openstack``)
``flavor``            the flavor of every server (required)
``network``           the network whose port gives each server its address (required)
``availability_zone`` optional
``security_group``    optional; it must let the engine's SSH (port 22) in
``notifications``     optional: an absolute path to a JSON file ``{"url": "amqp://..."}``
                      (or the rig's ``rabbitmq.json``) naming the cloud's RabbitMQ, where
                      nova sends versioned notifications; without it the servers list is
                      polled (``poll_interval``)
``images``            directory of the assembly disks ``<assembly>.qcow2``
                      (default ``<state>/images/assemblies``)
``jeos_images``       directory of the JEOS records ``<jeos>/jeos.json`` whose kernel, initrd and
                      command line go to the image service with the disk (default
                      ``<state>/images/jeos``)
``start_timeout``     from the create request until the server's sshd answers (default 280 s)
``delete_timeout``    until the API confirms a deleted server is gone (default 50 s)
``call_timeout``      one call to the cloud's API (default 60 s)
``upload_timeout``    one image upload (default 900 s)
``poll_interval``     how often the servers list is read for servers that died (default 3 s)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from foundation.model import Heartbeat, Problems, duration_setting
from foundation.paths import Paths

START_TIMEOUT = 280.0  # under the engine's 300 s create timeout; emulated guests boot slowly
DELETE_TIMEOUT = 50.0  # under the engine's 60 s destroy timeout
CALL_TIMEOUT = 60.0  # a first call authenticates; a loaded all-in-one cloud took 30 s and more
UPLOAD_TIMEOUT = 900.0
POLL_INTERVAL = 3.0
# The servers list and nova's notifications report a dead server within seconds; the SSH
# heartbeat to an emulated guest on a busy host can stall for seconds without it being dead.
HEARTBEAT = Heartbeat(interval=2.0, timeout=15.0, health_interval=30.0)
REQUIRED = ("cloud", "flavor", "network")
SETTING_NAMES = (
    *REQUIRED,
    "clouds_file",
    "availability_zone",
    "security_group",
    "notifications",
    "images",
    "jeos_images",
    "start_timeout",
    "delete_timeout",
    "call_timeout",
    "upload_timeout",
    "poll_interval",
)
# clouds.yaml keys, flavor, network and group names: printable, no spaces at the ends
_NAME_RE = re.compile(r"[^\s\x00-\x1f][^\x00-\x1f]{0,254}\Z")


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str
    flavor: str
    network: str
    images: Path
    jeos_images: Path
    clouds_file: Path | None = None
    availability_zone: str | None = None
    security_group: str | None = None
    notifications: Path | None = None
    start_timeout: float = START_TIMEOUT
    delete_timeout: float = DELETE_TIMEOUT
    call_timeout: float = CALL_TIMEOUT
    upload_timeout: float = UPLOAD_TIMEOUT
    poll_interval: float = POLL_INTERVAL

    @classmethod
    def parse(cls, settings: Mapping[str, str], paths: Paths) -> OpenStackSettings:
        """Typed settings; every problem reported at once, naming the key."""
        problems = Problems()
        for key in settings:
            if key not in SETTING_NAMES:
                problems.add(
                    f"settings.{key}", f"unknown setting (known: {', '.join(SETTING_NAMES)})"
                )
        for key in REQUIRED:
            if key not in settings:
                problems.add(f"settings.{key}", "required (set it with --set KEY=VALUE)")
        parsed = cls(
            cloud=_name(settings, "cloud", problems) or "",
            flavor=_name(settings, "flavor", problems) or "",
            network=_name(settings, "network", problems) or "",
            images=_path(settings, "images", problems) or paths.images_dir / "assemblies",
            jeos_images=_path(settings, "jeos_images", problems) or paths.images_dir / "jeos",
            clouds_file=_path(settings, "clouds_file", problems),
            availability_zone=_name(settings, "availability_zone", problems),
            security_group=_name(settings, "security_group", problems),
            notifications=_path(settings, "notifications", problems),
            start_timeout=_duration(settings, "start_timeout", START_TIMEOUT, problems),
            delete_timeout=_duration(settings, "delete_timeout", DELETE_TIMEOUT, problems),
            call_timeout=_duration(settings, "call_timeout", CALL_TIMEOUT, problems),
            upload_timeout=_duration(settings, "upload_timeout", UPLOAD_TIMEOUT, problems),
            poll_interval=_duration(settings, "poll_interval", POLL_INTERVAL, problems),
        )
        problems.raise_if_any("invalid settings for the openstack infrastructure")
        return parsed


def _name(settings: Mapping[str, str], key: str, problems: Problems) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not _NAME_RE.match(value) or value != value.strip():
        problems.add(f"settings.{key}", f"not a usable name: {value!r}")
    return value


def _path(settings: Mapping[str, str], key: str, problems: Problems) -> Path | None:
    value = settings.get(key)
    if value is None:
        return None
    if not value.startswith("/"):
        problems.add(f"settings.{key}", f"must be an absolute path, not {value!r}")
    return Path(value)


def _duration(settings: Mapping[str, str], key: str, default: float, problems: Problems) -> float:
    return duration_setting(settings.get(key), default, f"settings.{key}", problems)
