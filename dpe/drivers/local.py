"""Local infrastructure driver: each instance is a private OpenSSH sshd.

An instance of an assembly is ``sshd -D -e -f CONFIG`` with the assembly's
host key and an ``authorized_keys`` holding only the assembly's public key;
the engine logs in as the current user (root here).  Its private directory
``Paths.instances_dir/<deployable>/<assembly>/<instance_id>/`` holds the config,
the keys, ``sshd.log``, the metadata and the agents' own state directories,
which sshd puts in every session's environment (``HA_RSCTMP``, ``HA_VARRUN``,
``HA_VARLIB``, ``TMPDIR``), so two instances never share agent state.  It also
sets ``SHLVL=1`` so that bash does not source ``~/.bashrc`` for each command.

Processes: a small init (``_guest_init.py``) starts sshd and reaps orphans at
once.  As root it is PID 1 of its own PID, mount and UTS namespace (the guest's
hostname is the assembly name): destroying the instance kills everything in
it.  Otherwise it is a child subreaper in its own session, and destroy kills
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
when root), ``start_timeout`` (a duration, default 10 s), ``boot_delay`` (a
duration, default none: how long a new instance takes before it is returned, to
stand for a virtual machine's boot in failover tests and benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dpe.drivers import _netns, _procfs
from dpe.interfaces import Instance, InstanceState
from foundation.errors import InvalidInput, NotFound, OperationTimeout, Unavailable
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Problems, duration_setting, validate_name
from foundation.paths import Paths

log = logging.getLogger(__name__)

SSHD = Path("/usr/sbin/sshd")
SSHD_PRIVSEP_DIR = Path("/run/sshd")
DEFAULT_SUBNET = "10.236.0.0/24"
START_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
_DEFAULT_NETWORK = ipaddress.IPv4Network(DEFAULT_SUBNET)
LOOPBACK = "127.0.0.1"
METADATA = "instance.json"
INIT_RECORD = "init.json"
_INIT_SCRIPT = Path(__file__).with_name("_guest_init.py")
_INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\Z")
_POLL = 0.01
_PORT_ATTEMPTS = 3
_SETTING_NAMES = ("network", "subnet", "pid_namespace", "start_timeout", "boot_delay")
_SAFE_PATH_RE = re.compile(r'[^"\\\n\r\t\0]+\Z')


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
            if key not in _SETTING_NAMES:
                problems.add(
                    f"settings.{key}", f"unknown setting (known: {', '.join(_SETTING_NAMES)})"
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


# ---------------------------------------------------------------------------
# what is stored about an instance


@dataclass(frozen=True)
class InstanceRecord:
    """``instance.json``: written by the driver before sshd starts, updated when ready."""

    instance_id: str
    deployable: str
    assembly: str
    address: str
    port: int
    username: str
    created_at: float
    network: str = "loopback"
    netns: str = ""
    veth: str = ""
    ready: bool = False
    sshd_pid: int = 0

    def to_instance(
        self, directory: Path, init: InitRecord | None, state: InstanceState
    ) -> Instance:
        extra = {"dir": str(directory), "network": self.network}
        if init is not None:
            extra |= {
                "init_pid": str(init.init_pid),
                "pid_namespace": "yes" if init.pidns else "no",
            }
        if self.sshd_pid:
            extra["sshd_pid"] = str(self.sshd_pid)
        if self.netns:
            extra |= {"netns": self.netns, "veth": self.veth}
        return Instance(
            instance_id=self.instance_id,
            deployable=self.deployable,
            assembly=self.assembly,
            address=self.address,
            hostname=self.assembly,
            ssh_host=self.address,
            ssh_port=self.port,
            username=self.username,
            state=state,
            created_at=self.created_at,
            extra=extra,
        )


@dataclass(frozen=True)
class InitRecord:
    """``init.json``: written by the launcher, before anything else can fail."""

    init_pid: int
    pidns: bool
    start_time: int
    namespace: str = ""  # the PID namespace (``pid:[...]``) when pidns


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically: a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_record(directory: Path) -> InstanceRecord | None:
    data = _read_json(directory / METADATA)
    try:
        return InstanceRecord(**data) if data is not None else None
    except TypeError:
        return None


def _read_init(directory: Path) -> InitRecord | None:
    data = _read_json(directory / INIT_RECORD)
    try:
        return InitRecord(**data) if data is not None else None
    except TypeError:
        return None


# ---------------------------------------------------------------------------
# an instance's directory and sshd configuration


@dataclass(frozen=True)
class Layout:
    """The files of one instance."""

    root: Path

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_key"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def agent_environment(self) -> dict[str, str]:
        """The private directories agents see (sshd sets them in each session)."""
        return {
            "HA_RSCTMP": str(self.root / "run" / "resource-agents"),
            "HA_VARRUN": str(self.root / "run"),
            "HA_VARLIB": str(self.root / "lib" / "heartbeat"),
            "TMPDIR": str(self.root / "tmp"),
        }

    def create(self, keys: AssemblyKeys) -> None:
        if not _SAFE_PATH_RE.match(str(self.root)):
            raise InvalidInput(f"unusable instance directory for sshd: {str(self.root)!r}")
        self.root.mkdir(mode=0o755, parents=True)
        for directory in self.agent_environment().values():
            Path(directory).mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            host_key = keys.host_private_key.read_bytes()
        except OSError as exc:
            raise NotFound(f"host key {keys.host_private_key}: {exc.strerror}") from exc
        _write_private(self.host_key, host_key)
        _write_private(self.authorized_keys, (keys.public_key.strip() + "\n").encode())

    def write_sshd_config(self, address: str, port: int, username: str) -> None:
        env = {"SHLVL": "1", **self.agent_environment()}
        lines = [
            f"ListenAddress {address}:{port}",
            f'HostKey "{self.host_key}"',
            f'AuthorizedKeysFile "{self.authorized_keys}"',
            f"AllowUsers {username}",
            "PidFile none",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitTunnel no",
            "MaxSessions 64",
            "MaxStartups 100:30:200",
            "LoginGraceTime 30",
            "SetEnv " + " ".join(f'"{k}={v}"' for k, v in env.items()),
        ]
        self.sshd_config.write_text("\n".join(lines) + "\n")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


# ---------------------------------------------------------------------------
# the driver


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
        self._network: _Network = _Loopback()
        if self.settings.network == "netns":
            self._network = _Netns(self.settings.subnet, bridge_netns)

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
            log.info("instance %s destroyed", instance_id)

    async def state(self, instance_id: str) -> InstanceState:
        """running (even when sshd is stopped by a signal), pending, stopped or gone."""
        directory = self._find(instance_id)
        if directory is None:
            return InstanceState.GONE
        return _state(directory)

    async def list(self, deployable: str) -> list[Instance]:
        """The deployable's instances with their state, stopped ones included
        (destroy them to clean up); oldest first."""
        validate_name(deployable, "deployable name")
        found = []
        for directory in sorted((self.instances_dir / deployable).glob("*/*")):
            record = _read_record(directory)
            if record is not None:
                found.append(
                    record.to_instance(directory, _read_init(directory), _state(directory))
                )
        return sorted(found, key=lambda i: i.created_at)

    # -- creating ------------------------------------------------------------

    async def _prepare_host(self) -> None:
        if self.root:
            SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
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
                sshd_pid = await _wait_ready(layout, record, init, deadline)
            except _PortTaken:
                continue
            ready = replace(record, ready=True, sshd_pid=sshd_pid)
            _write_json(layout.root / METADATA, asdict(ready))
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
            _write_json(layout.root / METADATA, asdict(record))
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
        init = _read_init(layout.root)
        if launcher.returncode != 0 or init is None:
            raise Unavailable(
                f"{hostname}: the guest init failed: {stderr.decode(errors='replace').strip()}"
            )
        return init

    # -- destroying --------------------------------------------------------

    async def _remove(self, directory: Path) -> None:
        init = _read_init(directory)
        if init is not None:
            await _kill_all(init, directory.name)
        record = _read_record(directory)
        if record is not None and record.netns:
            await _netns.delete_namespace(record.netns, record.veth, self._network.host_netns)
        shutil.rmtree(directory, ignore_errors=True)
        for parent in (directory.parent, directory.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()

    def _find(self, instance_id: str) -> Path | None:
        if not _INSTANCE_ID_RE.match(instance_id):
            return None
        return next(self.instances_dir.glob(f"*/*/{instance_id}"), None)


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


def _state(directory: Path) -> InstanceState:
    init = _read_init(directory)
    record = _read_record(directory)
    if init is None or record is None:
        return InstanceState.PENDING if record is not None else InstanceState.GONE
    if not _procfs.is_alive(init.init_pid, init.start_time):
        return InstanceState.STOPPED
    return InstanceState.RUNNING if record.ready else InstanceState.PENDING


class _PortTaken(Exception):
    """sshd could not bind its port (taken between choosing and binding): retry."""


async def _wait_ready(
    layout: Layout, record: InstanceRecord, init: InitRecord, deadline: float
) -> int:
    """Wait for sshd's banner on its port; returns sshd's pid."""
    while time.monotonic() < deadline:
        if not _procfs.is_alive(init.init_pid, init.start_time):
            failure = _log_tail(layout.log)
            if "Address already in use" in failure:
                raise _PortTaken()
            raise Unavailable(f"{record.assembly}: sshd exited: {failure}")
        if await _answers_ssh(record.address, record.port):
            return _sshd_pid(init)
        await asyncio.sleep(_POLL)
    await _kill_all(init, record.instance_id)
    raise OperationTimeout(f"{record.assembly}: sshd did not answer within the start timeout")


async def _answers_ssh(address: str, port: int) -> bool:
    try:
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_connection(address, port)
            try:
                banner = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return banner.startswith(b"SSH-")


def _sshd_pid(init: InitRecord) -> int:
    stats = _procfs.all_stats()
    children = [s for s in _procfs.descendants(init.init_pid, stats) if s.ppid == init.init_pid]
    return children[0].pid if children else 0


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


async def _kill_all(init: InitRecord, label: str) -> None:
    """SIGKILL the instance's processes and wait (bounded) until none is left.

    In a PID namespace, killing its init kills the rest (the kernel does it).
    Without one, every process is stopped first, so that none can fork a
    child that escapes the kill; then all are killed."""
    if not init.pidns:
        _freeze(init)
    deadline = time.monotonic() + KILL_TIMEOUT
    while True:
        victims = _members(init)
        if not victims:
            return
        _signal_all(victims, signal.SIGKILL)
        if time.monotonic() > deadline:
            pids = ", ".join(str(s.pid) for s in victims)
            raise Unavailable(f"instance {label}: processes still alive after SIGKILL: {pids}")
        await asyncio.sleep(_POLL)


def _freeze(init: InitRecord) -> None:
    """SIGSTOP the instance's processes until no new one appears."""
    stopped: set[int] = set()
    for _ in range(100):
        fresh = [s for s in _members(init) if s.pid not in stopped]
        if not fresh:
            return
        _signal_all(fresh, signal.SIGSTOP)
        stopped |= {s.pid for s in fresh}


