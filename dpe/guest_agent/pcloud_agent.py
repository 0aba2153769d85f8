"""pacemaker-cloud guest agent: runs resource agent operations inside a guest.

dped starts this file over its pinned SSH connection as one long-lived session
(``python3 -I -S -c LOADER agent-<hash>.py --lock <dir>/agent.lock``: ``LOADER``
runs the file as a module, see ``dpe/guest_agent/__init__.py``) and speaks to it on
that session's standard input and output.  Nothing listens, no port is opened,
it runs as the SSH user.  Standard library only; Python 3.9 or newer.  One file
of this size on purpose: dped copies it into the guest whole and checks its
hash, so it can import nothing of its own.

It runs recurring monitors where the resource lives and reports a result only
when it changes; it runs one-shot operations (probe, start, stop); it watches
the process of a resource where there is one to watch (a pidfile, a systemd
unit's main process) so that a death is seen at once and confirmed by the
monitor; and it sends a heartbeat every second (``--heartbeat SECONDS``: dped
passes its deployable's heartbeat interval).  With ``--phase SECONDS`` the
heartbeats fall on the wall clock's multiples of the interval plus the phase:
dped gives every agent of a deployable the same phase, so the heartbeats of
all its guests arrive together and dped wakes once an interval for them all,
not once per guest (waking, not reading, is most of an idle dped's CPU).  A
step of the wall clock only moves the next heartbeat earlier, never later
than an interval after the last.

Protocol, version 1
===================

Line-delimited JSON: one object per line, UTF-8, at most ``MAX_LINE`` bytes a
line (dped's lines; the agent's own lines stay under ``MAX_REPLY_LINE``).
Every object has a ``type``.  The agent's first line is ``hello``; dped refuses
an agent whose ``protocol`` or ``sha256`` is not the one it ships, and replaces
its file.

dped -> agent
-------------
``{"type": "schedule", "id": ID, "key": KEY, "interval": SECONDS, "op": OP, "watch": WATCH|null}``
    Run ``OP`` (a monitor) now and then every ``interval`` seconds (from the
    start of one run to the next; runs of one key never overlap).  The first
    result is always reported, later ones only when they change.  A schedule
    for a key already scheduled replaces it.  Answered by ``ok``.
``{"type": "cancel", "id": ID, "key": KEY}``
    Stop a recurring operation (an unknown key is no error); a run in flight
    is killed and never reported.  After the ``ok``, nothing more is reported
    for that key.
``{"type": "run", "id": ID, "op": OP}``
    Run one operation once; answered by ``result``.

``OP``: ``{"resource": NAME, "class": "ocf"|"lsb"|"systemd", "provider": NAME
(ocf), "type": NAME, "action": "start"|"stop"|"monitor", "env": {VAR: TEXT},
"timeout": SECONDS}``.  The command is built here, never through a shell:
``/usr/lib/ocf/resource.d/<provider>/<type> <action>``, ``/etc/init.d/<type>
start|stop|status`` or ``systemctl start|stop|is-active <type>.service``, with
the session's environment plus ``env`` (dped's ``OCF_*`` variables).  Names
follow the document model's rule; values are passed as they are, inert.
Operations of one ``resource`` run one at a time, in arrival order (as
Pacemaker's executor does): a monitor never runs beside a start or a stop.
An operation still running at its timeout is killed with its whole process
group (SIGKILL), and reported as timed out.

``WATCH``: ``{"kind": "pidfile", "path": PATH}`` (absolute, or relative to the
guest's ``$HA_VARRUN``, default ``/var/run``) or ``{"kind": "systemd"}`` (the
unit's ``MainPID``).  After a monitor succeeds the agent reads the pid and
watches it (a pidfd; polling ``/proc`` every ``POLL_INTERVAL`` where pidfds are
missing).  When it dies the agent says ``died`` at once and runs the monitor
again: only the monitor's result counts, so a watch never makes a failure.
While the monitor still sees a dead process as running (a zombie not yet
reaped), it is asked again after 20, 40, 80 ... ms.  A systemd unit's main pid
is read once per success and watched like any other: no D-Bus subscription, no
process kept beside the agent, and a main process replaced while the unit stays
active only re-arms the watch (``is-active`` still succeeds).  Where the agent
runs as root it asks systemd itself, on its private socket
(``/run/systemd/private``: a connection, a message and its answer), for a
unit's ``ActiveState`` (a monitor: status 0 when ``active`` or ``reloading``, 3
otherwise, as ``systemctl is-active``) and a service's ``MainPID``; elsewhere,
or when systemd does not answer so within ``BUS_TIMEOUT``, it runs
``systemctl is-active`` and ``systemctl show --property=MainPID --value``.  A unit without a main pid (``Type=oneshot``) is left
to its recurring monitor, as are agents without a pidfile.

``ID``: a string of at most 64 characters, echoed in the answer.
``KEY``: a string of at most 200 printable characters.

agent -> dped
-------------
``{"type": "hello", "protocol": 1, "sha256": HEX, "pid": N, "python": "3.11.2", "watch": "pidfd"|"poll"}``
``{"type": "heartbeat", "seq": N, "runs": N}``  every ``--heartbeat`` seconds (at most)
(``HEARTBEAT_INTERVAL`` by default; ``runs``: operations started so far)
``{"type": "ok", "id": ID}``
``{"type": "result", "id": ID, ...OUTCOME}``
``{"type": "change", "key": KEY, "cause": "monitor"|"watch", ...OUTCOME}``
``{"type": "died", "key": KEY, "pid": N}``
``{"type": "error", "id": ID|null, "key": KEY (a recurring op's), "code": CODE, "message": TEXT}``

``OUTCOME``: ``"exit_status": N|null, "timed_out": BOOL, "stdout": TEXT,
"stderr": TEXT, "duration": SECONDS``.  ``exit_status`` reads as a shell's
would: 128+N for a death by signal N, 127 when the agent's program is missing,
126 when it cannot be executed; null when timed out.  Output is the last
``OUTPUT_LIMIT`` characters of each stream.

Error codes: ``invalid`` (not JSON, not an object, a field missing or wrong),
``unknown_type``, ``too_long`` (a line over ``MAX_LINE``: discarded), ``busy``
(too many operations or keys), ``internal`` (a bug here: the agent goes on).
An unknown message never stops the agent.

The agent exits when its standard input ends (dped went away or closed the
session) or on SIGTERM/SIGHUP, killing the operations it still runs.  With
``--lock``, a new agent kills the one holding the lock first (a stuck agent is
replaced, not left beside the new one).  Exit statuses before ``hello``:
``EXIT_TOO_OLD`` (Python older than 3.9), ``EXIT_LOCKED`` (the lock could not
be taken).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import signal
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

EXIT_TOO_OLD = 101
if sys.version_info < (3, 9):  # noqa: UP036 - older guests get a clear exit before anything newer runs
    sys.stderr.write("pcloud-agent: Python 3.9 or newer is needed\n")
    sys.exit(EXIT_TOO_OLD)

PROTOCOL = 1
MAX_LINE = 256 * 1024
MAX_REPLY_LINE = 1024 * 1024
OUTPUT_LIMIT = 16 * 1024  # characters kept of each output stream
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_RANGE = (0.05, 60.0)  # what --heartbeat accepts, in seconds
POLL_INTERVAL = 0.1  # /proc polling where there are no pidfds
MAX_KEYS = 1024
MAX_RUNNING = 64  # one-shot operations at once
MAX_ENV = 256
MAX_BACKLOG = 8 * 1024 * 1024  # unread output: dped is not reading, give up
CONFIRM_DELAYS = (0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
KILL_WAIT = 5.0  # how long a killed operation may take to be reaped
LOCK_WAIT = 5.0
EXIT_LOCKED = 102

OCF_ROOT = "/usr/lib/ocf"
INIT_D = "/etc/init.d"
DEFAULT_VARRUN = "/var/run"
CLASSES = ("ocf", "lsb", "systemd")
ACTIONS = ("start", "stop", "monitor")
LSB_ACTIONS = {"start": "start", "stop": "stop", "monitor": "status"}
SYSTEMD_ACTIONS = {"start": "start", "stop": "stop", "monitor": "is-active"}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
ID_RE = re.compile(r"[\x21-\x7e]{1,64}\Z")
KEY_RE = re.compile(r"[\x20-\x7e]{1,200}\Z")
_SIGNALLED = 128
_NOT_FOUND = 127
_NOT_EXECUTABLE = 126
_SYSTEMCTL_TIMEOUT = 5.0
_PIDFILE_LIMIT = 64


class BadMessage(Exception):
    """A message the agent refuses; becomes an ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------
