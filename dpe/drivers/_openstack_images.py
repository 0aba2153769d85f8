"""What goes to the image service for an assembly, named by its content.

An assembly's disk (``<images>/<assembly>.qcow2``, often a copy-on-write
overlay of its JEOS) is uploaded as one whole qcow2; the JEOS's kernel and
initrd, when it boots directly (``jeos.json``), as ``aki`` and ``ari`` images
the disk image points at (``kernel_id``, ``ramdisk_id``, ``os_command_line``),
as nova's libvirt driver expects.  Every image is named after the SHA-256 of
what it holds (the disk's whole backing chain, and for the disk the hashes of
its kernel, initrd and command line), so the same content is uploaded once,
whichever assembly or deployable asks, and a changed disk gets a new image.

Hashing reads each file once per change: hashes are kept by path, size and
modification time.  ``qemu-img`` (``DiskTools``) tells the backing chain and
flattens an overlay into a temporary file for the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from foundation.errors import InvalidInput, NotFound, OperationTimeout, PcloudError, Unavailable

JEOS_RECORD = "jeos.json"
QEMU_IMG_TIMEOUT = 600.0  # flattening a few GB on a busy host
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One image to have in the image service."""

    kind: str  # "kernel", "ramdisk" or "disk"
    path: Path
    sha256: str
    disk_format: str
    container_format: str
    flatten: bool = False  # an overlay: upload its flattened copy

    @property
    def name(self) -> str:
        return f"pcloud-{self.kind}-{self.sha256[:32]}"


@dataclass(frozen=True)
class AssemblyImages:
    disk: Part
    kernel: Part | None = None
    ramdisk: Part | None = None
    cmdline: str | None = None


class DiskTools(Protocol):
    async def backing_chain(self, disk: Path) -> list[Path]:
        """The disk and every file under it, top first."""
        ...

    async def flatten(self, disk: Path, dest: Path) -> None: ...


class ContentHashes:
    """SHA-256 of files, kept while a file's size and modification time stay the same."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def of(self, path: Path) -> str:
        try:
            stat = path.stat()
        except OSError as error:
            raise NotFound(f"cannot read {path}: {error.strerror}") from None
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._known[path] = (stat.st_size, stat.st_mtime_ns, value)
        return value


def combined(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


async def assembly_images(
    disk: Path, jeos_record: Path | None, tools: DiskTools, hashes: ContentHashes
) -> AssemblyImages:
    """The images an assembly's servers boot from, each named by its content."""
    if not await asyncio.to_thread(disk.is_file):
        raise NotFound(f"no disk image {disk} (settings.images)")
    chain = await tools.backing_chain(disk)
    chain_hash = combined(*[await asyncio.to_thread(hashes.of, p) for p in chain])
    kernel, initrd, cmdline = _boot_files(jeos_record)
    kernel_part = ramdisk_part = None
    if kernel is not None:
        kernel_part = Part(
            "kernel", kernel, await asyncio.to_thread(hashes.of, kernel), "aki", "aki"
        )
    if initrd is not None:
        digest = await asyncio.to_thread(hashes.of, initrd)
        ramdisk_part = Part("ramdisk", initrd, digest, "ari", "ari")
    disk_hash = combined(
        chain_hash,
        kernel_part.sha256 if kernel_part else "",
        ramdisk_part.sha256 if ramdisk_part else "",
        cmdline or "",
    )
    disk_part = Part("disk", disk, disk_hash, "qcow2", "bare", flatten=len(chain) > 1)
    return AssemblyImages(disk_part, kernel_part, ramdisk_part, cmdline if kernel else None)


def _boot_files(record: Path | None) -> tuple[Path | None, Path | None, str | None]:
    """The JEOS's kernel, initrd and command line; none when it boots from its disk."""
    if record is None:
        return None, None, None
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as error:
        raise NotFound(
            f"no readable JEOS record {record} (settings.jeos_images): {error}"
        ) from None
    if not data.get("kernel"):
        return None, None, None
    initrd = data.get("initrd")
    return Path(data["kernel"]), Path(initrd) if initrd else None, data.get("cmdline")


class QemuImg:
    """``DiskTools`` with qemu-img."""

    async def backing_chain(self, disk: Path) -> list[Path]:
        out = await _qemu_img("info", "--backing-chain", "--output=json", "-U", str(disk))
        try:
            entries = json.loads(out)
        except ValueError:
            raise PcloudError(f"qemu-img info {disk}: not JSON") from None
        if isinstance(entries, dict):
            entries = [entries]
        return [Path(entry["filename"]) for entry in entries]

    async def flatten(self, disk: Path, dest: Path) -> None:
        await _qemu_img("convert", "-O", "qcow2", str(disk), str(dest))


async def _qemu_img(*args: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError:
        raise Unavailable("qemu-img is not installed (Debian: qemu-utils)") from None
    try:
        async with asyncio.timeout(QEMU_IMG_TIMEOUT):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OperationTimeout(f"qemu-img {args[0]} did not finish in time") from None
    if proc.returncode != 0:
        raise InvalidInput(f"qemu-img {args[0]} {args[-1]} failed: {err.decode().strip()}")
    return out.decode()
