"""The engine's seams: clock, infrastructure driver and transport.

Real implementations live in ``dpe.drivers`` and ``dpe.transport``; tests use
hand-written fakes with the same shape.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from dpe.model import Assembly


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class InstanceState(StrEnum):
    PENDING = "pending"  # being created or booting
    RUNNING = "running"
    STOPPED = "stopped"  # exists but not running (crashed, powered off)
    GONE = "gone"  # does not exist (never did, or destroyed)


@dataclass(frozen=True)
class AssemblyKeys:
    """What it takes to reach an assembly's instance as root, and to trust it."""

    private_key: Path  # root's login key (PEM)
    public_key: str  # its OpenSSH public line, for authorized_keys
    host_private_key: Path  # the instance's SSH host key (PEM), for drivers that start sshd
    host_public_key: str  # the pinned host key, as an OpenSSH public line


@dataclass(frozen=True)
class Instance:
    """One running incarnation of an assembly, as the driver reports it."""

    instance_id: str
    deployable: str
    assembly: str
    address: str  # the address resources and references see (``ipaddress``)
    hostname: str
    ssh_host: str  # where the engine connects
    ssh_port: int = 22
    username: str = "root"
    state: InstanceState = InstanceState.RUNNING
    created_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class Driver(Protocol):
    """Infrastructure driver: one small interface for local, libvirt and openstack."""

    name: str

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        """Create and boot an instance; returns once it is reachable or raises."""
        ...

    async def destroy(self, instance_id: str) -> None:
        """Fence: make sure the instance can never run again. Idempotent."""
        ...

    async def state(self, instance_id: str) -> InstanceState: ...

    async def list(self, deployable: str) -> list[Instance]:
        """The deployable's existing instances (for adoption after a restart)."""
        ...


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class Connection(Protocol):
    """A persistent SSH connection to one instance."""

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run a command; raises OperationTimeout or Unavailable."""
        ...

    async def keepalive(self, timeout: float) -> None:
        """A protocol-level ping; raises OperationTimeout or Unavailable."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def connect(self, instance: Instance, keys: AssemblyKeys, timeout: float) -> Connection:
        """Connect with the pinned host key; raises Unavailable, OperationTimeout or Forbidden."""
        ...