# what is asked


@dataclass(frozen=True)
class OpSpec:
    """One resource agent operation, as dped asks for it (validated)."""

    resource: str
    rclass: str
    provider: str
    type: str
    action: str
    env: dict[str, str]
    timeout: float

    def argv(self) -> list[str]:
        """The command: the agent's path and its action (no shell, ever)."""
        if self.rclass == "ocf":
            return [f"{OCF_ROOT}/resource.d/{self.provider}/{self.type}", self.action]
        if self.rclass == "lsb":
            return [f"{INIT_D}/{self.type}", LSB_ACTIONS[self.action]]
        return ["systemctl", SYSTEMD_ACTIONS[self.action], self.unit]

    @property
    def unit(self) -> str:
        """``<type>.service``, unless the type already names a unit."""
        return self.type if self.type.endswith(".service") else self.type + ".service"


@dataclass(frozen=True)
class WatchSpec:
    kind: str  # pidfile | systemd
    path: str = ""


@dataclass(frozen=True)
class Outcome:
    """What an operation did: its exit status (None when it timed out) and output."""

    exit_status: int | None
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def state(self) -> tuple[int | None, bool]:
        """What change detection compares: the status, not the output."""
        return (self.exit_status, self.timed_out)

    def fields(self) -> dict[str, Any]:
        return {
            "exit_status": self.exit_status,
            "timed_out": self.timed_out,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 6),
        }


def parse_line(line: bytes) -> dict[str, Any]:
    """One line as a JSON object; raises ``BadMessage``."""
    try:
        value = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessage("invalid", f"not a JSON line: {exc}") from None
    if not isinstance(value, dict):
        raise BadMessage("invalid", "a message must be a JSON object")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def message_id(message: dict[str, Any]) -> str | None:
    """The message's ``id`` when it is a valid one (for the error reply)."""
    value = message.get("id")
    return value if isinstance(value, str) and ID_RE.match(value) else None


def require_id(message: dict[str, Any]) -> str:
    value = message_id(message)
    if value is None:
        raise BadMessage("invalid", "id: a string of 1 to 64 printable characters is required")
    return value


def require_key(message: dict[str, Any]) -> str:
    value = message.get("key")
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise BadMessage("invalid", "key: a string of 1 to 200 printable characters is required")
    return value


