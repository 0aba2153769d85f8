"""The guest agent's protocol code, in process: messages, recurring monitors, watches.

The agent's ``Agent`` runs here with a scripted runner and watcher and the fake
clock; what it sends is collected.  The real processes, pidfds and pipes are in
``tests/integration/test_guest_agent_pipes.py``.
"""

from __future__ import annotations

import ast
import itertools
import json
import shlex
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpe import agent_ops, agents
from dpe.guest_agent import AGENT_FILE, agent_source
from dpe.guest_agent import pcloud_agent as ga
from foundation.model import Resource
from tests.unit.fakes import FakeClock, settle

DUMMY_OP = {
    "resource": "www",
    "class": "ocf",
    "provider": "heartbeat",
    "type": "Dummy",
    "action": "monitor",
    "env": {"OCF_RESOURCE_INSTANCE": "www"},
    "timeout": 20,
}


class ScriptedRunner:
    """Exit statuses scripted per (resource, action); 0 otherwise.  Records overlap."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.script: dict[tuple[str, str], deque[int]] = defaultdict(deque)
        self.duration = 0.0
        self.calls: list[ga.OpSpec] = []
        self.running: dict[str, int] = defaultdict(int)
        self.most_at_once: dict[str, int] = defaultdict(int)
        self.fail_with: Exception | None = None

    async def run(self, spec: ga.OpSpec) -> ga.Outcome:
        self.calls.append(spec)
        if self.fail_with is not None:
            raise self.fail_with
        self.running[spec.resource] += 1
        self.most_at_once[spec.resource] = max(
            self.most_at_once[spec.resource], self.running[spec.resource]
        )
        try:
            await self.clock.sleep(self.duration)
        finally:
            self.running[spec.resource] -= 1
        queue = self.script[(spec.resource, spec.action)]
        return ga.Outcome(queue.popleft() if queue else 0)


class ScriptedHandle:
    def __init__(self, watcher: ScriptedWatcher, pid: int) -> None:
        self.watcher = watcher
        self.pid = pid

    def close(self) -> None:
        self.watcher.watched.pop(self.pid, None)


class ScriptedWatcher:
    mode = "pidfd"

    def __init__(self) -> None:
        self.pid: int | None = 4242  # what the pidfile names
        self.watched: dict[int, Callable[[], None]] = {}

    async def find_pid(self, watch: ga.WatchSpec, op: ga.OpSpec) -> int | None:
        return self.pid

    def watch(self, pid: int, on_death: Callable[[], None]) -> ScriptedHandle:
        self.watched[pid] = on_death
        return ScriptedHandle(self, pid)

    def kill(self, pid: int) -> None:
        self.watched.pop(pid)()


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.sent: list[dict[str, Any]] = []
        self.runner = ScriptedRunner(self.clock)
        self.watcher = ScriptedWatcher()
        self.agent = ga.Agent(
            self.sent.append,
            self.runner,
            self.watcher,
            sleep=self.clock.sleep,
            monotonic=self.clock.monotonic,
            digest="d" * 64,
        )

    def send(self, message: dict[str, Any] | bytes) -> None:
        line = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.agent.receive(line)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]

    def changes(self, key: str = "k") -> list[tuple[int | None, str]]:
        return [(m["exit_status"], m["cause"]) for m in self.of("change") if m["key"] == key]

    def schedule(self, interval: float = 10.0, watch: dict[str, str] | None = None) -> None:
        self.send(
            {
                "type": "schedule",
                "id": "s",
                "key": "k",
                "interval": interval,
                "op": DUMMY_OP,
                "watch": watch,
            }
        )


@pytest.fixture
async def rig() -> Rig:
    made = Rig()
    made.agent.start()
    await settle()
    return made


async def test_hello_comes_first_then_a_heartbeat_every_second(rig: Rig) -> None:
    hello = rig.sent[0]
    assert hello["type"] == "hello"
    assert (hello["protocol"], hello["sha256"], hello["watch"]) == (ga.PROTOCOL, "d" * 64, "pidfd")
    await rig.clock.advance(3.0)
    assert [m["seq"] for m in rig.of("heartbeat")] == [1, 2, 3, 4]


async def test_the_heartbeat_interval_is_the_one_asked_for() -> None:
    made = Rig()
    made.agent.heartbeat = 0.25
    made.agent.start()
    await made.clock.advance(1.0)
    assert [m["seq"] for m in made.of("heartbeat")] == [1, 2, 3, 4, 5]
    await made.agent.stop()


class SteppedWall:
    """The guest's wall clock: the fake clock plus an offset a test can step."""

    def __init__(self, clock: FakeClock, offset: float) -> None:
        self.clock, self.offset = clock, offset

    def __call__(self) -> float:
        return self.clock.now + self.offset


