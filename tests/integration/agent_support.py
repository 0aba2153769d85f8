"""The guest agent without SSH: a ``Connection`` whose commands are local processes.

``PipeConnection`` runs each command with ``sh -c`` under ``subreaper.py`` (which
reaps orphans as a guest's init does), with a private environment (``HOME``,
``XDG_CACHE_HOME``, the agents' ``HA_*`` directories) under a directory the test
owns; ``open_channel`` gives the command's standard input and output as a
``PipeChannel``, as the SSH transport does for the guest agent.  Every process
it started is SIGKILLed by pid on ``close`` (its process group: each is a
session of its own).

Also: ``ocf_provider``, a private OCF provider directory for the test's own
agents (removed afterwards), and ``AGENT_PYTHON``, the interpreter the agent
runs on (``PCLOUD_AGENT_PYTHON``, e.g. a Python 3.9, or this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dpe.interfaces import CommandResult
from foundation.errors import OperationTimeout, Unavailable

SUBREAPER = Path(__file__).with_name("subreaper.py")
AGENT_PYTHON = os.environ.get("PCLOUD_AGENT_PYTHON") or sys.executable
OCF_PROVIDERS = Path("/usr/lib/ocf/resource.d")
_TAIL = 8192


def guest_environment(root: Path) -> dict[str, str]:
    """A guest's session environment, with its private directories under ``root``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "HA_RSCTMP": str(root / "run" / "resource-agents"),
        "HA_VARRUN": str(root / "run"),
        "HA_VARLIB": str(root / "lib"),
        "TMPDIR": str(root / "tmp"),
    }
    for name in ("HOME", "HA_RSCTMP", "HA_VARRUN", "HA_VARLIB", "TMPDIR"):
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return env


class PipeChannel:
    """A local process's standard input and output (implements ``Channel``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._stderr = bytearray()
        self._stderr_reader = asyncio.ensure_future(self._read_stderr())

    async def read(self, size: int) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(size)

    async def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Unavailable(f"channel closed: {exc}") from exc

    def write_eof(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    async def wait(self, timeout: float) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise OperationTimeout(f"still running after {timeout:g} s") from None
        return 128 - code if code < 0 else code

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def close(self) -> None:
        """As sshd closing a session: the pipes close, the process goes on."""
        self.write_eof()
        self._stderr_reader.cancel()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr += chunk
            del self._stderr[:-_TAIL]


class PipeConnection:
    """Commands as local processes in a guest-like environment (a ``Connection``)."""

    def __init__(self, root: Path) -> None:
        self.env = guest_environment(root)
        self.started: list[tuple[asyncio.subprocess.Process, asyncio.SubprocessTransport]] = []
        self.closed = False

    async def _spawn(self, command: str) -> asyncio.subprocess.Process:
        if self.closed:
            raise Unavailable("connection closed")
        loop = asyncio.get_running_loop()
        # as create_subprocess_exec does, keeping the transport to close it at the end
        transport, protocol = await loop.subprocess_exec(
            lambda: asyncio.subprocess.SubprocessStreamProtocol(2**16, loop),
            sys.executable,
            "-I",
            str(SUBREAPER),
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        self.started.append((proc, transport))
        return proc

    async def run(self, command: str, timeout: float) -> CommandResult:
        proc = await self._spawn(command)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            _kill_group(proc)
            raise OperationTimeout(f"{command!r} still running after {timeout:g} s") from None
        code = proc.returncode or 0
        return CommandResult(128 - code if code < 0 else code, out.decode(), err.decode())

    async def open_channel(self, command: str, timeout: float) -> PipeChannel:
        return PipeChannel(await self._spawn(command))

    async def keepalive(self, timeout: float) -> None:
        if self.closed:
            raise Unavailable("connection closed")

    async def close(self) -> None:
        self.closed = True
        for proc, _ in self.started:
            _kill_group(proc)
        for proc, transport in self.started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            transport.close()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class OcfProvider:
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    def install(self, agent: str, script: str) -> None:
        path = self.directory / agent
        path.write_text(script)
        path.chmod(0o755)


@pytest.fixture
def ocf_provider() -> Iterator[OcfProvider]:
    """A private provider ``/usr/lib/ocf/resource.d/pcloud-test-<random>/``, removed after."""
    directory = OCF_PROVIDERS / f"pcloud-test-{secrets.token_hex(4)}"
    directory.mkdir(parents=True)
    try:
        yield OcfProvider(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
