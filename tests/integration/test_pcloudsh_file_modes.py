"""What cped and pcloudsh write for their user only, as they create it: the store (resource
parameters may be passwords), the logs, and the shell's history (what the admin typed).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from tests.integration.test_pcloudsh_session import COMMAND_TIMEOUT, Home, Terminal, home

pytestmark = pytest.mark.integration
__all__ = ["home"]  # the fixture


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_log_and_history_are_created_for_their_owner(home: Home) -> None:
    old_umask = os.umask(0o022)  # the usual one: files would be 0644 unless made otherwise
    try:
        home.ok("start")
        home.ok("assembly_create web host")
        home.ok("assembly_resource_add site dummy web")
        terminal = Terminal(home)
        try:
            terminal.read_until(re.compile(r"pcloudsh#\s*$"))
            terminal.type("assembly_list")
            os.write(terminal.master, b"quit\r")
            assert terminal.proc.wait(COMMAND_TIMEOUT) == 0
        finally:
            terminal.close()
    finally:
        os.umask(old_umask)
    state = home.paths.state_dir
    store = home.paths.store_file
    assert mode(store) == 0o600
    for journal in (Path(f"{store}-wal"), Path(f"{store}-shm")):
        assert not journal.exists() or mode(journal) == 0o600, journal
    assert mode(home.paths.log_dir / "cped.log") == 0o640
    history = state / "pcloudsh_history"
    assert history.stat().st_size > 0 and mode(history) == 0o600
    home.ok("stop")