def beat_times(made: Rig, wall: SteppedWall) -> list[float]:
    """The guest's wall-clock time of each heartbeat sent (recorded as sent)."""
    times: list[float] = []

    def send(message: dict[str, Any]) -> None:
        if message["type"] == "heartbeat":
            times.append(round(wall(), 6))
        made.sent.append(message)

    made.agent.send = send
    return times


async def test_with_a_phase_heartbeats_fall_on_it_by_the_wall_clock() -> None:
    made = Rig()
    wall = SteppedWall(made.clock, offset=0.62 - made.clock.now % 1)  # starts at x.62
    made.agent.phase, made.agent.wall = 0.25, wall
    times = beat_times(made, wall)
    made.agent.start()
    await made.clock.advance(3.0)
    assert [t % 1 for t in times[1:]] == pytest.approx([0.25] * 3)  # the first at once
    assert max(b - a for a, b in itertools.pairwise(times)) <= 1.0
    await made.agent.stop()


@pytest.mark.parametrize("step", [-30.0, -0.4, 0.4, 3600.0])
async def test_a_step_of_the_wall_clock_never_delays_a_heartbeat(step: float) -> None:
    made = Rig()
    wall = SteppedWall(made.clock, offset=0.0)
    made.agent.phase, made.agent.wall = 0.5, wall
    sent_at: list[float] = []
    made.agent.send = lambda m: sent_at.append(made.clock.now) if m["type"] == "heartbeat" else None
    made.agent.start()
    await made.clock.advance(2.1)
    wall.offset += step
    await made.clock.advance(3.0)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert len(sent_at) >= 5 and max(gaps) <= 1.0 + 1e-9
    await made.agent.stop()


@pytest.mark.parametrize(
    "argv",
    [
        ["--phase", "1"],
        ["--phase", "-0.1"],
        ["--phase", "nan"],
        ["--heartbeat", "0.5", "--phase", "0.7"],
        ["--phase", "x"],
    ],
)
def test_a_phase_not_within_the_interval_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ga.main(argv)
    assert exited.value.code == 2


@pytest.mark.parametrize("text", ["0.01", "61", "nan", "inf", "-1", "soon"])
def test_a_heartbeat_interval_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(SystemExit) as exited:
        ga.main(["--heartbeat", text])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "invalid"),
        (b"\xff\xfe", "invalid"),
        (b"[1, 2]", "invalid"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid"),  # nested deeper than json goes
        (b'{"type": "reboot", "id": "1"}', "unknown_type"),
        (b'{"id": "1"}', "unknown_type"),
        (b'{"type": "run", "op": {}}', "invalid"),  # no id
        (b'{"type": "run", "id": "1", "op": {}}', "invalid"),
        (b'{"type": "run", "id": "1", "op": [1]}', "invalid"),
        (b'{"type": "cancel", "id": "1"}', "invalid"),  # no key
        (b'{"type": "schedule", "id": "1", "key": "k", "interval": NaN, "op": {}}', "invalid"),
        (b'{"type": "run", "id": "1", "op": {}, "extra": true}', "invalid"),
        (ga.LineFramer.TOO_LONG, "too_long"),
    ],
)
async def test_a_bad_message_gets_an_error_reply_and_the_agent_goes_on(
    rig: Rig, line: bytes, code: str
) -> None:
    rig.send(line)
    assert [m["code"] for m in rig.of("error")] == [code]
    rig.send({"type": "run", "id": "after", "op": DUMMY_OP})
    await settle()
    assert [m["id"] for m in rig.of("result")] == ["after"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("class", "stonith"),
        ("provider", "../../../bin"),
        ("type", "../sh"),
        ("type", "a b"),
        ("type", "x" * 64),
        ("resource", ""),
        ("action", "reboot"),
        ("action", "meta-data; rm -rf /"),
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", True),
        ("timeout", "20"),
        ("timeout", 1e9),
        ("env", {"LD_PRELOAD=x": "y"}),
        ("env", {"A": 1}),
        ("env", {"A": "nul\u0000byte"}),
        ("env", {f"V{i}": "x" for i in range(ga.MAX_ENV + 1)}),
        ("env", "OCF_ROOT=/tmp"),
    ],
)
async def test_an_op_is_checked_field_by_field(rig: Rig, field: str, value: object) -> None:
    rig.send({"type": "run", "id": "1", "op": DUMMY_OP | {field: value}})
    await settle()
    errors = rig.of("error")
    assert [(e["id"], e["code"]) for e in errors] == [("1", "invalid")]
    assert errors[0]["message"].startswith(f"op.{field}")
    assert rig.runner.calls == []


