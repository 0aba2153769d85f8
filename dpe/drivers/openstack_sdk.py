"""The ``Cloud`` seam on openstacksdk: the one module that imports it.

A connection is made from the operator's ``clouds.yaml`` (openstacksdk's own
search, or ``settings.clouds_file``), with ``call_timeout`` as the timeout of
every HTTP request; the driver makes one per worker thread.  openstacksdk's and
keystoneauth's exceptions become the project's: no answer is
``CloudUnreachable``, an answer that says no is ``CloudRefused``, a missing
thing ``NotFound``.  Messages name what was asked and what the cloud said,
never a credential (the connection's configuration is never printed).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

import openstack
import openstack.config
import openstack.connection
import openstack.exceptions
from keystoneauth1 import exceptions as ks_exceptions

from dpe.drivers._openstack_cloud import (
    OWNER,
    OWNER_KEY,
    CloudRefused,
    CloudUnreachable,
    Image,
    ImageUpload,
    Progress,
    Server,
    ServerSpec,
)
from dpe.drivers._openstack_settings import OpenStackSettings
from foundation.errors import InvalidInput, NotFound

# The SDK and keystoneauth log requests (with tokens at DEBUG): never below WARNING.
for _name in ("openstack", "keystoneauth", "stevedore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_UNREACHABLE_STATUS = (None, 502, 503, 504)
_CHUNK = 1 << 20


class SdkCloud:
    """Blocking calls to one cloud through openstacksdk (one instance per thread)."""

    def __init__(self, connection: openstack.connection.Connection, cloud: str) -> None:
        self.conn = connection
        self.cloud = cloud

    @classmethod
    def connect(cls, settings: OpenStackSettings) -> SdkCloud:
        with _errors(f"connecting to cloud {settings.cloud!r}"):
            files = [str(settings.clouds_file)] if settings.clouds_file else None
            config = openstack.config.OpenStackConfig(
                config_files=files, load_envvars=files is None
            )
            region = config.get_one(cloud=settings.cloud, api_timeout=settings.call_timeout)
            return cls(openstack.connection.Connection(config=region), settings.cloud)

    # -- lookups ------------------------------------------------------------

    def flavor_id(self, name: str) -> str | None:
        with _errors(f"finding flavor {name!r}"):
            flavor = _found(self.conn.compute.find_flavor, name)
            return str(flavor.id) if flavor is not None else None

    def network_id(self, name: str) -> str | None:
        with _errors(f"finding network {name!r}"):
            network = _found(self.conn.network.find_network, name)
            return str(network.id) if network is not None else None

    def security_group_id(self, name: str) -> str | None:
        with _errors(f"finding security group {name!r}"):
            group = _found(self.conn.network.find_security_group, name)
            return str(group.id) if group is not None else None

    def availability_zones(self) -> list[str]:
        with _errors("listing availability zones"):
            return [str(zone.name) for zone in self.conn.compute.availability_zones()]

    # -- images ---------------------------------------------------------------

    def find_image(self, name: str, sha256: str) -> Image | None:
        with _errors(f"finding image {name}"):
            for image in self.conn.image.images(name=name):
                found = _image(image)
                if found.properties.get("pcloud_sha256") == sha256:
                    return found
            return None

    def upload_image(self, upload: ImageUpload, progress: Progress) -> Image:
        with _errors(f"uploading image {upload.name}"), upload.path.open("rb") as source:
            reader = _ProgressReader(source, upload.path.stat().st_size, progress)
            image = self.conn.image.create_image(
                name=upload.name,
                data=cast(Any, reader),  # streamed: read() and len() are enough
                disk_format=upload.disk_format,
                container_format=upload.container_format,
                allow_duplicates=True,
                validate_checksum=False,
                disable_vendor_agent=False,
                wait=True,
                properties=dict(upload.properties),
            )
            return _image(self.conn.image.get_image(image.id))

    def delete_image(self, image_id: str) -> None:
        with _errors(f"deleting image {image_id}"):
            self.conn.image.delete_image(image_id, ignore_missing=True)

    def our_images(self) -> list[Image]:
        with _errors("listing images"):
            images = [_image(i) for i in self.conn.image.images()]
            return [i for i in images if i.properties.get(OWNER_KEY) == OWNER]

    def ensure_keypair(self, name: str, public_key: str) -> None:
        with _errors(f"creating key pair {name}"):
            if _found(self.conn.compute.find_keypair, name) is None:
                self.conn.compute.create_keypair(name=name, public_key=public_key)

    def delete_keypair(self, name: str) -> None:
        with _errors(f"deleting key pair {name}"):
            self.conn.compute.delete_keypair(name, ignore_missing=True)

    # -- servers ----------------------------------------------------------------

    def create_server(self, spec: ServerSpec) -> Server:
        attributes: dict[str, Any] = {
            "name": spec.name,
            "image_id": spec.image_id,
            "flavor_id": spec.flavor_id,
            "networks": [{"uuid": spec.network_id}],
            "key_name": spec.key_name,
            "config_drive": True,
            "user_data": base64.b64encode(spec.user_data.encode()).decode(),
            "metadata": dict(spec.metadata),
        }
        if spec.security_group:
            attributes["security_groups"] = [{"name": spec.security_group}]
        if spec.availability_zone:
            attributes["availability_zone"] = spec.availability_zone
        with _errors(f"creating server {spec.name}"):
            return _server(self.conn.compute.create_server(**attributes))

    def get_server(self, server_id: str) -> Server | None:
        with _errors(f"reading server {server_id}"):
            try:
                return _server(self.conn.compute.get_server(server_id))
            except openstack.exceptions.NotFoundException:
                return None

    def servers(self, name_prefix: str) -> list[Server]:
        with _errors("listing servers"):
            listed = self.conn.compute.servers(details=True, name="^" + name_prefix)
            return [_server(s) for s in listed if str(s.name).startswith(name_prefix)]

    def delete_server(self, server_id: str, force: bool) -> None:
        with _errors(f"deleting server {server_id}"):
            self.conn.compute.delete_server(server_id, ignore_missing=True, force=force)

    def server_address(self, server_id: str, network_id: str) -> str | None:
        with _errors(f"reading the ports of server {server_id}"):
            for port in self.conn.network.ports(device_id=server_id, network_id=network_id):
                for fixed in port.fixed_ips or []:
                    address = str(fixed.get("ip_address", ""))
                    with contextlib.suppress(ValueError):
                        if ipaddress.ip_address(address).version == 4:
                            return address
            return None

    def console_tail(self, server_id: str) -> str:
        with _errors(f"reading the console of server {server_id}"):
            output = self.conn.compute.get_server_console_output(server_id, length=15)
            text = str(output.get("output", "")).strip()
            return " | ".join(line for line in text.splitlines()[-15:] if line.strip())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """openstacksdk's and keystoneauth's exceptions as the project's."""
    try:
        yield
    except openstack.exceptions.NotFoundException as error:
        raise NotFound(f"{what}: {_said(error)}") from None
    except openstack.exceptions.HttpException as error:
        status = error.status_code
        cls = CloudUnreachable if status in _UNREACHABLE_STATUS else CloudRefused
        raise cls(f"{what}: {_refusal(status, _said(error))}") from None
    except openstack.exceptions.ConfigException as error:
        raise InvalidInput(f"settings.cloud: {error}") from None
    except ks_exceptions.Unauthorized:
        raise CloudRefused(f"{what}: the cloud refused the credentials (401)") from None
    except ks_exceptions.http.HttpError as error:
        status = getattr(error, "http_status", None)
        cls = CloudUnreachable if status in _UNREACHABLE_STATUS else CloudRefused
        raise cls(f"{what}: {_refusal(status, str(error))}") from None
    except ks_exceptions.auth_plugins.MissingRequiredOptions as error:
        raise InvalidInput(
            f"settings.cloud: incomplete credentials in clouds.yaml: {error}"
        ) from None
    except (ks_exceptions.ClientException, OSError) as error:
        raise CloudUnreachable(f"{what}: the cloud does not answer: {error}") from None
    except openstack.exceptions.SDKException as error:
        raise CloudRefused(f"{what}: {error}") from None


