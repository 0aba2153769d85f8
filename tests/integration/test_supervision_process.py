"""The launcher with real processes: a small stand-in DPE, real pidfds, real signals.

The stand-in writes a line to standard output, records SIGTERM and SIGHUP
like dped (its handlers only record; its loop acts) and exits 0 on SIGTERM.
Every test stops what it started, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpe.control import process_alive
from cpe.dpe_process import DpedLauncher, command_line, dped_log_file, looks_like_dped
from foundation.paths import Paths

pytestmark = pytest.mark.integration

STAND_IN = """
import signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda *_: got.append("term"))
signal.signal(signal.SIGHUP, lambda *_: got.append("hup"))
print("stand-in dpe for", sys.argv[-1], "ignored:", signal.getsignal(signal.SIGTSTP), flush=True)
while True:
    time.sleep(0.01)
    while got:
        what = got.pop(0)
        print(what, flush=True)
        if what == "term":
            sys.exit(0)
"""


class Exits:
    """What the launcher reported, with a way to wait for it."""

    def __init__(self) -> None:
        self.statuses: list[int | None] = []
        self.at: list[float] = []
        self.arrived = asyncio.Event()

    def __call__(self, status: int | None) -> None:
        self.statuses.append(status)
        self.at.append(time.monotonic())
        self.arrived.set()

    async def wait(self, within: float = 5.0) -> int | None:
        await asyncio.wait_for(self.arrived.wait(), within)
        return self.statuses[-1]


@pytest.fixture
def stand_in(pcloud_home: Paths) -> Iterator[Path]:
    script = pcloud_home.state_dir / "stand-in.py"
    script.write_text(STAND_IN)
    yield script


@pytest.fixture
def launcher(pcloud_home: Paths, stand_in: Path) -> Iterator[DpedLauncher]:
    yield DpedLauncher(
        pcloud_home, command=[sys.executable, str(stand_in)], markers=frozenset({"stand-in.py"})
    )
    for pid in stand_ins(stand_in):  # the test's own: their command names its home
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def stand_ins(script: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        argv = command_line(int(entry.name)) if entry.name.isdigit() else None
        if argv and str(script) in argv and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)


async def test_a_killed_child_is_reported_and_reaped_at_once(
    launcher: DpedLauncher, pcloud_home: Paths
) -> None:
    exits = Exits()
    previous = signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # as the daemonized cped does
    try:
        process = launcher.spawn("shop", clear_failed=False, on_exit=exits)
    finally:
        signal.signal(signal.SIGTSTP, previous)
    log = dped_log_file(pcloud_home, "shop")
    await until(lambda: "stand-in dpe for shop" in log.read_text())
    assert os.getsid(process.pid) == process.pid  # its own session: cped's end is not its end
    assert f"ignored: {int(signal.SIG_DFL)}" in log.read_text()  # not inherited from cped
    killed_at = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    assert await exits.wait() == -signal.SIGKILL
    assert exits.at[0] - killed_at < 0.5
    assert not Path(f"/proc/{process.pid}").exists()  # reaped: no zombie left behind
    assert process.signal(signal.SIGTERM) is False


async def test_signals_reach_the_process_and_sigterm_ends_it(
    launcher: DpedLauncher, pcloud_home: Paths
) -> None:
    exits = Exits()
    process = launcher.spawn("shop", clear_failed=True, on_exit=exits)
    log = dped_log_file(pcloud_home, "shop")
    await until(lambda: "stand-in dpe" in log.read_text())
    assert process.signal(signal.SIGHUP)
    await until(lambda: "hup" in log.read_text())
    assert process.signal(signal.SIGTERM)
    assert await exits.wait() == 0
    assert launcher.last_words("shop") == "term"
    assert launcher.last_words("never-started") == ""


async def test_the_dpe_reads_the_configuration_file_cped_was_started_with(
    pcloud_home: Paths, stand_in: Path
) -> None:
    config = pcloud_home.config_dir / "elsewhere.conf"
    launcher = DpedLauncher(
        pcloud_home,
        command=[sys.executable, str(stand_in)],
        markers=frozenset({"stand-in.py"}),
        config_file=config,
    )
    exits = Exits()
    process = launcher.spawn("shop", clear_failed=False, on_exit=exits)
    try:
        await until(lambda: launcher.is_dped(process.pid, "shop"))
        argv = command_line(process.pid)
        assert argv is not None and argv[-4:] == ["--foreground", "--config", str(config), "shop"]
    finally:
        process.signal(signal.SIGTERM)
        await exits.wait()


async def test_attach_watches_a_dpe_it_did_not_start(launcher: DpedLauncher) -> None:
    exits = Exits()
    first = launcher.spawn("shop", clear_failed=False, on_exit=Exits())
    await until(lambda: launcher.is_dped(first.pid, "shop"))
    adopted = launcher.attach("shop", first.pid, exits)
    assert adopted is not None and adopted.child is False
    assert launcher.attach("other", first.pid, Exits()) is None
    assert launcher.attach("shop", os.getpid(), Exits()) is None  # not a DPE
    os.kill(first.pid, signal.SIGKILL)
    assert await exits.wait() is None  # not our child: no status, but noticed at once


async def test_detach_leaves_the_process_running(launcher: DpedLauncher) -> None:
    exits = Exits()
    process = launcher.spawn("shop", clear_failed=False, on_exit=exits)
    process.detach()
    await asyncio.sleep(0.2)
    assert process_alive(process.pid) and exits.statuses == []
    assert process.signal(signal.SIGTERM) is False  # detached: cped no longer signals it


def test_dped_command_lines_are_recognised() -> None:
    markers = frozenset({"dped", "dpe.main"})
    assert looks_like_dped(["/usr/bin/dped", "--foreground", "shop"], "shop", markers)
    assert looks_like_dped(["python3", "-m", "dpe.main", "--foreground", "shop"], "shop", markers)
    assert not looks_like_dped(["python3", "-m", "dpe.main", "shop"], "shop2", markers)
    assert not looks_like_dped(["vim", "shop"], "shop", markers)
    assert not looks_like_dped([], "shop", markers)
