"""Every command of pcloudsh, by noun."""

from __future__ import annotations

from pcloudsh.assembly import AssemblyCommands
from pcloudsh.cluster import ClusterCommands
from pcloudsh.daemon import DaemonCommands
from pcloudsh.definition import CommandSpec, Noun
from pcloudsh.deployable import DeployableCommands
from pcloudsh.escalation import EscalationCommands
from pcloudsh.events import EventCommands
from pcloudsh.jeos import JeosCommands
from pcloudsh.resource import ResourceCommands
from pcloudsh.service import ServiceCommands
from pcloudsh.store import StoreCommands
from pcloudsh.template import TemplateCommands

NOUNS: tuple[type[Noun], ...] = (
    DaemonCommands,
    JeosCommands,
    AssemblyCommands,
    ResourceCommands,
    TemplateCommands,
    EscalationCommands,
    DeployableCommands,
    ServiceCommands,
    EventCommands,
    ClusterCommands,
    StoreCommands,
)


def all_commands() -> list[tuple[type[Noun], CommandSpec]]:
    return [(noun, spec) for noun in NOUNS for spec in noun.specs()]


def find(name: str) -> tuple[type[Noun], CommandSpec] | None:
    return next(((n, s) for n, s in all_commands() if s.name == name), None)


def unknown_command(name: str, fallback: str) -> str:
    """The error for a command that does not exist, with the closest one when there is one."""
    import difflib

    names = [spec.name for _noun, spec in all_commands()]
    meant = difflib.get_close_matches(name, names, n=1)
    longer = [n for n in names if name and n.startswith(name) and n not in meant]
    if len(longer) <= 2:  # a word cut short: deployable_stat is start or status
        meant += longer
    hint = f" (did you mean {' or '.join(meant)}?)" if meant else f" ({fallback})"
    return f"pcloudsh: error: unknown command {name!r}{hint}"