def _signal_all(processes: list[_procfs.ProcStat], signum: int) -> None:
    for stat in processes:
        with contextlib.suppress(OSError):
            os.kill(stat.pid, signum)


def _members(init: InitRecord) -> list[_procfs.ProcStat]:
    """The instance's live processes: its init and everything under it."""
    if init.pidns and init.namespace:
        # the namespace dies with its init (the kernel kills and reaps the rest first)
        if not _procfs.is_alive(init.init_pid, init.start_time):
            return []
        return _procfs.in_pid_namespace(init.namespace)
    current = _procfs.read_stat(init.init_pid)
    if current is not None and current.start_time != init.start_time:
        return []  # the pid was reused: the kernel never does so while our group lives
    stats = [s for s in _procfs.all_stats() if s.alive]
    members = {s.pid: s for s in stats if init.init_pid in (s.session, s.pgrp)}
    if current is not None and current.alive:
        members[current.pid] = current
        members |= {s.pid: s for s in _procfs.descendants(init.init_pid, stats)}
    return list(members.values())


# ---------------------------------------------------------------------------
# networks


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    netns: str = ""
    veth: str = ""


class _Network:
    host_netns = ""  # where the host side of guests' links lives ("": here)

    async def prepare(self) -> None:
        return None

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        raise NotImplementedError

    async def attach(self, record: InstanceRecord) -> None:
        return None


