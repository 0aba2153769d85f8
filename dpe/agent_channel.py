"""dped's side of the guest agent: start it, speak to it, notice when it is lost.

``start_agent(connection)`` opens one long-lived channel on the instance's
pinned SSH connection running the guest's copy of the agent
(``dpe/guest_agent/pcloud_agent.py``, whose docstring is the protocol):

1. the channel runs ``<python> -I -S -c LOADER <dir>/agent-<hash>.py --lock
   <dir>/agent.lock --heartbeat <interval> [--phase <seconds>]`` (``LOADER``,
   of ``dpe.guest_agent``, runs the file as a module: see there why)
   where ``<dir>`` is ``${XDG_CACHE_HOME:-$HOME/.cache}/pacemaker-cloud`` by
   default (per SSH user; nothing is written elsewhere);
2. when that file is missing (exit ``EXIT_NO_FILE``), or the agent's ``hello``
   names another protocol or hash, or it ends without one (a stale or
   damaged copy), the file is uploaded on a second channel (older
   ``agent-*.py`` are removed) and the agent started again, once;
3. a guest where it cannot run (no such python: exit 127; Python older than
   3.9; an upload refused; an agent that still does not greet as it should
   after an upload) raises ``AgentUnsupported``, so that the engine monitors
   that guest passively and says why.

The ``AgentChannel`` then schedules and cancels recurring monitors, runs
one-shot operations, and yields what the agent reports (``MonitorChange``,
``ProcessDied``, then one ``AgentGone`` when it is lost) from ``events()``.
Its lines are taken as they arrive, in the transport's own callback where the
channel hands its output on (``PushingChannel``: a heartbeat wakes no task),
else from a task reading the channel.  Every line from the agent counts as a
sign of life; when none came for ``heartbeat_timeout`` the agent is lost ("no
heartbeat from the agent for 3.0 s"), unless dped's own loop was late (then
the reader gets its turn first, and on the engine's ``dpe.loop_lag.LagClock``
the time the loop was stalled does not count: overload is not failure).  Time
goes through an injectable clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shlex
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from dpe.agent_ops import AgentOutcome
from dpe.guest_agent import LOADER, AgentSource, agent_source
from dpe.guest_agent.pcloud_agent import (
    EXIT_TOO_OLD,
    HEARTBEAT_RANGE,
    MAX_REPLY_LINE,
    PROTOCOL,
    LineFramer,
)
from dpe.interfaces import Channel, Connection, OnEnd, PushingChannel
from dpe.loop_lag import LagClock
from foundation.clock import Clock, SystemClock, Timer, call_at
from foundation.errors import AgentError, InvalidInput, OperationTimeout, PcloudError, Unavailable

log = logging.getLogger(__name__)

DEFAULT_DIRECTORY = '"${XDG_CACHE_HOME:-$HOME/.cache}/pacemaker-cloud"'
EXIT_NO_FILE = 100  # the start command's: the guest has no copy of this version
EXIT_NO_PYTHON = 127
REQUEST_TIMEOUT = 10.0  # schedule and cancel are answered at once
REPLY_MARGIN = 5.0  # beyond an operation's timeout: the agent's own kill and answer
END_TIMEOUT = 2.0  # for the exit status of an agent whose output ended
_PYTHON_RE = re.compile(r"[A-Za-z0-9_./+-]{1,200}\Z")
# what an agent's error reply means here; any other code is a bad request (InvalidInput)
_REFUSALS: dict[str, type[PcloudError]] = {"busy": Unavailable, "internal": AgentError}
_T = TypeVar("_T")


class AgentUnsupported(Unavailable):
    """The guest cannot run the agent (no python3, too old, upload refused): monitor
    it passively."""


class AgentLost(Unavailable):
    """The agent's channel ended, or the agent went silent."""


