"""JEOS images: build one with debootstrap, or import an existing disk image.

A JEOS lives in ``<out_dir>/<name>/``: ``disk.qcow2``, the kernel and initrd
for direct kernel boot (built images), ``build.log`` and ``jeos.json`` (the
record).  Everything is made in a hidden work directory next to it and moved
into place with one rename at the end, so an interrupted or failed build
leaves no JEOS behind (only ``<name>.build.log``, named in the error).
Bad input is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from foundation.errors import Conflict, InvalidInput, NotFound, Unavailable
from foundation.model import validate_name
from images import debootstrap, qemu, rootfs
from images.mirror import APT_DIR, Mirror, host_mirror

Progress = Callable[[str, float], None]

ARCHES = {"x86_64": "amd64", "amd64": "amd64"}
RELEASES = ("bullseye", "bookworm", "trixie")
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
BASE_PACKAGES = (
    "linux-image-amd64",
    "openssh-server",
    "systemd-sysv",
    "dbus",
    "resource-agents",
    # the guest agent's interpreter (resource-agents already depends on it: listed
    # so that it stays; about 21 MB installed, 5 MB of packages)
    "python3",
    "iproute2",
    "ifupdown",
    "procps",
)
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,99}\Z")
GIB = 1 << 30
DEFAULT_DISK_SIZE = 4 * GIB
# A build holds the tree (~1 GiB), the raw file system and the qcow2 at once.
MIN_FREE_BYTES = 4 * GIB
REQUIRED_TOOLS = (
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
    ("depmod", "kmod"),
)
DISK, KERNEL, INITRD, LOG, RECORD = "disk.qcow2", "vmlinuz", "initrd.img", "build.log", "jeos.json"
OWNER = "builder.pid"
MKFS_TIMEOUT = 600.0


@dataclass(frozen=True)
class JeosRecord:
    name: str
    path: Path  # the qcow2 disk
    kernel: Path | None  # for direct kernel boot; None for imported images with a boot loader
    initrd: Path | None
    cmdline: str | None
    size: int  # bytes on disk
    virtual_size: int  # bytes the guest sees
    checksum: str  # "sha256:<hex>" of the qcow2 file
    build_log: Path | None
    release: str
    arch: str
    created: float
    kind: str = "image"
    format: str = "qcow2"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JeosRecord:
        paths = ("path", "kernel", "initrd", "build_log")
        values: dict[str, Any] = {
            k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()
        }
        return cls(**values)


@dataclass(frozen=True)
class BuildPlan:
    name: str
    release: str
    arch: str
    deb_arch: str
    packages: tuple[str, ...]
    out_dir: Path
    mirror: Mirror
    disk_size: int


# -- checks (nothing written) ----------------------------------------------


def plan_build(
    name: str,
    release: str,
    arch: str,
    packages: Iterable[str],
    out_dir: Path,
    disk_size: int = DEFAULT_DISK_SIZE,
    apt_dir: Path = APT_DIR,
) -> BuildPlan:
    """Check a build request completely; InvalidInput/Conflict before anything is written."""
    validate_name(name, "JEOS name")
    deb_arch = check_arch(arch)
    check_release(release)
    extra = check_packages(packages)
    check_disk_size(disk_size)
    check_root()
    check_tools(REQUIRED_TOOLS)
    check_out_dir(out_dir, name, MIN_FREE_BYTES)
    mirror = host_mirror(release, apt_dir)
    merged = tuple(dict.fromkeys((*BASE_PACKAGES, *extra)))
    return BuildPlan(name, release, arch, deb_arch, merged, out_dir, mirror, disk_size)


def check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise InvalidInput(f"unsupported architecture {arch!r}; supported: x86_64")
    return ARCHES[arch]


def check_release(release: str, scripts: Path = DEBOOTSTRAP_SCRIPTS) -> None:
    if release not in RELEASES:
        raise InvalidInput(f"unknown Debian release {release!r}; supported: {', '.join(RELEASES)}")
    if not (scripts / release).exists():
        raise InvalidInput(f"this debootstrap cannot build {release!r} (no script in {scripts})")


def check_packages(packages: Iterable[str]) -> tuple[str, ...]:
    if isinstance(packages, str):
        raise InvalidInput("packages must be a list of package names, not one string")
    names = tuple(packages)
    bad = [p for p in names if not isinstance(p, str) or not PACKAGE_RE.match(p)]
    if bad:
        raise InvalidInput(f"invalid Debian package name(s): {', '.join(map(repr, bad))}")
    return names


def check_disk_size(disk_size: int) -> None:
    if disk_size < 2 * GIB or disk_size > 1024 * GIB:
        raise InvalidInput(f"disk size must be between 2 GiB and 1 TiB, not {disk_size} bytes")


def check_root(euid: int | None = None) -> None:
    if (os.geteuid() if euid is None else euid) != 0:
        raise InvalidInput(
            "building a JEOS image needs root (debootstrap creates devices and chroots)"
        )


def check_tools(tools: Sequence[tuple[str, str]]) -> None:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in tools if not shutil.which(tool)]
    if missing:
        raise Unavailable(f"missing tools: {', '.join(missing)}")


def check_out_dir(out_dir: Path, name: str, min_free: int) -> None:
    if (out_dir / name).exists():
        raise Conflict(f"JEOS {name!r} already exists in {out_dir}", jeos=name)
    existing = _nearest_existing(out_dir)
    if not existing.is_dir():
        raise InvalidInput(f"image directory {out_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInput(f"no permission to write in image directory {existing}")
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise InvalidInput(
            f"not enough disk space in {existing}: {free / GIB:.1f} GiB free, "
            f"{min_free / GIB:.1f} GiB needed"
        )


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- build ---------------------------------------------------------------


def build_jeos(
    name: str,
    release: str = "bookworm",
    arch: str = "x86_64",
    packages: Iterable[str] = (),
    *,
    out_dir: Path,
    progress: Progress | None = None,
    disk_size: int = DEFAULT_DISK_SIZE,
    deb_cache: Path | None = None,
    apt_dir: Path = APT_DIR,
    timeout: float = debootstrap.DEFAULT_TIMEOUT,
) -> JeosRecord:
    """Build a JEOS image with debootstrap; returns its record once it is in place."""
    report = progress or _no_progress
    plan = plan_build(name, release, arch, packages, out_dir, disk_size, apt_dir)
    report("check", 1.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"{name}.build.log"
    log_path.write_text(f"building JEOS {name} ({release}, {arch}) from {plan.mirror.uri}\n")
    with _work_dir(out_dir, name) as work:
        try:
            _build_in(work, plan, log_path, report, deb_cache, timeout)
        except OSError as exc:
            raise debootstrap.BuildError(
                f"building JEOS {name!r} failed: {exc} (build log: {log_path})"
            ) from exc
        record = _finish(work, plan, log_path, report)
    log_path.unlink(missing_ok=True)
    return record


def _build_in(
    work: Path,
    plan: BuildPlan,
    log_path: Path,
    report: Progress,
    deb_cache: Path | None,
    timeout: float,
) -> None:
    root = work / "root"
    argv = debootstrap.debootstrap_command(
        root, plan.release, plan.mirror, plan.packages, plan.deb_arch, deb_cache
    )
    report("debootstrap", 0.0)
    debootstrap.run_debootstrap(argv, log_path, report, timeout)
    report("debootstrap", 1.0)
    _configure(root, work, report)
    _make_disk(root, work, plan.disk_size, log_path, report)


def _configure(root: Path, work: Path, report: Progress) -> None:
    report("configure", 0.0)
    debootstrap.unmount_under(root)
    rootfs.configure_tree(root)
    _copy_boot_files(root, work)  # before slimming: the initrd already has its modules
    for version in rootfs.slim_tree(root):
        qemu.run_tool("depmod", "-b", str(root), version, timeout=MKFS_TIMEOUT)
    report("configure", 1.0)


def _make_disk(root: Path, work: Path, size: int, log_path: Path, report: Progress) -> None:
    raw = work / "disk.raw"
    report("filesystem", 0.0)
    make_ext4(root, raw, size, log_path)
    debootstrap.remove_tree(root)  # frees its space before the qcow2 is written
    report("filesystem", 1.0)
    report("convert", 0.0)
    qemu.convert_to_qcow2(raw, work / DISK, "raw")
    raw.unlink()
    report("convert", 1.0)


def _finish(work: Path, plan: BuildPlan, log_path: Path, report: Progress) -> JeosRecord:
    report("checksum", 0.0)
    final = plan.out_dir / plan.name
    shutil.copyfile(log_path, work / LOG)
    record = JeosRecord(
        name=plan.name,
        path=final / DISK,
        kernel=final / KERNEL,
        initrd=final / INITRD,
        cmdline=rootfs.KERNEL_CMDLINE,
        size=(work / DISK).stat().st_size,
        virtual_size=plan.disk_size,
        checksum=sha256_of(work / DISK),
        build_log=final / LOG,
        release=plan.release,
        arch=plan.arch,
        created=time.time(),
    )
    _write_record(work, record)
    _move_into_place(work, final)
    report("checksum", 1.0)
    return record


def _copy_boot_files(root: Path, work: Path) -> None:
    """The kernel and initrd, outside the image, for direct kernel boot."""
    for link, dest in (("vmlinuz", KERNEL), ("initrd.img", INITRD)):
        source = root / link
        target = root / os.readlink(source).lstrip("/") if source.is_symlink() else source
        if not target.is_file():
            raise debootstrap.BuildError(f"the built tree has no /{link} (is a kernel installed?)")
        shutil.copyfile(target, work / dest)


def make_ext4(root: Path, image: Path, size: int, log_path: Path) -> None:
    """An ext4 file system filled from ``root`` (no appliance, no loop device)."""
    with image.open("wb") as raw:
        raw.truncate(size)
    done = qemu.run_tool(
        "mkfs.ext4", "-q", "-F", "-L", rootfs.ROOT_LABEL, "-d", str(root), str(image),
        timeout=MKFS_TIMEOUT, check=False,
    )  # fmt: skip
    with log_path.open("a") as log:
        log.write(f"$ mkfs.ext4 -d ... (exit {done.returncode})\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or ["failed"]
        raise debootstrap.BuildError(f"mkfs.ext4 failed: {reason[0]} (build log: {log_path})")


# -- import -------------------------------------------------------------


# The smallest disk jeos_import takes: a partition table and a kernel need more.
SMALLEST_DISK = 1 << 20


def import_jeos(
    name: str,
    file: Path,
    out_dir: Path,
    *,
    release: str = "unknown",
    arch: str = "x86_64",
    kernel: Path | None = None,
    initrd: Path | None = None,
    cmdline: str | None = None,
    progress: Progress | None = None,
) -> JeosRecord:
    """Register an existing qcow2 or raw image as a JEOS (a flattened qcow2 copy)."""
    report = progress or _no_progress
    info = _check_import(name, file, out_dir, arch, kernel, initrd)
    report("check", 1.0)
    final = out_dir / name
    with _work_dir(out_dir, name) as work:
        report("convert", 0.0)
        qemu.convert_to_qcow2(file, work / DISK, info.format)
        report("convert", 1.0)
        for source, dest in ((kernel, KERNEL), (initrd, INITRD)):
            if source is not None:
                shutil.copyfile(source, work / dest)
        report("checksum", 0.0)
        record = JeosRecord(
            name=name,
            path=final / DISK,
            kernel=final / KERNEL if kernel else None,
            initrd=final / INITRD if initrd else None,
            cmdline=cmdline if kernel else None,
            size=(work / DISK).stat().st_size,
            virtual_size=info.virtual_size,
            checksum=sha256_of(work / DISK),
            build_log=None,
            release=release,
            arch=arch,
            created=time.time(),
        )
        _write_record(work, record)
        _move_into_place(work, final)
        report("checksum", 1.0)
    return record


def _check_import(
    name: str, file: Path, out_dir: Path, arch: str, kernel: Path | None, initrd: Path | None
) -> qemu.ImageInfo:
    validate_name(name, "JEOS name")
    check_arch(arch)
    for label, path in (("kernel", kernel), ("initrd", initrd)):
        if path is not None and not path.is_file():
            raise InvalidInput(f"{label} {path} does not exist or is not a file")
    if initrd is not None and kernel is None:
        raise InvalidInput("an initrd needs a kernel")
    info = qemu.image_info(file)
    if info.virtual_size == 0:
        raise InvalidInput(f"disk image {file} is empty")
    if info.virtual_size < SMALLEST_DISK:
        # qemu-img reads any file as a raw disk: a text file would pass
        raise InvalidInput(
            f"disk image {file} is too small to hold an operating system"
            f" ({info.virtual_size} bytes as a disk, at least {SMALLEST_DISK >> 20} MiB):"
            " is it a disk image?"
        )
    if info.format == "qcow2":
        qemu.check_image(file)
    check_out_dir(out_dir, name, info.actual_size + GIB // 4)
    return info


# -- the directory of JEOS images --------------------------------------


def load_jeos(out_dir: Path, name: str) -> JeosRecord:
    validate_name(name, "JEOS name")
    path = out_dir / name / RECORD
    try:
        return JeosRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise NotFound(f"JEOS {name!r} does not exist", jeos=name) from None


def list_jeos(out_dir: Path) -> list[JeosRecord]:
    if not out_dir.is_dir():
        return []
    names = sorted(p.parent.name for p in out_dir.glob(f"*/{RECORD}"))
    return [load_jeos(out_dir, n) for n in names]


def delete_jeos(out_dir: Path, name: str) -> None:
    """Remove a JEOS directory; assemblies made as overlays of it break (the caller checks)."""
    load_jeos(out_dir, name)
    debootstrap.remove_tree(out_dir / name)


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _write_record(work: Path, record: JeosRecord) -> None:
    (work / RECORD).write_text(json.dumps(record.to_dict(), indent=2) + "\n")


def _move_into_place(work: Path, final: Path) -> None:
    try:
        os.rename(work, final)
    except OSError as exc:  # ENOTEMPTY/EEXIST: someone made it meanwhile
        raise Conflict(f"JEOS {final.name!r} already exists in {final.parent}") from exc
    (final / OWNER).unlink(missing_ok=True)


@contextlib.contextmanager
def _work_dir(out_dir: Path, name: str) -> Iterator[Path]:
    """A hidden work directory beside the final one; removed unless it was moved into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work(out_dir)
    path = Path(tempfile.mkdtemp(prefix=f".{name}.work-", dir=out_dir))
    (path / OWNER).write_text(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        debootstrap.remove_tree(path)


def remove_abandoned_work(out_dir: Path) -> list[Path]:
    """Remove work directories whose builder died without cleaning up (SIGKILL, power loss)."""
    removed = []
    for work in out_dir.glob(".*.work-*"):
        if work.is_dir() and not _owner_alive(work / OWNER):
            debootstrap.remove_tree(work)
            removed.append(work)
    return removed


def _owner_alive(owner_file: Path) -> bool:
    try:
        pid = int(owner_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _no_progress(_phase: str, _fraction: float) -> None:
    """Progress sink for callers that show none."""
