"""The man page documents every command, every exit status and the environment."""

from __future__ import annotations

import re
from pathlib import Path

from pcloudsh import commands
from pcloudsh.exitcodes import ExitCode

MAN_PAGE = Path(__file__).resolve().parents[3] / "man" / "pcloudsh.1"


def _text() -> str:
    return MAN_PAGE.read_text(encoding="utf-8").replace("\\-", "-")


def test_every_command_has_an_entry() -> None:
    entries = set(re.findall(r"^\.(?:B|BI|TQ\n\.BI) ([a-z_]+)", _text(), re.MULTILINE))
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