@dataclass(frozen=True)
class AgentSettings:
    python: str = "python3"
    directory: str | None = None  # an absolute path on the guest; None: the per-user cache
    heartbeat_interval: float = 1.0  # how often the agent says it is alive
    # where in the interval (by the guest's wall clock) it says so: one wake-up of
    # dped for all the guests sharing it (``heartbeat_phase``); None: anywhere
    heartbeat_phase: float | None = None
    heartbeat_timeout: float = 3.0
    start_timeout: float = 10.0
    upload_timeout: float = 30.0

    def heartbeat_word(self) -> str:
        """The agent's ``--heartbeat`` value (within what the agent accepts)."""
        low, high = HEARTBEAT_RANGE
        return f"{min(max(self.heartbeat_interval, low), high):g}"

    def phase_words(self) -> str:
        """The agent's ``--phase`` option, if any (within the interval it is given)."""
        if self.heartbeat_phase is None:
            return ""
        interval_ms = round(float(self.heartbeat_word()) * 1000)
        phase_ms = round(self.heartbeat_phase * 1000) % interval_ms  # shorter than the interval
        return f" --phase {phase_ms / 1000:.3f}"

    def directory_word(self) -> str:
        """The directory as the start command's shell word."""
        return DEFAULT_DIRECTORY if self.directory is None else shlex.quote(self.directory)


@dataclass(frozen=True)
class Hello:
    protocol: int
    sha256: str
    pid: int
    python: str
    watch: str


@dataclass(frozen=True)
class MonitorChange:
    """A recurring monitor's result changed (``cause``: monitor, or watch)."""

    key: str
    outcome: AgentOutcome
    cause: str


@dataclass(frozen=True)
class ProcessDied:
    """A watched process died; the monitor's confirmation follows as a change."""

    key: str
    pid: int


@dataclass(frozen=True)
class AgentGone:
    """The agent is lost; the last event of ``events()``."""

    reason: str


AgentEvent = MonitorChange | ProcessDied | AgentGone


# ---------------------------------------------------------------------------
# starting


def start_command(settings: AgentSettings, source: AgentSource) -> str:
    """The guest shell command: 127 without python, ``EXIT_NO_FILE`` without the file."""
    python = _python_word(settings.python)
    path = f'"$d/{source.file_name}"'
    return (
        f"d={settings.directory_word()}; "
        f"command -v {python} >/dev/null 2>&1 || exit {EXIT_NO_PYTHON}; "
        f"[ -r {path} ] || exit {EXIT_NO_FILE}; "
        f'exec {python} -I -S -c {shlex.quote(LOADER)} {path} --lock "$d/agent.lock"'
        f" --heartbeat {settings.heartbeat_word()}{settings.phase_words()}"
    )


def upload_command(settings: AgentSettings, source: AgentSource) -> str:
    """Store standard input as this version's file (private, atomic); drop older ones
    and their compiled code."""
    name = source.file_name
    return (
        f'umask 077 && d={settings.directory_word()} && mkdir -p "$d" && '
        f't="$d/.upload-$$" && cat >"$t" && mv -f "$t" "$d/{name}" && '
        f'for f in "$d"/agent-*.py; do [ "$f" = "$d/{name}" ] || rm -f "$f"; done && '
        f'rm -f "$d"/__pycache__/agent-*.pyc'
    )


def _python_word(python: str) -> str:
    if not _PYTHON_RE.match(python):
        raise InvalidInput(f"not an interpreter name or path: {python!r}")
    return python


async def start_agent(
    connection: Connection,
    settings: AgentSettings | None = None,
    *,
    clock: Clock | None = None,
    label: str = "",
) -> AgentChannel:
    """Start the guest's agent (uploading it when needed); see the module docstring.

    Raises ``AgentUnsupported`` (fall back to passive monitoring),
    ``Unavailable`` or ``OperationTimeout`` (the connection's troubles)."""
    settings = settings or AgentSettings()
    clock = clock or SystemClock()
    source = agent_source()
    uploaded = False
    while True:
        channel = await connection.open_channel(
            start_command(settings, source), settings.start_timeout
        )
        lines = _Lines(channel)
        try:
            hello = await _within(
                clock, settings.start_timeout, _handshake(channel, lines, source, settings)
            )
        except _Replace as exc:
            lines.stop()
            channel.close()
            if uploaded:
                raise AgentUnsupported(
                    f"{label}: the guest's agent {exc} after an upload"
                ) from None
            log.info("%s: uploading the guest agent (%s)", label, exc)
            await upload_agent(connection, settings, source, clock)
            uploaded = True
            continue
        except BaseException:
            lines.stop()
            channel.close()
            raise
        return AgentChannel(channel, lines, hello, settings, clock=clock, label=label)


