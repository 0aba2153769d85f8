"""events: the log as lines in the original's words, --json, --follow, --timeout, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from foundation.events import Event
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped, StoreStream
from tests.unit.pcloudsh.fakes import FakeTimers

NOW = 1_700_000_000.0


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


@pytest.fixture
def logged(cped: InProcessCped) -> InProcessCped:
    """Three events in the log (ids 1, 2, 3), as DPEs record them."""
    cped.record_event(
        Event(NOW - 1000, "shop", "failed", "monitor returned 7 (not running)", "web", "www")
    )
    cped.record_event(Event(NOW - 100, "shop", "running", "all assemblies running"))
    cped.record_event(Event(NOW - 50, "blog", "fencing", "", "db"))
    return cped


def test_one_line_per_event_in_the_original_words(env: Environment, logged: InProcessCped) -> None:
    ran = run(env, "events")
    assert ran.status == 0 and ran.err == ""
    assert ran.out.splitlines() == [
        f"{stamp(NOW - 1000)}  resource [www] in assembly [web] in deployable [shop] is FAILED: "
        "monitor returned 7 (not running)",
        f"{stamp(NOW - 100)}  deployable [shop] is RUNNING: all assemblies running",
        f"{stamp(NOW - 50)}  assembly [db] in deployable [blog] is FENCING",
    ]


def test_filters_since_and_limit(env: Environment, logged: InProcessCped) -> None:
    assert len(run(env, "events --deployable shop").out.splitlines()) == 2
    assert "deployable [blog]" in run(env, "events --assembly db").out
    data = json.loads(run(env, "events --json --since 10m").out)
    assert [e["id"] for e in data] == [2, 3]  # 10 minutes before the fake clock
    assert [e["id"] for e in json.loads(run(env, "events --json --limit 2").out)] == [2, 3]


def test_the_state_word_is_coloured_on_a_terminal(env: Environment, logged: InProcessCped) -> None:
    out = run(dataclasses.replace(env, color=True), "events").out
    assert "is \x1b[1;31mFAILED\x1b[0m: monitor returned 7 (not running)\n" in out
    assert "is \x1b[1;32mRUNNING\x1b[0m" in out
    assert "is \x1b[1;33mFENCING\x1b[0m" in out


def test_follow_prints_the_past_then_new_events_as_json_lines(
    env: Environment, logged: InProcessCped
) -> None:
    followed = run(env, "events --follow --json --deployable blog")
    assert followed.status == 130
    assert [json.loads(line)["id"] for line in followed.out.splitlines()] == [3]
    assert followed.err == ""  # Ctrl-C is how --follow ends: quietly
    assert "stream_events [('after_id', 3), ('deployable', 'blog')]" in logged.calls


def test_follow_starts_after_the_newest_event_of_the_whole_log(
    env: Environment, logged: InProcessCped
) -> None:
    logged.on_idle = lambda: logged.record_event(Event(NOW, "shop", "recovering", "x"))
    shown = run(env, "events --follow --deployable shop --limit 1")
    assert shown.status == 130
    assert "stream_events [('after_id', 3), ('deployable', 'shop')]" in logged.calls
    assert [line.split("  ", 1)[1] for line in shown.out.splitlines()] == [
        "deployable [shop] is RUNNING: all assemblies running",
    ]


def test_follow_with_limit_0_shows_only_the_new_events(
    env: Environment, logged: InProcessCped
) -> None:
    """As ``tail -n 0 -f``: none of the past events, the stream from the newest on."""
    assert run(env, "deployable_create shop").status == 0
    logged.calls.clear()
    shown = run(env, "events --follow --deployable shop --limit 0")
    assert (shown.status, shown.out) == (130, "")
    assert "stream_events [('after_id', 3), ('deployable', 'shop')]" in logged.calls
    assert run(env, "events --follow --deployable nosuch --limit 0").status == 2


def test_follow_with_a_timeout_ends_with_status_0(
    env: Environment, logged: InProcessCped, timers: FakeTimers
) -> None:
    asked: list[float] = []

    def time_passes() -> None:
        asked.extend(seconds for seconds, _action in timers.pending)
        timers.fire()

    logged.on_idle = time_passes
    ran = run(env, "events --follow --timeout 2m --json")
    assert (ran.status, ran.err) == (0, "")
    assert [json.loads(line)["id"] for line in ran.out.splitlines()] == [1, 2, 3]
    assert asked == [120.0]
    assert timers.pending == []  # nothing left to fire later


def test_the_follow_timeout_is_a_duration_as_its_usage_says(env: Environment) -> None:
    usage = run(env, "events --help").out
    assert "[--timeout DURATION]" in usage and "SECONDS" not in usage


def test_follow_reconnects_when_the_stream_is_lost(
    env: Environment, logged: InProcessCped, timers: FakeTimers
) -> None:
    from foundation.errors import Unavailable

    class FlakySource(StoreStream):
        streams = 0

        def stream_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
            self.streams += 1
            if self.streams == 1:
                raise Unavailable("cped is not running")
            logged.on_idle = timers.fire  # the second stream: --timeout ends it
            return super().stream_events(**filters)

    flaky_env = dataclasses.replace(env, connect_events=lambda _paths: FlakySource(logged))
    ran = run(flaky_env, "events --follow --timeout 5 --limit 1")  # one back-off wait: 0.5 s
    assert ran.status == 0
    assert ran.err == (
        "pcloudsh: lost the event stream: cped is not running; reconnecting\n"
        "pcloudsh: event stream back\n"
    )
    assert len(ran.out.splitlines()) == 1  # the past event; nothing is shown twice


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("events --limit 0", "invalid --limit 0: expected 1 to 1000 (0 goes with --follow"),
        ("events --follow --limit -1", "invalid --limit -1: expected 1 to 1000"),
        ("events --limit 1001", "invalid --limit 1001: expected 1 to 1000"),
        ("events --timeout 5", "--timeout is for --follow"),
        ("events --follow --timeout soon", "invalid --timeout 'soon'"),
        ("events --follow --timeout 0", "invalid --timeout '0'"),
        ("events --since yesterday", "invalid time 'yesterday'"),
        ("events --deployable ../x", "invalid deployable name '../x'"),
    ],
)
def test_bad_options_are_refused_before_cped_is_asked(
    env: Environment, logged: InProcessCped, line: str, message: str
) -> None:
    ran = run(env, line)
    assert ran.status == 2 and ran.out == ""
    assert ran.err.startswith("pcloudsh: error: ") and message in ran.err
    assert logged.calls == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("events --deployable nosuch", "no such deployable: 'nosuch'"),
        ("events --assembly nosuch", "no such assembly: 'nosuch'"),
    ],
)
def test_events_of_an_unknown_name_is_invalid_input(
    env: Environment, cped: InProcessCped, line: str, message: str
) -> None:
    ran = run(env, line)
    assert ran.status == 2 and message in ran.err


def test_events_of_a_known_deployable_without_events_is_empty(
    env: Environment, cped: InProcessCped
) -> None:
    run(env, "deployable_create quiet")
    assert run(env, "events --deployable quiet") == ("no events\n", "", 0)


def test_resource_filter_takes_assembly_slash_resource(
    env: Environment, logged: InProcessCped
) -> None:
    run(env, "assembly_create web host")
    run(env, "assembly_resource_add web/www dummy")
    for line in ("events --resource web/www", "events --resource www"):
        ran = run(env, line)
        assert ran.status == 0 and ran.err == "", (line, ran)
        assert ran.out.splitlines() == [
            f"{stamp(NOW - 1000)}  resource [www] in assembly [web] in deployable [shop] is FAILED: "
            "monitor returned 7 (not running)"
        ]
    assert run(env, "events --resource web/www --assembly db").status == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("events --resource nosuch", "no such resource: 'nosuch'"),
        ("events --resource web/nosuch", "no such resource: 'web/nosuch'"),
        ("events --resource nosuch/www", "no such assembly: 'nosuch'"),
    ],
)
def test_events_of_an_unknown_resource_is_invalid_input(
    env: Environment, cped: InProcessCped, line: str, message: str
) -> None:
    run(env, "assembly_create web host")
    run(env, "assembly_resource_add web/www dummy")
    ran = run(env, line)
    assert (ran.status, ran.out) == (2, ""), ran
    assert ran.err.startswith("pcloudsh: error: ") and message in ran.err, ran.err


def test_events_of_a_known_resource_without_events_is_empty(
    env: Environment, cped: InProcessCped
) -> None:
    run(env, "assembly_create web host")
    run(env, "assembly_resource_add web/www dummy")
    assert run(env, "events --resource web/www") == ("no events\n", "", 0)
    assert run(env, "events --resource www") == ("no events\n", "", 0)
