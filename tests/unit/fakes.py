"""Hand-written fakes behind the engine's seams: clock, driver, transport.

``FakeClock`` runs time only when a test advances it (timer by timer, letting
every task run in between).  ``FakeWorld`` holds fake guests: each instance
the ``FakeDriver`` creates is a ``FakeGuest`` that understands the real
command lines ``dpe.agents`` builds (OCF environment, ``/etc/init.d``,
``systemctl``) and answers as agents would.  A test can kill a resource, kill
or freeze an instance, script return codes or make an agent hang; every
operation is logged, and the world checks two invariants as they happen:
never two live instances of one assembly, never a start before what it is
ordered after is running.

A guest also runs the guest agent in process when dped starts it over
``open_channel``: the real protocol code (``dpe.guest_agent.pcloud_agent.Agent``)
over a ``FakeChannel``, with its operations run against the guest's fake
services and its watches fired by ``kill_resource``.  A guest without python3
(``python = False``), without the agent's file, or with a stale copy answers
the start command as a real one would; ``FakeAgentProgram.kill`` and ``freeze``
stand for SIGKILL and SIGSTOP of the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import json
import re
import shlex
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpe.agent_channel import AgentSettings, start_command, upload_command
from dpe.engine import Engine, Planner
from dpe.engine_timing import EngineOptions
from dpe.guest_agent import agent_source
from dpe.guest_agent.pcloud_agent import MAX_LINE, Agent, LineFramer, OpSpec, Outcome, WatchSpec
from dpe.guest_agent.pcloud_agent import encode as encode_message
from dpe.interfaces import CommandResult, Instance, InstanceState
from dpe.runtime import MemoryRuntime
from foundation.errors import OperationTimeout, Unavailable
from foundation.events import Event
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Constraint, Deployable, Heartbeat

HANG = "hang"  # a scripted answer: the agent never returns


@dataclass(frozen=True)
class Slow:
    """A scripted answer that takes its time."""

    seconds: float
    status: int


Answer = int | str | Slow

# ---------------------------------------------------------------------------
# the clock


async def settle() -> None:
    """Let every runnable task run until all wait on something (timers, events)."""
    loop = asyncio.get_running_loop()
    quiet = 0
    for _ in range(100_000):
        await asyncio.sleep(0)
        quiet = quiet + 1 if not getattr(loop, "_ready", None) else 0
        if quiet >= 3:
            return
    raise AssertionError("tasks never settle (a busy loop?)")


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._seq), future))
        await future

    def _next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)  # cancelled sleeps
        return self._timers[0][0] if self._timers else None

    async def _fire_next(self) -> None:
        when, _, future = heapq.heappop(self._timers)
        self.now = max(self.now, when)
        if not future.done():
            future.set_result(None)
        await settle()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing each timer on the way in order."""
        target = self.now + seconds
        await settle()
        while (when := self._next_timer()) is not None and when <= target:
            await self._fire_next()
        self.now = max(self.now, target)  # a timer's callback may have moved it on itself
        await settle()

    async def run_until(self, condition: Callable[[], bool], within: float = 120.0) -> None:
        """Advance time timer by timer until ``condition()`` holds (at most ``within`` s)."""
        deadline = self.now + within
        await settle()
        while not condition():
            when = self._next_timer()
            if when is None:
                raise AssertionError("nothing left to happen and the condition never held")
            if when > deadline:
                raise AssertionError(f"the condition did not hold within {within:g} s")
            await self._fire_next()


# ---------------------------------------------------------------------------
# the world of fake guests


@dataclass(frozen=True)
class Op:
    """One command an agent ran, as a guest saw it."""

    time: float
    instance: str
    assembly: str
    resource: str  # OCF_RESOURCE_INSTANCE, or the lsb/systemd type
    op: str  # probe, start, stop, monitor
    interval: float
    params: dict[str, str]
    exit_status: int | str  # or HANG

    def __str__(self) -> str:
        return f"{self.op} {self.assembly}/{self.resource}"


@dataclass
class Service:
    running: bool = False
    script: dict[str, deque[Answer]] = field(default_factory=dict)
    pid: int = 0  # of the running process, for the guest agent's watches
    watchers: dict[int, Callable[[], None]] = field(default_factory=dict)

    def die(self) -> None:
        """Stop running; the agent's watches on its process fire (soon, as a pidfd's)."""
        self.running = False
        if self.watchers:
            loop = asyncio.get_running_loop()
            for on_death in self.watchers.values():
                loop.call_soon(on_death)
            self.watchers.clear()


