"""Local infrastructure driver: each instance is a private OpenSSH sshd.

An instance of an assembly is ``sshd -D -e -f CONFIG`` with the assembly's
host key and an ``authorized_keys`` holding only the assembly's public key;
the engine logs in as the current user (root here).  Its private directory
``Paths.instances_dir/<deployable>/<assembly>/<instance_id>/`` holds the config,
the keys, ``sshd.log``, the metadata and the agents' own state directories,
which sshd puts in every session's environment (``HA_RSCTMP``, ``HA_VARRUN``,
``HA_VARLIB``, ``TMPDIR``, and ``XDG_CACHE_HOME`` for the guest agent's file), so
two instances never share agent state.  It also
sets ``SHLVL=1`` so that bash does not source ``~/.bashrc`` for each command.

Processes: a small init (``_guest_init.py``) starts sshd and reaps orphans at
once.  As root it is PID 1 of its own PID, mount and UTS namespace (the guest's
hostname is the assembly name), a shell once set up: destroying the instance
kills everything in it.  Otherwise it is a child subreaper in its own session, and destroy kills
its process group and descendants.  The init is never the child of the
creating process, so instances survive the engine and a new engine adopts
them through ``list``.

Network: ``loopback`` (default) binds sshd to 127.0.0.1 on a free port.  As
root, ``network = netns`` gives each instance its own network namespace with
an address from ``subnet`` on a bridge the driver creates (see ``_netns``).

Members of one cluster on one machine (tests, demonstrations) share the
instances: ``instances_dir`` (``[dped] local_instances_dir``) puts them in a
directory every member's DPEs read, and ``bridge_netns`` (``[dped]
local_bridge_netns``) puts the netns guests' bridge in that named network
namespace instead of the DPE's own, so every member reaches them.

Settings (the deployable's ``settings``): ``network`` (loopback | netns),
``subnet`` (default 10.236.0.0/24), ``pid_namespace`` (yes | no; default yes
when root), ``start_timeout`` (a duration, default 10 s; a busy host's CPU
waits not counted: ``_local_processes.wait_ready``), ``boot_delay`` (a
duration, default none: how long a new instance takes before it is returned, to
stand for a virtual machine's boot in failover tests and benchmarks).

Here: the settings and the driver.  An instance's files and records are in
``_local_instance``, its processes (waiting for sshd, killing them all) in
``_local_processes``, its network in ``_local_network``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import pwd
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dpe.drivers import _netns
from dpe.drivers._local_instance import (
    INIT_RECORD,
    METADATA,
    InitRecord,
    InstanceRecord,
    Layout,
    RecordCache,
    instance_state,
    read_init,
    read_record,
    state_of,
    write_json,
)
from dpe.drivers._local_network import Endpoint, Loopback, NetnsNetwork, Network
from dpe.drivers._local_processes import PortTaken, kill_all, wait_ready
from dpe.interfaces import Instance, InstanceState
from foundation.errors import OperationTimeout, Unavailable
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Problems, duration_setting, validate_name
from foundation.paths import Paths

log = logging.getLogger(__name__)

SSHD = Path("/usr/sbin/sshd")
SSHD_PRIVSEP_DIR = Path("/run/sshd")
DEFAULT_SUBNET = "10.236.0.0/24"
START_TIMEOUT = 10.0
_DEFAULT_NETWORK = ipaddress.IPv4Network(DEFAULT_SUBNET)
_INIT_SCRIPT = Path(__file__).with_name("_guest_init.py")
_INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\Z")
_PORT_ATTEMPTS = 3
SETTING_NAMES = ("network", "subnet", "pid_namespace", "start_timeout", "boot_delay")


# ---------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class LocalSettings:
    network: str = "loopback"
    subnet: ipaddress.IPv4Network = _DEFAULT_NETWORK
    pid_namespace: bool = True
    start_timeout: float = START_TIMEOUT
    boot_delay: float = 0.0

    @classmethod
    def parse(cls, settings: Mapping[str, str], *, root: bool) -> LocalSettings:
        """Typed settings; every problem reported at once, naming the key."""
        problems = Problems()
        for key in settings:
            if key not in SETTING_NAMES:
                problems.add(
                    f"settings.{key}", f"unknown setting (known: {', '.join(SETTING_NAMES)})"
                )
        parsed = cls(
            network=_network_setting(settings.get("network", "loopback"), root, problems),
            subnet=_subnet_setting(settings.get("subnet", DEFAULT_SUBNET), problems),
            pid_namespace=_yes_no_setting(settings.get("pid_namespace", "yes"), problems) and root,
            start_timeout=duration_setting(
                settings.get("start_timeout"), START_TIMEOUT, "settings.start_timeout", problems
            ),
            boot_delay=duration_setting(
                settings.get("boot_delay"), 0.0, "settings.boot_delay", problems
            ),
        )
        problems.raise_if_any("invalid settings for the local infrastructure")
        return parsed


def _network_setting(value: str, root: bool, problems: Problems) -> str:
    if value not in ("loopback", "netns"):
        problems.add("settings.network", f"must be loopback or netns, not {value!r}")
    elif value == "netns" and not root:
        problems.add("settings.network", "netns needs root (network namespaces and a bridge)")
    return value


def _subnet_setting(value: str, problems: Problems) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(value)
    except ValueError as exc:
        problems.add("settings.subnet", f"not an IPv4 network: {value!r} ({exc})")
        return _DEFAULT_NETWORK
    if not subnet.is_private or subnet.num_addresses < 4 or subnet.is_loopback:
        problems.add(
            "settings.subnet", f"must be a private network of 4 addresses or more: {value}"
        )
    return subnet


def _yes_no_setting(value: str, problems: Problems) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    problems.add("settings.pid_namespace", f"must be yes or no, not {value!r}")
    return False


class LocalDriver:
    """Instances as private sshd processes (implements ``dpe.interfaces.Driver``)."""

    name = "local"

    def __init__(
        self,
        paths: Paths,
        settings: Mapping[str, str] | None = None,
        *,
        sshd: Path = SSHD,
        instances_dir: Path | None = None,
        bridge_netns: str = "",
    ) -> None:
        self.root = os.geteuid() == 0
        self.settings = LocalSettings.parse(settings or {}, root=self.root)
        self.paths = paths
        self.instances_dir = instances_dir or paths.instances_dir
        self.sshd = sshd
        self.username = pwd.getpwuid(os.geteuid()).pw_name
        self._network: Network = Loopback()
        self._directories: dict[str, Path] = {}  # instance id -> its directory, once found
        self._records = RecordCache()  # what the instances' records said, while unchanged
        if self.settings.network == "netns":
            self._network = NetnsNetwork(self.settings.subnet, bridge_netns)

    # -- Driver ------------------------------------------------------------

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        """Start a new instance; returns once its sshd answers (``start_timeout``).

        Raises ``Unavailable`` (sshd did not start; its log is in the message)
        or ``OperationTimeout``; nothing is left behind on failure."""
        validate_name(deployable, "deployable name")
        validate_name(assembly.name, "assembly name")
        instance_id = f"{assembly.name}-{secrets.token_hex(4)}"
        layout = Layout(self.instances_dir / deployable / assembly.name / instance_id)
        await self._prepare_host()
        try:
            layout.create(keys)
            instance = await self._start(layout, deployable, assembly.name, instance_id)
            await asyncio.sleep(self.settings.boot_delay)  # a virtual machine's boot
        except BaseException:
            await self._remove(layout.root)
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
        """Kill every process of the instance (SIGKILL, waits until they are
        gone), release its network, remove its directory.  Idempotent."""
        directory = self._find(instance_id)
        if directory is not None:
            await self._remove(directory)
            self._forget(instance_id, directory)
            log.info("instance %s destroyed", instance_id)

    async def state(self, instance_id: str) -> InstanceState:
        """running (even when sshd is stopped by a signal), pending, stopped or gone."""
        directory = self._find(instance_id)
        if directory is None:
            return InstanceState.GONE
        return state_of(*self._records.records(directory))

    async def list(self, deployable: str) -> list[Instance]:
        """The deployable's instances with their state, stopped ones included
        (destroy them to clean up); oldest first."""
        validate_name(deployable, "deployable name")
        found = []
        for directory in sorted((self.instances_dir / deployable).glob("*/*")):
            record = read_record(directory)
            if record is not None:
                found.append(
                    record.to_instance(directory, read_init(directory), instance_state(directory))
                )
        return sorted(found, key=lambda i: i.created_at)

    # -- creating ------------------------------------------------------------

    async def _prepare_host(self) -> None:
        if self.root:
            SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)  # noqa: ASYNC240 - once, tmpfs
        await self._network.prepare()

    async def _start(
        self, layout: Layout, deployable: str, assembly: str, instance_id: str
    ) -> Instance:
        deadline = time.monotonic() + self.settings.start_timeout
        for _ in range(_PORT_ATTEMPTS):
            record = self._allocate(layout, deployable, assembly, instance_id)
            await self._network.attach(record)
            layout.write_sshd_config(record.address, record.port, self.username)
            init = await self._launch(layout, assembly, record.netns, deadline)
            try:
                sshd_pid = await wait_ready(layout, record, init, deadline)
            except PortTaken:
                continue
            ready = replace(record, ready=True, sshd_pid=sshd_pid)
            write_json(layout.root / METADATA, asdict(ready))
            return ready.to_instance(layout.root, init, InstanceState.RUNNING)
        raise Unavailable(f"{assembly}: no free port for sshd")

    def _allocate(
        self, layout: Layout, deployable: str, assembly: str, instance_id: str
    ) -> InstanceRecord:
        """Choose the address and port, and record them, under a lock shared by
        every process using these instance directories."""
        with _locked(self.instances_dir / ".lock"):
            endpoint = self._network.allocate(self.instances_dir, instance_id)
            record = InstanceRecord(
                instance_id=instance_id,
                deployable=deployable,
                assembly=assembly,
                address=endpoint.address,
                port=endpoint.port,
                username=self.username,
                created_at=time.time(),
                network=self.settings.network,
                netns=endpoint.netns,
                veth=endpoint.veth,
            )
            write_json(layout.root / METADATA, asdict(record))
        return record

    async def _launch(
        self, layout: Layout, hostname: str, netns: str, deadline: float
    ) -> InitRecord:
        argv = [sys.executable, "-I", "-S", str(_INIT_SCRIPT), "--log", str(layout.log)]
        argv += ["--record", str(layout.root / INIT_RECORD), "--hostname", hostname]
        argv += ["--pidns"] if self.settings.pid_namespace else []
        argv += ["--netns", netns] if netns else []
        argv += ["--", str(self.sshd), "-D", "-e", "-f", str(layout.sshd_config)]
        launcher = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=_clean_environment(),
        )
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                _, stderr = await launcher.communicate()
        except TimeoutError:
            launcher.kill()
            await launcher.wait()
            raise OperationTimeout(f"{hostname}: the guest init did not start in time") from None
        init = read_init(layout.root)
        if launcher.returncode != 0 or init is None:
            raise Unavailable(
                f"{hostname}: the guest init failed: {stderr.decode(errors='replace').strip()}"
            )
        return init

    # -- destroying --------------------------------------------------------

    async def _remove(self, directory: Path) -> None:
        init = read_init(directory)
        if init is not None:
            await kill_all(init, directory.name)
        record = read_record(directory)
        if record is not None and record.netns:
            await _netns.delete_namespace(record.netns, record.veth, self._network.host_netns)
            await self._network.release(record)
        shutil.rmtree(directory, ignore_errors=True)
        for parent in (directory.parent, directory.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()

    def _find(self, instance_id: str) -> Path | None:
        """The instance's directory.  Found once by a search of every deployable's
        assemblies, then remembered: the engine asks about each instance every health
        interval, and the search grows with the host's instances (about 2 ms at 600)."""
        if not _INSTANCE_ID_RE.match(instance_id):
            return None
        known = self._directories.get(instance_id)
        if known is not None:
            if known.is_dir():
                return known
            self._forget(instance_id, known)
        found = next(self.instances_dir.glob(f"*/*/{instance_id}"), None)
        if found is not None:
            self._directories[instance_id] = found
        return found

    def _forget(self, instance_id: str, directory: Path) -> None:
        """An instance gone: nothing kept of it (a dped sees one more at every restart)."""
        self._directories.pop(instance_id, None)
        self._records.forget(directory)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _clean_environment() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }


__all__ = [
    "INIT_RECORD",
    "METADATA",
    "Endpoint",
    "InitRecord",
    "InstanceRecord",
    "Layout",
    "LocalDriver",
    "LocalSettings",
]
