"""Assembly images: a copy (or copy-on-write overlay) of a JEOS, given its identity.

The identity of an assembly is written into its disk with libguestfs:
hostname, machine-id (= the assembly uuid), root's authorized key, the one SSH
host key its sshd presents (the engine pins it), no persistent network rules
and a lean root shell.  The edits go through a small ``GuestFiles`` seam so
they are tested on a plain directory; ``GuestfsFiles`` is the real one.

Files are written whole (never appended to), so editing twice changes
nothing and never doubles newlines (the 2012 code did).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from foundation.errors import Conflict, InvalidInput, NotFound, PcloudError
from foundation.keyfiles import AssemblyKeys
from foundation.kvm import kvm_usable
from foundation.model import validate_name
from images import qemu, rootfs
from images.jeos import JeosRecord

Progress = Callable[[str, float], None]

# The one host key file sshd is told to use (JEOS images pin this path).  sshd reads
# the key's type from the file, so it holds an ECDSA key as well as an RSA one.
HOST_KEY = "/etc/ssh/ssh_host_rsa_key"
PUBLIC_KEY_TYPES = ("ssh-", "ecdsa-sha2-")  # ssh-rsa, ssh-ed25519; ecdsa-sha2-nistp256
SSHD_DROPIN = "/etc/ssh/sshd_config.d/pacemaker-cloud.conf"
CLOUD_INIT_DROPIN = "/etc/cloud/cloud.cfg.d/90-pacemaker-cloud.cfg"
NET_RULES = (
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/udev/rules.d/75-persistent-net-generator.rules",
)
LEAN_SHELL = {
    path: content
    for path, _mode, content in rootfs.FILES
    if path in ("root/.profile", "root/.bashrc")
}
GUESTFS_TIMEOUT = 600  # seconds for the appliance to start (TCG is slow)


class GuestFiles(Protocol):
    """The few file operations customization needs, on a guest's root file system."""

    def read(self, path: str) -> bytes | None: ...  # None when missing

    def write(self, path: str, data: bytes, mode: int) -> None: ...  # owner root

    def mkdir(self, path: str, mode: int) -> None: ...  # also when it exists: set the mode

    def remove(self, path: str) -> None: ...  # missing is fine

    def glob(self, pattern: str) -> list[str]: ...

    def symlink(self, target: str, path: str) -> None: ...

    def is_dir(self, path: str) -> bool: ...


@dataclass(frozen=True)
class Identity:
    hostname: str
    machine_id: str  # 32 lower-case hex digits
    authorized_key: str  # root's OpenSSH public line
    host_private_key: bytes  # PEM
    host_public_key: str  # OpenSSH public line

    @classmethod
    def for_assembly(cls, name: str, assembly_uuid: str, keys: AssemblyKeys) -> Identity:
        validate_name(name, "assembly name")
        try:
            host_private = keys.host_private_key.read_bytes()
        except OSError as exc:
            raise NotFound(f"host key of assembly {name!r} cannot be read: {exc.strerror}") from exc
        return cls(
            hostname=hostname_for(name),
            machine_id=machine_id_for(assembly_uuid),
            authorized_key=_one_line(keys.public_key, "public key"),
            host_private_key=host_private,
            host_public_key=_one_line(keys.host_public_key, "host public key"),
        )


def hostname_for(name: str) -> str:
    """The guest's host name: the assembly name, with '_' (which systemd refuses) as '-'."""
    hostname = name.replace("_", "-").rstrip("-.")
    if not hostname:
        raise InvalidInput(f"assembly name {name!r} gives no usable host name")
    return hostname


