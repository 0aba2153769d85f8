"""The guest agent's process runner with real children, in both ways of seeing them end.

Where pidfds work the runner watches each child's pidfd (one wake-up of the
loop, no signal); elsewhere it reaps on SIGCHLD.  Both must give the same
outcomes: exit status, output, timeouts and cancellation killing the whole
process group.  Runs in this test process (the agent's module, its own loop).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dpe.guest_agent import pcloud_agent as ga

pytestmark = pytest.mark.integration

WAIT = 15.0  # a bound for a loaded machine, not a figure (bench/agent.py has those)
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(params=["pidfd", "sigchld"])
async def runner(request: pytest.FixtureRequest) -> AsyncIterator[ga.ProcessRunner]:
    if request.param == "pidfd" and not ga.pidfds_work():
        pytest.fail("this kernel has no pidfds: the pidfd runner cannot be proven here")
    loop = asyncio.get_running_loop()
    made = ga.ProcessRunner(loop, use_pidfds=request.param == "pidfd")
    yield made
    await made.settle(WAIT)
    if not made.pidfds:
        loop.remove_signal_handler(signal.SIGCHLD)
    assert not made.children, "a child was never reaped"


async def run(runner: ga.ProcessRunner, script: str, timeout: float = WAIT) -> ga.Outcome:
    return await asyncio.wait_for(runner.run_argv(["sh", "-c", script], ENV, timeout), WAIT * 2)


async def test_exit_status_and_both_outputs(runner: ga.ProcessRunner) -> None:
    outcome = await run(runner, "echo out; echo err >&2; exit 3")
    assert (outcome.exit_status, outcome.timed_out) == (3, False)
    assert (outcome.stdout, outcome.stderr) == ("out\n", "err\n")


async def test_many_children_at_once_each_get_their_own_end(runner: ga.ProcessRunner) -> None:
    outcomes = await asyncio.gather(
        *(run(runner, f"sleep 0.0{n % 5}; exit {n}") for n in range(20))
    )
    assert [o.exit_status for o in outcomes] == list(range(20))


async def test_a_death_by_signal_reads_as_a_shells(runner: ga.ProcessRunner) -> None:
    outcome = await run(runner, "kill -TERM $$")
    assert outcome.exit_status == 128 + signal.SIGTERM


async def test_past_its_timeout_the_whole_group_is_killed(
    runner: ga.ProcessRunner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "heir.pid"
    outcome = await run(runner, f"sleep 600 & echo $! > {pidfile}; wait", timeout=0.3)
    assert (outcome.exit_status, outcome.timed_out) == (None, True)
    heir = int(pidfile.read_text())
    await until(lambda: ga.process_gone(heir))


async def test_a_cancelled_operation_leaves_nothing_running(
    runner: ga.ProcessRunner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "self.pid"
    task = asyncio.ensure_future(run(runner, f"echo $$ > {pidfile}; exec sleep 600"))
    await until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: ga.process_gone(int(pidfile.read_text())))


async def test_without_a_descriptor_for_its_pidfd_a_child_is_still_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of descriptors: the runner looks again until the child ended."""
    if not ga.pidfds_work():
        pytest.fail("this kernel has no pidfds: the fallback cannot be proven here")
    runner = ga.ProcessRunner(asyncio.get_running_loop(), use_pidfds=True)

    def no_descriptor(pid: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", no_descriptor)
    outcome = await run(runner, "sleep 0.2; exit 4")
    assert outcome.exit_status == 4
    assert not runner.children


async def until(condition: Callable[[], bool], seconds: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "not within the bound"
        await asyncio.sleep(0.02)
