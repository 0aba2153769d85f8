"""libvirt infrastructure driver: each instance is a virtual machine.

An instance of an assembly is a persistent libvirt domain named
``pc-<deployable>-<assembly>-<token>`` (the instance id) booting a per-instance
copy-on-write overlay of the assembly's disk ``<images>/<assembly>.qcow2``, so a
re-created instance always starts from the assembly image.  When the assembly's
JEOS has a kernel and initrd (``<jeos_images>/<jeos>/jeos.json``) the VM boots
them directly.  The domain type is ``kvm`` when KVM is usable, else ``qemu``
(TCG).  The overlay and the serial console log live in
``<state>/vms/<deployable>/<instance id>/``.

Network (``settings.network``): ``user`` gives the VM qemu's user-mode network
with its port 22 forwarded to a free port on 127.0.0.1 (the engine connects
there; the guest's own address is 10.0.2.15); a libvirt network name (NAT with
DHCP, such as ``default``) gives it an address from that network's leases.

The domain's metadata (``_libvirt_xml.InstanceMeta``) names the deployable,
the assembly, the overlay directory and the SSH endpoint: ``list`` finds the
instances after a restart of the engine with nothing else stored.  ``destroy``
is the fence: a hard power-off, then undefine, then the overlay is removed.

Lifecycle events (an extension of the ``Driver`` seam, see
``dpe.interfaces.InstanceWatcher``): ``await driver.watch(callback)`` calls
``callback(instance_id, state)`` in the caller's asyncio loop as soon as libvirt
reports one of the driver's domains stopped or crashed (``STOPPED``) or
undefined (``GONE``) by anyone but the driver itself; ``.close()`` on the
returned subscription stops it.

libvirt calls block, so each runs in a worker thread (the calls on one domain:
``_libvirt_domains``); libvirt's own event loop runs in one daemon thread
(``_libvirt_events``).  What it needs of the host besides libvirt (qemu-img,
ports, KVM) is ``_vm_host``.  Settings: see ``_libvirt_settings``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]

from dpe.drivers._libvirt_domains import (
    CONSOLE,
    LIVE_AND_CONFIG,
    METADATA_ELEMENT,
    RUNNING_STATES,
    connection_alive,
    domain_state,
    leased_address,
    libvirt_errors,
    lookup,
    power_off,
    random_mac,
    read_meta,
    to_instance,
    undefine,
)
from dpe.drivers._libvirt_events import StateCallback, Subscription, ensure_event_thread
from dpe.drivers._libvirt_settings import HEARTBEAT, LibvirtSettings
from dpe.drivers._libvirt_xml import (
    DOMAIN_PREFIX,
    METADATA_NS,
    METADATA_PREFIX,
    USER_GUEST_ADDRESS,
    DomainSpec,
    InstanceMeta,
    console_tail,
    domain_name,
    domain_xml,
)
from dpe.drivers._sockets import LOOPBACK
from dpe.drivers._vm_host import SystemHost, VmHost
from dpe.interfaces import Instance, InstanceState
from foundation.errors import InvalidInput, NotFound, OperationTimeout, Unavailable
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, validate_name
from foundation.paths import Paths

log = logging.getLogger(__name__)

OVERLAY = "disk.qcow2"
JEOS_RECORD = "jeos.json"
POLL = 0.5
CREATE_MARGIN = 60.0  # define, overlay and start around the boot (``start_timeout``)
_PORT_ATTEMPTS = 3
_INSTANCE_ID_RE = re.compile(r"pc-[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\Z")


@dataclass(frozen=True)
class BootFiles:
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None


class LibvirtDriver:
    """Instances as libvirt domains (implements ``dpe.interfaces.Driver`` and
    ``dpe.interfaces.InstanceWatcher``)."""

    name = "libvirt"
    heartbeat_defaults = HEARTBEAT  # suits emulated guests; a document may override it

    def __init__(
        self, paths: Paths, settings: Mapping[str, str] | None = None, *, host: VmHost | None = None
    ) -> None:
        self.settings = LibvirtSettings.parse(settings or {}, paths)
        # the engine waits for a create this long: the boot's own bound, and the overlay
        self.create_timeout = self.settings.start_timeout + CREATE_MARGIN
        self.paths = paths
        self.host: VmHost = host or SystemHost()
        self.vms_dir = paths.state_dir / "vms"
        self._conn: Any = None
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._fenced: set[str] = set()  # destroyed here: their events are no news

    # -- Driver ------------------------------------------------------------

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        """Define and boot a VM; returns once its sshd answers (``start_timeout``).

        Raises ``NotFound`` (no assembly disk or JEOS), ``Unavailable`` (libvirt
        refused, or the VM stopped; the console's last lines are in the message)
        or ``OperationTimeout``; nothing is left behind on failure."""
        validate_name(deployable, "deployable name")
        validate_name(assembly.name, "assembly name")
        disk, boot = self._assembly_disk(assembly.name), self._boot_files(assembly)
        instance_id = domain_name(deployable, assembly.name, secrets.token_hex(4))
        directory = self.vms_dir / deployable / instance_id
        deadline = time.monotonic() + self.settings.start_timeout
        try:
            directory.mkdir(parents=True)
            await self.host.create_overlay(disk, directory / OVERLAY)
            meta = await self._boot(self._new_meta(deployable, assembly.name, directory), boot)
            instance = await self._wait_ready(meta, deadline)
        except BaseException:
            self._fenced.add(instance_id)
            await asyncio.shield(asyncio.to_thread(self._remove, instance_id, directory))
            raise
        log.info(
            "deployable=%s assembly=%s instance %s created (%s:%d)",
            deployable,
            assembly.name,
            instance_id,
            instance.ssh_host,
            instance.ssh_port,
        )
        return instance

    async def destroy(self, instance_id: str) -> None:
        """Power the VM off hard, undefine it, remove its overlay.  Idempotent."""
        if not _INSTANCE_ID_RE.match(instance_id):
            return
        self._fenced.add(instance_id)
        await asyncio.to_thread(self._remove, instance_id, None)
        log.info("instance %s destroyed", instance_id)

    async def state(self, instance_id: str) -> InstanceState:
        if not _INSTANCE_ID_RE.match(instance_id):
            return InstanceState.GONE
        return await asyncio.to_thread(self._state, instance_id)

    async def list(self, deployable: str) -> list[Instance]:
        """The deployable's VMs with their state, stopped ones included; oldest first."""
        validate_name(deployable, "deployable name")
        found = await asyncio.to_thread(self._list, deployable)
        return sorted(found, key=lambda i: i.created_at)

    # -- InstanceWatcher ---------------------------------------------------

    async def watch(self, callback: StateCallback) -> Subscription:
        """Call ``callback(instance_id, state)`` in this asyncio loop when libvirt
        reports a VM of this driver stopped, crashed or undefined (not by ``destroy``)."""
        loop = asyncio.get_running_loop()
        subscription = Subscription(callback, loop, self._fenced.__contains__)
        self._subscriptions.append(subscription)
        await asyncio.to_thread(self._connection)  # registers it
        return subscription

    async def close(self) -> None:
        """Stop the subscriptions and close the connection (instances keep running)."""
        await asyncio.to_thread(self._close)

    # -- creating ------------------------------------------------------------

    def _assembly_disk(self, assembly: str) -> Path:
        disk = self.settings.images / f"{assembly}.qcow2"
        if not disk.is_file():
            raise NotFound(
                f"assembly {assembly!r} has no disk image {disk} (settings.images)",
                assembly=assembly,
            )
        return disk

    def _boot_files(self, assembly: Assembly) -> BootFiles:
        """The JEOS's kernel, initrd and command line; none when it boots from disk."""
        if assembly.image == "host":
            raise InvalidInput(
                f"assembly {assembly.name!r} is made from the built-in 'host' JEOS, "
                "which only the local infrastructure runs",
                assembly=assembly.name,
            )
        record = self.settings.jeos_images / assembly.image / JEOS_RECORD
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError) as exc:
            raise NotFound(
                f"JEOS {assembly.image!r} of assembly {assembly.name!r}: no readable {record} "
                f"(settings.jeos_images): {exc}",
                assembly=assembly.name,
            ) from None
        if not data.get("kernel"):
            return BootFiles()
        initrd = data.get("initrd")
        return BootFiles(
            Path(data["kernel"]), Path(initrd) if initrd else None, data.get("cmdline")
        )

    def _new_meta(self, deployable: str, assembly: str, directory: Path) -> InstanceMeta:
        user = self.settings.user_network
        return InstanceMeta(
            instance_id=directory.name,
            deployable=deployable,
            assembly=assembly,
            directory=str(directory),
            network=self.settings.network,
            ssh_host=LOOPBACK if user else "",
            ssh_port=0 if user else 22,
            address=USER_GUEST_ADDRESS if user else "",
            mac="" if user else random_mac(),
            created_at=time.time(),
        )

    async def _boot(self, meta: InstanceMeta, boot: BootFiles) -> InstanceMeta:
        """Define and start the domain; a forwarded port taken meanwhile is chosen again."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if meta.network == "user":
                meta = replace(meta, ssh_port=self.host.free_port())
            xml = domain_xml(self._spec(meta, boot))
            try:
                await asyncio.to_thread(self._define_and_start, meta.instance_id, xml)
            except Unavailable as exc:
                if "forwarding" not in str(exc) or attempt == _PORT_ATTEMPTS:
                    raise
                log.info("instance %s: port %d taken, again", meta.instance_id, meta.ssh_port)
            else:
                return meta
        raise AssertionError("unreachable")

    def _spec(self, meta: InstanceMeta, boot: BootFiles) -> DomainSpec:
        directory = Path(meta.directory)
        return DomainSpec(
            name=meta.instance_id,
            domain_type=self._domain_type(),
            memory_mb=self.settings.memory_mb,
            cpus=self.settings.cpus,
            disk=directory / OVERLAY,
            console_log=directory / CONSOLE,
            meta=meta,
            kernel=boot.kernel,
            initrd=boot.initrd,
            cmdline=boot.cmdline,
        )

    def _domain_type(self) -> str:
        if self.settings.domain_type != "auto":
            return self.settings.domain_type
        return "kvm" if self.host.kvm_usable() else "qemu"

    def _define_and_start(self, instance_id: str, xml: str) -> None:
        with libvirt_errors(f"instance {instance_id}"):
            domain = self._connection().defineXML(xml)
            try:
                domain.create()
            except libvirt.libvirtError:
                undefine(domain)
                raise

    async def _wait_ready(self, meta: InstanceMeta, deadline: float) -> Instance:
        """Until the guest's sshd sends its banner; the VM must stay up meanwhile."""
        while time.monotonic() < deadline:
            meta = await asyncio.to_thread(self._check_booting, meta)
            if meta.ssh_host and await self.host.answers_ssh(meta.ssh_host, meta.ssh_port):
                ready = replace(meta, ready=True)
                await asyncio.to_thread(self._write_meta, ready)
                return to_instance(ready, InstanceState.RUNNING, self.settings.uri)
            await asyncio.sleep(POLL)
        raise OperationTimeout(
            f"instance {meta.instance_id}: sshd did not answer within "
            f"{self.settings.start_timeout:g} s (console: "
            f"{console_tail(Path(meta.directory) / CONSOLE)})"
        )

    def _check_booting(self, meta: InstanceMeta) -> InstanceMeta:
        """Raises when the VM stopped; learns a libvirt network's DHCP address."""
        with libvirt_errors(f"instance {meta.instance_id}"):
            domain = self._connection().lookupByName(meta.instance_id)
            if domain.state()[0] not in RUNNING_STATES:
                raise Unavailable(
                    f"instance {meta.instance_id}: the VM stopped while booting (console: "
                    f"{console_tail(Path(meta.directory) / CONSOLE)})"
                )
            if meta.ssh_host:
                return meta
            address = leased_address(domain)
            return replace(meta, ssh_host=address, address=address) if address else meta

    def _write_meta(self, meta: InstanceMeta) -> None:
        with libvirt_errors(f"instance {meta.instance_id}"):
            domain = self._connection().lookupByName(meta.instance_id)
            domain.setMetadata(
                METADATA_ELEMENT, meta.to_xml(), METADATA_PREFIX, METADATA_NS, LIVE_AND_CONFIG
            )

    # -- destroying, state, list ----------------------------------------------

    def _remove(self, instance_id: str, directory: Path | None) -> None:
        """Hard power-off, undefine, remove the overlay directory (all idempotent)."""
        with libvirt_errors(f"instance {instance_id}"):
            domain = lookup(self._connection(), instance_id)
            if domain is not None:
                meta = read_meta(domain)
                power_off(domain)
                undefine(domain)
                if directory is None and meta is not None:
                    directory = Path(meta.directory)
        for candidate in [directory] if directory else self.vms_dir.glob(f"*/{instance_id}"):
            self._remove_directory(candidate)

    def _remove_directory(self, directory: Path) -> None:
        if directory.parent.parent != self.vms_dir:
            log.warning("not removing %s: outside %s", directory, self.vms_dir)
            return
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.parent.rmdir()

    def _state(self, instance_id: str) -> InstanceState:
        with libvirt_errors(f"instance {instance_id}"):
            domain = lookup(self._connection(), instance_id)
            if domain is None:
                return InstanceState.GONE
            meta = read_meta(domain)
            return domain_state(domain, meta is not None and meta.ready)

    def _list(self, deployable: str) -> builtins.list[Instance]:
        found = []
        with libvirt_errors(f"deployable {deployable}"):
            for domain in self._connection().listAllDomains(0):
                if not domain.name().startswith(DOMAIN_PREFIX):
                    continue
                meta = read_meta(domain)
                if meta is None or meta.deployable != deployable:
                    continue
                state = domain_state(domain, meta.ready)
                found.append(to_instance(meta, state, self.settings.uri))
        return found

    # -- the connection ------------------------------------------------------

    def _connection(self) -> Any:
        """The open connection (reopened after libvirtd restarts); blocking."""
        with self._lock:
            if self._conn is None or not connection_alive(self._conn):
                self._conn = self._open()
            for subscription in self._subscriptions:
                if subscription.callback_id is None and not subscription.closed:
                    subscription.register(self._conn)
            return self._conn

    def _open(self) -> Any:
        ensure_event_thread()
        try:
            conn = libvirt.open(self.settings.uri)
        except libvirt.libvirtError as exc:
            raise Unavailable(
                f"cannot connect to libvirt at {self.settings.uri}: {exc.get_error_message()}"
            ) from None
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(5, 3)  # a dead libvirtd is noticed (not on every URI)
        for subscription in self._subscriptions:
            subscription.callback_id = None  # the old connection's registrations are gone
        return conn

    def _close(self) -> None:
        with self._lock:
            for subscription in self._subscriptions:
                subscription.close()
            self._subscriptions.clear()
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None


__all__ = ["BootFiles", "LibvirtDriver", "StateCallback", "Subscription", "SystemHost", "VmHost"]
