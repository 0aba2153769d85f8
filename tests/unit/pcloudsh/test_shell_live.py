"""Following the event stream: reconnection with back-off, resuming, stopping; live alerts."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from foundation.backoff import Backoff
from foundation.errors import OperationTimeout, Unavailable
from pcloudsh.environment import Environment
from pcloudsh.follow import EventFollower
from pcloudsh.live import LiveEvents
from pcloudsh.output import Notice
from pcloudsh.shell import PcloudShell
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped, StoreStream

WAIT = 10.0  # generous: how long a test waits for another thread before failing


def event(n: int, deployable: str = "shop") -> dict[str, Any]:
    return {"id": n, "time": 1_700_000_000.0 + n, "deployable": deployable, "state": "running"}


class ScriptedSource:
    """Each stream plays the next script: events, then an exception (or the end)."""

    def __init__(self, scripts: list[list[Any]], newest: int = 0) -> None:
        self.scripts = scripts
        self.newest = newest
        self.streams: list[dict[str, Any]] = []
        self.interrupted = 0
        self.down = 0  # this many next queries fail, as when cped is stopped

    def query_events(self, **filters: Any) -> list[dict[str, Any]]:
        if self.down:
            self.down -= 1
            raise Unavailable("cped is not running")
        return [event(self.newest)] if self.newest else []

    def stream_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        self.streams.append(filters)
        script = self.scripts.pop(0) if self.scripts else [Unavailable("cped stopped")]
        for step in script:
            if isinstance(step, BaseException):
                raise step
            yield step

    def interrupt(self) -> None:
        self.interrupted += 1


def follow(source: ScriptedSource, limit: int, **options: Any) -> tuple[list[Any], list[float]]:
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    follower = EventFollower(source, wait=wait, **options)
    items = []
    for item in follower:
        items.append(item)
        if len(items) == limit:
            follower.stop()
    return items, waits


def test_it_starts_after_the_newest_event_and_resumes_after_the_last_seen() -> None:
    source = ScriptedSource(
        [[event(8), event(9), Unavailable("cped stopped")], [event(10)]],
        newest=7,
    )
    items, _waits = follow(source, limit=5, filters={"deployable": "shop"})
    assert source.streams[:2] == [
        {"deployable": "shop", "after_id": 7},
        {"deployable": "shop", "after_id": 9},
    ]
    ids = [i["id"] for i in items if isinstance(i, dict)]
    assert ids == [8, 9, 10]
    assert items[2] == Notice("lost the event stream: cped stopped; reconnecting")
    assert items[3] == Notice("event stream back")


def test_back_off_doubles_up_to_its_cap_and_is_reset_by_a_connection() -> None:
    source = ScriptedSource([[Unavailable("x")], [event(1), OperationTimeout("idle")]])
    source.down = 0
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 3:
            source.down = 6  # cped goes away for a while
        return len(waits) >= 10

    follower = EventFollower(source, after_id=0, wait=wait, backoff=Backoff(0.5, 4))
    items = list(follower)
    assert waits == [0.5, 0.5, 0.5, 1, 2, 4, 4, 4, 4, 0.5]
    notices = [i.text for i in items if isinstance(i, Notice)]
    assert notices[0].startswith("lost the event stream: x")
    assert notices[1:3] == ["event stream back", "lost the event stream: idle; reconnecting"]
    assert notices[3] == "event stream back"
    assert "lost the event stream: cped is not running; reconnecting" not in notices[4:]


def test_stop_ends_it_and_interrupts_the_source() -> None:
    source = ScriptedSource([[event(1), event(2), event(3)]])
    items, waits = follow(source, limit=1, after_id=0)
    assert items == [event(1)]
    assert source.interrupted == 1 and waits == []


class BlockingSource:
    """A stream that waits for events a test pushes, until interrupted."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.streams: list[dict[str, Any]] = []

    def query_events(self, **filters: Any) -> list[dict[str, Any]]:
        return []

    def stream_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        self.streams.append(filters)
        while True:
            item = self.events.get()
            if item is None:
                raise Unavailable("interrupted")
            yield item

    def interrupt(self) -> None:
        self.events.put(None)