def _found(find: Callable[..., Any], name: str) -> Any:
    """What ``find`` finds, or None (openstacksdk 4 deprecates ``ignore_missing=True``)."""
    try:
        return find(name, ignore_missing=False)
    except openstack.exceptions.NotFoundException:
        return None


def _refusal(status: int | None, said: str) -> str:
    lower = said.lower()
    if "quota" in lower:
        return f"quota exceeded: {said}"
    if "no valid host" in lower:
        return f"no valid host: {said}"
    return f"HTTP {status}: {said}" if status else said


def _said(error: openstack.exceptions.SDKException) -> str:
    details = getattr(error, "details", None)
    return str(details or error.message or error)


def _image(image: Any) -> Image:
    properties = dict(getattr(image, "properties", None) or {})
    return Image(
        id=str(image.id),
        name=str(image.name or ""),
        status=str(image.status or ""),
        properties={str(k): str(v) for k, v in properties.items()},
    )


def _server(server: Any) -> Server:
    fault = getattr(server, "fault", None) or {}
    return Server(
        id=str(server.id),
        name=str(server.name or ""),
        status=str(server.status or "").upper(),
        metadata={str(k): str(v) for k, v in (server.metadata or {}).items()},
        fault=str(fault.get("message", "")) if isinstance(fault, dict) else str(fault),
    )


class _ProgressReader:
    """A file for the upload's body that reports how much of it was read."""

    def __init__(self, source: BinaryIO, size: int, progress: Progress) -> None:
        self.source = source
        self.size = size
        self.done = 0
        self.progress = progress

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size if size and size > 0 else _CHUNK)
        self.done += len(chunk)
        if self.size:
            self.progress(min(self.done / self.size, 1.0))
        return chunk


__all__ = ["SdkCloud"]
