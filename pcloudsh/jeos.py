"""JEOS images, the base systems assemblies are made from."""

from __future__ import annotations

import argparse

from pcloudsh.definition import Noun, command
from pcloudsh.output import Result, Table, columns


class JeosCommands(Noun):
    category = "JEOS images"

    @command()
    def jeos_list(self, args: argparse.Namespace) -> Result:
        """List the JEOS images; "host" (this machine's own system) is built in."""
        rows = self.env.api().list_jeos()
        table = Table(
            columns(
                ("name", "Name"),
                ("kind", "Kind"),
                ("arch", "Arch"),
                ("release", "Release"),
                ("size", "Size"),
            ),
            rows,
            empty="no JEOS images",
        )
        return Result(rows, table)