async def upload_agent(
    connection: Connection, settings: AgentSettings, source: AgentSource, clock: Clock
) -> None:
    """Write this version's file on the guest; ``AgentUnsupported`` when it cannot."""
    channel = await connection.open_channel(
        upload_command(settings, source), settings.upload_timeout
    )
    try:
        await _within(clock, settings.upload_timeout, channel.write(source.text))
        channel.write_eof()
        status = await _within(
            clock, settings.upload_timeout, channel.wait(settings.upload_timeout)
        )
    finally:
        channel.close()
    if status != 0:
        raise AgentUnsupported(
            f"the agent could not be stored on the guest (exit {status}): "
            + _last_line(channel.stderr_tail())
        )


class _Replace(Exception):
    """The guest's copy must be (re)placed: missing, or another version."""


async def _handshake(
    channel: Channel, lines: _Lines, source: AgentSource, settings: AgentSettings
) -> Hello:
    line = await lines.readline()
    if line is None:
        status = await channel.wait(END_TIMEOUT)
        raise _start_failure(status, channel.stderr_tail(), settings)
    hello = _hello(line)
    if hello is None:
        raise _Replace(f"does not greet as protocol {PROTOCOL} does: {line[:120]!r}")
    if hello.protocol != PROTOCOL or hello.sha256 != source.sha256:
        raise _Replace(f"is another version (protocol {hello.protocol}, {hello.sha256[:16]})")
    return hello


def _start_failure(status: int, stderr: str, settings: AgentSettings) -> Exception:
    if status == EXIT_NO_FILE:
        return _Replace("is missing")
    if status == EXIT_NO_PYTHON:
        return AgentUnsupported(f"no {settings.python} on the guest")
    if status == EXIT_TOO_OLD:
        return AgentUnsupported(f"{settings.python} on the guest is older than 3.9")
    # a damaged copy, or a guest where it cannot run: one upload tells which
    return _Replace(f"ended before greeting (status {status}: {_last_line(stderr)})")


