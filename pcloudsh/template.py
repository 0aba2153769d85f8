"""Resource templates: ready-made resources (built-in ones, and user ones).

cped shows a template as ``{name, description, builtin, resource,
parameters_help}``: ``resource`` is a resource document without its name.
"""

from __future__ import annotations

import argparse
from typing import Any

from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Fields, Result, Table, columns
from pcloudsh.resource import agent_spec
from pcloudsh.values import check_name


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
    return f"{value:g} s" if isinstance(value, int | float) else str(value)


def _pairs(mapping: Any, show: Any = str) -> str:
    if not isinstance(mapping, dict):
        return ""
    return " ".join(f"{key}={show(value)}" for key, value in mapping.items())