def require_seconds(value: object, what: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadMessage("invalid", f"{what}: a number of seconds is required")
    seconds = float(value)
    if not (math.isfinite(seconds) and minimum <= seconds <= maximum):
        raise BadMessage("invalid", f"{what}: must be between {minimum:g} and {maximum:g} s")
    return seconds


def parse_op(value: object) -> OpSpec:
    """An ``OP`` object, checked field by field; raises ``BadMessage``."""
    if not isinstance(value, dict):
        raise BadMessage("invalid", "op: an object is required")
    _only_keys(value, ("resource", "class", "provider", "type", "action", "env", "timeout"), "op")
    rclass = _choice(value.get("class"), CLASSES, "op.class")
    return OpSpec(
        resource=_name(value.get("resource"), "op.resource"),
        rclass=rclass,
        provider=_name(value.get("provider"), "op.provider") if rclass == "ocf" else "",
        type=_name(value.get("type"), "op.type"),
        action=_choice(value.get("action"), ACTIONS, "op.action"),
        env=parse_env(value.get("env", {})),
        timeout=require_seconds(value.get("timeout"), "op.timeout", 0.001, 86400.0),
    )


def parse_env(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise BadMessage("invalid", f"op.env: an object of at most {MAX_ENV} variables")
    env: dict[str, str] = {}
    for name, text in value.items():
        if not ENV_NAME_RE.match(name):
            raise BadMessage("invalid", f"op.env: not a variable name: {name[:80]!r}")
        if not isinstance(text, str) or "\0" in text:
            raise BadMessage("invalid", f"op.env.{name}: a string without NUL is required")
        env[name] = text
    return env


def parse_watch(value: object) -> WatchSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadMessage("invalid", "watch: an object or null is required")
    kind = _choice(value.get("kind"), ("pidfile", "systemd"), "watch.kind")
    if kind == "systemd":
        _only_keys(value, ("kind",), "watch")
        return WatchSpec(kind)
    _only_keys(value, ("kind", "path"), "watch")
    path = value.get("path")
    if not isinstance(path, str) or not 0 < len(path) <= 4096 or "\0" in path:
        raise BadMessage("invalid", "watch.path: a path is required")
    return WatchSpec(kind, path)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadMessage("invalid", f"{what}: not a valid name")
    return value


def _choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise BadMessage("invalid", f"{what}: must be one of {', '.join(choices)}")
    assert isinstance(value, str)
    return value


def _only_keys(value: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    unknown = sorted(k for k in value if k not in known)
    if unknown:
        raise BadMessage("invalid", f"{what}: unknown fields {', '.join(unknown)[:200]}")


# ---------------------------------------------------------------------------
# lines


class LineFramer:
    """Splits a byte stream into lines of at most ``limit`` bytes.

    A longer line is discarded (to its end) and stands as ``TOO_LONG`` (this very
    object: compare with ``is``; no line read is ever it)."""

    TOO_LONG = b"\0too long"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._scanned = 0
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._overflow(lines)
                return lines
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
            elif len(line) > self.limit:
                lines.append(self.TOO_LONG)
            else:
                lines.append(line)

    def _overflow(self, lines: list[bytes]) -> None:
        self._scanned = len(self._buffer)
        if self._scanned <= self.limit:
            return
        self._buffer.clear()
        self._scanned = 0
        if not self._discarding:
            self._discarding = True
            lines.append(self.TOO_LONG)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"


# ---------------------------------------------------------------------------
# seams: running operations and watching processes


class Runner(Protocol):
    async def run(self, spec: OpSpec) -> Outcome:
        """Run one operation to its end or its timeout; never raises for its failure."""
        ...


class Handle(Protocol):
    def close(self) -> None: ...


class Watcher(Protocol):
    mode: str  # pidfd | poll (in hello)

    async def find_pid(self, watch: WatchSpec, op: OpSpec) -> int | None:
        """The pid the watch names now (None: nothing to watch)."""
        ...

    def watch(self, pid: int, on_death: Callable[[], None]) -> Handle:
        """Call ``on_death`` once, soon after ``pid`` dies (at once if it is gone)."""
        ...


Send = Callable[[dict[str, Any]], None]
Sleep = Callable[[float], Awaitable[None]]
Monotonic = Callable[[], float]
WallClock = Callable[[], float]


# ---------------------------------------------------------------------------
# the agent


class Serializer:
    """One operation at a time per resource, in arrival order."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> Any:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[name] -= 1
            if not self._users[name]:
                del self._users[name], self._locks[name]


class Agent:
    """The protocol's state: recurring operations, one-shot ones, heartbeats.

    I/O is injected: ``send`` writes one message, ``runner`` runs operations,
    ``watcher`` watches processes, ``sleep`` and ``monotonic`` are the clock
    (dped's tests drive them with their own); with ``phase`` set, ``wall``
    places the heartbeats (``phase`` seconds past the interval's multiples)."""

    def __init__(
        self,
        send: Send,
        runner: Runner,
        watcher: Watcher,
        *,
        sleep: Sleep = asyncio.sleep,
        monotonic: Monotonic = time.monotonic,
        digest: str = "",
        heartbeat: float = HEARTBEAT_INTERVAL,
        phase: float | None = None,
        wall: WallClock = time.time,
    ) -> None:
        self.send = send
        self.runner = runner
        self.watcher = watcher
        self.sleep = sleep
        self.monotonic = monotonic
        self.digest = digest
        self.heartbeat = heartbeat
        self.phase = phase
        self.wall = wall
        self.serializer = Serializer()
        self.runs = 0
        self.recurring: dict[str, Recurring] = {}
        self._one_shots: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "schedule": self._schedule,
            "cancel": self._cancel,
            "run": self._run,
        }

    def start(self) -> None:
        self.send(self.hello())
        self._heartbeat = spawn(self._beat(), self)

    def hello(self) -> dict[str, Any]:
        version = ".".join(str(n) for n in sys.version_info[:3])
        return {
            "type": "hello",
            "protocol": PROTOCOL,
            "sha256": self.digest,
            "pid": os.getpid(),
            "python": version,
            "watch": self.watcher.mode,
        }

    async def _beat(self) -> None:
        seq = 0
        while True:
            seq += 1
            self.send({"type": "heartbeat", "seq": seq, "runs": self.runs})
            await self.sleep(self.until_next_beat())

    def until_next_beat(self) -> float:
        """Seconds to the next heartbeat: an interval, or less to reach the phase."""
        if self.phase is None:
            return self.heartbeat
        past = (self.wall() - self.phase) % self.heartbeat
        return self.heartbeat - past

    async def stop(self) -> None:
        """Cancel everything (killing what runs) and wait for it to end."""
        tasks = [r.task for r in self.recurring.values()] + list(self._one_shots)
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
        for recurring in self.recurring.values():
            recurring.close()
        self.recurring.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- messages

    def receive(self, line: bytes) -> None:
        """Handle one line; never raises (a refusal is an ``error`` reply)."""
        if line is LineFramer.TOO_LONG:
            self.error(None, "too_long", f"line longer than {MAX_LINE} bytes, discarded")
            return
        message: dict[str, Any] = {}
        try:
            message = parse_line(line)
            self._dispatch(message)
        except BadMessage as exc:
            self.error(message_id(message), exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the agent
            self.error(message_id(message), "internal", f"{type(exc).__name__}: {exc}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise BadMessage("unknown_type", f"unknown message type {str(kind)[:40]!r}")
        handler(message)

    def _schedule(self, message: dict[str, Any]) -> None:
        _only_keys(message, ("type", "id", "key", "interval", "op", "watch"), "schedule")
        ident, key = require_id(message), require_key(message)
        interval = require_seconds(message.get("interval"), "interval", 0.01, 86400.0)
        op, watch = parse_op(message.get("op")), parse_watch(message.get("watch"))
        if op.action != "monitor":
            raise BadMessage("invalid", "op.action: only monitors recur")
        if key not in self.recurring and len(self.recurring) >= MAX_KEYS:
            raise BadMessage("busy", f"at most {MAX_KEYS} recurring operations")
        self._drop(key)
        self.recurring[key] = Recurring(self, key, op, interval, watch)
        self.send({"type": "ok", "id": ident})

    def _cancel(self, message: dict[str, Any]) -> None:
        _only_keys(message, ("type", "id", "key"), "cancel")
        ident, key = require_id(message), require_key(message)
        self._drop(key)
        self.send({"type": "ok", "id": ident})

    def _drop(self, key: str) -> None:
        recurring = self.recurring.pop(key, None)
        if recurring is not None:
            recurring.close()
            recurring.task.cancel()

    def _run(self, message: dict[str, Any]) -> None:
        _only_keys(message, ("type", "id", "op"), "run")
        ident, op = require_id(message), parse_op(message.get("op"))
        if len(self._one_shots) >= MAX_RUNNING:
            raise BadMessage("busy", f"at most {MAX_RUNNING} operations at once")
        task = spawn(self._run_once(ident, op), self)
        self._one_shots.add(task)
        task.add_done_callback(self._one_shots.discard)

    async def _run_once(self, ident: str, op: OpSpec) -> None:
        try:
            outcome = await self.execute(op)
        except Exception as exc:  # noqa: BLE001 - a bug here: the request still gets its answer
            self.error(ident, "internal", f"{type(exc).__name__}: {exc}")
            return
        self.send({"type": "result", "id": ident, **outcome.fields()})

    async def execute(self, op: OpSpec) -> Outcome:
        async with self.serializer.hold(op.resource):
            self.runs += 1
            return await self.runner.run(op)

    def error(self, ident: str | None, code: str, message: str, **extra: str) -> None:
        self.send({"type": "error", "id": ident, "code": code, "message": message, **extra})

    async def sleep_or_wake(self, alarm: Alarm, seconds: float) -> None:
        """Sleep ``seconds`` through the injected clock, or until ``alarm`` rings.

        On the real clock the loop's own timer wakes the waiter: no task, so a
        recurring run costs the loop one wake-up for its sleep, not three."""
        if not alarm.rung:
            loop = asyncio.get_running_loop()
            waiter = alarm.waiter = loop.create_future()
            sleeper: asyncio.TimerHandle | asyncio.Future[None]
            if self.sleep is asyncio.sleep:
                sleeper = loop.call_later(max(0.0, seconds), _resolve, waiter)
            else:
                sleeper = asyncio.ensure_future(self.sleep(max(0.0, seconds)))
                sleeper.add_done_callback(lambda _: _resolve(waiter))
            try:
                await waiter
            finally:
                sleeper.cancel()
                alarm.waiter = None
        alarm.rung = False


class Alarm:
    """Ends the current ``sleep_or_wake`` early, or the next one when none sleeps."""

    def __init__(self) -> None:
        self.rung = False
        self.waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        self.rung = True
        if self.waiter is not None:
            _resolve(self.waiter)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def spawn(coroutine: Awaitable[None], agent: Agent) -> asyncio.Task[None]:
    """A task whose unexpected death is reported, not lost."""
    task: asyncio.Task[None] = asyncio.ensure_future(coroutine)

    def done(finished: asyncio.Task[None]) -> None:
        if not finished.cancelled() and finished.exception() is not None:
            agent.error(None, "internal", f"task failed: {finished.exception()!r}")

    task.add_done_callback(done)
    return task


class Recurring:
    """One recurring monitor: runs, reports changes, watches the process."""

    def __init__(
        self, agent: Agent, key: str, op: OpSpec, interval: float, watch: WatchSpec | None
    ) -> None:
        self.agent = agent
        self.key = key
        self.op = op
        self.interval = interval
        self.watch_spec = watch
        self.last: tuple[int | None, bool] | None = None
        self._wake = Alarm()
        self._cause = "monitor"
        self._handle: Handle | None = None
        self._watched_pid: int | None = None
        self._dead_pid: int | None = None
        self._confirmations = 0
        self._unwatchable = False
        self.task = spawn(self._loop(), agent)

    async def _loop(self) -> None:
        while True:
            started = self.agent.monotonic()
            try:
                delay = await self._run_once()
            except Exception as exc:  # noqa: BLE001 - a bug here: say so, keep the schedule
                self.agent.error(None, "internal", f"{type(exc).__name__}: {exc}", key=self.key)
                delay = None
            if delay is None:
                delay = self.interval - (self.agent.monotonic() - started)
            await self.agent.sleep_or_wake(self._wake, delay)

    async def _run_once(self) -> float | None:
        outcome = await self.agent.execute(self.op)
        cause, self._cause = self._cause, "monitor"
        self._report(outcome, cause)
        return await self._follow_up(outcome)

    def _report(self, outcome: Outcome, cause: str) -> None:
        if outcome.state == self.last:
            return
        self.last = outcome.state
        self._unwatchable = False
        self.agent.send({"type": "change", "key": self.key, "cause": cause, **outcome.fields()})

    async def _follow_up(self, outcome: Outcome) -> float | None:
        """Arm the watch after a success; a delay when a death awaits confirmation."""
        if not outcome.ok:
            self._forget_deaths()
            return None
        if self._handle is not None or self._unwatchable or self.watch_spec is None:
            return None
        pid = await self.agent.watcher.find_pid(self.watch_spec, self.op)
        if pid is None:
            self._unwatchable = True  # until the result changes: no lookup each run
            return None
        if pid == self._dead_pid:
            return self._confirm_again()
        self._arm(pid)
        return None

    def _confirm_again(self) -> float | None:
        """The monitor still sees the process that died (not reaped yet?): ask again soon."""
        if self._confirmations >= len(CONFIRM_DELAYS):
            self._unwatchable = True
            return None
        delay = CONFIRM_DELAYS[self._confirmations]
        self._confirmations += 1
        self._cause = "watch"
        return delay

    def _arm(self, pid: int) -> None:
        self._forget_deaths()
        self._watched_pid = pid
        self._handle = self.agent.watcher.watch(pid, self._died)

    def _died(self) -> None:
        if self._handle is None:
            return
        self._close_handle()
        self._dead_pid = self._watched_pid
        self.agent.send({"type": "died", "key": self.key, "pid": self._dead_pid})
        self._cause = "watch"
        self._wake.ring()

    def _forget_deaths(self) -> None:
        self._close_handle()
        self._dead_pid = None
        self._confirmations = 0

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self._close_handle()


# ---------------------------------------------------------------------------
# real operations: child processes


class _Collector:
    """Reads one output pipe of a child without blocking; keeps the tail."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.data = bytearray()
        self.open = True
        os.set_blocking(fd, False)
        loop.add_reader(fd, self.read)

    def read(self) -> bool:
        """One read; False when nothing more is there now."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return False
        self.data += chunk
        if len(self.data) > 8 * OUTPUT_LIMIT:
            del self.data[: -4 * OUTPUT_LIMIT]
        return True

    def drain(self) -> None:
        """What the child wrote before it exited (what its heirs write later is lost)."""
        while self.open and self.read():
            pass
        self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.fd)
            os.close(self.fd)

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")[-OUTPUT_LIMIT:]


class _Child:
    """A running operation: its process group, output and end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, stdout: int, stderr: int):
        self.loop = loop
        self.pid = pid
        self.exited: asyncio.Future[None] = loop.create_future()
        self.returncode: int | None = None
        self.timed_out = False
        self.stdout = _Collector(loop, stdout)
        self.stderr = _Collector(loop, stderr)

    def expire(self) -> None:
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole group; give up waiting after ``KILL_WAIT``."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.loop.call_later(KILL_WAIT, self._give_up)

    def finish(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self.stdout.drain()
        self.stderr.drain()
        if not self.exited.done():
            self.exited.set_result(None)

    def _give_up(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def exit_status(self) -> int | None:
        code = self.returncode
        if self.timed_out or code is None:
            return None
        return _SIGNALLED - code if code < 0 else code


class ProcessRunner:
    """Runs operations as children, each in its own session (its process group).

    ``posix_spawn`` (no Python between fork and exec, no shell); output is read
    as it comes.  A child's end is seen on its pidfd, which wakes the loop once
    and names the child; without pidfds every child is reaped on SIGCHLD
    (every child of the agent is one of these)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, use_pidfds: bool | None = None) -> None:
        self.loop = loop
        self.children: dict[int, _Child] = {}
        self.environment = dict(os.environ)  # the session's: it does not change
        self.pidfds = pidfds_work() if use_pidfds is None else use_pidfds
        if not self.pidfds:
            loop.add_signal_handler(signal.SIGCHLD, self.reap)

    async def run(self, spec: OpSpec) -> Outcome:
        return await self.run_argv(spec.argv(), {**self.environment, **spec.env}, spec.timeout)

    async def run_argv(self, argv: list[str], env: dict[str, str], timeout: float) -> Outcome:
        started = time.monotonic()
        try:
            child = self._spawn(argv, env)
        except OSError as exc:
            return _spawn_failure(argv[0], exc, time.monotonic() - started)
        timer = self.loop.call_later(timeout, child.expire)
        try:
            await child.exited
        except asyncio.CancelledError:
            child.kill()  # cancelled (the key was, or the agent stops): nothing lingers
            raise
        finally:
            timer.cancel()
        return Outcome(
            child.exit_status(),
            child.timed_out,
            child.stdout.text(),
            child.stderr.text(),
            time.monotonic() - started,
        )

    def _spawn(self, argv: list[str], env: dict[str, str]) -> _Child:
        out_read, out_write = os.pipe()  # close-on-exec; dup2 makes the child's copies plain
        err_read, err_write = os.pipe()
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_write, 1),
                    (os.POSIX_SPAWN_DUP2, err_write, 2),
                ],
                setsid=True,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores them; agents must not
            )
        except OSError:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        child = _Child(self.loop, pid, out_read, err_read)
        self.children[pid] = child
        if self.pidfds:
            self._watch_end(pid)
        else:
            self.loop.call_soon(self.reap)  # in case it ended before the handler was there
        return child

    def _watch_end(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)  # a zombie of ours still has one: no race with its end
        except OSError:  # out of descriptors: look until it ended
            self._reap_or_look_again(pid)
            return
        self.loop.add_reader(fd, self._ended, pid, fd)

    def _ended(self, pid: int, fd: int) -> None:
        self.loop.remove_reader(fd)
        os.close(fd)
        self._reap_or_look_again(pid)

    def _reap_or_look_again(self, pid: int) -> None:
        """Reap ``pid`` if it ended, else look again in ``POLL_INTERVAL``."""
        if pid not in self.children:
            return  # reaped already (``settle``)
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours to reap: its timeout ends the wait
            return
        if reaped:
            self._finish(pid, status)
        else:
            self.loop.call_later(POLL_INTERVAL, self._reap_or_look_again, pid)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._finish(pid, status)

    def _finish(self, pid: int, status: int) -> None:
        child = self.children.pop(pid, None)
        if child is not None:
            child.finish(status)

    async def settle(self, seconds: float) -> None:
        """Wait (a little) for killed children to be reaped."""
        deadline = time.monotonic() + seconds
        while self.children and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            self.reap()


def _spawn_failure(program: str, exc: OSError, duration: float) -> Outcome:
    """What a shell would have said: 127 not found, 126 not executable."""
    status = _NOT_FOUND if isinstance(exc, FileNotFoundError) else _NOT_EXECUTABLE
    reason = exc.strerror or type(exc).__name__
    return Outcome(status, stderr=f"{program}: {reason}\n", duration=duration)


# ---------------------------------------------------------------------------
# real watches: pidfds, or /proc polled


class _PidfdHandle:
    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_death: Callable[[], None]):
        self.loop = loop
        self.fd = fd
        self.on_death = on_death
        loop.add_reader(fd, self._fire)

    def _fire(self) -> None:
        self.close()
        self.on_death()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class _PollHandle:
    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, on_death: Callable[[], None]):
        self.loop = loop
        self.pid = pid
        self.on_death = on_death
        self.timer: asyncio.Handle | None = loop.call_soon(self._check)

    def _check(self) -> None:
        if process_gone(self.pid):
            self.timer = None
            self.on_death()
        else:
            self.timer = self.loop.call_later(POLL_INTERVAL, self._check)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def process_gone(pid: int) -> bool:
    """Gone, or dead and not reaped yet (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return True
    state = text[text.rfind(b")") + 2 :][:1]
    return state in (b"Z", b"X", b"")


def read_pidfile(path: str) -> int | None:
    """The pid a pidfile names (its first word), if it names one above 1."""
    try:
        with open(path, "rb") as pidfile:
            words = pidfile.read(_PIDFILE_LIMIT).split()
    except OSError:
        return None
    return _pid(words[0] if words else b"")


def _pid(word: bytes) -> int | None:
    try:
        pid = int(word)
    except ValueError:
        return None
    return pid if pid > 1 else None


def pidfds_work() -> bool:
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


# ---------------------------------------------------------------------------
# systemd asked directly, on its private socket


SYSTEMD_PRIVATE_BUS = "/run/systemd/private"
SYSTEMD_UNIT_PATH = "/org/freedesktop/systemd1/unit/"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE = "org.freedesktop.systemd1.Service"
BUS_TIMEOUT = 2.0  # then systemctl is asked instead
_ACTIVE_STATES = ("active", "reloading", "refreshing")  # where is-active says 0
_IS_ACTIVE_NOT = 3  # is-active's status for every other state
_BUS_MAX_MESSAGE = 1 << 20
_METHOD_CALL, _METHOD_RETURN = 1, 2
_REPLY_SERIAL = 5


class BusError(Exception):
    """An answer the agent does not take: systemctl is asked instead."""


class SystemdBus:
    """Unit properties asked of systemd on its private socket (root only), as
    ``systemctl`` does: a connection, a message and its answer, instead of
    starting ``systemctl`` (about 140 ms of a guest's CPU under emulation).
    A call answers None when systemd cannot be asked so (no socket, not root,
    an error, no answer within the wait, an answer not understood): the
    caller runs ``systemctl``."""

    def __init__(self, path: str = SYSTEMD_PRIVATE_BUS) -> None:
        self.path = path

    @property
    def usable(self) -> bool:
        return os.geteuid() == 0 and os.path.exists(self.path)

    async def unit_property(self, unit: str, interface: str, name: str, timeout: float) -> Any:
        if not self.usable:
            return None
        try:
            return await asyncio.wait_for(self._ask(unit, interface, name), timeout)
        except (OSError, EOFError, BusError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return None

    async def _ask(self, unit: str, interface: str, name: str) -> Any:
        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            uid = str(os.geteuid()).encode().hex().encode()
            writer.write(b"\0AUTH EXTERNAL " + uid + b"\r\n")
            if not (await reader.readline()).startswith(b"OK "):
                raise BusError("systemd refused the authentication")
            body = _BusOut()
            body.string(interface)
            body.string(name)
            path = SYSTEMD_UNIT_PATH + bus_label(unit)
            writer.write(b"BEGIN\r\n" + bus_method_call(1, path, "Get", "ss", bytes(body.data)))
            while True:
                kind, reply_to, payload = await read_bus_message(reader)
                if reply_to == 1:
                    break  # else a signal: not asked for, not expected
            if kind != _METHOD_RETURN:
                raise BusError("systemd answered with an error")
            return parse_variant(payload)
        finally:
            writer.close()


def bus_label(text: str) -> str:
    """A unit name as the last element of its object path (systemd's escaping)."""
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in text) or "_"


class _BusOut:
    """D-Bus marshalling, little-endian; offsets count from the message's start."""

    def __init__(self) -> None:
        self.data = bytearray()

    def align(self, boundary: int) -> None:
        self.data += bytes(-len(self.data) % boundary)

    def u32(self, value: int) -> None:
        self.align(4)
        self.data += struct.pack("<I", value)

    def string(self, text: str) -> None:
        raw = text.encode()
        self.u32(len(raw))
        self.data += raw + b"\0"

    def signature(self, text: str) -> None:
        self.data += bytes([len(text)]) + text.encode() + b"\0"


def bus_method_call(serial: int, path: str, member: str, signature: str, body: bytes) -> bytes:
    """A call of ``org.freedesktop.DBus.Properties.<member>`` on systemd's ``path``."""
    out = _BusOut()
    out.data += b"l" + bytes([_METHOD_CALL, 0, 1])
    out.u32(len(body))
    out.u32(serial)
    fields = (
        (1, "o", path),
        (2, "s", "org.freedesktop.DBus.Properties"),
        (3, "s", member),
        (6, "s", "org.freedesktop.systemd1"),
        (8, "g", signature),
    )
    out.u32(0)  # the fields' length, written once known
    start = len(out.data)
    for code, kind, value in fields:
        out.align(8)
        out.data.append(code)
        out.signature(kind)
        if kind == "g":
            out.signature(value)
        else:
            out.string(value)
    struct.pack_into("<I", out.data, start - 4, len(out.data) - start)
    out.align(8)
    return bytes(out.data) + body


async def read_bus_message(reader: asyncio.StreamReader) -> tuple[int, int | None, bytes]:
    """One message: its type, the serial it answers (None if none) and its body."""
    fixed = await reader.readexactly(16)
    if fixed[:1] != b"l":  # systemd writes in its host's order: little-endian guests only
        raise BusError("not a little-endian D-Bus message")
    body_length, _serial, fields_length = struct.unpack("<III", fixed[4:16])
    if body_length > _BUS_MAX_MESSAGE or fields_length > _BUS_MAX_MESSAGE:
        raise BusError("a D-Bus message too long")
    fields = await reader.readexactly(fields_length + (-fields_length % 8))
    body = await reader.readexactly(body_length)
    return fixed[1], _reply_serial(fields[:fields_length]), body


def _reply_serial(fields: bytes) -> int | None:
    """The REPLY_SERIAL header field; the fields start 8-aligned, at offset 16."""
    reader = _BusIn(fields)
    while reader.left():
        reader.align(8)
        code = reader.byte()
        kind = reader.signature()
        value = reader.value(kind)
        if code == _REPLY_SERIAL:
            return int(value)
    return None


def parse_variant(body: bytes) -> Any:
    """A ``v`` body (Properties.Get's answer): a string, an object path or an integer."""
    reader = _BusIn(body)
    return reader.value(reader.signature())


class _BusIn:
    """D-Bus unmarshalling, little-endian, of the few types systemd's answers use here."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def left(self) -> bool:
        return self.at < len(self.data)

    def align(self, boundary: int) -> None:
        self.at += -self.at % boundary

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise BusError("a D-Bus message cut short")
        part = self.data[self.at : self.at + size]
        self.at += size
        return part

    def byte(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        self.align(4)
        return int(struct.unpack("<I", self.take(4))[0])

    def signature(self) -> str:
        text = self.take(self.byte()).decode("ascii", "replace")
        self.take(1)
        return text

    def value(self, kind: str) -> Any:
        if kind in ("s", "o"):
            text = self.take(self.u32()).decode("utf-8", "replace")
            self.take(1)
            return text
        if kind == "g":
            return self.signature()
        if kind == "u":
            return self.u32()
        raise BusError(f"a D-Bus value of type {kind!r}")


class SystemdFirst:
    """The agent's runner: a systemd unit's monitor is asked of systemd itself
    where it can be (``SystemdBus``), as ``systemctl is-active`` asks it (status
    0 when active or reloading, 3 otherwise, the state on standard output);
    everything else, and that monitor where systemd cannot be asked so, runs
    as a process."""

    def __init__(self, processes: ProcessRunner, bus: SystemdBus) -> None:
        self.processes = processes
        self.bus = bus

    async def run(self, spec: OpSpec) -> Outcome:
        if spec.rclass != "systemd" or spec.action != "monitor":
            return await self.processes.run(spec)
        started = time.monotonic()
        wait = min(BUS_TIMEOUT, spec.timeout / 2)
        state = await self.bus.unit_property(spec.unit, UNIT_INTERFACE, "ActiveState", wait)
        took = time.monotonic() - started
        if isinstance(state, str):
            status = 0 if state in _ACTIVE_STATES else _IS_ACTIVE_NOT
            return Outcome(status, stdout=state + "\n", duration=took)
        return await self.processes.run(dataclasses.replace(spec, timeout=spec.timeout - took))


class ProcessWatcher:
    """Finds the pid a watch names and watches it (pidfd, else /proc polling)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        runner: ProcessRunner,
        bus: SystemdBus | None = None,
    ) -> None:
        self.loop = loop
        self.runner = runner
        self.bus = bus
        self.mode = "pidfd" if pidfds_work() else "poll"

    async def find_pid(self, watch: WatchSpec, op: OpSpec) -> int | None:
        if watch.kind == "systemd":
            return await self._main_pid(op.unit)
        varrun = os.environ.get("HA_VARRUN") or DEFAULT_VARRUN
        return read_pidfile(os.path.join(varrun, watch.path))

    async def _main_pid(self, unit: str) -> int | None:
        if self.bus is not None:
            pid = await self.bus.unit_property(unit, SERVICE_INTERFACE, "MainPID", BUS_TIMEOUT)
            if isinstance(pid, int):
                return pid or None
        argv = ["systemctl", "show", "--property=MainPID", "--value", unit]
        outcome = await self.runner.run_argv(argv, dict(os.environ), _SYSTEMCTL_TIMEOUT)
        return _pid(outcome.stdout.strip().encode()) if outcome.ok else None

    def watch(self, pid: int, on_death: Callable[[], None]) -> Handle:
        if self.mode == "pidfd":
            try:
                return _PidfdHandle(self.loop, os.pidfd_open(pid), on_death)
            except OSError:
                pass  # gone already (or not ours to see): polling tells at once
        return _PollHandle(self.loop, pid, on_death)


