"""openstack infrastructure driver: each instance is a nova server.

An instance of an assembly is a server named ``pc-<deployable>-<assembly>-<token>``
whose metadata (``pcloud_owner``, ``pcloud_deployable``, ``pcloud_assembly``,
``pcloud_created``) marks it as ours: ``list`` finds a deployable's servers
after a restart of the engine with nothing else stored.  The instance id is
the server's id.

- **Images**: the assembly's disk, and its JEOS's kernel and initrd when it
  boots directly, are uploaded to the image service the first time a server
  needs them, each named by the hash of its content (``_openstack_images``),
  so the same content is uploaded once; the upload's progress is a notice
  (an event of the deployable).
- **Identity**: a config drive carries the hostname, root's authorized key and
  the SSH host key the engine pins, as user data that is both cloud-init's
  ``#cloud-config`` and what the JEOS's own first-boot step
  (``pcloud-firstboot``, see ``images.rootfs``) reads (``_openstack_identity``).
  The key pair named after root's key is also the server's nova key pair.  A
  server presenting another host key is refused by the transport, failed and
  fenced.
- **Address**: the first IPv4 address of the server's port on the configured
  network; the engine connects there, port 22.
- **Fencing** (``destroy``): delete (force-delete once soft-deleted), then wait
  until the API says the server is gone, at most ``delete_timeout``; a cloud
  that does not delete it makes ``destroy`` fail with the reason, so no
  replacement is created meanwhile.
- **Watching** (``InstanceWatcher``): the servers list is read every
  ``poll_interval``, or, with ``notifications``, nova's versioned notifications
  are consumed (``openstack_notify``) and the list is read only as a slow check
  (``_openstack_watch``); a server of ours that is gone, shut off or in ERROR is
  reported at once.  When the API does not answer, that is a notice, the
  reading backs off, and nothing is reported about the servers: an unreachable
  cloud is never a reason to fence.

Its length is the driver's interface on a cloud: create (images, then the
server, then its address and sshd), destroy, list and purge share the worker
threads and the bounded call, so they stay in one class; names, user data and
the watch are modules of their own.

openstacksdk is synchronous: every call to the cloud runs in one of the
driver's worker threads, each thread with its own connection, and is bounded
by ``call_timeout`` (``upload_timeout`` for an upload).  Only
``openstack_sdk`` imports openstacksdk; this module talks to the ``Cloud`` seam.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from dpe.drivers._openstack_cloud import (
    ASSEMBLY_KEY,
    CREATED_KEY,
    DEPLOYABLE_KEY,
    HASH_KEY,
    OWNER,
    OWNER_KEY,
    SERVER_PREFIX,
    Cloud,
    CloudRefused,
    CloudUnreachable,
    Image,
    ImageUpload,
    Server,
    ServerSpec,
)
from dpe.drivers._openstack_identity import (
    host_key_type,
    hostname_for,
    keypair_name,
    server_name,
    server_state,
    user_data,
)
from dpe.drivers._openstack_images import (
    JEOS_RECORD,
    AssemblyImages,
    ContentHashes,
    DiskTools,
    Part,
    QemuImg,
    assembly_images,
)
from dpe.drivers._openstack_settings import HEARTBEAT, OpenStackSettings
from dpe.drivers._openstack_watch import MAX_POLL_BACKOFF, ServerPoller, StateCallback, Watch
from dpe.drivers._sockets import answers_ssh
from dpe.interfaces import Instance, InstanceState
from foundation.errors import InvalidInput, NotFound, OperationTimeout, PcloudError
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Problems, validate_name
from foundation.paths import Paths

log = logging.getLogger(__name__)

T = TypeVar("T")
CloudFactory = Callable[[OpenStackSettings], Cloud]
Notice = Callable[[str], None]

SSH_PORT = 22
BOOT_POLL = 1.0
DELETE_POLL = 1.0
UPLOAD_STEP = 0.25  # a notice at every quarter uploaded
WORKERS = 6  # the watch, and each assembly's create, state or destroy
UPLOADERS = 2
_UUID_RE = re.compile(r"[0-9a-fA-F-]{32,36}\Z")
_UPLOADING = ("queued", "saving", "importing", "uploading")


class SshProbe(Protocol):
    async def answers_ssh(self, host: str, port: int) -> bool: ...


class OpenStackDriver:
    """Instances as nova servers (``dpe.interfaces.Driver`` and ``InstanceWatcher``)."""

    name = "openstack"
    heartbeat_defaults = HEARTBEAT

    def __init__(
        self,
        paths: Paths,
        settings: OpenStackSettings,
        cloud_factory: CloudFactory,
        *,
        tools: DiskTools | None = None,
        probe: SshProbe | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.uploads_dir = paths.state_dir / "openstack-uploads"
        # how long the engine lets each call of the driver take (``dpe.dped_process``):
        # a create uploads, then boots; a destroy waits until the server is gone; a
        # list reads the servers, then their ports, each call up to call_timeout
        self.create_timeout = settings.upload_timeout + settings.start_timeout + 30.0
        self.destroy_timeout = settings.delete_timeout + 2 * settings.call_timeout
        self.driver_timeout = 4 * settings.call_timeout
        self._factory = cloud_factory
        self._tools = tools or QemuImg()
        self._probe = probe or TcpProbe()
        self._hashes = ContentHashes()
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="openstack")
        # uploads take minutes: never in the way of the calls that watch and fence
        self._uploads = ThreadPoolExecutor(UPLOADERS, thread_name_prefix="openstack-upload")
        self._local = threading.local()
        self._clouds: list[Cloud] = []
        self._clouds_lock = threading.Lock()
        self._ids: dict[str, str] = {}  # flavor, network -> id
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._check_lock = asyncio.Lock()
        self._fenced: set[str] = set()  # deleted here: their disappearance is no news
        self._known: set[str] = set()  # servers of ours the watch reports about
        self._notice: Notice = _log_notice

    # -- Driver ------------------------------------------------------------

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        """Upload the images if needed, create the server, return once its sshd answers.

        Raises ``NotFound`` (no disk, image or flavor), ``CloudRefused`` (quota,
        no valid host, ERROR), ``CloudUnreachable`` or ``OperationTimeout``; a
        server created is deleted again on failure."""
        validate_name(deployable, "deployable name")
        validate_name(assembly.name, "assembly name")
        if assembly.image == "host":
            raise InvalidInput(
                f"assembly {assembly.name!r} is made from the built-in 'host' JEOS, "
                "which only the local infrastructure runs",
                assembly=assembly.name,
            )
        image_id = await self._ensure_images(assembly)
        flavor_id, network_id = await self._flavor_and_network()
        key_name = keypair_name(keys.public_key)
        await self._call("creating the key pair", Cloud.ensure_keypair, key_name, keys.public_key)
        spec = ServerSpec(
            name=server_name(deployable, assembly.name),
            image_id=image_id,
            flavor_id=flavor_id,
            network_id=network_id,
            key_name=key_name,
            user_data=user_data(assembly.name, keys),
            metadata={
                OWNER_KEY: OWNER,
                DEPLOYABLE_KEY: deployable,
                ASSEMBLY_KEY: assembly.name,
                CREATED_KEY: f"{time.time():.3f}",
            },
            security_group=self.settings.security_group,
            availability_zone=self.settings.availability_zone,
        )
        deadline = time.monotonic() + self.settings.start_timeout
        server = await self._call(f"creating server {spec.name}", Cloud.create_server, spec)
        self._known.add(server.id)
        try:
            instance = await self._wait_ready(server, network_id, deadline)
        except BaseException:
            self._fenced.add(server.id)
            await asyncio.shield(self._delete_quietly(server.id))
            raise
        log.info(
            "deployable=%s assembly=%s server %s (%s) created at %s",
            deployable,
            assembly.name,
            server.name,
            server.id,
            instance.address,
        )
        return instance

    async def destroy(self, instance_id: str) -> None:
        """Fence: delete the server and wait until the API says it is gone.  Idempotent."""
        if not _UUID_RE.match(instance_id):
            return
        self._fenced.add(instance_id)
        await self._delete_and_wait(instance_id)
        self._known.discard(instance_id)
        log.info("server %s deleted", instance_id)

    async def state(self, instance_id: str) -> InstanceState:
        if not _UUID_RE.match(instance_id):
            return InstanceState.GONE
        server = await self._call(f"reading server {instance_id}", Cloud.get_server, instance_id)
        return InstanceState.GONE if server is None else server_state(server)

    async def list(self, deployable: str) -> list[Instance]:
        """The deployable's servers with their state, stopped ones included; oldest first."""
        validate_name(deployable, "deployable name")
        prefix = f"{SERVER_PREFIX}{deployable}-"
        servers = await self._call("listing the servers", Cloud.servers, prefix)
        ours = [s for s in servers if _owned_by(s, deployable)]
        network_id = (await self._flavor_and_network())[1] if ours else ""
        found = []
        for server in ours:
            address = await self._call(
                f"reading the port of server {server.name}",
                Cloud.server_address,
                server.id,
                network_id,
            )
            self._known.add(server.id)
            found.append(self._instance(server, address or ""))
        return sorted(found, key=lambda i: i.created_at)

    # -- InstanceWatcher and notices -------------------------------------------

    async def watch(self, callback: StateCallback) -> Watch:
        """Report servers of ours that died (gone, shut off, ERROR) to ``callback``."""
        poller = ServerPoller(self, callback)
        if self.settings.notifications is not None:
            poller.listen(self.settings.notifications)
        return poller.start()

    def set_notice(self, notice: Notice) -> None:
        """Where the driver says what the engine's operator should know (events)."""
        self._notice = notice

    async def close(self) -> None:
        clouds, self._clouds = self._clouds, []
        for cloud in clouds:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(cloud.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._uploads.shutdown(wait=False, cancel_futures=True)

    # -- calls to the cloud ----------------------------------------------------

    async def _call(
        self,
        what: str,
        method: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        upload: bool = False,
    ) -> T:
        """``cloud.method(*args)`` in a worker thread, bounded; no answer is CloudUnreachable."""
        seconds = timeout or self.settings.call_timeout
        loop = asyncio.get_running_loop()
        executor = self._uploads if upload else self._executor
        work = loop.run_in_executor(executor, partial(self._in_thread, method, *args))
        try:
            async with asyncio.timeout(seconds):
                return await work
        except TimeoutError:
            raise CloudUnreachable(
                f"{what}: the cloud {self.settings.cloud!r} did not answer within {seconds:g} s"
            ) from None

    def _in_thread(self, method: Callable[..., T], *args: Any) -> T:
        cloud: Cloud | None = getattr(self._local, "cloud", None)
        if cloud is None:
            cloud = self._factory(self.settings)
            self._local.cloud = cloud
            with self._clouds_lock:
                self._clouds.append(cloud)
        # ``method`` names a method of the seam (``Cloud.get_server``): this cloud's own
        bound: Callable[..., T] = getattr(cloud, method.__name__)
        return bound(*args)

    async def _flavor_and_network(self) -> tuple[str, str]:
        async with self._check_lock:  # assemblies created at once ask the cloud once
            if "network" not in self._ids:
                problems = await self.check()
                if problems:
                    raise NotFound("; ".join(problems))
        return self._ids["flavor"], self._ids["network"]

    async def check(self) -> builtins.list[str]:
        """What the cloud does not have of the settings (flavor, network...), as messages."""
        settings, problems = self.settings, []
        cloud = repr(settings.cloud)
        flavor = await self._call("finding the flavor", Cloud.flavor_id, settings.flavor)
        if flavor is None:
            problems.append(f"settings.flavor: no flavor {settings.flavor!r} in cloud {cloud}")
        network = await self._call("finding the network", Cloud.network_id, settings.network)
        if network is None:
            problems.append(f"settings.network: no network {settings.network!r} in cloud {cloud}")
        group = settings.security_group
        if group and await self._call("finding the group", Cloud.security_group_id, group) is None:
            problems.append(
                f"settings.security_group: no security group {group!r} in cloud {cloud}"
            )
        zone = settings.availability_zone
        if zone and zone not in await self._call("listing zones", Cloud.availability_zones):
            problems.append(f"settings.availability_zone: no zone {zone!r} in cloud {cloud}")
        if flavor and network:
            self._ids.update(flavor=flavor, network=network)
        return problems

    # -- images ----------------------------------------------------------------

    async def _ensure_images(self, assembly: Assembly) -> str:
        """The id of the disk image the assembly's servers boot, uploading what is missing."""
        disk = self.settings.images / f"{assembly.name}.qcow2"
        record = self.settings.jeos_images / assembly.image / JEOS_RECORD
        try:
            wanted = await assembly_images(
                disk, record if record.exists() else None, self._tools, self._hashes
            )
        except NotFound as error:
            raise NotFound(f"assembly {assembly.name!r}: {error}", assembly=assembly.name) from None
        properties = await self._boot_properties(wanted, assembly.name)
        return await self._ensure(wanted.disk, assembly.name, properties)

    async def _boot_properties(self, wanted: AssemblyImages, assembly: str) -> dict[str, str]:
        properties = {}
        if wanted.kernel is not None:
            properties["kernel_id"] = await self._ensure(wanted.kernel, assembly, {})
        if wanted.ramdisk is not None:
            properties["ramdisk_id"] = await self._ensure(wanted.ramdisk, assembly, {})
        if wanted.cmdline:
            properties["os_command_line"] = wanted.cmdline
        return properties

    async def _ensure(self, part: Part, assembly: str, properties: dict[str, str]) -> str:
        """The image holding ``part`` (one upload at a time per content, in this process)."""
        lock = self._image_locks.setdefault(part.sha256, asyncio.Lock())
        async with lock:
            deadline = time.monotonic() + self.settings.upload_timeout
            while True:
                image = await self._call(
                    "finding an image", Cloud.find_image, part.name, part.sha256
                )
                if image is not None and image.status == "active":
                    return image.id
                if image is None:
                    return (await self._upload(part, assembly, properties)).id
                if image.status not in _UPLOADING or time.monotonic() > deadline:
                    # a failed or abandoned upload (another process died mid-way)
                    await self._call("deleting a failed image", Cloud.delete_image, image.id)
                    continue
                await asyncio.sleep(BOOT_POLL * 5)  # another process uploads it

    async def _upload(self, part: Part, assembly: str, properties: dict[str, str]) -> Image:
        source = part.path
        flattened = self.uploads_dir / f"{part.sha256}.qcow2"
        try:
            if part.flatten:
                self._notice(f"assembly {assembly}: flattening {part.path.name} for the upload")
                self.uploads_dir.mkdir(parents=True, exist_ok=True)
                await self._tools.flatten(part.path, flattened)
                source = flattened
            upload = ImageUpload(
                name=part.name,
                path=source,
                disk_format=part.disk_format,
                container_format=part.container_format,
                properties={OWNER_KEY: OWNER, HASH_KEY: part.sha256, ASSEMBLY_KEY: assembly}
                | properties,
            )
            size = source.stat().st_size
            self._notice(
                f"assembly {assembly}: uploading the {part.kind} image {part.name} "
                f"({size / 2**20:.0f} MiB)"
            )
            began = time.monotonic()
            image = await self._call(
                f"uploading {part.name}",
                Cloud.upload_image,
                upload,
                self._progress(assembly, part),
                timeout=self.settings.upload_timeout,
                upload=True,
            )
        finally:
            flattened.unlink(missing_ok=True)
        self._notice(
            f"assembly {assembly}: {part.kind} image {part.name} uploaded "
            f"({size / 2**20:.0f} MiB in {time.monotonic() - began:.0f} s)"
        )
        return image

    def _progress(self, assembly: str, part: Part) -> Callable[[float], None]:
        """Called in a worker thread: a notice at every quarter, in the engine's loop."""
        loop = asyncio.get_running_loop()
        reported = [0.0]

        def progress(fraction: float) -> None:
            step = int(fraction / UPLOAD_STEP) * UPLOAD_STEP
            if step > reported[0] and step < 1.0:
                reported[0] = step
                text = f"assembly {assembly}: {part.name} {step:.0%} uploaded"
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._notice, text)

        return progress

    async def purge(
        self, assemblies: builtins.list[str], public_keys: builtins.list[str]
    ) -> dict[str, builtins.list[str]]:
        """Remove what was uploaded for these assemblies: their disk images, the kernels
        and initrds no other disk image of ours boots, and their key pairs."""
        images = await self._call("listing images", Cloud.our_images)
        doomed = [i for i in images if _is_disk(i) and i.properties.get(ASSEMBLY_KEY) in assemblies]
        kept = [i for i in images if _is_disk(i) and i not in doomed]
        used = {i.properties.get(k) for i in kept for k in ("kernel_id", "ramdisk_id")}
        doomed += [i for i in images if not _is_disk(i) and i.id not in used]
        for image in doomed:
            await self._call(f"deleting image {image.name}", Cloud.delete_image, image.id)
        pairs = sorted({keypair_name(key) for key in public_keys})
        for name in pairs:
            await self._call(f"deleting key pair {name}", Cloud.delete_keypair, name)
        return {"images": sorted(i.name for i in doomed), "keypairs": pairs}

    # -- booting ---------------------------------------------------------------

    async def _wait_ready(self, server: Server, network_id: str, deadline: float) -> Instance:
        """ACTIVE, an address on the network, then an SSH banner there."""
        address = ""
        while time.monotonic() < deadline:
            try:
                current = await self._call(
                    f"reading server {server.name}", Cloud.get_server, server.id
                )
            except CloudUnreachable as error:  # a slow answer is not a failed boot
                log.info("server %s: %s; still waiting for it", server.name, error)
                continue
            if current is None:
                raise CloudRefused(f"server {server.name} disappeared while it was booting")
            if current.status == "ERROR":
                raise CloudRefused(f"server {server.name} failed: {current.fault or 'ERROR'}")
            if current.status == "ACTIVE":
                if not address:
                    address = await self._address(server, network_id)
                if address and await self._probe.answers_ssh(address, SSH_PORT):
                    return self._instance(current, address)
            await asyncio.sleep(BOOT_POLL)
        console = await self._console_tail(server.id)
        raise OperationTimeout(
            f"server {server.name}: sshd did not answer at {address or 'its address'} within "
            f"{self.settings.start_timeout:g} s (console: {console})"
        )

    async def _address(self, server: Server, network_id: str) -> str:
        """The server's address on the network; empty while its port is not there or the
        API is slow."""
        try:
            found: str | None = await self._call(
                f"reading the port of {server.name}", Cloud.server_address, server.id, network_id
            )
        except CloudUnreachable as error:
            log.info("server %s: %s; still waiting for it", server.name, error)
            return ""
        return found or ""

    async def _console_tail(self, server_id: str) -> str:
        try:
            return await self._call("reading the console", Cloud.console_tail, server_id)
        except PcloudError as error:
            return f"unreadable: {error}"

    def _instance(self, server: Server, address: str) -> Instance:
        assembly = server.metadata.get(ASSEMBLY_KEY, "")
        return Instance(
            instance_id=server.id,
            deployable=server.metadata.get(DEPLOYABLE_KEY, ""),
            assembly=assembly,
            address=address,
            hostname=hostname_for(assembly),
            ssh_host=address,
            ssh_port=SSH_PORT,
            state=server_state(server),
            created_at=_created(server),
            extra={
                "server": server.name,
                "cloud": self.settings.cloud,
                "flavor": self.settings.flavor,
                "network": self.settings.network,
            },
        )

    # -- deleting --------------------------------------------------------------

    async def _delete_and_wait(self, server_id: str) -> None:
        """Delete until the API says it is gone; CloudRefused after ``delete_timeout``."""
        deadline = time.monotonic() + self.settings.delete_timeout
        asked = False
        status = "unknown"
        while time.monotonic() < deadline:
            server = await self._call(f"reading server {server_id}", Cloud.get_server, server_id)
            if server is None or server.status == "DELETED":
                return
            status = server.status
            if status == "SOFT_DELETED" or not asked:
                # a soft-deleting cloud keeps the server: force-delete it for good
                await self._call(
                    f"deleting server {server_id}",
                    Cloud.delete_server,
                    server_id,
                    status == "SOFT_DELETED",
                )
                asked = True
            await asyncio.sleep(DELETE_POLL)
        raise CloudRefused(
            f"server {server_id} is still there {self.settings.delete_timeout:g} s after it was "
            f"deleted (status {status}): the cloud does not delete it, so it is not fenced"
        )

    async def _delete_quietly(self, server_id: str) -> None:
        try:
            await self._delete_and_wait(server_id)
        except PcloudError as error:
            log.error("server %s created but not deleted after a failure: %s", server_id, error)

    # -- the watch's view --------------------------------------------------------

    async def servers_listed(self) -> builtins.list[Server]:
        return await self._call("listing the servers", Cloud.servers, SERVER_PREFIX)

    def deaths(self, servers: builtins.list[Server]) -> dict[str, InstanceState]:
        """Of the servers this driver knows, those dead in this listing (not fenced here)."""
        listed = {s.id: s for s in servers if s.metadata.get(OWNER_KEY) == OWNER}
        self._known.update(listed)
        dead: dict[str, InstanceState] = {}
        for server_id in self._known - self._fenced:
            server = listed.get(server_id)
            state = InstanceState.GONE if server is None else server_state(server)
            if state in (InstanceState.GONE, InstanceState.STOPPED):
                dead[server_id] = state
        return dead

    def watches(self, server_id: str) -> bool:
        """A server of ours the watch reports about (not one fenced here)."""
        return server_id in self._known and server_id not in self._fenced

    def forget(self, server_id: str) -> None:
        self._known.discard(server_id)

    def notice(self, text: str) -> None:
        self._notice(text)


