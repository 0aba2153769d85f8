"""qemu-img operations on disk images, and booting an image with qemu.

Every call has a timeout.  ``QemuVM`` boots a JEOS-style image (direct kernel
boot, virtio disk and net, user-mode networking with the guest's port 22
forwarded to loopback, serial console to a file): the e2e tests use it, and
it is what a plain-qemu driver would run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InvalidInput, OperationTimeout, PcloudError, Unavailable
from foundation.kvm import qemu_accel

QEMU_IMG = "qemu-img"
QEMU_SYSTEM = "qemu-system-x86_64"
SUPPORTED_FORMATS = ("qcow2", "raw")
INFO_TIMEOUT = 30.0
CONVERT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None = None


def image_info(path: Path) -> ImageInfo:
    """What qemu-img says about a disk image; InvalidInput when it is not a usable one."""
    if not path.is_file():
        raise InvalidInput(f"disk image {path} does not exist or is not a file")
    data = _info_json(path)
    fmt = str(data.get("format", ""))
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidInput(
            f"disk image {path} is in format {fmt!r}; supported: {', '.join(SUPPORTED_FORMATS)}"
        )
    if data.get("format-specific", {}).get("data", {}).get("corrupt"):
        raise InvalidInput(
            f"disk image {path} is marked corrupt (qemu-img check -r all may repair it)"
        )
    return ImageInfo(
        path=path,
        format=fmt,
        virtual_size=int(data.get("virtual-size", 0)),
        actual_size=int(data.get("actual-size", 0)),
        backing_file=data.get("backing-filename"),
    )


def _info_json(path: Path) -> dict[str, Any]:
    done = run_tool(QEMU_IMG, "info", "--output=json", str(path), timeout=INFO_TIMEOUT, check=False)
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "unreadable"
        raise InvalidInput(f"disk image {path} cannot be read: {reason}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def check_image(path: Path) -> None:
    """Consistency check of a qcow2 image; leaked clusters alone are harmless."""
    done = run_tool(
        QEMU_IMG, "check", "--output=json", str(path), timeout=CONVERT_TIMEOUT, check=False
    )
    if done.returncode in (0, 3, 63):  # 3: leaks only; 63: the format has no checks
        return
    try:
        report = json.loads(done.stdout)
        problems = [
            f"{report.get(key, 0)} {what}"
            for key, what in (("corruptions", "corruptions"), ("check-errors", "check errors"))
            if report.get(key)
        ]
        reason = ", ".join(problems) or "check failed"
    except json.JSONDecodeError:
        reason = (done.stderr.strip().splitlines() or ["check failed"])[-1]
    raise InvalidInput(f"disk image {path} is damaged: {reason} (qemu-img check)")


def convert_to_qcow2(source: Path, dest: Path, source_format: str | None = None) -> None:
    """A standalone compact qcow2 copy (zero blocks skipped, any backing chain flattened)."""
    argv = [QEMU_IMG, "convert", "-O", "qcow2"]
    if source_format:
        argv += ["-f", source_format]
    run_tool(*argv, str(source), str(dest), timeout=CONVERT_TIMEOUT)


def create_overlay(backing: Path, dest: Path) -> None:
    """A copy-on-write qcow2 over ``backing`` (which must then never change)."""
    run_tool(
        QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", str(backing.absolute()), "-F", "qcow2",
        str(dest), timeout=INFO_TIMEOUT,
    )  # fmt: skip


def run_tool(*argv: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a helper program; a missing program, a timeout or a failure is a clear error."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise Unavailable(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationTimeout(f"{argv[0]} {argv[1]} did not finish in {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise PcloudError(f"{' '.join(argv[:2])} failed: {last[0]}")
    return done


# -- booting ----------------------------------------------------------------


@dataclass
class BootSpec:
    disk: Path
    kernel: Path | None
    initrd: Path | None
    cmdline: str
    ssh_port: int
    serial_log: Path
    memory_mb: int = 1024
    cpus: int = 2
    accel: str = field(default_factory=qemu_accel)
    snapshot: bool = False  # write nothing back to the disk image


def qemu_command(spec: BootSpec) -> list[str]:
    argv = [
        QEMU_SYSTEM, "-accel", spec.accel, "-machine", "q35", "-cpu", "max",
        "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{spec.serial_log}",
        "-drive", f"file={spec.disk},if=virtio,format=qcow2,cache=unsafe",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
    ]  # fmt: skip
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel), "-append", spec.cmdline]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.snapshot:
        argv.append("-snapshot")
    return argv


class QemuVM:
    """One qemu process; stopped by its pid."""

    def __init__(self, spec: BootSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        with self.spec.serial_log.with_suffix(".qemu.log").open("wb") as errors:
            self.proc = subprocess.Popen(
                qemu_command(self.spec),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PcloudError("qemu was not started")
        return self.proc.pid

    def wait_for_ssh_banner(self, timeout: float) -> float:
        """Seconds from start until the guest's sshd sends its banner; raises on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if _ssh_banner("127.0.0.1", self.spec.ssh_port, 2.0):
                return time.monotonic() - self.started_at
            time.sleep(0.5)
        raise OperationTimeout(
            f"guest sshd did not answer within {timeout:.0f} s (serial log: {self.spec.serial_log})"
        )

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise Unavailable(
                f"qemu exited with status {self.proc.returncode} "
                f"(see {self.spec.serial_log.with_suffix('.qemu.log')})"
            )

    def stop(self, grace: float = 5.0) -> None:
        """Kill qemu by its pid (the guest's disk is a throwaway or overlay)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=grace)


def _ssh_banner(host: str, port: int, timeout: float) -> bool:
    """Whether an SSH server answers (slirp accepts TCP before the guest listens)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
