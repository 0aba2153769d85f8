"""The seam between the openstack driver and the cloud: what the driver asks of it.

``Cloud`` is a handful of blocking calls (the driver runs each in a worker
thread with a timeout); ``dpe.drivers.openstack_sdk.SdkCloud`` implements them
with openstacksdk, the unit tests with a hand-written fake.  The records are
plain data, so nothing of openstacksdk leaks past this seam, and the errors are
the project's own: ``CloudUnreachable`` (no answer: never a reason to fence),
``CloudRefused`` (an answer that says no: quota, no valid host, a conflict) and
``NotFound``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from foundation.errors import Unavailable

# what marks the servers, images and key pairs pacemaker-cloud made
OWNER_KEY = "pcloud_owner"
OWNER = "pacemaker-cloud"
DEPLOYABLE_KEY = "pcloud_deployable"
ASSEMBLY_KEY = "pcloud_assembly"
CREATED_KEY = "pcloud_created"
HASH_KEY = "pcloud_sha256"
SERVER_PREFIX = "pc-"

Progress = Callable[[float], None]  # fraction uploaded, 0 to 1


class CloudUnreachable(Unavailable):
    """The cloud's API did not answer (connection refused, timed out, 502/503/504)."""


class CloudRefused(Unavailable):
    """The cloud answered no: quota exceeded, no valid host, a conflict, a bad request."""


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str  # nova's: ACTIVE, BUILD, SHUTOFF, ERROR, DELETED, SOFT_DELETED...
    metadata: Mapping[str, str] = field(default_factory=dict)
    fault: str = ""  # nova's fault message for a server in ERROR


@dataclass(frozen=True)
class ServerSpec:
    name: str
    image_id: str
    flavor_id: str
    network_id: str
    key_name: str
    user_data: str  # text; the cloud layer encodes it
    metadata: Mapping[str, str]
    security_group: str | None = None
    availability_zone: str | None = None


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    status: str  # glance's: active, queued, saving, killed...
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageUpload:
    name: str
    path: Path
    disk_format: str  # qcow2, raw, aki, ari
    container_format: str  # bare, aki, ari
    properties: Mapping[str, str]


class Cloud(Protocol):
    """Blocking calls to one cloud; each raises CloudUnreachable, CloudRefused or NotFound."""

    def flavor_id(self, name: str) -> str | None: ...

    def network_id(self, name: str) -> str | None: ...

    def security_group_id(self, name: str) -> str | None: ...

    def availability_zones(self) -> list[str]: ...

    def find_image(self, name: str, sha256: str) -> Image | None:
        """The image of that name holding content of this hash (any status)."""
        ...

    def upload_image(self, upload: ImageUpload, progress: Progress) -> Image: ...

    def delete_image(self, image_id: str) -> None: ...

    def our_images(self) -> list[Image]: ...

    def ensure_keypair(self, name: str, public_key: str) -> None: ...

    def delete_keypair(self, name: str) -> None: ...

    def create_server(self, spec: ServerSpec) -> Server: ...

    def get_server(self, server_id: str) -> Server | None:
        """None once the API says it does not exist."""
        ...

    def servers(self, name_prefix: str) -> list[Server]:
        """Servers whose name starts with ``name_prefix`` (not deleted ones)."""
        ...

    def delete_server(self, server_id: str, force: bool) -> None:
        """Ask for deletion (``force``: nova's force-delete of a soft-deleted server)."""
        ...

    def server_address(self, server_id: str, network_id: str) -> str | None:
        """The first IPv4 address of the server's port on that network (None: no port yet)."""
        ...

    def console_tail(self, server_id: str) -> str:
        """The last lines of the server's console log."""
        ...

    def close(self) -> None: ...
