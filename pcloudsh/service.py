"""A deployable's services: resources that run on the best of several assemblies."""

from __future__ import annotations

import argparse
from typing import Any

from foundation import model
from foundation.errors import InvalidInput
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Result, Table, columns, done
from pcloudsh.resource import AGENT_HELP, agent_spec, template_or_agent
from pcloudsh.values import (
    check_name,
    parse_duration,
    parse_operation_duration,
    parse_params,
    parse_timeouts,
)

DEPLOYABLE = Arg("deployable", help="the deployable", complete=Names.DEPLOYABLE)
SERVICE = Arg("name", help="the service", complete=Names.SERVICE)
STICKINESS = Arg(
    "--stickiness",
    metavar="SCORE",
    help="added to the score of the assembly it runs on: how strongly it stays (default 0)",
)
THRESHOLD = Arg(
    "--migration-threshold",
    metavar="N",
    help="after N failures on an assembly it is kept away from it (default: never)",
)
FAILURE_TIMEOUT = Arg(
    "--failure-timeout",
    metavar="DURATION",
    help="how long a failure counts towards --migration-threshold (default: until cleared)",
)


class ServiceCommands(Noun):
    category = "Services"

    @command(
        DEPLOYABLE,
        Arg("name", help="the new service's name"),
        Arg(
            "template",
            metavar="TEMPLATE|AGENT",
            help="the resource template it is made from, or an agent of this host: " + AGENT_HELP,
            complete=Names.TEMPLATE,
        ),
        Arg(
            "--on",
            required=True,
            nargs="+",
            metavar="ASSEMBLY[:SCORE],...",
            help="the assemblies it may run on, each with a preference score (default 0;"
            " INFINITY or -INFINITY allowed); NAME=VALUE parameters may follow",
        ),
        Arg(
            "params",
            nargs="*",
            metavar="NAME=VALUE",
            help="agent parameters, merged over the template's (@ASSEMBLY:ipaddress or"
            " @SERVICE:ipaddress refer to an address)",
        ),
        STICKINESS,
        THRESHOLD,
        FAILURE_TIMEOUT,
        Arg("--monitor-interval", metavar="DURATION", help="instead of the template's"),
        Arg(
            "--timeout",
            action="append",
            default=[],
            metavar="OP=DURATION",
            help="an operation timeout (start, stop or monitor); may be repeated",
        ),
    )
    def deployable_service_add(self, args: argparse.Namespace) -> Result:
        """Add a service: a resource that runs on the best of several assemblies.

        It runs on the allowed running assembly with the highest score, and fails
        over to the next one when that assembly fails (before it is re-created).
        An agent (ocf:PROVIDER:TYPE, lsb:NAME, systemd:UNIT) may be named instead of a
        template, as for assembly_resource_add.
        """
        deployable = check_name(args.deployable, "deployable")
        name = check_name(args.name, "service")
        on = [item for item in args.on if "=" not in item]
        params = parse_params([*args.params, *(item for item in args.on if "=" in item)])
        if not on:
            raise InvalidInput("--on: name at least one assembly (ASSEMBLY[:SCORE],...)")
        template = template_or_agent(self.env, args.template, list(params))
        doc = {**template.get("resource", {}), "name": name}
        doc["parameters"] = {**doc.get("parameters", {}), **params}
        doc["timeouts"] = {**doc.get("timeouts", {}), **parse_timeouts(args.timeout)}
        if args.monitor_interval is not None:
            doc["monitor_interval"] = parse_operation_duration(
                args.monitor_interval, "monitor interval"
            )
        doc["locations"] = parse_locations(",".join(on))
        doc |= _policy(args)
        service = self.env.api().add_service(deployable, doc)
        where = ", ".join(_location_text(loc) for loc in service.get("locations", []))
        return done(
            f"service {name} ({agent_spec(service)}) added to deployable {deployable}: on {where}",
            deployable=deployable,
            service=service,
        )

    @command(DEPLOYABLE, SERVICE)
    def deployable_service_remove(self, args: argparse.Namespace) -> Result:
        """Remove a service (refused while a constraint or colocation names it)."""
        deployable = check_name(args.deployable, "deployable")
        name = check_name(args.name, "service")
        self.env.api().remove_service(deployable, name)
        return done(f"service {name} removed from deployable {deployable}", deployable=deployable)

    @command(DEPLOYABLE)
    def deployable_service_list(self, args: argparse.Namespace) -> Result:
        """List a deployable's services: agent, candidate assemblies and scores, policy."""
        deployable = check_name(args.deployable, "deployable")
        doc = self.env.api().get_deployable(deployable)
        services = doc.get("services", [])
        return Result(services, service_table(services, doc.get("colocations", [])))

    @command(
        DEPLOYABLE,
        SERVICE,
        Arg("--on", metavar="ASSEMBLY[:SCORE],...", help="new candidate assemblies and scores"),
        STICKINESS,
        THRESHOLD,
        FAILURE_TIMEOUT,
    )
    def deployable_service_set(self, args: argparse.Namespace) -> Result:
        """Change a service's candidate assemblies, scores, stickiness or failure policy."""
        deployable = check_name(args.deployable, "deployable")
        name = check_name(args.name, "service")
        doc = self.env.api().get_deployable(deployable)
        current = next((s for s in doc.get("services", []) if s.get("name") == name), None)
        if current is None:
            raise InvalidInput(f"deployable {deployable!r} has no service {name!r}")
        changes = _policy(args)
        if args.on is not None:
            changes["locations"] = parse_locations(args.on)
        if not changes:
            raise InvalidInput(
                "nothing to change: give --on, --stickiness, --migration-threshold"
                " or --failure-timeout"
            )
        service = self.env.api().update_service(deployable, name, {**current, **changes})
        return done(f"service {name} of deployable {deployable} changed", service=service)

    @command(
        DEPLOYABLE,
        SERVICE,
        Arg("assembly", help="one of the service's assemblies", complete=Names.CANDIDATE),
    )
    def deployable_service_move(self, args: argparse.Namespace) -> Result:
        """Move a service to one of its assemblies now (the request clears once done).

        While the request stands the assembly counts as INFINITY; once the service
        runs there the request ends, and scores and stickiness decide again.
        """
        deployable = check_name(args.deployable, "deployable")
        name = check_name(args.name, "service")
        assembly = check_name(args.assembly, "assembly")
        answer = self.env.api().move_service(deployable, name, {"assembly": assembly})
        note = answer.get("note") if isinstance(answer, dict) else None
        text = f"service {name} of deployable {deployable}: move to {assembly} requested"
        return done(text + (f" ({note})" if note else ""), answer=answer)

    @command(
        DEPLOYABLE,
        Arg("service", help="the service to place", complete=Names.SERVICE),
        Arg(
            "with_",
            metavar="WITH",
            help="the service it is placed with (placed first)",
            complete=Names.SERVICE,
        ),
        Arg(
            "--score",
            default="INFINITY",
            help="INFINITY: on the same assembly; -INFINITY (written --score=-INFINITY):"
            " never on the same assembly; a number: a preference (default INFINITY)",
        ),
    )
    def deployable_colocation_add(self, args: argparse.Namespace) -> Result:
        """Colocate a service with another: together, never together, or a preference."""
        deployable = check_name(args.deployable, "deployable")
        service = check_name(args.service, "service")
        with_ = check_name(args.with_, "service")
        score = _score(args.score, "--score")
        body = {"service": service, "with": with_, "score": score}
        colocation = self.env.api().add_colocation(deployable, body)
        return done(
            f"colocation {service} with {with_} ({model.score_text(score)}) added to"
            f" deployable {deployable}",
            colocation=colocation,
        )

    @command(
        DEPLOYABLE,
        Arg("service", help="the colocated service", complete=Names.SERVICE),
        Arg("with_", metavar="WITH", help="the service it is placed with", complete=Names.SERVICE),
    )
    def deployable_colocation_remove(self, args: argparse.Namespace) -> Result:
        """Remove a colocation."""
        deployable = check_name(args.deployable, "deployable")
        service = check_name(args.service, "service")
        with_ = check_name(args.with_, "service")
        self.env.api().remove_colocation(deployable, service=service, with_=with_)
        return done(f"colocation {service} with {with_} removed", deployable=deployable)