@dataclass
class Parsed:
    rclass: str
    name: str
    op: str
    interval: float
    params: dict[str, str]


class FakeGuest:
    def __init__(self, world: FakeWorld, instance: Instance) -> None:
        self.world = world
        self.instance = instance
        self.alive = True  # sshd answers
        self.frozen = False  # sshd stopped (SIGSTOP): nothing answers, nothing refuses
        self.destroyed = False
        self.health_status = 0
        self.health_delay = 0.0  # how long the health command takes (over its timeout: hangs)
        self.health_commands = 0  # health commands run
        self.latency = 0.0  # how long sshd takes to answer
        self.services: dict[str, Service] = {}
        self.python = world.python  # python3 on the guest (the guest agent can run)
        self.agent_files: dict[str, bytes] = dict(world.agent_files)  # its copies, by name
        self.corrupt_uploads = False  # an upload stores something else (a broken disk)
        self.agent: FakeAgentProgram | None = None
        self.agents_started = 0

    @property
    def assembly(self) -> str:
        return self.instance.assembly

    def service(self, name: str) -> Service:
        return self.services.setdefault(name, Service())

    async def answer(self, timeout: float) -> None:
        """Whether the guest's sshd is there at all (after ``latency`` seconds)."""
        if self.frozen or self.latency > timeout:
            await self.world.clock.sleep(timeout)
            raise OperationTimeout(f"no answer within {timeout:g} s")
        await self.world.clock.sleep(self.latency)
        if not self.alive:
            raise Unavailable("connection reset by peer")

    async def run(self, command: str, timeout: float) -> CommandResult:
        await self.answer(timeout)
        if command == "uptime":
            self.health_commands += 1
            if self.health_delay > timeout:
                await self.world.clock.sleep(timeout)
                raise OperationTimeout(f"command timed out after {timeout:g} s")
            await self.world.clock.sleep(self.health_delay)
            return CommandResult(self.health_status, " 10:00:00 up 1 day", "")
        status = await self.perform(parse_agent_command(command), timeout)
        if status is None:
            raise OperationTimeout(f"command timed out after {timeout:g} s")
        return CommandResult(status, "", "")

    async def perform(self, parsed: Parsed, timeout: float) -> int | None:
        """An agent operation's exit status; None when it hung past ``timeout``."""
        status = self._behave(parsed)
        if isinstance(status, Slow):
            await self.world.clock.sleep(status.seconds)
            status = status.status
        self.world.record(self, parsed, status)
        if status == HANG:
            await self.world.clock.sleep(timeout)
            return None
        assert isinstance(status, int)
        return status

    async def open_channel(self, command: str, timeout: float) -> FakeChannel:
        """The guest agent's start and upload commands (default settings but the
        heartbeat's interval and phase), as a guest runs them."""
        await self.answer(timeout)
        channel = FakeChannel()
        settings, source = _agent_settings(command), agent_source()
        if command == start_command(settings, source):
            self._start_agent(channel, source.file_name, settings)
        elif command == upload_command(settings, source):
            channel.on_eof = lambda: self._store_upload(channel, source.file_name)
        else:
            raise AssertionError(f"not a guest agent command: {command!r}")
        return channel

    def _start_agent(self, channel: FakeChannel, file_name: str, settings: AgentSettings) -> None:
        if not self.python:
            channel.exit(127, "sh: 1: python3: not found\n")
            return
        text = self.agent_files.get(file_name)
        if text is None:
            channel.exit(100)
            return
        if self.agent is not None:
            self.agent.kill()  # the lock: a new agent kills the one before
        digest = hashlib.sha256(text).hexdigest()
        self.agent = FakeAgentProgram(self, channel, digest, settings)
        self.world.agents.append(self.agent)
        self.agents_started += 1

    def _store_upload(self, channel: FakeChannel, file_name: str) -> None:
        text = b"# damaged\n" if self.corrupt_uploads else bytes(channel.received)
        self.agent_files = {file_name: text}
        channel.exit(0)

    def _behave(self, parsed: Parsed) -> Answer:
        service = self.service(parsed.name)
        override = self.world.overrides.get((self.assembly, parsed.name, parsed.op))
        scripted = service.script.get(parsed.op)
        if scripted:
            return scripted.popleft()
        if override is not None:
            return override
        if parsed.op == "start":
            service.running = True
            service.pid = next(self.world.pids)
        elif parsed.op == "stop":
            service.running = False
            service.watchers.clear()  # a process stopped on purpose: no death to report
        elif not service.running:
            return _NOT_RUNNING[parsed.rclass]
        return 0


