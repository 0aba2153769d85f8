"""Output on a real terminal (a pseudo-terminal of a set size) and in pipes, through
the real pcloudsh and cped: tables fit the width without trailing spaces, the status
tree of a running deployable breaks between values, NO_COLOR turns colour off."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from tests.integration.conftest import CpedFactory
from tests.integration.test_pcloudsh_events import Shell
from tests.integration.test_pcloudsh_session import Terminal, pcloudsh_command

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOR = re.compile(r"\x1b\[[0-9;]*m")
READ_TIMEOUT = 30.0


def on_terminal(shell: Shell, columns: int, *args: str, **env: str) -> str:
    """What ``pcloudsh ARGS`` writes to a terminal ``columns`` wide (colour codes kept)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in shell.env.items() if k not in ("COLUMNS", "NO_COLOR")}
    process = subprocess.Popen(
        [*pcloudsh_command(), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=environ | {"TERM": "xterm"} | env,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + READ_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=READ_TIMEOUT) == 0, output
    finally:
        os.close(master)
    return output.decode().replace("\r\n", "\n")


def top_level(details: str) -> list[str]:
    """``a, b (c, d), e`` -> ``a``, ``b (c, d)``, ``e``."""
    values, depth, start = [], 0, 0
    for index, char in enumerate(details):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and details.startswith(", ", index):
            values.append(details[start:index])
            start = index + 2
    return [*values, details[start:]]


def shown(text: str) -> list[str]:
    return ANSI.sub("", text).splitlines()


@pytest.fixture
def shell(cped_factory: CpedFactory) -> Shell:
    return Shell(cped_factory().paths)


@pytest.mark.parametrize("columns", [80, 200])
def test_a_table_fits_the_terminal_without_trailing_spaces(shell: Shell, columns: int) -> None:
    out = on_terminal(shell, columns, "resource_template_list")
    lines = shown(out)
    assert max(map(len, lines)) <= columns and lines[0].split()[0] == "Name", out
    assert not [line for line in lines if line.endswith(" ")], out
    assert COLOR.search(out), "a terminal gets colour"
    if columns == 200:  # wide enough: names and agents whole, one line per short row
        assert any(line.startswith("dummy ") and "ocf:heartbeat:Dummy" in line for line in lines)


def test_no_color_leaves_out_every_colour_code(shell: Shell) -> None:
    out = on_terminal(shell, 80, "resource_template_list", NO_COLOR="1")
    assert not COLOR.search(out) and "dummy" in out


def test_in_a_pipe_rows_are_whole_unless_columns_says_a_width(shell: Shell) -> None:
    piped = shell.run("resource_template_list")
    lines = piped.stdout.splitlines()
    templates = [line for line in lines[2:] if line and not line[0].isspace()]
    assert len(templates) == len(lines) - 2, "one line per row: grep sees whole rows"
    assert not [line for line in lines if line.endswith(" ")]
    narrow = Shell(shell.paths)
    narrow.env["COLUMNS"] = "80"
    lines = narrow.run("resource_template_list").stdout.splitlines()
    assert max(map(len, lines)) <= 80 and len(lines) > len(templates) + 2


class NoColorHome:
    """What ``Terminal`` needs of a home: the shell's environment, with NO_COLOR."""

    def __init__(self, shell: Shell) -> None:
        self.env = shell.env | {"NO_COLOR": "1"}


def test_the_interactive_shell_honours_no_color(shell: Shell) -> None:
    terminal = Terminal(NoColorHome(shell))
    try:
        terminal.read_until(re.compile(r"pcloudsh#\s*$"))
        terminal.buffer = b""
        printed = terminal.type("resource_template_list")
        raw = terminal.buffer.decode(errors="replace")
        assert "dummy" in printed and not re.search(r"\x1b\[[0-9;]*[1-9][0-9;]*m", raw), raw
    finally:
        terminal.close()


def test_the_status_tree_of_a_running_deployable_at_80_columns(shell: Shell) -> None:
    for line in (
        "assembly_create front-end-with-a-long-name host",
        "assembly_resource_add front-end-with-a-long-name/www dummy",
        "deployable_create shop",
        "deployable_assembly_add shop front-end-with-a-long-name",
    ):
        done = shell.run(*line.split())
        assert done.returncode == 0, (line, done.stderr)
    started = shell.run("deployable_start", "shop", "--wait", "--timeout", "2m", timeout=150)
    assert started.returncode == 0, started.stderr
    try:
        wide = shown(on_terminal(shell, 200, "deployable_status", "shop"))
        narrow = shown(on_terminal(shell, 80, "deployable_status", "shop"))
        tree = narrow[: narrow.index("last events:")] if "last events:" in narrow else narrow
        assert max(map(len, tree)) <= 80, narrow
        label = next(line for line in wide if "assembly front-end-with-a-long-name" in line)
        values = re.search(r"\((.*)\)$", label)
        assert values is not None, wide
        for value in top_level(values.group(1)):  # each value whole on one line
            if not value.startswith("up "):  # the uptime moved on between the two
                assert any(value in line for line in tree), (value, narrow)
    finally:
        shell.run("deployable_stop", "shop", "--wait", timeout=90)