async def test_hostile_values_reach_the_operation_as_they_are(rig: Rig) -> None:
    hostile = "$(touch /tmp/pwned); `id` ' \" \n; rm -rf / #"
    op = DUMMY_OP | {"env": {"OCF_RESKEY_state": hostile}}
    rig.send({"type": "run", "id": "1", "op": op})
    await settle()
    [call] = rig.runner.calls
    assert call.env["OCF_RESKEY_state"] == hostile
    assert call.argv() == ["/usr/lib/ocf/resource.d/heartbeat/Dummy", "monitor"]


async def test_a_one_shot_result_echoes_its_id(rig: Rig) -> None:
    rig.runner.script[("www", "start")].append(1)
    rig.send({"type": "run", "id": "op-7", "op": DUMMY_OP | {"action": "start"}})
    await settle()
    [result] = rig.of("result")
    assert (result["id"], result["exit_status"], result["timed_out"]) == ("op-7", 1, False)


async def test_the_heartbeat_counts_the_operations_run(rig: Rig) -> None:
    for n in range(3):
        rig.send({"type": "run", "id": str(n), "op": DUMMY_OP})
    await rig.clock.advance(1.0)
    assert rig.of("heartbeat")[-1]["runs"] == 3


async def test_a_failing_runner_is_an_error_reply_not_a_dead_agent(rig: Rig) -> None:
    rig.runner.fail_with = RuntimeError("bug")
    rig.send({"type": "run", "id": "1", "op": DUMMY_OP})
    await settle()
    assert [(m["id"], m["code"]) for m in rig.of("error")] == [("1", "internal")]
    await rig.clock.advance(2.0)
    assert len(rig.of("heartbeat")) == 3


async def test_a_failing_recurring_run_is_reported_and_the_schedule_goes_on(rig: Rig) -> None:
    rig.runner.fail_with = RuntimeError("bug")
    rig.schedule(interval=1.0)
    await rig.clock.advance(0.5)
    rig.runner.fail_with = None
    await rig.clock.advance(1.0)
    assert [(m["code"], m["key"]) for m in rig.of("error")] == [("internal", "k")]
    assert rig.changes() == [(0, "monitor")]


async def test_a_recurring_result_is_reported_only_when_it_changes(rig: Rig) -> None:
    rig.runner.script[("www", "monitor")].extend([0, 0, 7, 7, 7, 0])
    rig.schedule(interval=10.0)
    assert rig.of("ok") == [{"type": "ok", "id": "s"}]
    await rig.clock.advance(60.0)
    assert rig.changes() == [(0, "monitor"), (7, "monitor"), (0, "monitor")]
    assert len(rig.runner.calls) == 7


async def test_recurring_runs_keep_their_interval(rig: Rig) -> None:
    rig.runner.duration = 0.4
    rig.schedule(interval=1.0)
    await rig.clock.advance(10.0)
    assert len(rig.runner.calls) == 11  # at 0, 1 ... 10 s: start to start, not end to start


async def test_only_monitors_recur(rig: Rig) -> None:
    rig.send(
        {
            "type": "schedule",
            "id": "s",
            "key": "k",
            "interval": 1,
            "op": DUMMY_OP | {"action": "start"},
        }
    )
    assert [m["code"] for m in rig.of("error")] == ["invalid"]


