"""What a command returns: data for ``--json`` plus a view for people.

Handlers build these values and never print; ``pcloudsh.render`` turns them
into text (rich tables and trees) or JSON on the boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcloudsh.exitcodes import ExitCode


@dataclass(frozen=True)
class Text:
    """One or more plain lines."""

    text: str


@dataclass(frozen=True)
class Column:
    key: str
    title: str


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    empty: str = "(none)"  # printed instead of an empty table
    title: str | None = None


@dataclass(frozen=True)
class Fields:
    """``label: value`` lines, then optional tables (a "show" command)."""

    fields: Sequence[tuple[str, str]]
    tables: Sequence[Table] = ()


@dataclass(frozen=True)
class Styled:
    """One line whose parts have styles (a state word in its colour).

    Styles are rich style strings ("bold red"); "" is plain.  Without colour
    the line is just its text.
    """

    parts: Sequence[tuple[str, str]]

    @property
    def plain(self) -> str:
        return "".join(text for text, _style in self.parts)


@dataclass(frozen=True)
class Node:
    """A tree: a label and its children (status of a deployable)."""

    label: str | Styled
    children: Sequence[Node] = ()


@dataclass(frozen=True)
class Raw:
    """Text printed exactly as it is (an exported document)."""

    text: str


@dataclass(frozen=True)
class Group:
    """Several views, one after the other (a tree, then the last events)."""

    views: Sequence[View]


View = Text | Styled | Table | Fields | Node | Raw | Group


@dataclass(frozen=True)
class Result:
    data: Any  # what --json prints
    view: View
    status: ExitCode = ExitCode.OK
    # what went wrong with part of it (one of several deployables): standard error,
    # as ``pcloudsh: error: ...``, while the rest is printed
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A word about a stream itself ("reconnecting"), for people: standard error."""

    text: str


@dataclass
class Stream:
    """Results that keep coming (``events --follow``): printed as they arrive.

    ``quiet_interrupt``: Ctrl-C is the normal way to end it (exit 130, no message).
    """

    items: Iterable[Result | Notice]
    header: Sequence[Result] = field(default_factory=list)
    quiet_interrupt: bool = False

    def __iter__(self) -> Iterator[Result | Notice]:
        yield from self.header
        yield from self.items


@dataclass(frozen=True)
class Program:
    """Hand the terminal to another program (``ssh``).

    The one-shot runner replaces itself with it (its exit status becomes
    pcloudsh's); the interactive shell runs it and waits.
    """

    argv: Sequence[str]


Outcome = Result | Stream | Program


def done(message: str, **data: Any) -> Result:
    """A change was made: a sentence for people, the facts for scripts."""
    return Result({"message": message, **data}, Text(message))


def counted(count: int, one: str, many: str) -> str:
    """``1 assembly``, ``2 assemblies``: the noun agrees with the count."""
    return f"{count} {one if count == 1 else many}"


def columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(key, title) for key, title in pairs)
