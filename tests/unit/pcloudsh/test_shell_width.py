"""Output that fits the terminal: tables within its width with no trailing spaces,
the status tree broken between values and never inside one, colour off with NO_COLOR."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest

from pcloudsh.environment import Environment, color_wanted, width_wanted
from pcloudsh.output import Column, Fields, Node, Result, Styled, Table, Text
from pcloudsh.render import Printer, column_widths
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.test_shell_status import failing_shop


def at(env: Environment, width: int) -> Environment:
    return dataclasses.replace(env, width=width)


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_tables_fit_the_width_without_trailing_spaces(
    env: Environment, shop: InProcessCped, width: int
) -> None:
    for line in ("resource_template_list", "assembly_resource_list web", "deployable_list"):
        out = run(at(env, width), line).out
        lines = out.splitlines()
        assert lines and max(map(len, lines)) <= width, (line, out)
        assert not any(text.endswith(" ") for text in lines), (line, out)


def test_a_wide_terminal_shows_every_value_whole(env: Environment, shop: InProcessCped) -> None:
    templates = shop.list_templates()
    out = run(at(env, 200), "resource_template_list").out
    for template in templates:
        resource = template["resource"]
        agent = f"{resource['class']}:{resource['type']}"
        assert re.search(rf"^{re.escape(template['name'])}\s", out, re.MULTILINE), template
        assert resource["type"] in out and (agent in out or resource["class"] == "ocf")


def test_at_80_columns_names_and_prose_share_the_line(
    env: Environment, shop: InProcessCped
) -> None:
    lines = run(at(env, 80), "resource_template_list").out.splitlines()
    header = lines[0].split()
    assert header == ["Name", "Agent", "Monitor", "Origin", "Description"]
    assert "dummy" in {line.split()[0] for line in lines[2:] if line and not line[0].isspace()}


@pytest.mark.parametrize("width", [50, 80, 200])
def test_the_status_tree_breaks_between_values_never_inside_one(
    env: Environment, shop: InProcessCped, width: int
) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    out = run(at(env, width), "deployable_status shop").out
    tree = out.partition("\nlast events:")[0]
    for value in (
        "DPE pid 4711",
        "lease epoch 7",
        "reason resource www failed",
        "instance db-1a2b3c4d",
        "address 10.0.0.2",
        "up 2 h 5 min",
        "last rc 7 (not running)",
        "2 failures",
    ):
        assert any(value in line for line in tree.splitlines()), (value, tree)
    assert max(map(len, tree.splitlines())) <= width, tree
    assert not any(line.endswith(" ") for line in tree.splitlines())


def test_at_200_columns_each_label_is_one_line(env: Environment, shop: InProcessCped) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    tree = run(at(env, 200), "deployable_status shop").out.partition("\nlast events:")[0]
    assert len(tree.splitlines()) == 5  # the deployable, two assemblies, two resources


def test_column_widths_cut_the_widest_short_columns_first() -> None:
    assert column_widths([10, 10, 50], [False, False, True], 200) == [None, None, None]
    # 80 columns: two gaps of 3 leave 74; the prose column gets what the others leave
    assert column_widths([10, 10, 90], [False, False, True], 80) == [10, 10, 54]
    # the prose column keeps 20: the widest short column is cut first
    assert column_widths([10, 50, 90], [False, False, True], 80) == [10, 44, 20]


def test_no_color_and_columns_from_the_environment() -> None:
    assert color_wanted({"NO_COLOR": "1"}) is False
    assert color_wanted({"NO_COLOR": ""}) is None and color_wanted({}) is None
    assert width_wanted({"COLUMNS": "80"}) == 80
    assert width_wanted({"COLUMNS": "wide"}) is None and width_wanted({}) is None


HOSTILE = "/tmp/\x1b[2J\x1b[31mX\ny\tz\x9b"


@pytest.mark.parametrize("color", [False, True])
def test_control_characters_in_values_reach_the_terminal_as_escapes(color: bool) -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=False, width=200, color=color)
    printer.view(Table([Column("value", "Value")], [{"value": HOSTILE}]))
    printer.view(Fields([("state", HOSTILE)]))
    printer.view(Node(Styled([("resource ", ""), (HOSTILE, "red")]), (Node(HOSTILE),)))
    printer.view(Styled([(HOSTILE, "bold")]))
    printer.view(Text(f"two lines\n{HOSTILE}"))
    written = out.getvalue()
    assert "\x1b[2J" not in written and "\x9b" not in written
    assert written.count("/tmp/\\x1b[2J\\x1b[31mX\\ny\\tz\\x9b") == 5
    assert "two lines\n/tmp/\\x1b[2J\\x1b[31mX\ny\tz\\x9b\n" in written  # a text's lines stay


def test_json_keeps_control_characters_as_they_are() -> None:
    out = io.StringIO()
    Printer(out, as_json=True).result(Result({"value": HOSTILE}, Text("")))
    assert json.loads(out.getvalue()) == {"value": HOSTILE}
