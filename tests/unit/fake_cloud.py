"""A hand-written cloud behind the openstack driver's ``Cloud`` seam.

Servers, images and key pairs live in dictionaries; a few switches make the
cloud misbehave the ways a real one does: no answer, a quota, no valid host, a
server that will not go away, soft deletion.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace

from dpe.drivers._openstack_cloud import (
    CloudRefused,
    CloudUnreachable,
    Image,
    ImageUpload,
    Progress,
    Server,
    ServerSpec,
)
from dpe.drivers._openstack_settings import OpenStackSettings
from foundation.errors import NotFound

FLAVORS = {"m1.small": "flavor-1"}
NETWORKS = {"provider": "net-1"}
GROUPS = {"pcloud-ssh": "group-1"}
ZONES = ["nova"]


@dataclass
class FakeCloud:
    unreachable: bool = False
    refuse_create: str | None = None  # a refusal message, e.g. a quota
    boot_status: str = "ACTIVE"  # what a new server becomes
    boot_fault: str = ""
    stuck: set[str] = field(default_factory=set)  # servers a delete does not remove
    soft_delete: bool = False  # a delete leaves SOFT_DELETED until forced
    servers_by_id: dict[str, Server] = field(default_factory=dict)
    specs: dict[str, ServerSpec] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    uploads: list[ImageUpload] = field(default_factory=list)
    keypairs: dict[str, str] = field(default_factory=dict)
    deletes: list[tuple[str, bool]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, _settings: OpenStackSettings) -> FakeCloud:
        """The driver's factory: every worker thread gets this same cloud."""
        return self

    def _answer(self, call: str) -> None:
        with self._lock:
            self.calls.append(call)
        if self.unreachable:
            raise CloudUnreachable(f"{call}: the cloud does not answer: connection refused")

    def _new_id(self) -> str:
        return f"{next(self._ids):08d}-0000-4000-8000-000000000000"

    # -- lookups
    def flavor_id(self, name: str) -> str | None:
        self._answer("flavor_id")
        return FLAVORS.get(name)

    def network_id(self, name: str) -> str | None:
        self._answer("network_id")
        return NETWORKS.get(name)

    def security_group_id(self, name: str) -> str | None:
        self._answer("security_group_id")
        return GROUPS.get(name)

    def availability_zones(self) -> list[str]:
        self._answer("availability_zones")
        return list(ZONES)

    # -- images
    def find_image(self, name: str, sha256: str) -> Image | None:
        self._answer("find_image")
        for image in self.images.values():
            if image.name == name and image.properties.get("pcloud_sha256") == sha256:
                return image
        return None

    def upload_image(self, upload: ImageUpload, progress: Progress) -> Image:
        self._answer("upload_image")
        assert upload.path.is_file(), upload.path
        for fraction in (0.3, 0.6, 1.0):
            progress(fraction)
        image = Image(self._new_id(), upload.name, "active", dict(upload.properties))
        self.uploads.append(upload)
        self.images[image.id] = image
        return image

    def delete_image(self, image_id: str) -> None:
        self._answer("delete_image")
        self.images.pop(image_id, None)

    def our_images(self) -> list[Image]:
        self._answer("our_images")
        return list(self.images.values())

    def ensure_keypair(self, name: str, public_key: str) -> None:
        self._answer("ensure_keypair")
        self.keypairs.setdefault(name, public_key)

    def delete_keypair(self, name: str) -> None:
        self._answer("delete_keypair")
        self.keypairs.pop(name, None)

    # -- servers
    def create_server(self, spec: ServerSpec) -> Server:
        self._answer("create_server")
        if self.refuse_create:
            raise CloudRefused(f"creating server {spec.name}: {self.refuse_create}")
        if spec.image_id not in self.images:
            raise NotFound(f"creating server {spec.name}: image {spec.image_id} not found")
        server = Server(self._new_id(), spec.name, "BUILD", dict(spec.metadata))
        self.servers_by_id[server.id] = replace(
            server, status=self.boot_status, fault=self.boot_fault
        )
        self.specs[server.id] = spec
        self.addresses[server.id] = f"10.0.0.{len(self.specs) + 10}"
        return server

    def get_server(self, server_id: str) -> Server | None:
        self._answer("get_server")
        return self.servers_by_id.get(server_id)

    def servers(self, name_prefix: str) -> list[Server]:
        self._answer("servers")
        return [s for s in self.servers_by_id.values() if s.name.startswith(name_prefix)]

    def delete_server(self, server_id: str, force: bool) -> None:
        self._answer("delete_server")
        self.deletes.append((server_id, force))
        server = self.servers_by_id.get(server_id)
        if server is None or server_id in self.stuck:
            return
        if self.soft_delete and not force:
            self.servers_by_id[server_id] = replace(server, status="SOFT_DELETED")
            return
        del self.servers_by_id[server_id]

    def server_address(self, server_id: str, network_id: str) -> str | None:
        self._answer("server_address")
        assert network_id == NETWORKS["provider"]
        return self.addresses.get(server_id)

    def console_tail(self, server_id: str) -> str:
        self._answer("console_tail")
        return "Booting from ROM..."

    def close(self) -> None:
        pass

    # -- what someone else does to the cloud
    def set_status(self, server_id: str, status: str) -> None:
        self.servers_by_id[server_id] = replace(self.servers_by_id[server_id], status=status)

    def remove(self, server_id: str) -> None:
        del self.servers_by_id[server_id]
