"""JEOS images, the base systems assemblies are made from.

An image is made on this machine (``images.jeos``: built with debootstrap, or
imported from a disk image) and then registered with cped.  Either both
happen or neither: a build that fails or is interrupted leaves no image, and
an image cped does not register is removed again.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foundation.errors import Conflict, InvalidInput, NotFound
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Result, Table, columns, done
from pcloudsh.timetext import duration
from pcloudsh.values import check_file, check_name

# what cped keeps of a JEOS (the files keep the rest: kernel, initrd, build log)
REGISTERED = ("name", "kind", "path", "arch", "release", "size", "checksum", "created")
NAME = Arg("name", help="the JEOS image", complete=Names.JEOS)


class JeosCommands(Noun):
    category = "JEOS images"

    @command(
        Arg("name", help="the new JEOS image's name"),
        Arg("--release", default="bookworm", help="the Debian release (default: bookworm)"),
        Arg("--arch", default="x86_64", help="the architecture (default: x86_64)"),
        Arg(
            "--packages",
            metavar="P1,P2",
            default="",
            help="more Debian packages to install, separated by commas",
        ),
    )
    def jeos_create(self, args: argparse.Namespace) -> Result:
        """Build a JEOS image: a minimal Debian with sshd and resource agents (as root).

        debootstrap installs the release from the mirror this machine's apt uses,
        then the image is made a qcow2 disk with its kernel and initrd beside it.
        It takes minutes; a progress bar per step goes to standard error.
        Interrupting it (Ctrl-C) or a failure leaves nothing behind.
        """
        name = check_name(args.name, "JEOS")
        packages = _packages(args.packages)
        self._refuse_existing(name)
        with self.env.show_progress(self.env.stderr, f"JEOS {name}") as report:
            record = self.env.images.build(name, args.release, args.arch, packages, report)
        return self._register(record, "built")

    @command(
        Arg("name", help="the new JEOS image's name"),
        Arg("file", help="a qcow2 or raw disk image with a Debian-like system"),
        Arg("--release", default="unknown", help="its release, for the record"),
        Arg("--arch", default="x86_64", help="its architecture (default: x86_64)"),
        Arg("--kernel", metavar="FILE", help="a kernel for direct boot (with --initrd)"),
        Arg("--initrd", metavar="FILE", help="the initrd that goes with --kernel"),
        Arg("--cmdline", help="the kernel command line that goes with --kernel"),
    )
    def jeos_import(self, args: argparse.Namespace) -> Result:
        """Register an existing disk image as a JEOS image (a flattened qcow2 copy of it).

        The file is checked and copied into the image directory; it must be
        readable by qemu-img.  Interrupting it leaves nothing behind.
        """
        name = check_name(args.name, "JEOS")
        file = check_file(args.file)
        options = {"release": args.release, "arch": args.arch, "cmdline": args.cmdline}
        options |= _boot_files(args)
        self._refuse_existing(name)
        with self.env.show_progress(self.env.stderr, f"JEOS {name}") as report:
            record = self.env.images.import_image(name, file, report, **options)
        return self._register(record, "imported")

    @command(NAME)
    def jeos_delete(self, args: argparse.Namespace) -> Result:
        """Delete a JEOS image and its files (refused while an assembly is made from it)."""
        name = check_name(args.name, "JEOS")
        self.env.api().delete_jeos(name)  # cped refuses the built-in one and those in use
        removed = self.env.images.delete(name)
        where = "its files removed" if removed else "it had no files on this machine"
        return done(f"JEOS {name} deleted ({where})", jeos=name, files_removed=removed)

    @command()
    def jeos_list(self, args: argparse.Namespace) -> Result:
        """List the JEOS images, their size and age ("host", this machine's system, is built in)."""
        rows = self.env.api().list_jeos()
        now = self.env.clock()
        shown = [{**r, "size": _size(r.get("size")), "age": _age(r, now)} for r in rows]
        table = Table(
            columns(
                ("name", "Name"),
                ("kind", "Kind"),
                ("arch", "Arch"),
                ("release", "Release"),
                ("size", "Size"),
                ("age", "Age"),
            ),
            shown,
            empty="no JEOS images",
        )
        return Result(rows, table)

    def _refuse_existing(self, name: str) -> None:
        """Before minutes of work: cped answers, and has no image of that name."""
        try:
            self.env.api().get_jeos(name)
        except NotFound:
            return
        raise Conflict(f"JEOS image {name!r} already exists")

    def _register(self, record: dict[str, Any], how: str) -> Result:
        doc = {key: record.get(key) for key in REGISTERED if record.get(key) is not None}
        _unless_registered(self.env.api().create_jeos, doc, self._forget(record))
        message = (
            f"JEOS {doc['name']} {how} ({doc.get('release')}, {doc.get('arch')}, "
            f"{_size(doc.get('size'))}): {doc.get('path')}"
        )
        return Result(record, done(message).view)

    def _forget(self, record: dict[str, Any]) -> Callable[[], None]:
        """Remove the files, unless cped registered them after all (an answer lost)."""

        def forget() -> None:
            try:
                registered = self.env.api().get_jeos(str(record["name"]))
            except NotFound:
                registered = None
            except BaseException:  # noqa: BLE001 - even ^C: cannot tell; keeping the files is safe
                return
            if registered is None or registered.get("path") != record.get("path"):
                self.env.images.delete(str(record["name"]))

        return forget


def _unless_registered(
    register: Callable[[dict[str, Any]], Any], doc: dict[str, Any], forget: Callable[[], None]
) -> None:
    try:
        register(doc)
    except BaseException:  # refused, cped gone, or Ctrl-C: no image without a record
        forget()
        raise


def _packages(value: str) -> list[str]:
    packages = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in packages if " " in p]
    if bad:
        raise InvalidInput(f"invalid --packages: {bad[0]!r} (names separated by commas)")
    return packages


def _size(size: Any) -> str:
    if not isinstance(size, int) or isinstance(size, bool):
        return "-"
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _age(row: dict[str, Any], now: float) -> str:
    created = row.get("created")
    if not isinstance(created, int | float) or created <= 0 or row.get("kind") == "host":
        return "-"
    return duration(now - created)


def _boot_files(args: argparse.Namespace) -> dict[str, Path]:
    """--kernel and --initrd: regular, non-empty files; --cmdline and --initrd need --kernel."""
    if args.kernel is None:
        for option in ("initrd", "cmdline"):
            if getattr(args, option) is not None:
                raise InvalidInput(f"--{option} needs --kernel")
    files = {}
    for option in ("kernel", "initrd"):
        if (value := getattr(args, option)) is not None:
            path = check_file(value)
            if path.stat().st_size == 0:
                raise InvalidInput(f"--{option} {value}: the file is empty")
            files[option] = path
    return files
