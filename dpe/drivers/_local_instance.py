"""A local instance's directory: its files, its sshd configuration, its records.

``Layout`` names the files under the instance's directory and writes them:
the host key, ``authorized_keys``, the sshd configuration (with the agents'
private state directories in every session's environment) and sshd's log.
``instance.json`` (``InstanceRecord``) is written by the driver before sshd
starts and again when it answers; ``init.json`` (``InitRecord``) by the guest
init as it starts.  Both are written atomically: a reader (another engine
listing the instances) sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpe.drivers import _procfs
from dpe.interfaces import Instance, InstanceState
from foundation.errors import InvalidInput, NotFound
from foundation.keyfiles import AssemblyKeys

METADATA = "instance.json"
INIT_RECORD = "init.json"
_SAFE_PATH_RE = re.compile(r'[^"\\\n\r\t\0]+\Z')


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
            # the guest agent's copy (dpe.agent_channel): per instance, as on a VM
            "XDG_CACHE_HOME": str(self.root / "cache"),
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


def write_json(path: Path, data: Mapping[str, Any]) -> None:
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


def read_record(directory: Path) -> InstanceRecord | None:
    data = _read_json(directory / METADATA)
    try:
        return InstanceRecord(**data) if data is not None else None
    except TypeError:
        return None


def read_init(directory: Path) -> InitRecord | None:
    data = _read_json(directory / INIT_RECORD)
    try:
        return InitRecord(**data) if data is not None else None
    except TypeError:
        return None


def instance_state(directory: Path) -> InstanceState:
    return state_of(read_init(directory), read_record(directory))


def state_of(init: InitRecord | None, record: InstanceRecord | None) -> InstanceState:
    """The instance's state from its records (and whether its init still runs)."""
    if init is None or record is None:
        return InstanceState.PENDING if record is not None else InstanceState.GONE
    if not _procfs.is_alive(init.init_pid, init.start_time):
        return InstanceState.STOPPED
    return InstanceState.RUNNING if record.ready else InstanceState.PENDING


FileKey = tuple[int, int, int] | None  # what a replaced file changes (by rename: the inode)


def _file_key(path: Path) -> FileKey:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


class RecordCache:
    """Each instance's two records, read again only once one of them was replaced:
    the engine asks for every instance's state each health interval, and a stat
    costs less than reading and parsing a file."""

    def __init__(self) -> None:
        self._known: dict[
            Path, tuple[tuple[FileKey, FileKey], InitRecord | None, InstanceRecord | None]
        ] = {}

    def records(self, directory: Path) -> tuple[InitRecord | None, InstanceRecord | None]:
        key = (_file_key(directory / INIT_RECORD), _file_key(directory / METADATA))
        known = self._known.get(directory)
        if known is None or known[0] != key:
            known = (key, read_init(directory), read_record(directory))
            self._known[directory] = known
        return known[1], known[2]

    def forget(self, directory: Path) -> None:
        self._known.pop(directory, None)
