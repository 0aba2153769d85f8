"""Events with a real cped: the log, following it across a restart of cped, and live
events above the prompt of an interactive pcloudsh on a pseudo-terminal.

Events are appended to the store by the test, as a DPE does (``Store.append_event``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.events import Event
from foundation.paths import Paths
from foundation.store import Store
from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_session import COMMAND_TIMEOUT, Terminal, pcloudsh_command

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = float(int(time.time())) - 3600  # recent: older events go with the retention


class Shell:
    """pcloudsh processes on the home of the ``cped`` fixture."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.env = dict(os.environ, PCLOUD_HOME=str(paths.config_dir.parent))
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        )
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*pcloudsh_command(), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*pcloudsh_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )


@pytest.fixture
def shell(cped: CpedProcess) -> Shell:
    return Shell(cped.paths)


@pytest.fixture
def store(cped: CpedProcess) -> Iterator[Store]:
    opened = Store.open(cped.paths.store_file)
    try:
        yield opened
    finally:
        opened.close()


def failed(n: int, deployable: str = "shop") -> Event:
    return Event(
        time=T0 + n,
        deployable=deployable,
        assembly="web",
        resource="www",
        state="failed",
        reason=f"monitor returned 7 (not running) #{n}",
    )


def read_line(proc: subprocess.Popen[str], timeout: float = COMMAND_TIMEOUT) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line within the timeout"
    return proc.stdout.readline()


@contextlib.contextmanager
def started(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, killed (by its pid) if still running at the end; its pipes closed."""
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def test_the_log_in_the_original_words(shell: Shell, store: Store) -> None:
    store.append_event(failed(1))
    store.append_event(Event(T0 + 2, "shop", "recovering", "resource www failed"))
    store.append_event(failed(3, deployable="blog"))
    done = shell.run("events", "--deployable", "shop")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "  resource [www] in assembly [web] in deployable [shop] is FAILED: "
        "monitor returned 7 (not running) #1"
    )
    assert lines[1].endswith("  deployable [shop] is RECOVERING: resource www failed")
    data = json.loads(shell.run("events", "--json", "--limit", "1").stdout)
    assert [e["deployable"] for e in data] == ["blog"]


def test_events_of_a_name_cped_does_not_know_are_a_usage_error(shell: Shell, store: Store) -> None:
    store.append_event(failed(1, deployable="gone"))  # a deleted deployable's events stay
    kept = shell.run("events", "--deployable", "gone")
    assert (kept.returncode, len(kept.stdout.splitlines())) == (0, 1), kept.stderr
    for option in ("--deployable", "--assembly"):
        typo = shell.run("events", option, "nosuch")
        assert (typo.returncode, typo.stdout) == (2, ""), typo
        assert "'nosuch'" in typo.stderr and "Traceback" not in typo.stderr


def test_follow_misses_nothing_across_a_restart_of_cped(
    cped: CpedProcess, shell: Shell, store: Store
) -> None:
    store.append_event(failed(1))
    with started(shell.popen("events", "--follow", "--json", "--deployable", "shop")) as proc:
        assert json.loads(read_line(proc))["reason"].endswith("#1")  # the past
        store.append_event(failed(2, deployable="blog"))  # not followed
        store.append_event(failed(3))
        assert json.loads(read_line(proc))["reason"].endswith("#3")  # live, from the stream
        cped.stop()
        store.append_event(failed(4))  # while cped is down
        cped.start()
        assert json.loads(read_line(proc))["reason"].endswith("#4")
        store.append_event(failed(5))
        assert json.loads(read_line(proc))["reason"].endswith("#5")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(COMMAND_TIMEOUT) == 130
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "pcloudsh: lost the event stream: " in err and "reconnecting" in err
        assert "pcloudsh: event stream back" in err and "Traceback" not in err


def test_follow_with_a_timeout_ends_by_itself(shell: Shell, store: Store) -> None:
    store.append_event(failed(1))
    started = time.monotonic()
    done = shell.run("events", "--follow", "--timeout", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < COMMAND_TIMEOUT / 2  # not the 30 s idle timeout
    assert [json.loads(line)["reason"][-2:] for line in done.stdout.splitlines()] == ["#1"]
    assert done.stderr == ""


def alert(terminal: Terminal, text: str, typed: str = "") -> str:
    """Wait for an alert, and for the prompt (with what was typed, and perhaps a
    suggestion from the history after it) drawn again below it."""
    after = re.escape(text) + r"[^\n]*\n[\s\S]*pcloudsh#\s*" + re.escape(typed) + r"\S*\s*$"
    return terminal.read_until(re.compile(after))


class ShellHome:
    """What ``Terminal`` needs of a home."""

    def __init__(self, shell: Shell) -> None:
        self.env = shell.env


def test_live_events_appear_above_the_prompt_without_losing_the_typed_line(
    cped: CpedProcess, shell: Shell, store: Store
) -> None:
    terminal = Terminal(ShellHome(shell))  # type: ignore[arg-type]
    try:
        terminal.read_until(re.compile(r"pcloudsh#\s*$"))
        assert terminal.type("events_live") == "live events: on (all deployables)\n"
        terminal.buffer = b""
        store.append_event(failed(1))
        screen = alert(terminal, "#1")
        assert "resource [www] in assembly [web] in deployable [shop] is FAILED: " in screen
        red = re.compile(r"\x1b\[[0-9;]*\b31\b[0-9;]*mFAILED\x1b\[0m")
        assert red.search(terminal.buffer.decode(errors="replace"))

        # half a command typed; an event comes; the typed text stays and runs
        terminal.buffer = b""
        os.write(terminal.master, b"events_li")
        terminal.read_until(re.compile(r"events_li"))
        store.append_event(failed(2))
        alert(terminal, "#2", typed="events_li")
        assert terminal.type("ve").endswith("live events: on (all deployables)\n")

        # cped restarts: the shell says so, reconnects, and shows what came meanwhile
        cped.stop()
        store.append_event(failed(3))
        terminal.buffer = b""
        cped.start()
        screen = alert(terminal, "#3")
        assert "pcloudsh: event stream back" in screen

        assert terminal.type("events_live off") == "live events: off\n"
        store.append_event(failed(4))
        time.sleep(1.0)  # ample: cped looks for new events every 0.1 s
        assert "#4" not in terminal.type("")
        os.write(terminal.master, b"quit\r")
        assert terminal.proc.wait(COMMAND_TIMEOUT) == 0
    finally:
        terminal.close()
