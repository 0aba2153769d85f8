"""Overload is not failure: a dped whose own loop stalled does not blame its guests.

The fake clock stands for the loop: moving it on without firing timers, then
firing them all late, is a stall (the host overloaded, dped stopped or
swapped).  The guest's silence during a stall is not held against it; a guest
that really stopped is still failed, with the stall in the evidence; an
operation or health command whose answer may have waited unread is not
counted as timed out.  Every test runs in both monitoring modes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from foundation.model import Deployable, parse
from tests.unit.fakes import HANG, Harness, monitoring_mode

HEARTBEAT = {"interval": 1, "timeout": 3, "health_interval": 5}


@pytest.fixture(autouse=True, params=["active", "passive"])
def monitoring(request: pytest.FixtureRequest) -> Iterator[str]:
    with monitoring_mode(request.param):
        yield request.param


def deployable(**resource: object) -> Deployable:
    dummy = {"name": "x", "type": "Dummy", "monitor_interval": 1, **resource}
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [{"name": "a1", "resources": [dummy]}, {"name": "a2"}],
        }
    )


async def running(h: Harness, doc: Deployable | None = None) -> None:
    await h.start(doc or deployable())
    await h.until_state("dep", "running", within=30)
    await h.clock.advance(2.5)  # mid-way between heartbeats


async def stall(h: Harness, seconds: float) -> None:
    """dped's loop does not run for ``seconds``; then every timer fires late."""
    h.clock.now += seconds
    await h.clock.advance(0)


def failed(h: Harness) -> list[str]:
    return [line for line in h.story() if line.split(": ")[0].endswith(" failed")]


async def test_a_guest_silent_only_while_the_loop_stalled_is_not_failed() -> None:
    h = Harness()
    await running(h)
    guest = h.world.guest("a1")
    guest.frozen = True  # nothing from it during the stall...
    h.clock.now += 10
    guest.frozen = False  # ...but it is back before dped's loop runs again
    await h.clock.advance(0)
    await h.clock.advance(20)
    assert failed(h) == []
    assert h.driver.destroyed == []


async def test_a_guest_that_really_stopped_during_a_stall_is_failed_with_the_stall_in_evidence(
    monitoring: str,
) -> None:
    h = Harness()
    await running(h)
    h.world.freeze_instance("a1")
    await stall(h, 10)
    resumed = h.clock.now
    line = await h.until_event_starting("a1 failed: ", within=30)
    cause = "guest agent silent; " if monitoring == "active" else ""
    # the stall is seen from the first timer due after it began (under a second in)
    lag = r"loop lag (9\.\d|10\.0) s"
    # the probe waits an interval if the guest had had a whole timeout of dped's
    # attention before it, else a timeout: that depends on where that timer fell
    probe = r"fresh keepalive: no answer within [13] s"
    expected = rf"a1 failed: no heartbeat for 1\d\.\d s \({cause}{lag}; {probe}\)"
    assert re.fullmatch(expected, line), line
    assert h.clock.now - resumed <= 3 + 3 + 1
    await h.until(lambda: h.state("dep") == "running" and len(h.driver.created) == 3)
    assert h.state("a2") == "running"


@pytest.mark.parametrize("monitoring", ["passive"])  # with the agent, no health command
async def test_a_health_command_late_during_a_stall_is_excused_when_the_guest_answers(
    monitoring: str,
) -> None:
    h = Harness(monitoring=monitoring)
    await running(h)
    guest = h.world.guest("a1")
    guest.health_delay = 60.0  # the next health command will not answer in time...
    await h.clock.advance(3)  # ...it is sent
    guest.health_delay = 0.0
    await stall(h, 15)  # and its deadline passes while the loop is stalled
    await h.clock.advance(20)
    assert failed(h) == []
    assert h.driver.destroyed == []


@pytest.mark.parametrize("monitoring", ["passive"])  # with the agent, no health command
async def test_a_health_command_late_without_a_stall_fails_the_assembly(monitoring: str) -> None:
    h = Harness(monitoring=monitoring)
    await running(h)
    h.world.guest("a1").health_delay = 60.0
    await h.until_event("a1 failed: health command timed out after 10 s", within=30)


@pytest.mark.parametrize("monitoring", ["passive"])  # the agent times them on the guest's clock
async def test_an_operation_timed_out_during_a_stall_runs_once_more(monitoring: str) -> None:
    h = Harness(monitoring=monitoring)
    await running(h, deployable(timeouts={"monitor": "2s"}))
    h.world.script("a1", "x", "monitor", HANG)
    await h.clock.advance(1.5)  # the hanging monitor was sent
    await stall(h, 10)
    await h.clock.advance(10)
    assert failed(h) == []
    assert h.world.ops_of("a1/x")[-3:] == ["monitor", "monitor", "monitor"]
