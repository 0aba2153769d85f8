"""Domain XML for an instance, and the metadata that names its deployable and assembly.

Pure functions (no libvirt import): the driver defines what ``domain_xml`` returns
and reads back what ``InstanceMeta.from_xml`` parses.  The metadata element lives in
the domain's ``<metadata>`` under ``METADATA_NS``, so ``list`` finds a deployable's
instances after any restart of the engine, with nothing else to keep.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

METADATA_NS = "https://pacemaker-cloud.org/xmlns/libvirt-instance/1"
METADATA_PREFIX = "pcloud"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DOMAIN_PREFIX = "pc-"  # every instance's domain name starts so (events are filtered by it)
USER_GUEST_ADDRESS = "10.0.2.15"  # what qemu's user-mode DHCP gives the guest
# A PCI slot of the q35 root bus that libvirt never assigns to the devices it adds.
USER_NIC_PCI_ADDR = "0x10"


@dataclass(frozen=True)
class InstanceMeta:
    """What the domain carries about itself (all strings in the XML)."""

    instance_id: str
    deployable: str
    assembly: str
    directory: str  # the per-instance overlay and console log
    network: str  # "user" or a libvirt network name
    ssh_host: str
    ssh_port: int
    address: str
    mac: str = ""
    created_at: float = 0.0
    ready: bool = False

    def to_xml(self) -> str:
        root = ET.Element("instance")
        for name, value in asdict(self).items():
            ET.SubElement(root, name).text = _text(value)
        return ET.tostring(root, encoding="unicode")

    @classmethod
    def from_xml(cls, text: str) -> InstanceMeta | None:
        """None when the text is not (a complete) instance metadata element."""
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return None
        values = {child.tag.rpartition("}")[2]: child.text or "" for child in root}
        try:
            return cls(**{f.name: _value(f.type, values[f.name]) for f in fields(cls)})
        except (KeyError, ValueError):
            return None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _value(kind: object, text: str) -> Any:
    if kind in ("int", int):
        return int(text)
    if kind in ("float", float):
        return float(text)
    if kind in ("bool", bool):
        return text == "yes"
    return text


@dataclass(frozen=True)
class DomainSpec:
    name: str
    domain_type: str  # kvm or qemu
    memory_mb: int
    cpus: int
    disk: Path
    console_log: Path
    meta: InstanceMeta
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None


def domain_xml(spec: DomainSpec) -> str:
    ET.register_namespace("qemu", QEMU_NS)
    domain = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(
        domain, "title"
    ).text = f"pacemaker-cloud {spec.meta.deployable}/{spec.meta.assembly}"
    metadata = ET.SubElement(domain, "metadata")
    metadata.append(_namespaced(spec.meta))
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mb)
    ET.SubElement(domain, "vcpu").text = str(spec.cpus)
    domain.append(_os(spec))
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    ET.SubElement(
        domain, "cpu", mode="host-passthrough" if spec.domain_type == "kvm" else "maximum"
    )
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"
    domain.append(_devices(spec))
    if spec.meta.network == "user":
        domain.append(_user_network(spec.meta.ssh_port))
    return ET.tostring(domain, encoding="unicode")


def _namespaced(meta: InstanceMeta) -> ET.Element:
    element = ET.fromstring(meta.to_xml())
    for node in element.iter():
        node.tag = f"{{{METADATA_NS}}}{node.tag}"
    return element


def _os(spec: DomainSpec) -> ET.Element:
    os_element = ET.Element("os")
    ET.SubElement(os_element, "type", arch="x86_64", machine="q35").text = "hvm"
    if spec.kernel is not None:
        ET.SubElement(os_element, "kernel").text = str(spec.kernel)
        if spec.initrd is not None:
            ET.SubElement(os_element, "initrd").text = str(spec.initrd)
        ET.SubElement(os_element, "cmdline").text = spec.cmdline or ""
    else:
        ET.SubElement(os_element, "boot", dev="hd")
    return os_element


def _devices(spec: DomainSpec) -> ET.Element:
    devices = ET.Element("devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    # the overlay is thrown away with the instance: no need to flush for crash safety
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", cache="unsafe")
    ET.SubElement(disk, "source", file=str(spec.disk))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    if spec.meta.network != "user":
        nic = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(nic, "source", network=spec.meta.network)
        ET.SubElement(nic, "mac", address=spec.meta.mac)
        ET.SubElement(nic, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(spec.console_log))
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    return devices


def _user_network(port: int) -> ET.Element:
    """qemu's user-mode NIC with the guest's sshd forwarded to a loopback port.

    libvirt 9 has no port forward for a user interface without passt, so the NIC
    is given to qemu directly, on a PCI slot libvirt does not use."""
    commandline = ET.Element(f"{{{QEMU_NS}}}commandline")
    args = (
        "-netdev",
        f"user,id=pcnet0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        f"virtio-net-pci,netdev=pcnet0,bus=pcie.0,addr={USER_NIC_PCI_ADDR}",
    )
    for arg in args:
        ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=arg)
    return commandline


def domain_name(deployable: str, assembly: str, token: str) -> str:
    return f"{DOMAIN_PREFIX}{deployable}-{assembly}-{token}"


def console_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return "(no console log)"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(empty console log)"
