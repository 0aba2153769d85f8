"""The kernel's view cped judges a late DPE by, read from real processes.

Two busy processes pinned to one CPU each wait for it about half the time;
a stopped one is seen stopped, and runnable again once continued.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cpe.dpe_scheduling import Doubt, read_scheduling

pytestmark = pytest.mark.integration
BUSY = "while True: pass"


@contextlib.contextmanager
def busy_on_one_cpu(count: int) -> Iterator[list[int]]:
    cpu = min(os.sched_getaffinity(0))
    processes = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        for process in processes:
            os.sched_setaffinity(process.pid, {cpu})
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_two_processes_sharing_one_cpu_wait_for_it() -> None:
    with busy_on_one_cpu(2) as pids:
        doubts = [Doubt.begin(time.monotonic(), read_scheduling(pid)) for pid in pids]
        time.sleep(2.0)
        for doubt, pid in zip(doubts, pids, strict=True):
            doubt.look(time.monotonic(), read_scheduling(pid))
    for doubt in doubts:
        assert doubt.stopped == 0.0
        assert doubt.waited > 0.5, doubt  # about 1 s each, more on a busy host
        assert doubt.could_run < 1.5, doubt


def test_a_stopped_process_is_seen_stopped_until_it_continues() -> None:
    with busy_on_one_cpu(1) as (pid,):
        os.kill(pid, signal.SIGSTOP)
        seen = None
        for _ in range(100):  # the stop is delivered asynchronously
            seen = read_scheduling(pid)
            if seen is not None and seen.stopped:
                break
            time.sleep(0.01)
        assert seen is not None and seen.stopped
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.1)
        again = read_scheduling(pid)
        assert again is not None and not again.stopped
