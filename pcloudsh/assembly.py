"""Assemblies: guests made from a JEOS image, each with its own uuid and keys."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from dpe import model
from dpe.errors import Conflict, NotFound
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Outcome, Program, Result, Table, Text, columns, done
from pcloudsh.values import check_name


class AssemblyCommands(Noun):
    category = "Assemblies"

    @command(
        Arg("name", help="the new assembly's name"),
        Arg(
            "jeos",
            help='the JEOS image it is made from ("host": this machine)',
            complete=Names.JEOS,
        ),
    )
    def assembly_create(self, args: argparse.Namespace) -> Result:
        """Create an assembly from a JEOS image.

        The assembly gets a new uuid (its machine-id) and its own key pairs: root's
        login key and an SSH host key, in the key directory.
        """
        name = check_name(args.name, "assembly")
        jeos = check_name(args.jeos, "JEOS")
        api = self.env.api()
        api.get_jeos(jeos)  # NotFound names the image before any key is made
        self._refuse_existing(name)
        doc = {"name": name, "uuid": model.new_uuid(), "image": jeos, "resources": []}
        self._create_with_keys(doc)
        return done(f"assembly {name} created from {jeos}", assembly=name, uuid=doc["uuid"])

    @command(
        Arg("original", help="the assembly to copy", complete=Names.ASSEMBLY),
        Arg("new", help="the new assembly's name"),
    )
    def assembly_clone(self, args: argparse.Namespace) -> Result:
        """Create an assembly as a copy of another one: same image, resources and escalation.

        The copy gets its own uuid and key pairs.
        """
        original = check_name(args.original, "assembly")
        name = check_name(args.new, "assembly")
        source = self.env.api().get_assembly(original)
        self._refuse_existing(name)
        doc = {**_assembly_doc(source), "name": name, "uuid": model.new_uuid()}
        self._create_with_keys(doc)
        count = len(doc.get("resources", []))
        return done(
            f"assembly {name} cloned from {original} ({count} resources copied)",
            assembly=name,
            uuid=doc["uuid"],
            resources=count,
        )

    @command(Arg("name", help="the assembly to delete", complete=Names.ASSEMBLY))
    def assembly_delete(self, args: argparse.Namespace) -> Result:
        """Delete an assembly and its keys (refused while a deployable holds it)."""
        name = check_name(args.name, "assembly")
        self.env.api().delete_assembly(name)
        self.env.keys.delete(name)
        return done(f"assembly {name} deleted", assembly=name)

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

    def _create_with_keys(self, doc: dict[str, Any]) -> None:
        """Make the keys, then the assembly; keys made for a refused assembly are removed."""
        keys = self.env.keys
        keys.write(doc["name"])
        try:
            self.env.api().create_assembly(doc)
        except BaseException:
            keys.delete(doc["name"])
            raise

    @command(
        Arg("deployable", help="the deployable the assembly runs in", complete=Names.DEPLOYABLE),
        Arg("assembly", help="the assembly", complete=Names.ASSEMBLY),
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
        the --: "assembly_ssh shop web -- ls -l /etc".  With --json, print how to
        reach the instance (and the ssh command line) instead of connecting.
        """
        from pcloudsh.deployable import lifecycle_request
        from pcloudsh.sshaccess import endpoint_of, login_for, running_assembly

        deployable = check_name(args.deployable, "deployable")
        assembly = check_name(args.assembly, "assembly")
        with lifecycle_request():
            status = self.env.api().deployable_status(deployable)
        row = running_assembly(status, deployable, assembly)
        login = login_for(self.env.paths, assembly, endpoint_of(row, deployable, self.env.paths))
        argv = login.argv(args.command)
        if args.json:
            facts = {
                "deployable": deployable,
                "assembly": assembly,
                **login.to_dict(),
                "argv": argv,
            }
            return Result(facts, Text(shlex.join(argv)))
        return Program(argv)


def _assembly_doc(source: dict[str, Any]) -> dict[str, Any]:
    """The fields of an assembly document (the API may add others, like ``deployable``)."""
    keys = ("name", "uuid", "image", "escalation", "resources")
    return {key: source[key] for key in keys if key in source}


def _list_row(assembly: dict[str, Any]) -> dict[str, Any]:
    resources = assembly.get("resources")
    count = len(resources) if isinstance(resources, list) else assembly.get("resources", 0)
    return {**assembly, "resources": count}