_NOT_RUNNING = {"ocf": 7, "lsb": 3, "systemd": 3}
_HEARTBEAT_RE = re.compile(r"--heartbeat ([0-9.]+)(?: --phase ([0-9.]+))?\Z")


def _agent_settings(command: str) -> AgentSettings:
    """The settings a start command was made with (only its heartbeat varies)."""
    found = _HEARTBEAT_RE.search(command)
    if not found:
        return AgentSettings()
    interval, phase = found.groups()
    return AgentSettings(
        heartbeat_interval=float(interval), heartbeat_phase=None if phase is None else float(phase)
    )


def parse_agent_command(command: str) -> Parsed:
    """Read back an agent command line built by ``dpe.agents.command``."""
    words = shlex.split(command)
    env = {}
    while words and "=" in words[0] and not words[0].startswith("/"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if words and words[0] == "timeout":  # the guest-side kill guard: timeout [-opts] DURATION
        words.pop(0)
        while words[0].startswith("-"):
            words.pop(0)
        words.pop(0)
    program, action = words[0], words[1] if len(words) > 1 else ""
    if program.startswith("/usr/lib/ocf/resource.d/"):
        interval = int(env.get("OCF_RESKEY_CRM_meta_interval", "0")) / 1000
        params = {
            k.removeprefix("OCF_RESKEY_"): v
            for k, v in env.items()
            if k.startswith("OCF_RESKEY_") and not k.startswith("OCF_RESKEY_CRM_meta")
        }
        op = "probe" if action == "monitor" and not interval else action
        return Parsed("ocf", env["OCF_RESOURCE_INSTANCE"], op, interval, params)
    if program.startswith("/etc/init.d/"):
        op = {"status": "monitor"}.get(action, action)
        return Parsed("lsb", program.rsplit("/", 1)[1], op, 0.0, {})
    if program == "systemctl":
        op = {"is-active": "monitor"}.get(action, action)
        return Parsed("systemd", words[2].removesuffix(".service"), op, 0.0, {})
    raise AssertionError(f"not an agent command: {command!r}")


# ---------------------------------------------------------------------------
# the guest agent, in process


class FakeChannel:
    """An in-memory ``dpe.interfaces.Channel``; the guest side pushes and exits."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.received = bytearray()
        self.status: int | None = None
        self.stderr = ""
        self.closed = False
        self.input_ended = False
        self.held = False
        self.on_input: Callable[[bytes], None] = lambda data: None
        self.on_eof: Callable[[], None] = lambda: None
        self._changed = asyncio.Event()

    # the guest's side
    def push(self, data: bytes) -> None:
        if self.status is None:
            self.output += data
            if not self.held:
                self._changed.set()

    def hold(self) -> None:
        """dped's loop is blocked: what the guest sends waits unread."""
        self.held = True

    def release(self) -> None:
        self.held = False
        self._changed.set()

    def exit(self, status: int, stderr: str = "") -> None:
        if self.status is None:
            self.status, self.stderr = status, self.stderr + stderr
            self._changed.set()

    # dped's side
    async def read(self, size: int) -> bytes:
        while (self.held or not self.output) and self.status is None and not self.closed:
            self._changed.clear()
            await self._changed.wait()
        chunk = bytes(self.output[:size])
        del self.output[:size]
        return chunk

    async def write(self, data: bytes) -> None:
        if self.closed or self.input_ended or self.status is not None:
            raise Unavailable("channel closed")
        self.received += data
        self.on_input(data)

    def write_eof(self) -> None:
        if not self.input_ended:
            self.input_ended = True
            self.on_eof()

    async def wait(self, timeout: float) -> int:
        while self.status is None:
            self._changed.clear()
            await self._changed.wait()
        return self.status

    def stderr_tail(self) -> str:
        return self.stderr

    def close(self) -> None:
        self.closed = True
        self._changed.set()
        self.write_eof()


class FakeAgentProgram:
    """The real agent's protocol code, run in process against a fake guest."""

    def __init__(
        self,
        guest: FakeGuest,
        channel: FakeChannel,
        digest: str,
        settings: AgentSettings = AgentSettings(),  # noqa: B008 - frozen
    ) -> None:
        self.guest = guest
        self.channel = channel
        self.frozen = False  # SIGSTOP: it says nothing and reads nothing
        self.refuse_runs: str | None = None  # an error code for every one-shot operation
        self.alive = True
        self.stopped: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()  # a test may kill it from outside the loop
        self._framer = LineFramer(MAX_LINE)
        self._held: list[bytes] = []
        clock = guest.world.clock
        self.agent = Agent(
            self._send,
            FakeAgentRunner(guest),
            FakeAgentWatcher(guest),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            digest=digest,
            heartbeat=settings.heartbeat_interval,
            phase=settings.heartbeat_phase,
            wall=clock.time,
        )
        channel.on_input = self._input
        channel.on_eof = lambda: self._end(0)
        self.agent.start()

    def _send(self, message: dict[str, Any]) -> None:
        if self.alive and not self.frozen and not self.guest.frozen:
            self.channel.push(encode_message(message))

    def _input(self, data: bytes) -> None:
        self._held += self._framer.feed(data)
        if not self.frozen:
            self.thaw()

    def messages(self) -> list[dict[str, Any]]:
        """What dped sent this agent, in order."""
        return [json.loads(line) for line in bytes(self.channel.received).splitlines()]

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False
        lines, self._held = self._held, []
        for line in lines:
            if not self._refused(line):
                self.agent.receive(line)

    def _refused(self, line: bytes) -> bool:
        """``refuse_runs``: a one-shot operation is refused with that error code."""
        if self.refuse_runs is None:
            return False
        message = json.loads(line)
        if message.get("type") != "run":
            return False
        self.agent.error(message["id"], self.refuse_runs, "refused by the test")
        return True

    def kill(self) -> None:
        """SIGKILL: it ends at once, exit status 137."""
        self._end(137)

    def _end(self, status: int) -> None:
        if self.alive:
            self.alive = False
            self.stopped = self._loop.create_task(self.agent.stop())
            self.channel.exit(status)


def op_as_parsed(spec: OpSpec) -> Parsed:
    """An agent ``OP`` as ``parse_agent_command`` reads the passive command line."""
    if spec.rclass == "ocf":
        interval = int(spec.env.get("OCF_RESKEY_CRM_meta_interval", "0")) / 1000
        params = {
            k.removeprefix("OCF_RESKEY_"): v
            for k, v in spec.env.items()
            if k.startswith("OCF_RESKEY_") and not k.startswith("OCF_RESKEY_CRM_meta")
        }
        op = "probe" if spec.action == "monitor" and not interval else spec.action
        return Parsed("ocf", spec.env["OCF_RESOURCE_INSTANCE"], op, interval, params)
    return Parsed(spec.rclass, spec.type.removesuffix(".service"), spec.action, 0.0, {})


class FakeAgentRunner:
    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest

    async def run(self, spec: OpSpec) -> Outcome:
        status = await self.guest.perform(op_as_parsed(spec), spec.timeout)
        return Outcome(None, timed_out=True) if status is None else Outcome(status)


class FakeAgentWatcher:
    """A running service's fake pid; its death (``Service.die``) fires the watch."""

    mode = "pidfd"

    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest

    async def find_pid(self, watch: WatchSpec, op: OpSpec) -> int | None:
        service = self.guest.services.get(op_as_parsed(op).name)
        return service.pid if service is not None and service.running else None

    def watch(self, pid: int, on_death: Callable[[], None]) -> FakeWatchHandle:
        for service in self.guest.services.values():
            if service.running and service.pid == pid:
                key = next(self.guest.world.pids)
                service.watchers[key] = on_death
                return FakeWatchHandle(service, key)
        asyncio.get_running_loop().call_soon(on_death)  # gone already
        return FakeWatchHandle(None, 0)


class FakeWatchHandle:
    def __init__(self, service: Service | None, key: int) -> None:
        self.service = service
        self.key = key

    def close(self) -> None:
        if self.service is not None:
            self.service.watchers.pop(self.key, None)


class FakeWorld:
    """Every guest ever created, the op log, and the invariants."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.guests: dict[str, FakeGuest] = {}
        self.ops: list[Op] = []
        self.violations: list[str] = []
        # (assembly, resource, op) -> exit status on every instance of the assembly
        self.overrides: dict[tuple[str, str, str], int | str] = {}
        self.constraints: Callable[[], Iterable[Constraint]] = tuple
        self.pids = itertools.count(1000)
        self.agents: list[FakeAgentProgram] = []  # every guest agent ever started
        self.python = True  # new guests have python3
        self.agent_files: dict[str, bytes] = {}  # and these copies of the agent
        self.keepalives = 0  # SSH keepalives answered or not, every guest
        self._believed: dict[tuple[str, str], bool] = {}  # what the engine's ops made true

    def live(self, assembly: str) -> list[FakeGuest]:
        return [g for g in self.guests.values() if g.assembly == assembly and not g.destroyed]

    def guest(self, assembly: str) -> FakeGuest:
        guests = self.live(assembly)
        assert len(guests) == 1, f"{assembly}: {len(guests)} live instances"
        return guests[0]

    def record(self, guest: FakeGuest, parsed: Parsed, status: int | str) -> None:
        self.ops.append(
            Op(
                self.clock.now,
                guest.instance.instance_id,
                guest.assembly,
                parsed.name,
                parsed.op,
                parsed.interval,
                parsed.params,
                status,
            )
        )
        key = (guest.assembly, parsed.name)
        if parsed.op == "start":
            self._check_order(guest.assembly, parsed.name)
        if parsed.op in ("start", "probe") and status == 0:
            self._believed[key] = True
        elif parsed.op == "stop" or (parsed.op == "probe" and status != 0):
            self._believed[key] = False

    def _check_order(self, assembly: str, resource: str) -> None:
        for c in self.constraints():
            if c.then.resource != resource or c.then.assembly not in ("", assembly):
                continue  # a service ("" assembly) may start on any of its assemblies
            if not self._running_anywhere(c.first.assembly, c.first.resource):
                self.violations.append(
                    f"{self.clock.now}: started {c.then} before {c.first} was running"
                )

    def _running_anywhere(self, assembly: str, resource: str) -> bool:
        if assembly:
            return bool(self._believed.get((assembly, resource)))
        return any(up for (_, name), up in self._believed.items() if name == resource)

    def forget(self, guest: FakeGuest) -> None:
        for key in list(self._believed):
            if key[0] == guest.assembly:
                self._believed[key] = False

    def ops_of(self, subject: str, since: int = 0) -> list[str]:
        """``["probe", "start", "monitor"...]`` for ``assembly/resource`` from op index ``since``."""
        assembly, resource = subject.split("/")
        return [o.op for o in self.ops[since:] if (o.assembly, o.resource) == (assembly, resource)]

    # -- what tests do to the world -------------------------------------------

    def kill_resource(self, assembly: str, resource: str) -> None:
        self.guest(assembly).service(resource).die()

    def script(self, assembly: str, resource: str, op: str, *answers: Answer) -> None:
        self.guest(assembly).service(resource).script.setdefault(op, deque()).extend(answers)

    def kill_instance(self, assembly: str) -> None:
        """The instance dies: sshd gone, everything in it gone (the driver sees it stopped)."""
        guest = self.guest(assembly)
        guest.alive = False
        for service in guest.services.values():
            service.running = False
        if guest.agent is not None:
            guest.agent.kill()

    def freeze_instance(self, assembly: str) -> None:
        self.guest(assembly).frozen = True

    async def end_agents(self) -> None:
        """Every guest agent ends (a test with a loop of its own, before closing it)."""
        for agent in self.agents:
            agent.kill()
        await asyncio.gather(*(a.stopped for a in self.agents if a.stopped is not None))


class FakeDriver:
    name = "fake"

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.created: list[Instance] = []
        self.destroyed: list[str] = []
        self.fail_create: str | None = None  # a message: create raises it
        self.create_delay = 0.0  # seconds a create takes (a VM boots)
        self._numbers = itertools.count(2)

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        if self.fail_create:
            raise Unavailable(self.fail_create)
        await self.world.clock.sleep(self.create_delay)
        if self.world.live(assembly.name):
            self.world.violations.append(
                f"{self.world.clock.now}: a second live instance of {assembly.name} created"
            )
        n = next(self._numbers)
        instance = Instance(
            instance_id=f"{assembly.name}-{n}",
            deployable=deployable,
            assembly=assembly.name,
            address=f"1.2.3.{n}",
            hostname=f"{assembly.name}-{n}.example",
            ssh_host="127.0.0.1",
            ssh_port=20000 + n,
            created_at=self.world.clock.now,
        )
        self.world.guests[instance.instance_id] = FakeGuest(self.world, instance)
        self.created.append(instance)
        return instance

    async def destroy(self, instance_id: str) -> None:
        guest = self.world.guests.get(instance_id)
        if guest is None or guest.destroyed:
            return
        guest.destroyed, guest.alive = True, False
        self.destroyed.append(instance_id)
        self.world.forget(guest)

    async def state(self, instance_id: str) -> InstanceState:
        guest = self.world.guests.get(instance_id)
        if guest is None or guest.destroyed:
            return InstanceState.GONE
        return InstanceState.RUNNING if guest.alive else InstanceState.STOPPED

    async def list(self, deployable: str) -> list[Instance]:
        return [
            _with_state(g.instance, await self.state(g.instance.instance_id))
            for g in self.world.guests.values()
            if g.instance.deployable == deployable and not g.destroyed
        ]


class FakeWatch:
    def __init__(self, driver: WatchingFakeDriver) -> None:
        self.driver = driver
        self.closed = False

    def close(self) -> None:
        self.closed = True


class WatchingFakeDriver(FakeDriver):
    """A ``FakeDriver`` that is also an ``InstanceWatcher`` (as libvirt's is).

    Like libvirt's, it reports no event for its own ``destroy``; a test makes
    an instance die with ``crash`` (the guest dies and the event is delivered)
    or delivers any event it likes with ``report``.
    """

    name = "fake-watching"

    def __init__(self, world: FakeWorld, heartbeat_defaults: Heartbeat | None = None) -> None:
        super().__init__(world)
        self.callbacks: list[Callable[[str, InstanceState], None]] = []
        self.watches: list[FakeWatch] = []
        if heartbeat_defaults is not None:
            self.heartbeat_defaults = heartbeat_defaults
        self.closed = 0  # times ``close`` was awaited (libvirt's drops its connection)

    async def close(self) -> None:
        self.closed += 1

    async def watch(self, callback: Callable[[str, InstanceState], None]) -> FakeWatch:
        self.callbacks.append(callback)
        watch = FakeWatch(self)
        self.watches.append(watch)
        return watch

    def report(self, instance_id: str, state: InstanceState) -> None:
        """Deliver an event to every open watch (in the caller's loop, as libvirt's)."""
        for callback, watch in zip(self.callbacks, self.watches, strict=True):
            if not watch.closed:
                callback(instance_id, state)

    def crash(self, assembly: str) -> str:
        """The assembly's instance dies and the event says so; returns its id."""
        guest = self.world.guest(assembly)
        self.world.kill_instance(assembly)
        self.report(guest.instance.instance_id, InstanceState.STOPPED)
        return guest.instance.instance_id


def _with_state(instance: Instance, state: InstanceState) -> Instance:
    return Instance(**{**instance.__dict__, "state": state})


class FakeConnection:
    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest
        self.closed = False

    async def run(self, command: str, timeout: float) -> CommandResult:
        self._check()
        return await self.guest.run(command, timeout)

    async def keepalive(self, timeout: float) -> None:
        self._check()
        self.guest.world.keepalives += 1
        await self.guest.answer(timeout)

    async def open_channel(self, command: str, timeout: float) -> FakeChannel:
        self._check()
        return await self.guest.open_channel(command, timeout)

    async def close(self) -> None:
        self.closed = True

    def _check(self) -> None:
        if self.closed:
            raise Unavailable("connection closed")


class FakeTransport:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.connections: list[FakeConnection] = []

    async def connect(
        self, instance: Instance, keys: AssemblyKeys, timeout: float
    ) -> FakeConnection:
        guest = self.world.guests.get(instance.instance_id)
        if guest is None or guest.destroyed:
            raise Unavailable(f"connection refused by {instance.ssh_host}:{instance.ssh_port}")
        await guest.answer(timeout)
        connection = FakeConnection(guest)
        self.connections.append(connection)
        return connection


def fake_keys(assembly: str) -> AssemblyKeys:
    return AssemblyKeys(
        private_key=Path("/nonexistent", assembly),
        public_key=f"ssh-rsa AAAA{assembly} root",
        host_private_key=Path("/nonexistent", f"{assembly}.host"),
        host_public_key=f"ssh-rsa AAAAhost{assembly}",
    )


# ---------------------------------------------------------------------------
# a whole set-up


FAST = EngineOptions(lease_ttl=5.0, lease_renew=1.0, lease_wait=10.0)


MONITORING: list[str] = []  # a test module's mode for every harness (``monitoring_mode``)


@contextlib.contextmanager
def monitoring_mode(mode: str) -> Iterator[None]:
    """Every document a harness is given runs with ``mode`` (active or passive)."""
    MONITORING.append(mode)
    try:
        yield
    finally:
        MONITORING.pop()


class Harness:
    """A fake world, a runtime, and engines over them.

    ``monitoring`` (or the mode of ``monitoring_mode``) replaces the
    documents' own: give reloads through ``Harness.reload`` to keep it."""

    def __init__(
        self,
        runtime: MemoryRuntime | None = None,
        driver: Callable[[FakeWorld], FakeDriver] = FakeDriver,
        monitoring: str | None = None,
    ) -> None:
        self.monitoring = monitoring or (MONITORING[-1] if MONITORING else None)
        self.clock = FakeClock()
        self.world = FakeWorld(self.clock)
        self.driver = driver(self.world)
        self.transport = FakeTransport(self.world)
        self.runtime = runtime
        self.engine: Engine | None = None

    def new_engine(
        self, document: Deployable, holder: str = "test:1", planner: Planner | None = None
    ) -> Engine:
        if self.runtime is None:
            self.runtime = MemoryRuntime(document.name)
        engine = Engine(
            self.document(document),
            driver=self.driver,
            transport=self.transport,
            runtime=self.runtime,
            keys=fake_keys,
            clock=self.clock,
            options=FAST,
            holder=holder,
            planner=planner,
        )
        # a start is checked against the document its transition was planned with
        self.world.constraints = lambda: engine.level.planned.constraints
        self.engine = engine
        return engine

    async def start(self, document: Deployable, **kwargs: Any) -> Engine:
        engine = self.new_engine(document)
        await engine.start(**kwargs)
        await settle()
        return engine

    def document(self, document: Deployable) -> Deployable:
        """``document`` in this harness's monitoring mode."""
        if self.monitoring is None:
            return document
        return dataclasses.replace(document, monitoring=self.monitoring)

    async def reload(self, document: Deployable) -> None:
        assert self.engine is not None
        await self.engine.reload(self.document(document))

    @property
    def events(self) -> list[Event]:
        assert self.runtime is not None
        return self.runtime.events

    def story(self, subject: str | None = None, since: int = 0) -> list[str]:
        """``["a1/x running: started", ...]`` — the events, optionally of one subject."""
        lines = []
        for e in self.events[since:]:
            name = "/".join(p for p in (e.assembly, e.resource) if p) or e.deployable
            if subject is None or name == subject:
                lines.append(f"{name} {e.state}: {e.reason}")
        return lines

    def state(self, subject: str) -> str:
        assert self.engine is not None
        status = self.engine.status()
        if "/" in subject:
            return str(status["resources"][subject]["state"])
        if subject == self.engine.name:
            return str(status["state"])
        return str(status["assemblies"][subject]["state"])

    async def until(self, condition: Callable[[], bool], within: float = 120.0) -> None:
        await self.clock.run_until(condition, within)

    async def until_event(self, line: str, within: float = 120.0) -> None:
        """Until the story has ``line`` (``"a1 failed: no heartbeat for 3.0 s"``)."""
        await self.until(lambda: line in self.story(), within)

    async def until_event_starting(self, prefix: str, within: float = 120.0) -> str:
        """Until a line of the story starts with ``prefix``; that line."""
        await self.until(lambda: any(line.startswith(prefix) for line in self.story()), within)
        return next(line for line in self.story() if line.startswith(prefix))

    async def until_state(self, subject: str, state: str, within: float = 120.0) -> None:
        await self.until(lambda: self.state(subject) == state, within)
