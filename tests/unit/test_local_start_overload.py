"""A local instance's start on a busy host: time spent waiting for a CPU is not
counted against the start timeout (up to a bound); a start that is merely slow
still fails at the timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dpe.drivers import _local_processes, _procfs
from dpe.drivers._local_instance import InitRecord, InstanceRecord, Layout
from dpe.drivers._local_processes import CpuWaits, wait_ready
from foundation.errors import OperationTimeout


def test_the_longest_wait_of_one_process_counts_and_its_own_from_the_start() -> None:
    delays = {os.getpid(): 5.0, 100: 1.0, 101: 3.0}
    waits = CpuWaits(100, most=20.0, delay=delays.__getitem__, tree=lambda root: [root, 101])
    assert waits.excused() == 3.0  # sshd's wait, not init's plus sshd's
    delays[os.getpid()] = 9.5  # dped itself waited 4.5 s since
    assert waits.excused() == 4.5
    delays[101] = 30.0
    assert waits.excused() == 20.0  # never more than the bound


def test_a_real_process_has_a_run_delay_and_a_tree() -> None:
    assert _procfs.run_delay(os.getpid()) >= 0.0
    assert _procfs.run_delay(2**22 + 1) == 0.0  # no such process
    assert _procfs.tree(os.getpid())[0] == os.getpid()


class BusyHost:
    """CpuWaits as the host would report them: ``excuse`` seconds of waiting."""

    excuse = 0.0

    def __init__(self, init_pid: int, most: float) -> None:
        self.most = most

    def excused(self) -> float:
        return min(self.most, BusyHost.excuse)


@pytest.fixture
def starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, float]:
    """sshd answers ``answers_after`` seconds from now; nothing is killed for real."""
    when = {"answers_after": 0.3, "start": time.monotonic()}

    async def answers(address: str, port: int, timeout: float) -> bool:
        return time.monotonic() - when["start"] >= when["answers_after"]

    async def killed(init: InitRecord, instance_id: str) -> None:
        when["killed"] = 1.0

    monkeypatch.setattr(_local_processes, "CpuWaits", BusyHost)
    monkeypatch.setattr(_local_processes, "answers_ssh", answers)
    monkeypatch.setattr(_local_processes, "kill_all", killed)
    monkeypatch.setattr(_local_processes, "_sshd_pid", lambda init: 42)
    monkeypatch.setattr(_procfs, "is_alive", lambda pid, start_time=None: True)
    return when


LAYOUT = Layout(Path("/nonexistent"))
RECORD = InstanceRecord("web-1", "shop", "web", "127.0.0.1", 2222, "root", 1.0)
INIT = InitRecord(init_pid=100, pidns=False, start_time=1)


async def test_a_start_that_waited_for_the_cpu_gets_that_time_again(
    starting: dict[str, float],
) -> None:
    BusyHost.excuse = 0.5
    deadline = time.monotonic() + 0.2  # sshd answers at 0.3 s: late, but the host was busy
    assert await wait_ready(LAYOUT, RECORD, INIT, deadline) == 42
    assert "killed" not in starting


async def test_a_slow_start_on_an_idle_host_fails_at_its_timeout(
    starting: dict[str, float],
) -> None:
    BusyHost.excuse = 0.0
    with pytest.raises(OperationTimeout, match=r"within the start timeout$"):
        await wait_ready(LAYOUT, RECORD, INIT, time.monotonic() + 0.1)
    assert "killed" in starting


async def test_the_time_given_again_is_bounded(starting: dict[str, float]) -> None:
    BusyHost.excuse = 100.0  # the host is ever busier: the start still ends
    starting["answers_after"] = 60.0
    begun = time.monotonic()
    with pytest.raises(OperationTimeout, match=r"\(0\.2 s waiting for a CPU not counted\)"):
        await wait_ready(LAYOUT, RECORD, INIT, time.monotonic() + 0.1)
    assert time.monotonic() - begun < 1.0
