"""The man page documents every command, every exit status and the environment."""

from __future__ import annotations

import io
import re

from dpe.drivers.registry import setting_names
from foundation.model import INFRASTRUCTURES
from pcloudsh import commands
from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode
from pcloudsh.oneshot import command_parser
from tests.unit.pcloudsh import manpage
from tests.unit.pcloudsh.manpage import MAN_PAGE


def _text() -> str:
    return MAN_PAGE.read_text(encoding="utf-8").replace("\\-", "-")


def test_every_command_has_an_entry() -> None:
    entries = manpage.synopses()
    for _noun, spec in commands.all_commands():
        assert spec.name in entries, spec.name


def test_every_option_of_every_command_is_mentioned() -> None:
    text = _text()
    for _noun, spec in commands.all_commands():
        for arg in spec.args:
            for flag in arg.flags:
                if flag.startswith("--"):
                    assert flag in text, (spec.name, flag)


def test_exit_statuses_and_environment() -> None:
    section = _text().split(".SH EXIT STATUS", 1)[1].split(".SH", 1)[0]
    for status in ExitCode:
        assert f".B {int(status)}\n" in section, status
    assert "PCLOUD_HOME" in _text()


def test_each_commands_usage_line_is_its_synopsis_in_the_man_page() -> None:
    synopses = manpage.synopses()
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    for _noun, spec in commands.all_commands():
        usage = " ".join(command_parser(spec, env).format_usage().split())
        assert usage.removeprefix("usage: pcloudsh ") == synopses.get(spec.name), spec.name


def test_the_synopsis_reader_sees_fonts_and_alternation() -> None:
    assert manpage.plain(r".BI jeos_delete " + '" name"') == "jeos_delete name"
    line = r".B \fBdeployable_start \fR[\fINAME\fR ...] \fR[\fB\-\-all\fR]"
    assert manpage.plain(line) == "deployable_start [NAME ...] [--all]"


def test_every_setting_each_driver_accepts_is_documented() -> None:
    section = _text().split(".SH INFRASTRUCTURE SETTINGS", 1)[1].split("\n.SH ", 1)[0]
    for infrastructure in INFRASTRUCTURES:
        part = section.split(f".SS {infrastructure}\n", 1)[1].split("\n.SS ", 1)[0]
        entries = re.findall(r"^\.TP\n\.BR? (.+)$", part, re.MULTILINE)
        documented = {word.strip('",') for entry in entries for word in entry.split()}
        for name in setting_names(infrastructure):
            assert name in documented, (infrastructure, name)


def test_the_shells_redirection_and_how_to_quote_around_it_are_documented() -> None:
    description = " ".join(_text().split(".SH DESCRIPTION", 1)[1].split(".SH ", 1)[0].split())
    for form in (".BI > ", ".BI >> ", ".BI | "):
        assert form in description, form
    assert "Quote a value that contains them, the whole word" in description
