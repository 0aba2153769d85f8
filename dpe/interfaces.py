"""The engine's seams: infrastructure driver and transport (the clock is ``foundation.clock``).

Real implementations live in ``dpe.drivers`` and ``dpe.transport``; tests use
hand-written fakes with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly


class InstanceState(StrEnum):
    PENDING = "pending"  # being created or booting
    RUNNING = "running"
    STOPPED = "stopped"  # exists but not running (crashed, powered off)
    GONE = "gone"  # does not exist (never did, or destroyed)


DEAD_STATES = (InstanceState.GONE, InstanceState.STOPPED)  # runs nothing, and will not by itself


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


class Channel(Protocol):
    """A long-lived command on its own channel: bytes in, bytes out (the guest agent)."""

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of its output; ``b""`` at the end; raises Unavailable."""
        ...

    async def write(self, data: bytes) -> None:
        """Write to its input, waiting while the other side is not reading."""
        ...

    def write_eof(self) -> None: ...

    async def wait(self, timeout: float) -> int:
        """Its exit status (128 + N after signal N); raises OperationTimeout or Unavailable."""
        ...

    def stderr_tail(self) -> str:
        """The last few kilobytes of its standard error (read all along)."""
        ...

    def close(self) -> None: ...


OnEnd = Callable[[str | None], None]  # None: the output ended; else why the channel failed


@runtime_checkable
class PushingChannel(Channel, Protocol):
    """A channel that can also hand its output over as it arrives (no reader task:
    a line costs the receiving process one turn of its loop, not two)."""

    def deliver_to(self, on_data: Callable[[bytes], None], on_end: OnEnd) -> None:
        """From now on give every piece of output to ``on_data`` as it arrives (what
        came before first), then call ``on_end`` once; ``read`` is not used any more."""
        ...


class Connection(Protocol):
    """A persistent SSH connection to one instance."""

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run a command; raises OperationTimeout or Unavailable."""
        ...

    async def open_channel(self, command: str, timeout: float) -> Channel:
        """Start a command that keeps running, on its own channel; raises
        OperationTimeout or Unavailable."""
        ...

    async def keepalive(self, timeout: float) -> None:
        """A protocol-level ping; raises OperationTimeout or Unavailable."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def connect(self, instance: Instance, keys: AssemblyKeys, timeout: float) -> Connection:
        """Connect with the pinned host key; raises Unavailable, OperationTimeout or Forbidden."""
        ...


# Optional extension of the driver seam: a driver that can report instance
# deaths as they happen (libvirt's lifecycle events) is also an
# ``InstanceWatcher``.  The engine subscribes once per driver; the callback
# ``(instance_id, state)`` runs in the engine's loop when an instance stopped or
# crashed (``STOPPED``) or was undefined (``GONE``) by someone else than the
# driver's own ``destroy``.  It is a hint, not a replacement for the heartbeat:
# events can be lost (a libvirtd restart), repeated, or name instances the
# engine no longer uses, so the callback checks the id.


class Watch(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class InstanceWatcher(Protocol):
    async def watch(self, callback: Callable[[str, InstanceState], None]) -> Watch: ...


# Optional too: a driver with something to tell the operator that is about
# neither one instance nor an error of a call (its cloud's API stopped
# answering, an image upload's progress) is a ``Notifying``; the engine gives
# it a callback that records the text as an event of the deployable.


@runtime_checkable
class Notifying(Protocol):
    def set_notice(self, notice: Callable[[str], None]) -> None: ...