def test_live_events_run_in_a_thread_until_stopped() -> None:
    source = BlockingSource()
    shown: queue.Queue[Any] = queue.Queue()
    live = LiveEvents(lambda: source, shown.put)
    live.start({"deployable": "shop"})
    assert live.running
    source.events.put(event(1))
    assert shown.get(timeout=WAIT) == event(1)
    live.stop(timeout=WAIT)
    assert not live.running
    assert source.streams == [{"deployable": "shop", "after_id": 0}]


def test_a_failure_inside_the_thread_is_shown_not_raised() -> None:
    class Broken(BlockingSource):
        def query_events(self, **filters: Any) -> list[dict[str, Any]]:
            raise RuntimeError("a bug")

    shown: queue.Queue[Any] = queue.Queue()
    live = LiveEvents(Broken, shown.put)
    live.start()
    assert shown.get(timeout=WAIT) == Notice("live events stopped: a bug")
    live.stop(timeout=WAIT)
    assert not live.running


@pytest.fixture
def live_shell(env: Environment) -> Iterator[tuple[PcloudShell, BlockingSource, queue.Queue[Any]]]:
    sources: list[BlockingSource] = []

    def connect(_paths: Any) -> BlockingSource:
        sources.append(BlockingSource())
        return sources[-1]

    import dataclasses

    shell = PcloudShell(dataclasses.replace(env, connect_events=connect), history=False)
    alerts: queue.Queue[Any] = queue.Queue()
    shell.add_alert = lambda **alert: alerts.put(alert)  # type: ignore[method-assign]
    shell.live.start()
    try:
        yield shell, sources[-1], alerts
    finally:
        shell.postloop()


def test_the_shell_turns_events_into_alerts_above_the_prompt(
    live_shell: tuple[PcloudShell, BlockingSource, queue.Queue[Any]],
) -> None:
    _shell, source, alerts = live_shell
    source.events.put(
        {**event(5), "assembly": "web", "state": "failed", "reason": "no heartbeat for 3.0 s"}
    )
    alert = alerts.get(timeout=WAIT)
    assert alert["msg"].plain.endswith(
        "assembly [web] in deployable [shop] is FAILED: no heartbeat for 3.0 s"
    )
    assert any("red" in str(span.style) for span in alert["msg"].spans)  # coloured by state


def test_events_live_turns_them_off_and_on(
    live_shell: tuple[PcloudShell, BlockingSource, queue.Queue[Any]],
) -> None:
    shell, _source, _alerts = live_shell
    assert run(shell, "events_live") == ("live events: on (all deployables)\n", "", 0)
    assert run(shell, "events_live off") == ("live events: off\n", "", 0)
    assert not shell.live.running
    on = run(shell, "events_live on --deployable shop")
    assert on == ("live events: on (deployable shop)\n", "", 0)
    bad = run(shell, "events_live on --deployable ../x")
    assert bad.status == 2 and "invalid deployable name '../x'" in bad.err
    assert run(shell, "events_live maybe").status == 2
    assert "events_live" in run(shell, "help").out


def test_live_events_start_only_on_a_terminal(env: Environment) -> None:
    assert PcloudShell(env, history=False).live_at_start is False  # stdin is not a terminal
    assert PcloudShell(env, history=False, live_events=True).live_at_start is True


def test_a_stopped_shell_leaves_no_thread(
    live_shell: tuple[PcloudShell, BlockingSource, queue.Queue[Any]],
) -> None:
    shell, _source, _alerts = live_shell
    shell.postloop()
    assert not any(t.name == "pcloudsh-live-events" for t in threading.enumerate())


def test_events_followed_by_a_command_are_not_shown_again_as_alerts(
    live_shell: tuple[PcloudShell, BlockingSource, queue.Queue[Any]], cped: InProcessCped
) -> None:
    shell, source, alerts = live_shell
    shell.env.connect_events = lambda _paths: StoreStream(cped)  # the command's own stream
    seen_while_following: list[bool] = []
    cped.on_idle = lambda: seen_while_following.append(shell.live.muted)
    assert run(shell, "events --follow").status == 130
    assert seen_while_following == [True] and not shell.live.muted
    source.events.put(event(9))
    assert alerts.get(timeout=WAIT)["msg"].plain.endswith("deployable [shop] is RUNNING")