class _Loopback(_Network):
    """sshd on 127.0.0.1, a free port each."""

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        return Endpoint(LOOPBACK, _free_port())


class _Netns(_Network):
    """A network namespace each, port 22 on its own address (see ``_netns``)."""

    def __init__(self, subnet: ipaddress.IPv4Network, host_netns: str = "") -> None:
        self.subnet = subnet
        self.bridge = _netns.bridge_name(subnet)
        self.host_netns = host_netns

    async def prepare(self) -> None:
        await _netns.ensure_bridge(self.subnet, self.host_netns)

    def allocate(self, instances_dir: Path, instance_id: str) -> Endpoint:
        used = _netns.used_addresses(instances_dir, self.subnet)
        address = _netns.free_address(self.subnet, used)
        netns, veth = _netns.netns_name(instance_id), _netns.veth_name(instance_id)
        return Endpoint(str(address), 22, netns, veth)

    async def attach(self, record: InstanceRecord) -> None:
        await _netns.delete_namespace(record.netns, record.veth, self.host_netns)  # a retry's
        address = ipaddress.IPv4Address(record.address)
        await _netns.add_namespace(
            record.netns, record.veth, self.bridge, address, self.subnet.prefixlen, self.host_netns
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


__all__ = ["Endpoint", "InitRecord", "InstanceRecord", "Layout", "LocalDriver", "LocalSettings"]