def parse_locations(text: str) -> list[dict[str, Any]]:
    """``a1:100,a2,a3:-INFINITY`` as location documents."""
    locations = []
    for item in text.split(","):
        assembly, sep, score = item.strip().partition(":")
        check_name(assembly, "assembly")
        locations.append({"assembly": assembly, "score": _score(score, item) if sep else 0})
    return locations


def _score(text: str, where: str) -> int:
    try:
        return model.parse_score(text)
    except ValueError as error:
        raise InvalidInput(f"invalid score in {where!r}: {error}") from None


def _policy(args: argparse.Namespace) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if args.stickiness is not None:
        policy["stickiness"] = _score(args.stickiness, "--stickiness")
    if args.migration_threshold is not None:
        try:
            policy["migration_threshold"] = model.parse_escalation_count(args.migration_threshold)
        except ValueError as error:
            raise InvalidInput(f"invalid --migration-threshold: {error}") from None
    if args.failure_timeout is not None:
        policy["failure_timeout"] = parse_duration(args.failure_timeout, "failure timeout")
    return policy


def _location_text(location: dict[str, Any]) -> str:
    return f"{location.get('assembly')}:{location.get('score')}"


def service_table(services: list[dict[str, Any]], colocations: list[dict[str, Any]]) -> Table:
    rows = [
        {
            "name": s.get("name"),
            "agent": agent_spec(s),
            "on": " ".join(_location_text(loc) for loc in s.get("locations", [])),
            "stickiness": s.get("stickiness"),
            "failures": _failure_policy(s),
            "colocation": " ".join(
                f"with {c.get('with')} ({c.get('score')})"
                for c in colocations
                if c.get("service") == s.get("name")
            ),
        }
        for s in services
    ]
    table_columns = columns(
        ("name", "Name"),
        ("agent", "Agent"),
        ("on", "Assemblies:score"),
        ("stickiness", "Stickiness"),
        ("failures", "Moves away after"),
        ("colocation", "Colocation"),
    )
    return Table(table_columns, rows, empty="no services")


def _failure_policy(service: dict[str, Any]) -> str:
    threshold = service.get("migration_threshold")
    if threshold in (None, "INFINITY", 0):
        return "never"
    timeout = service.get("failure_timeout") or 0
    return f"{threshold} failures" + (f" within {timeout} s" if timeout else "")