def machine_id_for(assembly_uuid: str) -> str:
    try:
        value = uuid.UUID(assembly_uuid.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(f"assembly uuid {assembly_uuid!r} is not a uuid") from None
    if value.int == 0:
        raise InvalidInput("assembly uuid must not be all zeros (not a valid machine-id)")
    return value.hex


def _one_line(text: str, what: str) -> str:
    line = text.strip()
    if not line.startswith(PUBLIC_KEY_TYPES) or "\n" in line:
        raise InvalidInput(f"{what} is not one OpenSSH public key line")
    return line


# -- the edits ------------------------------------------------------------


def apply_identity(guest: GuestFiles, ident: Identity) -> None:
    """Write an assembly's identity into a mounted guest (idempotent)."""
    _set_hostname(guest, ident.hostname)
    _set_machine_id(guest, ident.machine_id)
    _set_authorized_key(guest, ident.authorized_key)
    _set_host_key(guest, ident.host_private_key, ident.host_public_key)
    for rules in NET_RULES:
        guest.remove(rules)
    for relative, content in LEAN_SHELL.items():
        guest.write("/" + relative, content.encode(), 0o644)


def _set_hostname(guest: GuestFiles, hostname: str) -> None:
    guest.write("/etc/hostname", f"{hostname}\n".encode(), 0o644)
    old = (guest.read("/etc/hosts") or b"127.0.0.1\tlocalhost\n").decode(errors="replace")
    guest.write("/etc/hosts", hosts_with(old, hostname).encode(), 0o644)


def hosts_with(hosts: str, hostname: str) -> str:
    """``/etc/hosts`` with the 127.0.1.1 line naming ``hostname`` (Debian's convention)."""
    lines = [line for line in hosts.splitlines() if not line.startswith("127.0.1.1")]
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("127.0.0.1")), 0)
    lines.insert(at, f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def _set_machine_id(guest: GuestFiles, machine_id: str) -> None:
    guest.write("/etc/machine-id", f"{machine_id}\n".encode(), 0o444)
    if guest.is_dir("/var/lib/dbus"):
        guest.remove("/var/lib/dbus/machine-id")
        guest.symlink("/etc/machine-id", "/var/lib/dbus/machine-id")


def _set_authorized_key(guest: GuestFiles, public_line: str) -> None:
    guest.mkdir("/root/.ssh", 0o700)
    guest.write("/root/.ssh/authorized_keys", f"{public_line}\n".encode(), 0o600)


def _set_host_key(guest: GuestFiles, private_pem: bytes, public_line: str) -> None:
    if not guest.is_dir("/etc/ssh"):
        raise InvalidInput("the image has no /etc/ssh: is openssh-server installed in it?")
    for path in guest.glob("/etc/ssh/ssh_host_*"):
        guest.remove(path)
    guest.write(HOST_KEY, private_pem, 0o600)
    guest.write(HOST_KEY + ".pub", f"{public_line}\n".encode(), 0o644)
    guest.mkdir("/etc/ssh/sshd_config.d", 0o755)
    if guest.read(SSHD_DROPIN) is None:  # an imported image: pin the key here too
        guest.write(SSHD_DROPIN, f"HostKey {HOST_KEY}\n".encode(), 0o644)
    if guest.is_dir("/etc/cloud/cloud.cfg.d"):  # cloud-init would make new host keys
        guest.write(CLOUD_INIT_DROPIN, b"ssh_deletekeys: false\nssh_genkeytypes: []\n", 0o644)


# -- libguestfs -------------------------------------------------------------


class GuestfsFiles:
    """``GuestFiles`` on a libguestfs handle whose guest root is mounted at /."""

    def __init__(self, handle: Any) -> None:
        self.g = handle

    def read(self, path: str) -> bytes | None:
        if not self.g.is_file(path):
            return None
        data: bytes = self.g.read_file(path)
        return data

    def write(self, path: str, data: bytes, mode: int) -> None:
        if self.g.is_symlink(path):
            self.g.rm(path)
        self.g.write(path, data)
        self.g.chown(0, 0, path)
        self.g.chmod(mode, path)

    def mkdir(self, path: str, mode: int) -> None:
        if not self.g.is_dir(path):
            self.g.mkdir_p(path)
        self.g.chown(0, 0, path)
        self.g.chmod(mode, path)

    def remove(self, path: str) -> None:
        self.g.rm_f(path)

    def glob(self, pattern: str) -> list[str]:
        return list(self.g.glob_expand(pattern))

    def symlink(self, target: str, path: str) -> None:
        self.g.ln_sf(target, path)

    def is_dir(self, path: str) -> bool:
        return bool(self.g.is_dir(path))


@contextlib.contextmanager
def open_guest(
    image: Path, readonly: bool = False, progress: Progress | None = None
) -> Iterator[Any]:
    """A launched libguestfs handle with the guest's file systems mounted."""
    import guestfs  # only this module needs it; importing it is slow-ish and Debian-only

    g = guestfs.GuestFS(python_return_dict=True)
    try:
        if not kvm_usable():
            g.set_backend_settings(["force_tcg"])
        g.add_drive_opts(str(image), format="qcow2", readonly=readonly)
        report = progress or _no_progress
        report("launch", 0.0)
        g.launch()  # boots the libguestfs appliance: seconds under KVM, ~10-20 s under TCG
        report("launch", 1.0)
        _mount_root(g, image, readonly)
        yield g
        g.umount_all()
        g.shutdown()
    except RuntimeError as exc:  # libguestfs reports every failure as RuntimeError
        raise PcloudError(f"libguestfs failed on {image}: {exc}") from exc
    finally:
        g.close()


def _mount_root(g: Any, image: Path, readonly: bool) -> None:
    mount = g.mount_ro if readonly else g.mount
    filesystems: dict[str, str] = g.list_filesystems()
    for device in filesystems:
        if g.vfs_label(device) == rootfs.ROOT_LABEL:  # our JEOS: no need to inspect
            mount(device, "/")
            return
    roots = g.inspect_os()
    if not roots:
        raise InvalidInput(f"no operating system found in disk image {image}")
    mountpoints: dict[str, str] = g.inspect_get_mountpoints(roots[0])
    for point in sorted(mountpoints, key=len):
        mount(mountpoints[point], point)


def customize_image(image: Path, ident: Identity, progress: Progress | None = None) -> None:
    report = progress or _no_progress
    with open_guest(image, progress=report) as g:
        report("customize", 0.0)
        apply_identity(GuestfsFiles(g), ident)
        report("customize", 1.0)


# -- assembly images -------------------------------------------------------


@dataclass(frozen=True)
class AssemblyImage:
    assembly: str
    path: Path
    jeos: str
    backing: Path | None  # the JEOS disk under a copy-on-write overlay
    kernel: Path | None
    initrd: Path | None
    cmdline: str | None
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def image_path(out_dir: Path, assembly: str) -> Path:
    return out_dir / f"{assembly}.qcow2"


def create_assembly_image(
    jeos_record: JeosRecord,
    assembly_name: str,
    assembly_uuid: str,
    keys: AssemblyKeys,
    out_dir: Path,
    overlay: bool = True,
    progress: Progress | None = None,
) -> AssemblyImage:
    """A new assembly disk from a JEOS, customized; refused if the assembly has one."""
    report = progress or _no_progress
    ident = Identity.for_assembly(assembly_name, assembly_uuid, keys)
    _check_new_image(out_dir, assembly_name)
    qemu.image_info(jeos_record.path)  # the JEOS disk is there and readable
    with _staging(out_dir, assembly_name) as staged:
        report("copy", 0.0)
        if overlay:
            qemu.create_overlay(jeos_record.path, staged)
        else:
            qemu.convert_to_qcow2(jeos_record.path, staged, "qcow2")
        report("copy", 1.0)
        customize_image(staged, ident, report)
        _publish(staged, image_path(out_dir, assembly_name))
    return _record(jeos_record, assembly_name, out_dir, overlay)


def clone_assembly_image(
    source: Path,
    assembly_name: str,
    assembly_uuid: str,
    keys: AssemblyKeys,
    out_dir: Path,
    progress: Progress | None = None,
) -> Path:
    """``assembly_clone``: copy another assembly's disk (keeping its backing JEOS), re-identified."""
    report = progress or _no_progress
    ident = Identity.for_assembly(assembly_name, assembly_uuid, keys)
    _check_new_image(out_dir, assembly_name)
    if qemu.image_info(source).format != "qcow2":
        raise InvalidInput(f"assembly disk {source} is not qcow2")
    with _staging(out_dir, assembly_name) as staged:
        report("copy", 0.0)
        shutil.copyfile(source, staged)  # an overlay stays an overlay of the same JEOS
        report("copy", 1.0)
        customize_image(staged, ident, report)
        final = image_path(out_dir, assembly_name)
        _publish(staged, final)
    return final


def reset_assembly_image(
    image: Path,
    assembly_name: str,
    assembly_uuid: str,
    keys: AssemblyKeys,
    progress: Progress | None = None,
) -> None:
    """Re-do the per-assembly parts of an existing assembly disk in place."""
    ident = Identity.for_assembly(assembly_name, assembly_uuid, keys)
    qemu.image_info(image)
    customize_image(image, ident, progress or _no_progress)


def read_identity(image: Path) -> dict[str, str | None]:
    """What an assembly disk says about itself (for checks and tests)."""
    wanted = {
        "hostname": "/etc/hostname",
        "machine_id": "/etc/machine-id",
        "authorized_keys": "/root/.ssh/authorized_keys",
        "host_public_key": HOST_KEY + ".pub",
        "hosts": "/etc/hosts",
    }
    with open_guest(image, readonly=True) as g:
        files = GuestfsFiles(g)
        found: dict[str, str | None] = {}
        for key, path in wanted.items():
            data = files.read(path)
            found[key] = data.decode(errors="replace") if data is not None else None
        found["host_keys"] = " ".join(sorted(files.glob("/etc/ssh/ssh_host_*")))
    return found


def _check_new_image(out_dir: Path, assembly: str) -> None:
    if image_path(out_dir, assembly).exists():
        raise Conflict(
            f"assembly {assembly!r} already has a disk image ({image_path(out_dir, assembly)}): "
            "delete it first",
            assembly=assembly,
        )


@contextlib.contextmanager
def _staging(out_dir: Path, assembly: str) -> Iterator[Path]:
    """A temporary image beside the final one; gone unless published."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{assembly}.", suffix=".qcow2.part", dir=out_dir)
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
    finally:
        staged.unlink(missing_ok=True)


def _publish(staged: Path, final: Path) -> None:
    try:
        os.link(staged, final)  # fails if another one appeared meanwhile
    except FileExistsError:
        raise Conflict(f"{final} appeared while it was being made") from None


def _record(jeos: JeosRecord, assembly: str, out_dir: Path, overlay: bool) -> AssemblyImage:
    return AssemblyImage(
        assembly=assembly,
        path=image_path(out_dir, assembly),
        jeos=jeos.name,
        backing=jeos.path if overlay else None,
        kernel=jeos.kernel,
        initrd=jeos.initrd,
        cmdline=jeos.cmdline,
        created=time.time(),
    )


def _no_progress(_phase: str, _fraction: float) -> None:
    """Progress sink for callers that show none."""
