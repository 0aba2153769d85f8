"""Resource templates: ready-made resources (built-in ones, and user ones).

cped shows a template as ``{name, description, builtin, resource,
parameters_help}``: ``resource`` is a resource document without its name.
"""

from __future__ import annotations

import argparse
from typing import Any

from dpe.agent_metadata import check_parameters
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Fields, Result, Table, columns, done
from pcloudsh.resource import AGENT_HELP, TIMEOUT, agent_spec
from pcloudsh.timetext import seconds_text
from pcloudsh.values import (
    check_description,
    check_name,
    parse_operation_duration,
    parse_params,
    parse_timeouts,
)


class TemplateCommands(Noun):
    category = "Resource templates"

    @command()
    def resource_template_list(self, args: argparse.Namespace) -> Result:
        """List the resource templates."""
        templates = self.env.api().list_templates()
        rows = [_row(t) for t in templates]
        table = Table(
            columns(
                ("name", "Name"),
                ("agent", "Agent"),
                ("monitor", "Monitor"),
                ("origin", "Origin"),
                ("description", "Description"),
            ),
            rows,
            empty="no resource templates",
        )
        return Result(templates, table)

    @command(
        Arg("name", help="the new template's name"),
        Arg("agent", help=AGENT_HELP),
        Arg(
            "params",
            nargs="*",
            metavar="NAME=VALUE",
            help="parameters every resource made from it gets (each may be given again there)",
        ),
        Arg("--description", metavar="TEXT", help="what it is for (default: the agent's words)"),
        Arg(
            "--monitor-interval",
            metavar="DURATION",
            help="how often it is monitored (default: what the agent advises, else 10s)",
        ),
        TIMEOUT,
    )
    def resource_template_add(self, args: argparse.Namespace) -> Result:
        """Add a resource template for an agent of this host.

        An OCF agent's meta-data gives the template its description, what each
        parameter means, and the monitor interval and timeouts the agent advises;
        a parameter the agent does not take is refused.  LSB init scripts and
        systemd units say nothing of themselves: the template is their name.
        """
        name = check_name(args.name, "template")
        description = check_description(args.description)
        info = self.env.read_agent(args.agent)
        params = parse_params(args.params)
        check_parameters(info, list(params))
        resource = info.resource(params)
        resource["timeouts"] = {**info.timeouts, **parse_timeouts(args.timeout)}
        if args.monitor_interval is not None:
            interval = parse_operation_duration(args.monitor_interval, "monitor interval")
            resource["monitor_interval"] = interval
        body = {
            "name": name,
            "description": description or info.description,
            "resource": resource,
            "parameters_help": info.parameters_help(),
        }
        template = self.env.api().create_template(body)
        return done(f"resource template {name} ({info.spec}) added", template=template)

    @command(Arg("name", help="the user template to delete", complete=Names.USER_TEMPLATE))
    def resource_template_delete(self, args: argparse.Namespace) -> Result:
        """Delete a resource template of your own (resources made from it stay as they are)."""
        name = check_name(args.name, "template")
        self.env.api().delete_template(name)
        return done(f"resource template {name} deleted", template=name)

    @command(Arg("name", help="the template", complete=Names.TEMPLATE))
    def resource_template_show(self, args: argparse.Namespace) -> Result:
        """Show a resource template: its agent, monitor interval, timeouts and parameters."""
        template = self.env.api().get_template(check_name(args.name, "template"))
        resource = template.get("resource", {})
        fields = [
            ("name", str(template.get("name"))),
            ("agent", agent_spec(resource)),
            ("monitor", f"every {_seconds(resource.get('monitor_interval'))}"),
            ("timeouts", _pairs(resource.get("timeouts"), _seconds) or "defaults"),
            ("origin", _origin(template)),
            ("description", str(template.get("description") or "-")),
        ]
        return Result(template, Fields(fields, [_parameters_table(template)]))


def _row(template: dict[str, Any]) -> dict[str, Any]:
    resource = template.get("resource", {})
    return {
        "name": template.get("name"),
        "agent": agent_spec(resource),
        "monitor": _seconds(resource.get("monitor_interval")),
        "origin": _origin(template),
        "description": template.get("description"),
    }


def _parameters_table(template: dict[str, Any]) -> Table:
    defaults = template.get("resource", {}).get("parameters", {})
    meanings = template.get("parameters_help", {})
    rows = [
        {"name": name, "default": defaults.get(name, "-"), "meaning": meanings.get(name, "")}
        for name in sorted({*defaults, *meanings})
    ]
    table_columns = columns(("name", "Parameter"), ("default", "Default"), ("meaning", "Meaning"))
    return Table(table_columns, rows, empty="no parameters")


def _origin(template: dict[str, Any]) -> str:
    return "built-in" if template.get("builtin") else "user"


def _seconds(value: Any) -> str:
    return seconds_text(value) if isinstance(value, int | float) else str(value)


def _pairs(mapping: Any, show: Any = str) -> str:
    if not isinstance(mapping, dict):
        return ""
    return " ".join(f"{key}={show(value)}" for key, value in mapping.items())
