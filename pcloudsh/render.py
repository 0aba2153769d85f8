"""Printing results and errors: JSON for scripts, rich tables and trees for people.

rich is imported only when a table or tree is printed, so ``--json`` and
plain messages stay fast.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

from dpe.errors import PcloudError
from pcloudsh.output import Fields, Node, Outcome, Raw, Result, Stream, Table, Text, View

if TYPE_CHECKING:
    from rich.console import Console

# Into a pipe or a file, rows are never folded (grep and awk see one line per row).
PIPE_WIDTH = 1000


class Printer:
    """Writes outcomes to one stream, as JSON or for people."""

    def __init__(
        self, out: IO[str], *, as_json: bool, width: int | None = None, color: bool | None = None
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.width = width
        self.color = color

    def outcome(self, outcome: Outcome) -> None:
        if isinstance(outcome, Stream):
            for item in outcome:
                self._stream_item(item)
        else:
            self.result(outcome)

    def result(self, result: Result) -> None:
        if self.as_json:
            self.out.write(json.dumps(result.data, indent=2, default=str) + "\n")
        else:
            self.view(result.view)
        self.out.flush()

    def _stream_item(self, item: Result) -> None:
        if self.as_json:
            self.out.write(json.dumps(item.data, default=str) + "\n")
        else:
            self.view(item.view)
        self.out.flush()

    def view(self, view: View) -> None:
        if isinstance(view, Text):
            self.out.write(view.text + "\n")
        elif isinstance(view, Raw):
            self.out.write(view.text if view.text.endswith("\n") else view.text + "\n")
        elif isinstance(view, Fields):
            self._fields(view)
        elif isinstance(view, Table):
            self._table(view)
        else:
            self._rich(_rich_tree(view))

    def _fields(self, view: Fields) -> None:
        width = max((len(label) for label, _ in view.fields), default=0)
        for label, value in view.fields:
            self.out.write(f"{label + ':':<{width + 2}}{value}\n")
        for table in view.tables:
            self.out.write("\n")
            self._table(table)

    def _table(self, table: Table) -> None:
        if not table.rows:
            self.out.write(f"{table.empty}\n")
            return
        self._rich(_rich_table(table))

    def _rich(self, renderable: Any) -> None:
        self._console().print(renderable)

    def _console(self) -> Console:
        from rich.console import Console

        return Console(
            file=self.out,
            width=self.width or (None if _is_terminal(self.out) else PIPE_WIDTH),
            force_terminal=self.color,
            no_color=self.color is False,
            highlight=False,
            emoji=False,
            markup=False,
        )


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _rich_table(table: Table) -> Any:
    from rich import box
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in table.columns:
        rich_table.add_column(column.title, overflow="fold")
    for row in table.rows:
        rich_table.add_row(*(_cell(row.get(c.key)) for c in table.columns))
    return rich_table


def _rich_tree(node: Node) -> Any:
    from rich.tree import Tree

    def add(parent: Tree, child: Node) -> None:
        branch = parent.add(child.label)
        for grandchild in child.children:
            add(branch, grandchild)

    tree = Tree(node.label)
    for child in node.children:
        add(tree, child)
    return tree


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def error_lines(error: BaseException) -> list[str]:
    """``pcloudsh: error: ...`` then one line per problem, each with its path."""
    message = (
        error.message if isinstance(error, PcloudError) else str(error) or type(error).__name__
    )
    lines = message.splitlines() or [""]
    problems = error.details if isinstance(error, PcloudError) else None
    if len(lines) == 1 and isinstance(problems, list):
        lines += [f"  {_problem(p)}" for p in problems if isinstance(p, dict)]
    return [f"pcloudsh: error: {lines[0]}", *lines[1:]]


def _problem(problem: dict[str, Any]) -> str:
    path, message = problem.get("path"), problem.get("message", "")
    return f"{path}: {message}" if path else str(message)
