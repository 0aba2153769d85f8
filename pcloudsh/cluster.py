"""The members sharing the store: ``cluster_status``."""

from __future__ import annotations

import argparse
from typing import Any

from pcloudsh.definition import Noun, command
from pcloudsh.output import Fields, Result, Table, columns
from pcloudsh.timetext import duration

MEMBER_COLUMNS = columns(
    ("name", "MEMBER"),
    ("health", "HEALTH"),
    ("heartbeat", "HEARTBEAT"),
    ("url", "URL"),
    ("deployables", "RUNS"),
)


class ClusterCommands(Noun):
    category = "Cluster"

    @command()
    def cluster_status(self, args: argparse.Namespace) -> Result:
        """List the cped members sharing the store: their health and what each runs.

        A member is alive while its heartbeat (by the store's clock) is younger
        than member_ttl; the deployables are those whose lease one of its DPEs
        holds.  The member that answered is marked with *.
        """
        status = self.env.api().cluster_status()
        rows = [_row(member) for member in status["members"]]
        fields = [("store", str(status["store"])), ("answered by", str(status["member"]))]
        if status.get("unowned"):
            fields.append(("not running anywhere", ", ".join(status["unowned"])))
        table = Table(MEMBER_COLUMNS, rows, empty="(no member)")
        return Result(status, Fields(fields, (table,)))


def _row(member: dict[str, Any]) -> dict[str, str]:
    mark = " *" if member.get("self") else ""
    return {
        "name": f"{member['name']}{mark}",
        "health": str(member["health"]),
        "heartbeat": _age(float(member["heartbeat_age"])),
        "url": str(member.get("url") or "-"),
        "deployables": ", ".join(member["deployables"]) or "-",
    }


def _age(seconds: float) -> str:
    return f"{seconds:.1f} s ago" if seconds < 60 else f"{duration(seconds)} ago"