def _owned_by(server: Server, deployable: str) -> bool:
    meta = server.metadata
    return meta.get(OWNER_KEY) == OWNER and meta.get(DEPLOYABLE_KEY) == deployable


def _is_disk(image: Image) -> bool:
    return image.name.startswith("pcloud-disk-")


def _created(server: Server) -> float:
    try:
        return float(server.metadata.get(CREATED_KEY, "0"))
    except ValueError:
        return 0.0


def _log_notice(text: str) -> None:
    log.info("%s", text)


# ---------------------------------------------------------------------------
# the SSH probe


@dataclass
class TcpProbe:
    """An SSH banner at the address (a server's port may accept before sshd runs)."""

    timeout: float = 3.0

    async def answers_ssh(self, host: str, port: int) -> bool:
        return await answers_ssh(host, port, self.timeout)


# ---------------------------------------------------------------------------
# construction and the settings check


async def check_settings(driver: OpenStackDriver) -> None:
    """InvalidInput naming each setting the cloud does not have."""
    problems = Problems()
    for message in await driver.check():
        path, _, text = message.partition(": ")
        problems.add(path, text)
    problems.raise_if_any(f"invalid settings for the openstack cloud {driver.settings.cloud!r}")


__all__ = [
    "MAX_POLL_BACKOFF",
    "CloudFactory",
    "OpenStackDriver",
    "ServerPoller",
    "TcpProbe",
    "check_settings",
    "host_key_type",
    "hostname_for",
    "keypair_name",
    "server_state",
    "user_data",
]
