"""Escalation: N failures within P seconds at one level recover the level above.

A resource's escalation restarts its assembly, an assembly's restarts the whole
deployable, and a deployable's marks it failed.  INFINITY or -1 turn it off.
"""

from __future__ import annotations

import argparse
from typing import Any

from foundation import model
from foundation.errors import InvalidInput, NotFound
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Result, done
from pcloudsh.resource import RESOURCE_ID
from pcloudsh.timetext import seconds_text
from pcloudsh.values import check_name, parse_escalation, split_resource

FAILURES = Arg(
    "failures",
    help=f"failures that escalate, 1 to {model.MAX_FAILURES} (0, INFINITY or -1: never)",
)
PERIOD = Arg(
    "period",
    help="within this many seconds (60, 60s, 5m; at most 365d; INFINITY or -1: never)",
)


# the period when the original order (RESOURCE ASSEMBLY FAILURES PERIOD) is used
LEGACY_PERIOD = Arg("legacy_period", nargs="?", help=argparse.SUPPRESS)


class EscalationCommands(Noun):
    category = "Escalation"

    @command(RESOURCE_ID, FAILURES, PERIOD, LEGACY_PERIOD)
    def escalation_resource_set(self, args: argparse.Namespace) -> Result:
        """Set when a resource's failures restart its whole assembly."""
        assembly, name, failures, period = _resource_rule(args)
        escalation = parse_escalation(failures, period)
        api = self.env.api()
        resource = _find_resource(api.get_assembly(assembly), name)
        api.update_resource(assembly, name, {**resource, "escalation": escalation.to_dict()})
        return _changed(
            f"resource {name} in assembly {assembly}", escalation, assembly=assembly, resource=name
        )

    @command(Arg("assembly", help="the assembly", complete=Names.ASSEMBLY), FAILURES, PERIOD)
    def escalation_assembly_set(self, args: argparse.Namespace) -> Result:
        """Set when an assembly's failures restart its whole deployable."""
        assembly = check_name(args.assembly, "assembly")
        escalation = parse_escalation(args.failures, args.period)
        self.env.api().set_assembly_escalation(assembly, escalation.to_dict())
        return _changed(f"assembly {assembly}", escalation, assembly=assembly)

    @command(Arg("deployable", help="the deployable", complete=Names.DEPLOYABLE), FAILURES, PERIOD)
    def escalation_deployable_set(self, args: argparse.Namespace) -> Result:
        """Set when a deployable's failures mark it failed (no more recovery)."""
        deployable = check_name(args.deployable, "deployable")
        escalation = parse_escalation(args.failures, args.period)
        self.env.api().set_deployable_escalation(deployable, escalation.to_dict())
        return _changed(f"deployable {deployable}", escalation, deployable=deployable)


def _resource_rule(args: argparse.Namespace) -> tuple[str, str, str, str]:
    """(assembly, resource, failures, period) from ASSEMBLY/RESOURCE FAILURES PERIOD
    or the original order, RESOURCE ASSEMBLY FAILURES PERIOD."""
    if args.legacy_period is None:
        return (*split_resource(args.resource), args.failures, args.period)
    if "/" in args.resource:  # four words, but the first names the assembly already
        raise InvalidInput(
            f"extra argument {args.legacy_period!r}: after ASSEMBLY/RESOURCE come only"
            " FAILURES and PERIOD"
        )
    return (*split_resource(args.resource, args.failures), args.period, args.legacy_period)


def _find_resource(assembly: dict[str, Any], name: str) -> dict[str, Any]:
    for resource in assembly.get("resources", []):
        if resource.get("name") == name:
            return dict(resource)
    raise NotFound(f"resource {name!r} is not in assembly {assembly.get('name')!r}")


def _changed(subject: str, escalation: model.Escalation, **target: str) -> Result:
    """The rule now in force; ``target`` names what it was set on (for --json)."""
    if escalation.enabled:
        rule = f"{escalation.failures} failures in {seconds_text(escalation.period)} escalate"
    else:
        rule = "off (never escalates: each failure is recovered at its own level)"
    return done(f"escalation of {subject}: {rule}", escalation=escalation.to_dict(), **target)
