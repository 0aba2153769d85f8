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
class Node:
    """A tree: a label and its children (status of a deployable)."""

    label: str
    children: Sequence[Node] = ()


@dataclass(frozen=True)
class Raw:
    """Text printed exactly as it is (an exported document)."""

    text: str


View = Text | Table | Fields | Node | Raw


@dataclass(frozen=True)
class Result:
    data: Any  # what --json prints
    view: View
    status: ExitCode = ExitCode.OK


@dataclass
class Stream:
    """Results that keep coming (``events --follow``): printed as they arrive."""

    items: Iterable[Result]
    header: Sequence[Result] = field(default_factory=list)

    def __iter__(self) -> Iterator[Result]:
        yield from self.header
        yield from self.items


Outcome = Result | Stream


def done(message: str, **data: Any) -> Result:
    """A change was made: a sentence for people, the facts for scripts."""
    return Result({"message": message, **data}, Text(message))


def columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(key, title) for key, title in pairs)
