"""The agent's lines from a channel that hands its output on as it arrives (the SSH
transport's): each line takes effect in the callback that brought it, with no task
woken; what came before the agent channel listened is not lost; its end and its
failures lose the agent with the reason.  The same over real sshd guests is in
``tests/integration/test_transport.py`` and ``test_guest_agent_ssh.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from dpe.agent_channel import AgentChannel, AgentGone, AgentLost, AgentSettings, Hello, _Lines
from dpe.guest_agent.pcloud_agent import MAX_REPLY_LINE
from dpe.interfaces import OnEnd, PushingChannel
from tests.unit.fakes import FakeClock

HELLO = Hello(protocol=1, sha256="0" * 64, pid=4242, python="3.11", watch="pidfd")


class PushedChannel:
    """Output pushed by the test, as the transport's callback would (``PushingChannel``)."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []
        self.on_data: Callable[[bytes], None] | None = None
        self.on_end: OnEnd | None = None
        self.status = 0
        self.closed = False

    def push(self, data: bytes) -> None:
        if self.on_data is None:
            self.kept.append(data)
        else:
            self.on_data(data)

    def deliver_to(self, on_data: Callable[[bytes], None], on_end: OnEnd) -> None:
        self.on_data, self.on_end = on_data, on_end
        for data in self.kept:
            on_data(data)

    def end(self, failure: str | None) -> None:
        assert self.on_end is not None
        self.on_end(failure)

    async def read(self, size: int) -> bytes:
        raise AssertionError("a pushing channel is not read")

    async def write(self, data: bytes) -> None:
        pass

    def write_eof(self) -> None:
        pass

    async def wait(self, timeout: float) -> int:
        return self.status

    def stderr_tail(self) -> str:
        return "Traceback ...\nMemoryError\n"

    def close(self) -> None:
        self.closed = True


def heartbeat(runs: int) -> bytes:
    return json.dumps({"type": "heartbeat", "runs": runs}).encode() + b"\n"


def agent_on(pushed: PushedChannel) -> AgentChannel:
    assert isinstance(pushed, PushingChannel)
    return AgentChannel(
        pushed, _Lines(pushed), HELLO, AgentSettings(), clock=FakeClock(), label="web"
    )


async def gone(agent: AgentChannel) -> AgentGone:
    async with asyncio.timeout(5):
        async for event in agent.events():
            if isinstance(event, AgentGone):
                return event
    raise AssertionError("the events ended without AgentGone")


async def test_a_pushed_line_takes_effect_in_the_callback_that_brought_it() -> None:
    pushed = PushedChannel()
    agent = agent_on(pushed)
    pushed.push(heartbeat(3)[:5])  # a line in two pieces
    assert agent.heartbeats == 0
    pushed.push(heartbeat(3)[5:] + heartbeat(4))
    assert (agent.heartbeats, agent.agent_runs) == (2, 4)  # no await in between
    await agent.close()


async def test_what_came_before_the_agent_listened_is_not_lost() -> None:
    pushed = PushedChannel()
    lines = _Lines(pushed)
    pushed.push(b'{"type":"hello"}\n' + heartbeat(1))
    assert await lines.readline() == b'{"type":"hello"}'  # the greeting, read
    agent = AgentChannel(pushed, lines, HELLO, AgentSettings(), clock=FakeClock(), label="web")
    assert agent.heartbeats == 1  # the line that waited behind it, handed on
    await agent.close()


async def test_a_line_too_long_loses_the_agent() -> None:
    pushed = PushedChannel()
    agent = agent_on(pushed)
    pushed.push(b"x" * (MAX_REPLY_LINE + 1))
    assert agent.lost == f"the agent sent a line over {MAX_REPLY_LINE} bytes"
    assert pushed.closed
    pushed.push(heartbeat(1) * 3)  # nothing more is taken
    assert agent.heartbeats == 0
    assert (await gone(agent)).reason == agent.lost


async def test_the_end_of_the_output_loses_the_agent_with_its_exit() -> None:
    pushed = PushedChannel()
    pushed.status = 1
    agent = agent_on(pushed)
    pushed.end(None)
    assert (await gone(agent)).reason == "the agent exited with status 1: MemoryError"


async def test_a_failed_channel_loses_the_agent_with_the_failure() -> None:
    pushed = PushedChannel()
    agent = agent_on(pushed)
    pushed.end("web (127.0.0.1:2222): Connection lost")
    assert agent.lost == "web (127.0.0.1:2222): Connection lost"
    with pytest.raises(AgentLost, match="Connection lost"):
        await agent.cancel("www")
