"""Each command is defined once: its arguments, its handler and its help.

A command is a method of a noun class (``AssemblyCommands``...) marked with
``@command(Arg(...), ...)``.  The one-shot runner builds a plain argparse
parser from the definition; the interactive shell builds a cmd2 parser from
the same definition and adds tab completion of existing names.  Handlers
take the parsed arguments and return a ``Result`` (or a ``Stream``); they
never print and never exit.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

from pcloudsh.environment import Environment
from pcloudsh.output import Outcome

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

SPEC_ATTR = "_pcloudsh_command"
JSON_HELP = "print machine-readable JSON on stdout"


class Names(StrEnum):
    """Kinds of existing names the interactive shell completes."""

    JEOS = "jeos"
    ASSEMBLY = "assembly"
    DEPLOYABLE = "deployable"
    TEMPLATE = "template"
    RESOURCE = "resource"  # a resource of the ASSEMBLY given on the same line
    RESOURCE_ID = "resource_id"  # ASSEMBLY/RESOURCE or SERVICE within the DEPLOYABLE on the line
    PART = "part"  # ASSEMBLY or ASSEMBLY/RESOURCE (a service's copy too) within the DEPLOYABLE
    MEMBER = "member"  # an assembly of the DEPLOYABLE on the line
    SERVICE = "service"  # a service of the DEPLOYABLE on the line
    CANDIDATE = "candidate"  # an assembly the service NAME of the DEPLOYABLE on the line may run on
    ASSEMBLY_RESOURCE = "assembly_resource"  # ASSEMBLY/RESOURCE of any assembly
    ASSEMBLY_SLASH = "assembly_slash"  # ASSEMBLY/ (a new resource's name follows)
    FREE_ASSEMBLY = "free_assembly"  # an assembly in no deployable yet
    USER_TEMPLATE = "user_template"  # a resource template of the user's (not built in)
    INFRASTRUCTURE = "infrastructure"  # local, libvirt, openstack


class Arg:
    """One ``add_argument`` call, plus what kind of name completes it."""

    def __init__(self, *flags: str, complete: Names | None = None, **options: Any) -> None:
        self.flags = flags
        self.complete = complete
        self.options = options
        if not flags[0].startswith("-"):
            self.options.setdefault("metavar", flags[0].upper())
            if options.get("nargs") == "*":
                # without a default argparse names it among the missing arguments
                self.options.setdefault("default", [])

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        return parser.add_argument(*self.flags, **self.options)


Attach = Callable[[argparse.Action, Names], None]
NEGATIVE_VALUE = re.compile(r"^-\d+(\.\d+)?[A-Za-z]*$")  # -1, -0.5, -1s, -10m


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    description: str
    args: tuple[Arg, ...]

    def build_parser(
        self,
        parser_class: type[argparse.ArgumentParser],
        prog: str,
        attach: Attach | None = None,
        **options: Any,
    ) -> argparse.ArgumentParser:
        """A parser for this command; ``attach`` hooks completion onto its actions."""
        if self.intermixed:
            parser_class = _intermixed(parser_class)
        usage = "%(prog)s" + self.synopsis.removeprefix(self.name)
        parser = parser_class(prog=prog, description=self.description, usage=usage, **options)
        # argparse takes only plain negative numbers for values; "-1s" would be an
        # unknown option and the error a missing argument: a value, checked as such
        parser._negative_number_matcher = NEGATIVE_VALUE
        for arg in self.args:
            action = arg.add_to(parser)
            if attach is not None and arg.complete is not None:
                attach(action, arg.complete)
        parser.add_argument("--json", action="store_true", help=JSON_HELP)
        return parser

    @property
    def intermixed(self) -> bool:
        """Repeated positionals (NAME=VALUE...) that may come after options, as in
        ``--stickiness 60 ip=@web:ipaddress``; not with an argument that takes the rest."""
        return any(
            arg.options.get("nargs") in ("*", "+") and "=" in str(arg.options.get("metavar"))
            for arg in self.args
        )

    @property
    def synopsis(self) -> str:
        """The usage line, as the man page's synopsis writes it: the command, its
        arguments, then its options (``--json`` and ``--help``, which every command
        takes, left out)."""
        positional = [a for a in self.args if not a.flags[0].startswith("-")]
        options = [a for a in self.args if a.flags[0].startswith("-")]
        words = [self.name, *map(_positional_usage, positional), *map(_option_usage, options)]
        return " ".join(word for word in words if word)


def _positional_usage(arg: Arg) -> str:
    if arg.options.get("help") is argparse.SUPPRESS:
        return ""  # an alias's extra word (the original argument order)
    metavar = _metavar(arg)
    nargs = arg.options.get("nargs")
    if nargs == "?":
        return f"[{metavar}]"
    if nargs == "*":
        return f"[{metavar} ...]"
    if nargs == "+":
        return f"{metavar} ..."
    return metavar


def _option_usage(arg: Arg) -> str:
    flag = arg.flags[-1] if arg.flags[-1].startswith("--") else arg.flags[0]
    action = arg.options.get("action")
    text = flag if action in ("store_true", "store_false", "count") else f"{flag} {_metavar(arg)}"
    if (arg.options.get("nargs") == "+" or action == "append") and not text.endswith("..."):
        text += " ..."
    return text if arg.options.get("required") else f"[{text}]"


def _metavar(arg: Arg) -> str:
    choices = arg.options.get("choices")
    if "metavar" not in arg.options and choices:
        return "|".join(str(choice) for choice in choices)
    return str(arg.options.get("metavar") or arg.flags[-1].lstrip("-").upper())


class _IntermixedMixin(argparse.ArgumentParser):
    def parse_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> argparse.Namespace:
        parsed: argparse.Namespace = self.parse_intermixed_args(args, namespace)
        return parsed


def _intermixed(parser_class: type[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """``parser_class`` whose ``parse_args`` takes positionals between options."""
    return type(f"Intermixed{parser_class.__name__}", (_IntermixedMixin, parser_class), {})


Handler = Callable[..., Outcome]
H = TypeVar("H", bound=Handler)


def command(*args: Arg) -> Callable[[H], H]:
    """Mark a noun method as a command named after it; its docstring is the help."""

    def mark(func: H) -> H:
        doc = _cleandoc(func.__doc__ or "")
        summary = doc.split("\n\n", 1)[0].replace("\n", " ")
        setattr(func, SPEC_ATTR, CommandSpec(func.__name__, summary, doc, args))
        return func

    return mark


def _cleandoc(doc: str) -> str:
    """A docstring without its indentation (``inspect.cleandoc`` costs an import of inspect)."""
    first, _, rest = doc.strip("\n").partition("\n")
    return (first.strip() + "\n" + textwrap.dedent(rest)).strip()


class Noun:
    """A group of commands about one kind of object; handlers are its methods."""

    category: ClassVar[str] = "Commands"

    def __init__(self, env: Environment) -> None:
        self.env = env

    @classmethod
    def specs(cls) -> list[CommandSpec]:
        return [
            getattr(member, SPEC_ATTR)
            for member in vars(cls).values()
            if callable(member) and hasattr(member, SPEC_ATTR)
        ]

    def handler(self, spec: CommandSpec) -> Callable[[argparse.Namespace], Outcome]:
        handler: Callable[[argparse.Namespace], Outcome] = getattr(self, spec.name)
        return handler


# ---------------------------------------------------------------------------
# the plain argparse parser of the one-shot runner


class UsageError(Exception):
    """Bad command line: argparse's message, with the usage to show."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class ParserDone(Exception):
    """argparse finished early (``--help``): exit with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class CommandParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting and writes help to a given stream."""

    out: IO[str] | None = None

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}", self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message)
        raise ParserDone(status)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (self.out or file or sys.stdout).write(message)
