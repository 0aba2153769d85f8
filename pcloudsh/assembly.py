"""Assemblies: guests made from a JEOS image, each with its own uuid and keys."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from foundation import model
from foundation.errors import Conflict, NotFound
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.interrupts import interrupts_at_checkpoints
from pcloudsh.output import Outcome, Program, Result, Table, Text, columns, counted, done
from pcloudsh.render import is_terminal
from pcloudsh.values import check_name

FULL_COPY = Arg(
    "--full-copy",
    action="store_true",
    help="copy the whole JEOS disk instead of a copy-on-write overlay of it",
)


class AssemblyCommands(Noun):
    category = "Assemblies"

    @command(
        Arg("name", help="the new assembly's name"),
        Arg(
            "jeos",
            help='the JEOS image it is made from ("host": this machine)',
            complete=Names.JEOS,
        ),
        FULL_COPY,
    )
    def assembly_create(self, args: argparse.Namespace) -> Result:
        """Create an assembly from a JEOS image.

        The assembly gets a new uuid (its machine-id) and its own key pairs: root's
        login key and an SSH host key, in the key directory.  From an image JEOS
        (not "host") it also gets its disk: a copy-on-write overlay of the JEOS
        (--full-copy: a whole copy) given its hostname, machine-id and keys, with
        a progress bar per step on standard error.  A failure or Ctrl-C leaves
        neither disk nor keys.
        """
        name = check_name(args.name, "assembly")
        jeos = check_name(args.jeos, "JEOS")
        api = self.env.api()
        image = api.get_jeos(jeos)  # NotFound names the image before any key is made
        self._refuse_existing(name)
        doc = {"name": name, "uuid": model.new_uuid(), "image": jeos, "resources": []}
        disk = self._create_with_keys(doc, _has_disk(image), overlay=not args.full_copy)
        return done(
            f"assembly {name} created from {jeos}{_disk_text(disk)}",
            assembly=name,
            uuid=doc["uuid"],
            **_disk_fields(disk),
        )

    @command(
        Arg("original", help="the assembly to copy", complete=Names.ASSEMBLY),
        Arg("new", help="the new assembly's name"),
        FULL_COPY,
    )
    def assembly_clone(self, args: argparse.Namespace) -> Result:
        """Create an assembly as a copy of another one: same image, resources and escalation.

        The copy gets its own uuid and key pairs; made from an image JEOS, it gets
        a new disk from that JEOS with its own hostname, machine-id and keys.
        """
        original = check_name(args.original, "assembly")
        name = check_name(args.new, "assembly")
        api = self.env.api()
        source = api.get_assembly(original)
        self._refuse_existing(name)
        doc = {**_assembly_doc(source), "name": name, "uuid": model.new_uuid()}
        image = api.get_jeos(str(doc["image"]))
        disk = self._create_with_keys(doc, _has_disk(image), overlay=not args.full_copy)
        count = len(doc.get("resources", []))
        return done(
            f"assembly {name} cloned from {original}"
            f" ({counted(count, 'resource', 'resources')} copied){_disk_text(disk)}",
            assembly=name,
            uuid=doc["uuid"],
            resources=count,
            **_disk_fields(disk),
        )

    @command(Arg("name", help="the assembly to delete", complete=Names.ASSEMBLY))
    def assembly_delete(self, args: argparse.Namespace) -> Result:
        """Delete an assembly, its keys and its disk (refused while a deployable holds it)."""
        name = check_name(args.name, "assembly")
        self.env.api().delete_assembly(name)
        self.env.keys.delete(name)
        removed = self.env.disks.delete(name)
        where = " with its disk" if removed else ""
        return done(f"assembly {name} deleted{where}", assembly=name, disk_removed=removed)

    @command()
    def assembly_list(self, args: argparse.Namespace) -> Result:
        """List the assemblies."""
        assemblies = self.env.api().list_assemblies()
        table = Table(
            columns(
                ("name", "Name"),
                ("image", "JEOS"),
                ("deployable", "Deployable"),
                ("resources", "Resources"),
                ("uuid", "UUID"),
            ),
            [_list_row(a) for a in assemblies],
            empty="no assemblies",
        )
        return Result(assemblies, table)

    def _refuse_existing(self, name: str) -> None:
        try:
            self.env.api().get_assembly(name)
        except NotFound:
            return
        raise Conflict(f"assembly {name!r} already exists", assembly=name)

    def _create_with_keys(
        self, doc: dict[str, Any], with_disk: bool, overlay: bool
    ) -> dict[str, Any] | None:
        """Make the keys, the disk, then the assembly; a failure removes what was made."""
        keys = self.env.keys
        try:
            with interrupts_at_checkpoints():  # a ^C while the keys are made is not lost
                keys.write(doc["name"])
            disk = self._make_disk(doc, overlay) if with_disk else None
            self._register(doc, disk is not None)
        except BaseException:  # refused, failed or Ctrl-C: no keys without an assembly
            keys.delete(doc["name"])
            raise
        return disk

    def _make_disk(self, doc: dict[str, Any], overlay: bool) -> dict[str, Any]:
        name = doc["name"]
        with self.env.show_progress(self.env.stderr, f"assembly {name}") as report:
            return self.env.disks.create(name, doc["uuid"], doc["image"], overlay, report)

    def _register(self, doc: dict[str, Any], made_disk: bool) -> None:
        try:
            self.env.api().create_assembly(doc)
        except BaseException:
            if made_disk:
                self.env.disks.delete(doc["name"])
            raise

    @command(
        Arg("deployable", help="the deployable the assembly runs in", complete=Names.DEPLOYABLE),
        Arg("assembly", help="the assembly", complete=Names.MEMBER),
        Arg(
            "command",
            nargs="*",
            help="a command to run there instead of a login shell (put -- before it)",
        ),
    )
    def assembly_ssh(self, args: argparse.Namespace) -> Outcome:
        """Log in to an assembly's running instance as root, or run a command there.

        ssh uses the assembly's own key and accepts only the host key pinned for
        it; the exit status is the remote command's (255 when ssh cannot connect
        or the host key is not the pinned one).  Options of pcloudsh come before
        the --: "assembly_ssh shop web -- ls -l /etc".  On a terminal the command
        gets one of its own there, so Ctrl-C stops it (its status: 130); with its
        input or output redirected it runs without.  One word is a command line
        for the remote shell ("-- 'ps -ef | grep http'"); several words reach the
        command as given, each quoted.  With --json, print how to reach the
        instance (and the ssh command line) instead of connecting.
        """
        from pcloudsh.deployable import lifecycle_request
        from pcloudsh.sshaccess import endpoint_of, login_for, running_assembly

        deployable = check_name(args.deployable, "deployable")
        assembly = check_name(args.assembly, "assembly")
        with lifecycle_request():
            status = self.env.api().deployable_status(deployable)
        row = running_assembly(status, deployable, assembly)
        login = login_for(self.env.paths, assembly, endpoint_of(row, deployable, self.env.paths))
        terminal = is_terminal(self.env.stdin) and is_terminal(self.env.stdout)
        argv = login.argv(args.command, terminal=terminal)
        if args.json:
            facts = {
                "deployable": deployable,
                "assembly": assembly,
                **login.to_dict(),
                "argv": argv,
            }
            return Result(facts, Text(shlex.join(argv)))
        return Program(argv)


def _has_disk(jeos: dict[str, Any]) -> bool:
    """Assemblies of an image JEOS get a disk; those of "host" run on this machine."""
    return bool(jeos.get("kind", "image") != "host")


def _disk_text(disk: dict[str, Any] | None) -> str:
    if disk is None:
        return ""
    how = "overlay" if disk.get("backing") else "full copy"
    return f" (disk {disk.get('path')}, {how})"


def _disk_fields(disk: dict[str, Any] | None) -> dict[str, Any]:
    return {} if disk is None else {"disk": disk.get("path"), "overlay": bool(disk.get("backing"))}


def _assembly_doc(source: dict[str, Any]) -> dict[str, Any]:
    """The fields of an assembly document (the API may add others, like ``deployable``)."""
    keys = ("name", "uuid", "image", "escalation", "resources")
    return {key: source[key] for key in keys if key in source}


def _list_row(assembly: dict[str, Any]) -> dict[str, Any]:
    resources = assembly.get("resources")
    count = len(resources) if isinstance(resources, list) else assembly.get("resources", 0)
    return {**assembly, "resources": count}