async def test_after_a_cancel_nothing_more_is_reported(rig: Rig) -> None:
    rig.runner.duration = 1.0
    rig.schedule(interval=2.0)
    await rig.clock.advance(0.5)  # a run in flight
    rig.runner.script[("www", "monitor")].extend([7] * 10)
    rig.send({"type": "cancel", "id": "c", "key": "k"})
    await rig.clock.advance(20.0)
    assert rig.of("change") == []
    assert len(rig.runner.calls) == 1
    assert rig.of("ok")[-1]["id"] == "c"


async def test_cancelling_an_unknown_key_is_no_error(rig: Rig) -> None:
    rig.send({"type": "cancel", "id": "c", "key": "never"})
    assert rig.of("ok") == [{"type": "ok", "id": "c"}]


async def test_scheduling_a_key_again_replaces_it_and_reports_afresh(rig: Rig) -> None:
    rig.schedule(interval=10.0)
    await rig.clock.advance(1.0)
    rig.schedule(interval=5.0)
    await rig.clock.advance(11.0)
    assert rig.changes() == [(0, "monitor"), (0, "monitor")]
    assert len(rig.agent.recurring) == 1
    assert len(rig.runner.calls) == 1 + 3  # then every 5 s


async def test_operations_of_one_resource_never_overlap(rig: Rig) -> None:
    rig.runner.duration = 3.0
    rig.schedule(interval=1.0)
    for n in range(3):
        rig.send({"type": "run", "id": f"r{n}", "op": DUMMY_OP | {"action": "start"}})
    rig.send({"type": "run", "id": "db", "op": DUMMY_OP | {"resource": "db"}})
    await rig.clock.advance(30.0)
    assert rig.runner.most_at_once["www"] == 1
    assert rig.runner.most_at_once["db"] == 1
    assert [m["id"] for m in rig.of("result")][:1] == ["db"]  # not behind www's queue


async def test_too_many_operations_at_once_are_refused(rig: Rig) -> None:
    rig.runner.duration = 100.0
    for n in range(ga.MAX_RUNNING + 1):
        rig.send({"type": "run", "id": f"r{n}", "op": DUMMY_OP | {"resource": f"r{n}"}})
    assert [(m["id"], m["code"]) for m in rig.of("error")] == [(f"r{ga.MAX_RUNNING}", "busy")]


async def test_a_watched_death_is_said_at_once_and_counts_once_the_monitor_confirms(
    rig: Rig,
) -> None:
    rig.schedule(interval=60.0, watch={"kind": "pidfile", "path": "app.pid"})
    await settle()
    assert list(rig.watcher.watched) == [4242]
    rig.runner.script[("www", "monitor")].append(7)
    rig.watcher.kill(4242)
    assert rig.of("died") == [{"type": "died", "key": "k", "pid": 4242}]
    await settle()  # no time passes: the monitor runs at once
    assert rig.changes() == [(0, "monitor"), (7, "watch")]


async def test_a_death_the_monitor_does_not_confirm_makes_no_failure(rig: Rig) -> None:
    rig.schedule(interval=60.0, watch={"kind": "pidfile", "path": "app.pid"})
    await settle()
    rig.watcher.pid = 5000  # restarted by someone else: the pidfile names another process
    rig.watcher.kill(4242)
    await settle()
    assert rig.changes() == [(0, "monitor")]
    assert list(rig.watcher.watched) == [5000]  # watching the new one


async def test_a_dead_process_the_monitor_still_sees_is_asked_about_again_soon(
    rig: Rig,
) -> None:
    rig.schedule(interval=60.0, watch={"kind": "pidfile", "path": "app.pid"})
    await settle()
    rig.runner.script[("www", "monitor")].extend([0, 0, 7])  # a zombie, then reaped
    rig.watcher.kill(4242)
    await rig.clock.advance(1.0)
    assert rig.changes() == [(0, "monitor"), (7, "watch")]
    assert len(rig.runner.calls) == 4


