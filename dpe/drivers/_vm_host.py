"""What the libvirt driver needs from the host besides libvirt (a seam for unit tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from dpe.drivers._sockets import answers_ssh, free_port
from foundation import kvm
from foundation.errors import OperationTimeout, PcloudError, Unavailable

QEMU_IMG_TIMEOUT = 60.0
SSH_BANNER_TIMEOUT = 2.0  # user-mode networking accepts TCP before the guest listens


class VmHost(Protocol):
    async def create_overlay(self, backing: Path, dest: Path) -> None: ...

    async def answers_ssh(self, host: str, port: int) -> bool: ...

    def free_port(self) -> int: ...

    def kvm_usable(self) -> bool: ...


class SystemHost:
    """qemu-img for overlays, TCP for the SSH banner, /dev/kvm for the domain type."""

    async def create_overlay(self, backing: Path, dest: Path) -> None:
        backing_file = str(backing.absolute())  # noqa: ASYNC240 - no I/O but getcwd
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing_file]
        argv += ["-F", "qcow2", str(dest)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except FileNotFoundError:
            raise Unavailable("qemu-img is not installed (Debian: qemu-utils)") from None
        try:
            async with asyncio.timeout(QEMU_IMG_TIMEOUT):
                _, stderr = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise OperationTimeout(f"qemu-img create {dest} did not finish in time") from None
        if proc.returncode != 0:
            raise PcloudError(f"qemu-img create {dest} failed: {stderr.decode().strip()}")

    async def answers_ssh(self, host: str, port: int) -> bool:
        return await answers_ssh(host, port, SSH_BANNER_TIMEOUT)

    def free_port(self) -> int:
        return free_port()

    def kvm_usable(self) -> bool:
        return kvm.kvm_usable()
