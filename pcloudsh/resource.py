"""An assembly's resources: services made from resource templates."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from dpe.agent_metadata import AgentInfo, check_parameters, is_agent_spec
from foundation.errors import InvalidInput, NotFound, PcloudError
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.environment import Environment
from pcloudsh.output import Result, Table, columns, done
from pcloudsh.values import (
    check_name,
    describe_escalation,
    parse_operation_duration,
    parse_params,
    parse_timeouts,
    split_resource,
)

RESOURCE_ID = Arg(
    "resource",
    metavar="ASSEMBLY/RESOURCE",
    help="the resource, after its assembly (RESOURCE ASSEMBLY, the original order, too)",
    complete=Names.ASSEMBLY_RESOURCE,
)
# the assembly after the resource, in the original shell's order: taken, not advertised
LEGACY_ASSEMBLY = Arg("legacy_assembly", nargs="?", help=argparse.SUPPRESS)


AGENT_HELP = "ocf:PROVIDER:TYPE, lsb:NAME or systemd:UNIT"
TIMEOUT = Arg(
    "--timeout",
    action="append",
    default=[],
    metavar="OP=DURATION",
    help="an operation timeout (start, stop or monitor); may be repeated",
)


class ResourceCommands(Noun):
    category = "Resources"

    @command(
        Arg(
            "resource",
            metavar="ASSEMBLY/RESOURCE",
            help="the assembly that runs it / the new resource's name (the original order,"
            " RESOURCE TEMPLATE ASSEMBLY, is accepted too)",
            complete=Names.ASSEMBLY_SLASH,
        ),
        Arg(
            "template",
            metavar="TEMPLATE|AGENT",
            help="the resource template it is made from, or an agent of this host: " + AGENT_HELP,
            complete=Names.TEMPLATE,
        ),
        Arg(
            "params",
            nargs="*",
            metavar="NAME=VALUE",
            help="agent parameters, merged over the template's; a value @ASSEMBLY:ipaddress "
            "or @ASSEMBLY:hostname refers to that assembly's current address or hostname",
        ),
        Arg("--monitor-interval", metavar="DURATION", help="instead of the template's"),
        TIMEOUT,
    )
    def assembly_resource_add(self, args: argparse.Namespace) -> Result:
        """Add a resource to an assembly, made from a resource template or an agent.

        An agent (ocf:PROVIDER:TYPE, lsb:NAME, systemd:UNIT) must be on this host:
        a template of that agent is used when there is one, else what the agent's
        meta-data advises.  A parameter the agent (named or the template's) does not
        take is refused when this host's copy says which it takes.
        Escalation is off until set with escalation_resource_set.
        """
        assembly, name = _target(args.resource, args.params)
        params = parse_params(args.params)
        overrides: dict[str, Any] = {"timeouts": parse_timeouts(args.timeout)}
        if args.monitor_interval is not None:
            interval = parse_operation_duration(args.monitor_interval, "monitor interval")
            overrides["monitor_interval"] = interval
        doc = _resource_doc(
            name, template_or_agent(self.env, args.template, list(params)), params, overrides
        )
        resource = self.env.api().add_resource(assembly, doc)  # cped validates, normalises
        return done(
            f"resource {name} ({agent_spec(resource)}) added to assembly {assembly}",
            assembly=assembly,
            resource=resource,
        )

    @command(RESOURCE_ID, LEGACY_ASSEMBLY)
    def assembly_resource_remove(self, args: argparse.Namespace) -> Result:
        """Remove a resource from an assembly."""
        assembly, name = split_resource(args.resource, args.legacy_assembly)
        self.env.api().remove_resource(assembly, name)
        return done(
            f"resource {name} removed from assembly {assembly}", assembly=assembly, resource=name
        )

    @command(Arg("assembly", help="the assembly", complete=Names.ASSEMBLY))
    def assembly_resource_list(self, args: argparse.Namespace) -> Result:
        """List an assembly's resources."""
        assembly = check_name(args.assembly, "assembly")
        resources = self.env.api().get_assembly(assembly).get("resources", [])
        return Result(resources, resource_table(resources))


def template_or_agent(env: Environment, name: str, params: list[str]) -> dict[str, Any]:
    """The template named, or for an agent (``AGENT_HELP``): its template if one exists,
    else one made from the agent's meta-data (not stored); ``params``: the parameter
    names given, which the agent must take."""
    if not is_agent_spec(name):
        try:
            template = dict(env.api().get_template(check_name(name, "template")))
        except NotFound as error:
            raise NotFound(f"{error}{_agent_hint(env, name)}", template=name) from None
        check_agent_parameters(env.read_agent, template.get("resource", {}), params)
        return template
    info = env.read_agent(name)
    check_parameters(info, params)
    for template in env.api().list_templates():
        if agent_spec(template.get("resource", {})) == str(info.spec):
            return dict(template)
    return {"resource": info.resource({})}


def _agent_hint(env: Environment, name: str) -> str:
    """For a template name that is an agent's type without its class (``Dummy``):
    the agents of this host it may have meant."""
    meant = []
    for spec in (f"ocf:heartbeat:{name}", f"ocf:pacemaker:{name}", f"lsb:{name}"):
        try:
            env.read_agent(spec)
        except (PcloudError, OSError):  # not on this host, or no meta-data to read
            continue
        meant.append(spec)
    return f" (an agent is named with its class: {' or '.join(meant)})" if meant else ""


def check_agent_parameters(
    read_agent: Callable[[str], AgentInfo], resource: dict[str, Any], names: list[str]
) -> None:
    """Every one of ``names`` a parameter the agent of ``resource`` (a document) takes,
    as this host's copy of the agent says; an agent this host has not is not judged
    (it may be in a guest's image only)."""
    if not names:
        return
    try:
        info = read_agent(agent_spec(resource))
    except InvalidInput:
        return
    check_parameters(info, names)


def _target(first: str, params: list[str]) -> tuple[str, str]:
    """ASSEMBLY/RESOURCE, or the original ``RESOURCE TEMPLATE ASSEMBLY``: then the
    assembly is the first of ``params`` (a parameter always has a ``=``)."""
    if "/" not in first and params and "=" not in params[0]:
        return split_resource(first, params.pop(0))
    return split_resource(first)


def resource_table(resources: list[dict[str, Any]], title: str | None = None) -> Table:
    rows = [
        {
            "name": r.get("name"),
            "agent": agent_spec(r),
            "monitor": f"{r.get('monitor_interval')} s",
            "parameters": _params_text(r.get("parameters", {})),
            "escalation": describe_escalation(r.get("escalation")),
        }
        for r in resources
    ]
    table_columns = columns(
        ("name", "Name"),
        ("agent", "Agent"),
        ("monitor", "Monitor"),
        ("parameters", "Parameters"),
        ("escalation", "Escalation"),
    )
    return Table(table_columns, rows, empty="no resources", title=title)


def _resource_doc(
    name: str, template: dict[str, Any], params: dict[str, Any], overrides: dict[str, Any]
) -> dict[str, Any]:
    doc = {**template.get("resource", {}), "name": name}
    doc["parameters"] = {**doc.get("parameters", {}), **params}
    doc["timeouts"] = {**doc.get("timeouts", {}), **overrides.pop("timeouts")}
    doc.update(overrides)
    return doc


def agent_spec(resource: dict[str, Any]) -> str:
    """``ocf:heartbeat:Dummy``, ``lsb:httpd`` or ``systemd:nginx``."""
    rclass = resource.get("class", "ocf")
    if rclass == "ocf":
        return f"ocf:{resource.get('provider', 'heartbeat')}:{resource.get('type')}"
    return f"{rclass}:{resource.get('type')}"


def _params_text(params: Any) -> str:
    if not isinstance(params, dict):
        return ""
    return " ".join(f"{k}={_param_text(v)}" for k, v in params.items())


def _param_text(value: Any) -> str:
    if isinstance(value, dict) and "ref" in value:
        return f"@{value['ref']}"
    return str(value)
