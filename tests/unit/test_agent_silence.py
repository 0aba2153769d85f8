"""The agent's silence on the real event loop: a deadline each line pushes on, never a
timer that wakes dped while the agent speaks (an idle dped's CPU is its wake-ups)."""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable

from dpe.agent_channel import AgentChannel, AgentSettings, Hello, _Lines
from dpe.loop_lag import LagClock
from foundation.clock import SystemClock, call_at

HEARTBEAT = 0.05  # seconds between the agent's lines here
TIMEOUT = 0.2  # the agent is lost after this much silence
HELLO = Hello(protocol=1, sha256="0" * 64, pid=4242, python="3.11", watch="pidfd")


class CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Counts the loop's sleeps that ended with nothing to read: a timer woke it."""

    def __init__(self) -> None:
        super().__init__()
        self.timer_wakes = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(timeout)
        if not ready and timeout is not None and timeout > 0:
            self.timer_wakes += 1
        return ready


class FedChannel:
    """A channel whose output another thread feeds (its arrival wakes the loop as a
    socket's would, through the loop's own wake-up pipe, not a timer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.output: asyncio.Queue[bytes] = asyncio.Queue()

    def feed(self, data: bytes) -> None:
        self.loop.call_soon_threadsafe(self.output.put_nowait, data)

    async def read(self, size: int) -> bytes:
        return await self.output.get()

    async def write(self, data: bytes) -> None:
        pass

    def write_eof(self) -> None:
        pass

    async def wait(self, timeout: float) -> int:
        return 0

    def stderr_tail(self) -> str:
        return ""

    def close(self) -> None:
        self.output.put_nowait(b"")


def on_a_counting_loop(body: Callable[[FedChannel, AgentChannel], object]) -> CountingSelector:
    """Run ``body`` with an agent channel on a loop whose wake-ups are counted."""
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)

    async def main() -> None:
        fed = FedChannel(asyncio.get_running_loop())
        settings = AgentSettings(heartbeat_interval=HEARTBEAT, heartbeat_timeout=TIMEOUT)
        channel = AgentChannel(
            fed, _Lines(fed), HELLO, settings, clock=LagClock(SystemClock()), label="web"
        )
        selector.timer_wakes = 0
        try:
            await asyncio.to_thread(body, fed, channel)
        finally:
            await channel.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return selector


def beat(fed: FedChannel, times: int) -> None:
    """The agent's heartbeats, one every ``HEARTBEAT`` seconds (from this thread)."""
    for _ in range(times):
        fed.feed(b'{"type":"heartbeat","runs":0}\n')
        time.sleep(HEARTBEAT)


def test_an_agent_that_keeps_beating_never_wakes_the_loop_by_a_timer() -> None:
    heard: list[tuple[str | None, int]] = []

    def body(fed: FedChannel, channel: AgentChannel) -> None:
        beat(fed, 16)  # 0.8 s: four times the timeout
        heard.append((channel.lost, channel.heartbeats))

    selector = on_a_counting_loop(body)
    assert heard == [(None, 16)]
    assert selector.timer_wakes == 0


def test_an_agent_that_falls_silent_is_lost_at_its_timeout() -> None:
    seen: list[tuple[str | None, int]] = []

    def body(fed: FedChannel, channel: AgentChannel) -> None:
        beat(fed, 4)
        seen.append((channel.lost, channel.heartbeats))
        time.sleep(TIMEOUT * 3)
        seen.append((channel.lost, channel.heartbeats))

    on_a_counting_loop(body)
    assert seen[0] == (None, 4)
    assert seen[1][0] is not None and seen[1][0].startswith("no heartbeat from the agent for 0.2")


async def test_a_timer_set_again_fires_once_at_its_last_time() -> None:
    clock, fired = SystemClock(), list[float]()
    first = call_at(clock, clock.monotonic() + 0.02, lambda: fired.append(-1.0))
    first.cancel()
    wanted = clock.monotonic() + 0.05
    call_at(clock, wanted, lambda: fired.append(clock.monotonic()))
    await asyncio.sleep(0.15)
    assert len(fired) == 1
    assert fired[0] >= wanted


async def test_a_lag_clock_timer_notes_how_late_it_fired() -> None:
    clock = LagClock(SystemClock())
    done = asyncio.Event()
    call_at(clock, clock.monotonic() + 0.01, done.set)
    await asyncio.sleep(0)
    time.sleep(0.2)  # noqa: ASYNC251 - the loop held up past the timer's time, on purpose
    await done.wait()
    assert clock.lag.worst >= 0.15