# ---------------------------------------------------------------------------
# the session: standard input and output


class _Input(asyncio.Protocol):
    def __init__(self, on_line: Callable[[bytes], None], on_end: Callable[[str], None]) -> None:
        self.framer = LineFramer(MAX_LINE)
        self.on_line = on_line
        self.on_end = on_end

    def data_received(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            self.on_line(line)

    def eof_received(self) -> bool | None:
        self.on_end("input ended")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_end("input ended")


class _Output(asyncio.Protocol):
    def __init__(self, on_end: Callable[[str], None]) -> None:
        self.on_end = on_end

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_end("output closed")


class _FileOutput:
    """Standard output that is a regular file (a debugging session): plain writes."""

    def write(self, data: bytes) -> None:
        os.write(1, data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def _output(
    loop: asyncio.AbstractEventLoop, end: Callable[[str], None]
) -> asyncio.WriteTransport | _FileOutput:
    stdout = os.fdopen(1, "wb", buffering=0, closefd=False)
    try:
        transport, _ = await loop.connect_write_pipe(lambda: _Output(end), stdout)
    except ValueError:  # not a pipe, socket or terminal
        return _FileOutput()
    return transport


async def serve(
    digest: str, heartbeat: float = HEARTBEAT_INTERVAL, phase: float | None = None
) -> int:
    """Speak the protocol on standard input and output until either ends."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[str] = loop.create_future()

    def end(why: str) -> None:
        if not ended.done():
            ended.set_result(why)

    output = await _output(loop, end)

    def send(message: dict[str, Any]) -> None:
        if output.is_closing():
            return
        output.write(encode(message))
        if output.get_write_buffer_size() > MAX_BACKLOG:
            end("dped does not read")

    runner = ProcessRunner(loop)
    bus = SystemdBus()
    watcher = ProcessWatcher(loop, runner, bus)
    agent = Agent(
        send, SystemdFirst(runner, bus), watcher, digest=digest, heartbeat=heartbeat, phase=phase
    )
    stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
    await loop.connect_read_pipe(lambda: _Input(agent.receive, end), stdin)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(signum, end, signal.Signals(signum).name)
    agent.start()
    await ended
    await agent.stop()
    await runner.settle(1.0)
    return 0


# ---------------------------------------------------------------------------
# one agent per guest user: the lock


def take_lock(path: str) -> int:
    """Hold ``path`` locked for life; kill the agent holding it first, if any."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if not _try_lock(fd):
        _kill_holder(fd, path)
        deadline = time.monotonic() + LOCK_WAIT
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise OSError(f"{path}: still locked after {LOCK_WAIT:g} s")
            time.sleep(0.02)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _kill_holder(fd: int, path: str) -> None:
    """SIGKILL the previous agent (stopped or stuck ones too), if the pid is one."""
    pid = _pid(os.pread(fd, _PIDFILE_LIMIT, 0).strip())
    if pid is None or pid == os.getpid():
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            arguments = cmdline.read().split(b"\0")
    except OSError:
        return
    if os.fsencode(path) in arguments:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def own_digest() -> str:
    with open(__file__, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def heartbeat_seconds(text: str) -> float:
    """``--heartbeat``'s value: a finite number of seconds within ``HEARTBEAT_RANGE``."""
    low, high = HEARTBEAT_RANGE
    seconds = _seconds(text)
    if not low <= seconds <= high:
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} s")
    return seconds


def phase_seconds(text: str) -> float:
    """``--phase``'s value: a finite, non-negative number of seconds."""
    seconds = _seconds(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return seconds


def _seconds(text: str) -> float:
    """A finite number of seconds, or the option's error."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pcloud-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--lock", help="one agent per lock file: a new one kills the old")
    parser.add_argument(
        "--heartbeat",
        type=heartbeat_seconds,
        default=HEARTBEAT_INTERVAL,
        help="seconds between heartbeats (default 1)",
    )
    parser.add_argument(
        "--phase",
        type=phase_seconds,
        help="place the heartbeats this many seconds past the wall clock's multiples"
        " of the interval (default: an interval after the last)",
    )
    args = parser.parse_args(argv)
    if args.phase is not None and args.phase >= args.heartbeat:
        parser.error(f"--phase must be shorter than the interval ({args.heartbeat:g} s)")
    if args.lock:
        try:
            take_lock(args.lock)
        except OSError as exc:
            sys.stderr.write(f"pcloud-agent: {exc}\n")
            return EXIT_LOCKED
    return asyncio.run(serve(own_digest(), args.heartbeat, args.phase))


if __name__ == "__main__":
    sys.exit(main())