def _hello(line: bytes) -> Hello | None:
    try:
        message = json.loads(line)
        if message.get("type") != "hello":
            return None
        return Hello(
            int(message["protocol"]),
            str(message["sha256"]),
            int(message["pid"]),
            str(message["python"]),
            str(message["watch"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else "(no message)"


class _Lines:
    """Lines from a channel, each at most ``MAX_REPLY_LINE`` bytes: awaited one at a
    time (the greeting), then handed to a listener as they arrive (``listen``)."""

    def __init__(self, channel: Channel) -> None:
        self.framer = LineFramer(MAX_REPLY_LINE)
        self.ready: deque[bytes] = deque()
        self.finished = False
        self.failure: str | None = None  # why the output ended, when it failed
        self._arrived = asyncio.Event()
        self._on_line: Callable[[bytes], None] | None = None
        self._on_end: OnEnd | None = None
        self.pump = _deliver(channel, self._data, self._finish)

    async def readline(self) -> bytes | None:
        """The next line; None at the end; ``AgentLost`` when the output failed."""
        while not self.ready and not self.finished:
            self._arrived.clear()
            await self._arrived.wait()
        if self.ready:
            return self.ready.popleft()
        if self.failure is not None:
            raise AgentLost(self.failure)
        return None

    def listen(self, on_line: Callable[[bytes], None], on_end: OnEnd) -> None:
        """From now on give each line to ``on_line`` (those waiting first), then
        call ``on_end`` once (as ``PushingChannel.deliver_to``)."""
        self._on_line, self._on_end = on_line, on_end
        while self.ready:
            on_line(self.ready.popleft())
        if self.finished:
            on_end(self.failure)

    def stop(self) -> None:
        """Nothing more is read (a reading task, if any, is cancelled)."""
        self._on_line = self._on_end = None
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()

    def _data(self, data: bytes) -> None:
        if self.finished:
            return
        for line in self.framer.feed(data):
            if line is LineFramer.TOO_LONG:
                self._finish(f"the agent sent a line over {MAX_REPLY_LINE} bytes")
                return
            if self._on_line is not None:
                self._on_line(line)
            else:
                self.ready.append(line)
                self._arrived.set()

    def _finish(self, failure: str | None) -> None:
        if self.finished:
            return
        self.finished, self.failure = True, failure
        if self._on_end is not None:
            self._on_end(failure)
        self._arrived.set()


def _deliver(
    channel: Channel, on_data: Callable[[bytes], None], on_end: OnEnd
) -> asyncio.Task[None] | None:
    """Hand ``channel``'s output on as it arrives: by the channel itself when it can
    (``PushingChannel``: the SSH transport's), else by a task that reads it."""
    if isinstance(channel, PushingChannel):
        channel.deliver_to(on_data, on_end)
        return None
    return asyncio.ensure_future(_pump(channel, on_data, on_end))


async def _pump(channel: Channel, on_data: Callable[[bytes], None], on_end: OnEnd) -> None:
    try:
        while data := await channel.read(65536):
            on_data(data)
    except Unavailable as exc:
        on_end(str(exc))
    else:
        on_end(None)


async def _within(clock: Clock, seconds: float, awaitable: Awaitable[_T]) -> _T:
    """``awaitable``'s value, or ``OperationTimeout`` after ``seconds`` of ``clock``."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()  # a task is cancelled only once it runs again: wait for that
            with contextlib.suppress(asyncio.CancelledError):
                await work
    if work.cancelled():
        raise OperationTimeout(f"the guest agent did not answer within {seconds:g} s")
    return work.result()


# ---------------------------------------------------------------------------
# speaking


class AgentChannel:
    """A running agent: requests, its reports, and its loss."""

    def __init__(
        self,
        channel: Channel,
        lines: _Lines,
        hello: Hello,
        settings: AgentSettings,
        *,
        clock: Clock,
        label: str = "",
    ) -> None:
        self.hello = hello
        self.label = label
        self.lost: str | None = None
        self.heartbeats = 0
        self.agent_runs = 0  # operations the agent started, as of its last heartbeat
        self._channel = channel
        self._lines = lines
        self._clock = clock
        self._timeout = settings.heartbeat_timeout
        self._last_heard = clock.monotonic()
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self._silence: Timer | None = None
        self._excused = False  # the silence's timer fired late once: the reader's turn
        self._ending: asyncio.Task[None] | None = None  # asks an ended agent's exit status
        self._expect_by(self._last_heard + self._timeout)
        lines.listen(self._heard, self._ended)

    # -- requests

    async def schedule(
        self,
        key: str,
        op: Mapping[str, Any],
        interval: float,
        watch: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``op`` (a monitor's ``OP``) every ``interval`` seconds, reporting changes."""
        request = {"type": "schedule", "key": key, "interval": interval, "op": dict(op)}
        await self._request(request | {"watch": dict(watch) if watch else None}, REQUEST_TIMEOUT)

    async def cancel(self, key: str) -> None:
        """After this returns, nothing more is reported for ``key``."""
        await self._request({"type": "cancel", "key": key}, REQUEST_TIMEOUT)

    async def run(self, op: Mapping[str, Any]) -> AgentOutcome:
        """Run ``op`` once; its outcome (``timed_out`` when the agent killed it)."""
        reply = await self._request({"type": "run", "op": dict(op)}, op["timeout"] + REPLY_MARGIN)
        try:
            return AgentOutcome.from_message(reply)
        except ValueError as exc:
            raise AgentLost(f"{self.label}: the agent answered nonsense: {exc}") from exc

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.lost is not None:
            raise AgentLost(f"{self.label}: {self.lost}")
        ident = str(next(self._ids))
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = reply
        try:
            await self._channel.write(_encode(message | {"id": ident}))
            answer = await _within(self._clock, timeout, asyncio.shield(reply))
        finally:
            self._pending.pop(ident, None)
        if answer.get("type") == "error":
            code = str(answer.get("code"))
            refusal = _REFUSALS.get(code, InvalidInput)
            raise refusal(
                f"{self.label}: the agent refused {message['type']}: "
                f"{code}: {answer.get('message')}"
            )
        return answer

    # -- reports

    async def events(self) -> AsyncIterator[AgentEvent]:
        """Changes and deaths as they come; ``AgentGone`` last."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, AgentGone):
                return

    @property
    def last_heard(self) -> float:
        """When the agent last said anything (the clock's ``monotonic``)."""
        return self._last_heard

    def silence(self) -> float:
        """Seconds since the agent last said anything."""
        return self._clock.monotonic() - self._last_heard

    def _heard(self, line: bytes) -> None:
        """A line from the agent, at once as it arrives (no task wakes for it)."""
        if self.lost is not None:
            return
        self._last_heard = self._clock.monotonic()
        self._excused = False
        self._expect_by(self._last_heard + self._timeout)
        self._dispatch(line)

    def _ended(self, failure: str | None) -> None:
        if failure is not None:
            self._lose(failure)
        elif self.lost is None:
            self._ending = asyncio.ensure_future(self._lose_at_end())

    async def _lose_at_end(self) -> None:
        self._lose(await self._end_reason())

    async def _end_reason(self) -> str:
        try:
            status = await _within(self._clock, END_TIMEOUT, self._channel.wait(END_TIMEOUT))
        except (OperationTimeout, Unavailable):
            return "the agent's channel ended"
        return f"the agent exited with status {status}: {_last_line(self._channel.stderr_tail())}"

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            kind = message["type"]
            if kind == "heartbeat":
                self.heartbeats += 1
                self.agent_runs = int(message.get("runs", 0))
            elif kind in ("ok", "result", "error"):
                self._answer(kind, message)
            elif kind == "change":
                outcome = AgentOutcome.from_message(message)
                self._events.put_nowait(MonitorChange(message["key"], outcome, message["cause"]))
            elif kind == "died":
                self._events.put_nowait(ProcessDied(message["key"], int(message["pid"])))
            else:
                log.warning("%s: the agent sent an unknown %r", self.label, kind)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: the agent sent a bad line (%s): %r", self.label, exc, line[:200])

    def _answer(self, kind: str, message: dict[str, Any]) -> None:
        reply = self._pending.get(str(message.get("id")))
        if reply is not None and not reply.done():
            reply.set_result(message)
        elif kind == "error":
            log.warning("%s: the agent says %s: %s", self.label, message.get("code"), message)

    # -- loss

    def _expect_by(self, when: float) -> None:
        """Look at the agent's silence at ``when``: one timer, set again by every
        line read, so while the agent speaks it never fires (a task sleeping to
        each deadline woke dped just after the heartbeats that had pushed it on)."""
        if self._silence is not None:
            self._silence.cancel()
        self._silence = call_at(self._clock, when, lambda: self._silence_due(when))

    def _silence_due(self, planned: float) -> None:
        """Lose the agent once it was silent for the timeout.

        Only the silence dped could have heard counts: on a ``LagClock`` the
        time its own loop was stalled is left out (``dpe.loop_lag``), and after
        a late wake-up the reader first gets its turn to read what waited."""
        self._silence = None
        if self.lost is not None:
            return
        grace = self._timeout / 3
        now = self._clock.monotonic()
        left = self._timeout - self.heard_silence()
        if now - planned > grace and not self._excused:
            self._excused = True  # our own loop was late: the reader gets its turn first
            self._expect_by(now + max(left, grace))
        elif left > 0:
            self._excused = False
            self._expect_by(now + left)
        else:
            self._lose(f"no heartbeat from the agent for {self.silence():.1f} s")

    def heard_silence(self) -> float:
        """The silence but the time dped's own loop was stalled meanwhile."""
        stalled = (
            self._clock.lag_since(self._last_heard) if isinstance(self._clock, LagClock) else 0
        )
        return self.silence() - stalled

    def _lose(self, reason: str) -> None:
        if self.lost is not None:
            return
        self.lost = reason
        log.warning("%s: guest agent lost: %s", self.label, reason)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(AgentLost(f"{self.label}: {reason}"))
        self._events.put_nowait(AgentGone(reason))
        self._lines.stop()
        self._channel.close()
        if self._silence is not None:
            self._silence.cancel()
        if self._ending is not None and self._ending is not asyncio.current_task():
            self._ending.cancel()

    async def close(self) -> None:
        """End the agent (its input ends: it kills what it runs and exits)."""
        self._channel.write_eof()
        self._lose("closed by dped")
        tasks = [task for task in (self._lines.pump, self._ending) if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