async def test_a_dead_process_that_never_goes_away_is_left_to_the_interval(rig: Rig) -> None:
    rig.schedule(interval=60.0, watch={"kind": "pidfile", "path": "app.pid"})
    await settle()
    rig.watcher.kill(4242)
    await rig.clock.advance(30.0)
    assert len(rig.runner.calls) == 1 + 1 + len(ga.CONFIRM_DELAYS)
    assert rig.changes() == [(0, "monitor")]


async def test_without_a_pid_nothing_is_watched_until_the_result_changes(rig: Rig) -> None:
    rig.watcher.pid = None
    rig.schedule(interval=1.0, watch={"kind": "systemd"})
    await rig.clock.advance(5.0)
    assert rig.watcher.watched == {}
    rig.watcher.pid = 77
    await rig.clock.advance(5.0)
    assert rig.watcher.watched == {}  # no lookup at every run
    rig.runner.script[("www", "monitor")].extend([7, 0])
    await rig.clock.advance(2.0)
    assert list(rig.watcher.watched) == [77]


async def test_stop_cancels_everything(rig: Rig) -> None:
    rig.runner.duration = 100.0
    rig.schedule(interval=1.0, watch={"kind": "pidfile", "path": "p"})
    rig.send({"type": "run", "id": "r", "op": DUMMY_OP | {"resource": "db"}})
    await rig.clock.advance(1.0)
    await rig.agent.stop()
    assert rig.agent.recurring == {}
    sent = len(rig.sent)
    await rig.clock.advance(10.0)
    assert len(rig.sent) == sent  # no heartbeat either


# ---------------------------------------------------------------------------
# the same commands as the passive path


RESOURCES = [
    Resource(name="www", parameters={"state": "$(id)", "fake": "a b"}),
    Resource(name="www", rclass="lsb", type="nginx", provider=""),
    Resource(name="www", rclass="systemd", type="nginx", provider=""),
]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.agent)
@pytest.mark.parametrize("op", agents.OPERATIONS)
def test_the_agent_runs_what_the_passive_command_line_runs(resource: Resource, op: str) -> None:
    words = shlex.split(agents.command(resource, op, interval=10.0))
    guard = words.index("timeout")
    assignments = dict(w.split("=", 1) for w in words[:guard])
    argv = words[guard + 3 :]  # after: timeout --signal=KILL DURATION
    message = agent_ops.op_message(resource, op, interval=10.0)
    spec = ga.parse_op(message)
    assert spec.argv() == argv
    assert spec.env == assignments


def test_the_agent_shares_the_passive_paths_and_names() -> None:
    assert (ga.OCF_ROOT, ga.INIT_D, ga.ACTIONS) == (
        agents.OCF_ROOT,
        agents.INIT_D,
        agents.OPERATIONS,
    )


def test_the_agent_is_python_3_9_and_standard_library_only() -> None:
    tree = ast.parse(AGENT_FILE.read_bytes(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    stdlib = {"__future__", "argparse", "asyncio", "collections", "contextlib", "dataclasses"}
    stdlib |= {"fcntl", "hashlib", "json", "math", "os", "re", "signal", "subprocess", "sys"}
    stdlib |= {"struct", "time", "typing"}
    assert imported <= stdlib


def test_the_shipped_hash_is_the_files() -> None:
    assert agent_source().text == AGENT_FILE.read_bytes()
    assert agent_source().file_name == f"agent-{agent_source().sha256[:16]}.py"


# ---------------------------------------------------------------------------
# lines


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=10),
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=10),
)
def test_lines_are_the_same_however_the_stream_is_cut(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    framer, got, position = ga.LineFramer(limit=30), [], 0
    for size in cuts * (len(stream) + 1):
        if position >= len(stream):
            break
        got += framer.feed(stream[position : position + size])
        position += size
    expected = [line if len(line) <= 30 else ga.LineFramer.TOO_LONG for line in lines]
    assert got == expected


def test_a_long_line_is_refused_once_and_what_follows_is_read() -> None:
    framer = ga.LineFramer(limit=10)
    got = framer.feed(b"x" * 25) + framer.feed(b"y" * 25) + framer.feed(b"zz\nok\n")
    assert got == [ga.LineFramer.TOO_LONG, b"ok"]
