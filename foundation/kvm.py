"""Is hardware virtualization usable here, or must qemu and libguestfs use TCG?

``/dev/kvm`` can exist and even create a VM while the CPU lacks vmx/svm (a
nested guest without them): qemu then aborts when it sets up the vCPU.  So
both are checked: the CPU flags and a real ``KVM_CREATE_VM``.
"""

from __future__ import annotations

import fcntl
import functools
import os
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")
CPUINFO = Path("/proc/cpuinfo")
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12
VIRT_FLAGS = frozenset({"vmx", "svm"})


@functools.cache
def kvm_usable() -> bool:
    """True when qemu can use KVM on this machine (cached for the process)."""
    return check_kvm(KVM_DEVICE, CPUINFO)


def check_kvm(device: Path, cpuinfo: Path) -> bool:
    try:
        flags_ok = cpu_has_virt_flags(cpuinfo.read_text())
    except OSError:
        return False
    return flags_ok and kvm_creates_vm(device)


def cpu_has_virt_flags(cpuinfo_text: str) -> bool:
    """Whether the first CPU's flags include vmx (Intel) or svm (AMD)."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return bool(VIRT_FLAGS & set(value.split()))
    return False


def kvm_creates_vm(device: Path) -> bool:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != KVM_API_VERSION:
            return False
        os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
    except OSError:
        return False
    else:
        return True
    finally:
        os.close(fd)


def qemu_accel() -> str:
    """The ``-accel`` value for qemu."""
    return "kvm" if kvm_usable() else "tcg"
