"""Resource templates: the agents resources are made from (built-in ones, and user ones)."""

from __future__ import annotations

import argparse
from typing import Any

from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Fields, Result, Table, columns
from pcloudsh.resource import TEMPLATE_FIELDS, agent_spec
from pcloudsh.values import check_name


class TemplateCommands(Noun):
    category = "Resource templates"

    @command()
    def resource_template_list(self, args: argparse.Namespace) -> Result:
        """List the resource templates."""
        templates = self.env.api().list_templates()
        rows = [{**t, "agent": agent_spec(t)} for t in templates]
        table = Table(
            columns(
                ("name", "Name"),
                ("agent", "Agent"),
                ("monitor_interval", "Monitor (s)"),
                ("description", "Description"),
            ),
            rows,
            empty="no resource templates",
        )
        return Result(templates, table)

    @command(Arg("name", help="the template", complete=Names.TEMPLATE))
    def resource_template_show(self, args: argparse.Namespace) -> Result:
        """Show a resource template: its agent, monitor interval, timeouts and parameters."""
        name = check_name(args.name, "template")
        template = self.env.api().get_template(name)
        fields = [("name", str(template.get("name", name))), ("agent", agent_spec(template))]
        fields += [(key, _text(template[key])) for key in TEMPLATE_FIELDS[3:] if key in template]
        if template.get("description"):
            fields.append(("description", str(template["description"])))
        return Result(template, Fields(fields))


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
