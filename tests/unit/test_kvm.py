"""KVM is used only when the CPU has vmx/svm and /dev/kvm really creates a VM."""

from __future__ import annotations

from pathlib import Path

from foundation import kvm

CPUINFO = "processor\t: 0\nflags\t\t: fpu vme {extra} hypervisor\n\nprocessor\t: 1\n"


def test_virt_flags() -> None:
    assert kvm.cpu_has_virt_flags(CPUINFO.format(extra="vmx"))
    assert kvm.cpu_has_virt_flags(CPUINFO.format(extra="svm"))
    assert not kvm.cpu_has_virt_flags(CPUINFO.format(extra="sse2"))
    assert not kvm.cpu_has_virt_flags("")


def test_missing_device_means_no_kvm(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra="vmx"))
    assert not kvm.check_kvm(tmp_path / "kvm", cpuinfo)


def test_a_device_that_is_not_kvm_means_no_kvm(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra="vmx"))
    not_kvm = tmp_path / "kvm"
    not_kvm.write_bytes(b"")
    assert not kvm.check_kvm(not_kvm, cpuinfo)


def test_without_cpu_flags_the_device_is_not_even_opened(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=""))
    assert not kvm.check_kvm(Path("/dev/kvm"), cpuinfo)
    assert not kvm.check_kvm(Path("/dev/kvm"), tmp_path / "missing")
