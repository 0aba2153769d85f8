"""Ctrl-C on a real terminal: a one-shot import interrupted while it makes its keys
exits 130 and leaves nothing behind (no key files, no rows in cped), and SIGTERM does
the same.  pcloudsh runs on a pseudo-terminal of its own (its controlling terminal),
so ^C typed there is turned into SIGINT by the terminal driver, as for a person."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_events import Shell
from tests.integration.test_pcloudsh_session import COMMAND_TIMEOUT, pcloudsh_command

pytestmark = pytest.mark.integration
ASSEMBLIES = 3000  # enough that the keys take seconds: time to type ^C halfway
PERCENT = re.compile(rb"(\d+)%")


class PtyCommand:
    """One pcloudsh command whose controlling terminal is a pseudo-terminal."""

    def __init__(self, shell: Shell, *args: str) -> None:
        argv = [*pcloudsh_command(), *args]
        env = dict(shell.env, TERM="xterm", COLUMNS="100")
        self.pid, self.master = os.forkpty()
        if self.pid == 0:  # the child: becomes pcloudsh at once
            os.execvpe(argv[0], argv, env)
        self.output = b""

    def read_until(self, wanted: re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        end = time.monotonic() + timeout
        while (found := wanted.search(self.output)) is None:
            assert time.monotonic() < end, f"waiting for {wanted.pattern!r}: {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self.output += os.read(self.master, 65536)
        return found

    def read_for(self, seconds: float) -> None:
        if select.select([self.master], [], [], seconds)[0]:
            self.output += os.read(self.master, 65536)

    def wait(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with_output = select.select([self.master], [], [], 0.1)[0]
            if with_output:
                with contextlib.suppress(OSError):  # the terminal closed with the process
                    self.output += os.read(self.master, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.master)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"pcloudsh did not exit: {self.output!r}")


def _big_document(tmp_path: Path) -> Path:
    document = {"name": "big", "assemblies": [{"name": f"a{n:05d}"} for n in range(ASSEMBLIES)]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document))
    return path


def _while_making_keys(command: PtyCommand) -> None:
    """Wait until the progress bar shows some of the keys made, most still to make."""
    command.read_until(re.compile(rb"key pairs"), COMMAND_TIMEOUT)
    end = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < end:
        percents = [int(p) for p in PERCENT.findall(command.output)]
        assert not percents or percents[-1] < 60, f"the keys were made too fast: {percents}"
        if percents and percents[-1] > 0:
            return
        command.read_for(0.05)
    raise AssertionError(f"no progress shown: {command.output!r}")


def _nothing_left(shell: Shell) -> None:
    keys_dir = shell.paths.keys_dir
    assert not keys_dir.exists() or sorted(keys_dir.iterdir()) == []
    for listing in ("deployable_list", "assembly_list"):
        done = shell.run("--json", listing)
        assert (done.returncode, json.loads(done.stdout)) == (0, []), listing


@pytest.mark.parametrize(
    ("how", "expected_exit"),
    [("ctrl-c", 130), ("sigterm", 130)],
)
def test_an_interrupted_import_exits_130_and_leaves_no_keys_and_no_rows(
    cped: CpedProcess, tmp_path: Path, how: str, expected_exit: int
) -> None:
    shell = Shell(cped.paths)
    command = PtyCommand(shell, "deployable_import", str(_big_document(tmp_path)))
    _while_making_keys(command)
    if how == "ctrl-c":
        os.write(command.master, b"\x03")  # the terminal driver sends SIGINT
    else:
        os.kill(command.pid, signal.SIGTERM)
    assert command.wait(COMMAND_TIMEOUT) == expected_exit, command.output
    assert b"pcloudsh: interrupted" in command.output
    _nothing_left(shell)


def test_the_same_import_left_alone_completes_with_progress(
    cped: CpedProcess, tmp_path: Path
) -> None:
    shell = Shell(cped.paths)
    command = PtyCommand(shell, "deployable_import", str(_big_document(tmp_path)))
    assert command.wait(10 * COMMAND_TIMEOUT) == 0, command.output
    assert b"key pairs" in command.output and b"100%" in command.output
    assert f"deployable big imported ({ASSEMBLIES} assemblies".encode() in command.output
    assert len(list(shell.paths.keys_dir.iterdir())) == 4 * ASSEMBLIES
