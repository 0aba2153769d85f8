"""Printing results and errors: JSON for scripts, rich tables and trees for people.

rich is imported only when a table or tree is printed, so ``--json`` and
plain messages stay fast.
"""

from __future__ import annotations

import json
import re
from typing import IO, TYPE_CHECKING, Any

from foundation.errors import PcloudError
from pcloudsh.output import (
    Fields,
    Group,
    Node,
    Notice,
    Raw,
    Result,
    Stream,
    Styled,
    Table,
    Text,
    View,
)

if TYPE_CHECKING:
    from rich.console import Console

# Into a pipe or a file, rows are never folded (grep and awk see one line per row),
# unless COLUMNS asks for a width.
PIPE_WIDTH = 1000
# A column whose longest cell is prose (has spaces) and longer than this wraps at its
# words; the others (names, agents, states, uuids) never break: cut with "…" at worst.
PROSE = 24
PROSE_MIN = 20  # columns a prose column keeps when the terminal is narrow
TREE_GUIDE = 4  # columns each level of a rich tree is indented by
COLUMN_GAP = 3  # between two columns of a table (padding and the rule)
# spaces at the end of a line, before the colour codes that may close it
_TRAILING_SPACES = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$", re.MULTILINE)
# Control characters in what people read: a stored value or a guest's output could
# otherwise move the cursor, clear the screen or break a table's rows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tabs, newlines kept
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def shown(text: str, *, lines: bool = False) -> str:
    """``text`` with its control characters written as escapes (``\\x1b``, ``\\n``),
    as a terminal should see a value; ``lines`` keeps tabs and newlines."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"


def shown_line(line: Styled) -> Styled:
    """A styled line, each of its parts ``shown``."""
    return Styled([(shown(part), style) for part, style in line.parts])


def shown_label(label: Styled | str) -> Styled | str:
    return shown(label) if isinstance(label, str) else shown_line(label)


class Printer:
    """Writes outcomes to one stream, as JSON or for people."""

    def __init__(
        self,
        out: IO[str],
        *,
        as_json: bool,
        width: int | None = None,
        color: bool | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.width = width
        self.color = color
        self.err = err

    def stream(self, stream: Stream) -> None:
        for item in stream:
            if isinstance(item, Notice):
                self.notice(item)
            else:
                self._stream_item(item)

    def notice(self, notice: Notice) -> None:
        if self.err is not None:
            self.err.write(f"pcloudsh: {notice.text}\n")
            self.err.flush()

    def result(self, result: Result) -> None:
        for error in result.errors:
            (self.err or self.out).write(f"pcloudsh: error: {error}\n")
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
            self.out.write(shown(view.text, lines=True) + "\n")
        elif isinstance(view, Styled):
            self._styled(view)
        elif isinstance(view, Raw):
            self.out.write(view.text if view.text.endswith("\n") else view.text + "\n")
        elif isinstance(view, Fields):
            self._fields(view)
        elif isinstance(view, Table):
            self._table(view)
        elif isinstance(view, Group):
            for part in view.views:
                self.view(part)
        else:
            self._rich(_rich_tree(view, self._console().width))

    def _width(self) -> int:
        return int(self._console().width)

    def _styled(self, line: Styled) -> None:
        line = shown_line(line)
        if self._colored():  # one line, however long: the terminal wraps it
            self._console().print(rich_text(line), soft_wrap=True)
        else:  # no colour: no need to load rich
            self.out.write(line.plain + "\n")

    def _colored(self) -> bool:
        return self.color if self.color is not None else is_terminal(self.out)

    def _fields(self, view: Fields) -> None:
        width = max((len(label) for label, _ in view.fields), default=0)
        for label, value in view.fields:
            self.out.write(f"{label + ':':<{width + 2}}{shown(str(value))}\n")
        for table in view.tables:
            self.out.write("\n")
            self._table(table)

    def _table(self, table: Table) -> None:
        if not table.rows:
            self.out.write(f"{table.empty}\n")
            return
        self._rich(_rich_table(table, self._width()))

    def _rich(self, renderable: Any) -> None:
        """Print without the padding rich leaves at the end of lines."""
        console = self._console()
        with console.capture() as capture:
            console.print(renderable)
        self.out.write(_TRAILING_SPACES.sub(r"\1", capture.get()))

    def _console(self) -> Console:
        from rich.console import Console

        return Console(
            file=self.out,
            width=self.width or (None if is_terminal(self.out) else PIPE_WIDTH),
            force_terminal=self.color,
            no_color=self.color is False,
            highlight=False,
            emoji=False,
            markup=False,
        )


def is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _rich_table(table: Table, width: int) -> Any:
    from rich import box
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    cells = [[_cell(row.get(c.key)) for c in table.columns] for row in table.rows]
    prose = [_is_prose([row[i] for row in cells]) for i in range(len(table.columns))]
    natural = [
        max(len(column.title), *(len(row[i]) for row in cells))
        for i, column in enumerate(table.columns)
    ]
    widths = column_widths(natural, prose, width)
    for column, wraps, fixed in zip(table.columns, prose, widths, strict=True):
        if wraps:
            rich_table.add_column(column.title, overflow="fold", width=fixed)
        else:
            rich_table.add_column(column.title, no_wrap=True, overflow="ellipsis", width=fixed)
    for row in cells:
        rich_table.add_row(*row)
    return rich_table


def _is_prose(cells: list[str]) -> bool:
    return any(len(cell) > PROSE and " " in cell for cell in cells)


def column_widths(natural: list[int], prose: list[bool], width: int) -> list[int | None]:
    """Each column's width when the table would pass ``width``: prose columns share
    what the others leave, at least PROSE_MIN each; if that is not enough, the widest
    of the others are cut to it (None: natural widths)."""
    room = width - COLUMN_GAP * (len(natural) - 1)
    if sum(natural) <= room:
        return [None] * len(natural)
    wraps = prose.count(True)
    short = [n for n, p in zip(natural, prose, strict=True) if not p]
    cap = _cap(short, max(room - wraps * PROSE_MIN, len(short)))
    cut = [n if p else min(n, cap) for n, p in zip(natural, prose, strict=True)]
    left = room - sum(n for n, p in zip(cut, prose, strict=True) if not p)
    share = max(left // wraps, 1) if wraps else 0
    return [min(share, n) if p else n for n, p in zip(cut, prose, strict=True)]


def _cap(widths: list[int], budget: int) -> int:
    """The largest width such that ``widths`` cut to it fit ``budget``."""
    cap = max(widths, default=0)
    while cap > 1 and sum(min(w, cap) for w in widths) > budget:
        cap -= 1
    return cap


def rich_text(line: Styled | str) -> Any:
    """A rich ``Text`` of a styled line (plain text for a string)."""
    from rich.text import Text as RichText

    if isinstance(line, str):
        return RichText(line)
    text = RichText()
    for part, style in line.parts:
        text.append(part, style=style or None)
    return text


def _rich_tree(node: Node, width: int) -> Any:
    """A rich tree whose labels break only between their parts, never inside a value."""
    from rich.tree import Tree

    def add(parent: Tree, child: Node, depth: int) -> None:
        label = _wrapped(shown_label(child.label), width - depth * TREE_GUIDE)
        branch = parent.add(rich_text(label))
        for grandchild in child.children:
            add(branch, grandchild, depth + 1)

    tree = Tree(rich_text(_wrapped(shown_label(node.label), width)))
    for child in node.children:
        add(tree, child, 1)
    return tree


def _wrapped(label: Styled | str, width: int) -> Styled | str:
    """``label`` with line breaks between its parts where the next would pass
    ``width`` (a part longer than the line stays whole: the terminal folds it)."""
    if isinstance(label, str) or len(label.plain) <= width:
        return label
    parts: list[tuple[str, str]] = []
    used = 0
    for text, style in label.parts:
        if used and used + len(text.rstrip()) > width:
            parts.append(("\n", ""))
            text = text.lstrip()
            used = 0
        parts.append((text, style))
        used += len(text)
    return Styled(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return shown(str(value))


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
