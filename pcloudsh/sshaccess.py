"""Reaching an assembly's running instance with the system ``ssh``, as the engine does.

The login key is the assembly's own (``keys/<assembly>``), and the only host key
ssh accepts is the pinned one (``keys/<assembly>.host.pub``): ssh reads no
configuration file, no known_hosts file and no agent key, and takes the pinned
line from ``KnownHostsCommand`` (an ``echo`` of that one line), with
``StrictHostKeyChecking=yes``.  So nothing is written and nothing is left
behind, also when pcloudsh replaces itself with ssh.

Where to connect comes from the status document (``ssh_host``, ``ssh_port``,
``username`` when cped sends them); without them, a local-driver instance is
looked up in its instance directory, and any other instance is reached on
port 22 of its address as root.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import NotFound
from foundation.keyfiles import key_paths
from foundation.paths import Paths
from pcloudsh.api import OperationFailed
from pcloudsh.status import named_items

CONNECT_TIMEOUT = 10  # seconds for the TCP connection and the SSH handshake
ALIVE_INTERVAL = 15  # an unanswered session ends after 3 of these
DEFAULT_PORT = 22
DEFAULT_USER = "root"


@dataclass(frozen=True)
class Endpoint:
    instance: str
    host: str
    port: int
    username: str


@dataclass(frozen=True)
class Login:
    endpoint: Endpoint
    identity: Path  # the assembly's private login key
    known_host: str  # the one known_hosts line ssh accepts

    def argv(self, command: Sequence[str], *, terminal: bool = False) -> list[str]:
        """``ssh`` with every option pinned; a command runs in batch mode (no prompts),
        on a terminal of its own when ``terminal`` (ours is one, both ways): Ctrl-C
        then interrupts the remote command, as it would run here, not ssh only."""
        options = {
            "IdentitiesOnly": "yes",
            "IdentityFile": str(self.identity),
            "IdentityAgent": "none",
            "PreferredAuthentications": "publickey",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": "/dev/null",
            "GlobalKnownHostsFile": "/dev/null",
            "KnownHostsCommand": f"{_echo()} {self.known_host}",
            "UpdateHostKeys": "no",
            "ConnectTimeout": str(CONNECT_TIMEOUT),
            "ServerAliveInterval": str(ALIVE_INTERVAL),
            "ServerAliveCountMax": "3",
        }
        if command:
            options["BatchMode"] = "yes"
        argv = ["ssh", "-F", "none", "-p", str(self.endpoint.port), "-l", self.endpoint.username]
        argv += ["-t"] if command and terminal else []
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        return [*argv, "--", self.endpoint.host, *remote_command(command)]

    def to_dict(self) -> dict[str, Any]:
        e = self.endpoint
        return {
            "instance": e.instance,
            "host": e.host,
            "port": e.port,
            "username": e.username,
            "identity_file": str(self.identity),
            "known_host": self.known_host,
        }


def remote_command(words: Sequence[str]) -> list[str]:
    """What ssh hands the remote shell: one word as the command line it is (pipes,
    ``;``, ``$VAR`` work as in ``ssh host 'a | b'``), several words each quoted, so
    ``-- pkill -f 'http.server 18080'`` reaches pkill as the three words typed."""
    if len(words) <= 1:
        return list(words)
    return [shlex.join(words)]


def running_assembly(status: dict[str, Any], deployable: str, assembly: str) -> dict[str, Any]:
    """The assembly's row of the status document, if its instance runs."""
    rows = named_items(status.get("assemblies"))
    row = next((r for r in rows if r.get("name") == assembly), None)
    if row is None:
        raise NotFound(f"deployable {deployable!r} has no assembly {assembly!r}")
    if row.get("state") != "running" or not row.get("instance"):
        state = row.get("state") or "unknown"
        raise OperationFailed(
            f"assembly {assembly!r} of deployable {deployable!r} has no running instance "
            f"(it is {state})"
        )
    return row


def endpoint_of(row: dict[str, Any], deployable: str, paths: Paths) -> Endpoint:
    instance = row["instance"]
    details = {**instance, **row} if isinstance(instance, dict) else row
    instance_id = str(instance.get("instance_id") if isinstance(instance, dict) else instance)
    if details.get("ssh_port"):
        return Endpoint(
            instance_id,
            str(details.get("ssh_host") or details.get("address")),
            int(details["ssh_port"]),
            str(details.get("username") or DEFAULT_USER),
        )
    local = _local_instance(paths, deployable, instance_id)
    if local is not None:
        return local
    if not details.get("address"):
        raise OperationFailed(f"cped does not say where instance {instance_id} is")
    return Endpoint(instance_id, str(details["address"]), DEFAULT_PORT, DEFAULT_USER)


def login_for(paths: Paths, assembly: str, endpoint: Endpoint) -> Login:
    private, _public, _host_private, host_public = key_paths(paths.keys_dir, assembly)
    missing = [p.name for p in (private, host_public) if not p.is_file()]
    if missing:
        raise OperationFailed(
            f"assembly {assembly!r} has no {' and no '.join(missing)} in {paths.keys_dir}"
        )
    return Login(endpoint, private, known_hosts_line(endpoint, host_public.read_text()))


def known_hosts_line(endpoint: Endpoint, host_public: str) -> str:
    """``[host]:port type key`` (``host type key`` on port 22): the pinned key, no comment."""
    fields = host_public.split()
    if len(fields) < 2:
        raise OperationFailed("the pinned host key is not an OpenSSH public key line")
    host = endpoint.host
    pattern = host if endpoint.port == DEFAULT_PORT else f"[{host}]:{endpoint.port}"
    return f"{pattern} {fields[0]} {fields[1]}"


def _local_instance(paths: Paths, deployable: str, instance_id: str) -> Endpoint | None:
    """A local-driver instance, from the record its driver keeps on this machine."""
    if not (paths.instances_dir / deployable).is_dir():
        return None
    import asyncio

    from dpe.drivers.registry import make_driver

    instances = asyncio.run(make_driver("local", paths).list(deployable))
    found = next((i for i in instances if i.instance_id == instance_id), None)
    if found is None:
        return None
    return Endpoint(instance_id, found.ssh_host, found.ssh_port, found.username)


def _echo() -> str:
    """KnownHostsCommand needs an absolute path."""
    return shutil.which("echo") or "/bin/echo"
