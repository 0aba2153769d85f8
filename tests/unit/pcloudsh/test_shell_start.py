"""``deployable_start`` of many deployables (``--all``) and ``--wait``.

The fake cped's list answers the states a test sets; the environment's
``sleep`` is where time passes: it advances a fake clock and lets the test
move deployables on, so nothing here waits.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest

from foundation.errors import Conflict
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.pcloudsh.fakes import FakeCped

NAMES = ["blog", "shop", "wiki"]


class Time:
    """A clock that moves only when the command sleeps; ``each_sleep`` runs then."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []
        self.each_sleep: Callable[[int], None] = lambda _n: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.each_sleep(len(self.sleeps))


@pytest.fixture
def deployables(env: Environment, cped: FakeCped) -> FakeCped:
    for name in NAMES:
        assert run(env, f"deployable_create {name}").status == 0
    return cped


@pytest.fixture
def time_env(env: Environment) -> tuple[Environment, Time]:
    time = Time()
    return dataclasses.replace(env, clock=time.clock, sleep=time.sleep), time


def test_all_sends_one_start_per_deployable(env: Environment, deployables: FakeCped) -> None:
    ran = run(env, "deployable_start --all")
    assert ran.status == 0 and ran.out == "3 of 3 deployables starting\n"
    assert deployables.started == NAMES


def test_names_or_all_but_not_both_nor_neither(env: Environment, deployables: FakeCped) -> None:
    for line in ("deployable_start", "deployable_start --all blog"):
        ran = run(env, line)
        assert ran.status == 2 and "or give --all" in ran.err
    assert deployables.started == []


def test_one_refusal_does_not_stop_the_others_and_fails_the_command(
    env: Environment, deployables: FakeCped
) -> None:
    deployables.refusals["shop"] = Conflict("no key pair for assembly web")
    ran = run(env, "--json deployable_start --all")
    assert ran.status == 1
    assert deployables.started == ["blog", "wiki"]
    assert json.loads(ran.out)["refused"] == {"shop": "no key pair for assembly web"}


def test_wait_returns_once_every_deployable_runs(
    time_env: tuple[Environment, Time], deployables: FakeCped
) -> None:
    env, time = time_env

    def one_more_runs(sleeps: int) -> None:
        deployables.states[NAMES[sleeps - 1]] = "running"

    time.each_sleep = one_more_runs
    ran = run(env, "--json deployable_start --all --wait")
    assert ran.status == 0, ran
    answer = json.loads(ran.out)
    assert answer["running"] == NAMES and answer["failed"] == []
    assert answer["seconds"] == 3.0 and time.sleeps == [1.0, 1.0, 1.0]
    assert ran.err.splitlines()[0] == "pcloudsh: deployable_start: 0 of 3 running (0 s)"
    assert "3 of 3 running" in ran.err.splitlines()[-1]


def test_wait_reports_a_deployable_that_failed(
    time_env: tuple[Environment, Time], deployables: FakeCped
) -> None:
    env, time = time_env

    def settle(_sleeps: int) -> None:
        deployables.states.update(blog="running", shop="failed", wiki="running")

    time.each_sleep = settle
    ran = run(env, "deployable_start blog shop wiki --wait")
    assert ran.status == 1
    assert ran.out.splitlines() == ["2 of 3 deployables running after 1 s", "shop: failed"]


def test_a_deployable_failed_before_the_start_is_not_taken_as_failed_again(
    time_env: tuple[Environment, Time], deployables: FakeCped
) -> None:
    env, time = time_env
    deployables.states.update(blog="running", shop="failed", wiki="running")
    steps = ["failed", "starting", "running"]  # its new DPE records anew

    def shop_restarts(sleeps: int) -> None:
        deployables.states["shop"] = steps[min(sleeps, len(steps) - 1)]

    time.each_sleep = shop_restarts
    ran = run(env, "--json deployable_start --all --wait")
    assert ran.status == 0 and json.loads(ran.out)["running"] == NAMES
    assert len(time.sleeps) == 2


def test_wait_gives_up_after_the_timeout(
    time_env: tuple[Environment, Time], deployables: FakeCped
) -> None:
    env, time = time_env
    deployables.states.update(blog="running", shop="starting")
    ran = run(env, "--json deployable_start --all --wait --timeout 5s")
    assert ran.status == 1
    answer = json.loads(ran.out)
    assert answer["not_settled"] == {"shop": "starting", "wiki": "stopped"}
    assert sum(time.sleeps) == 5.0


def test_one_deployable_without_wait_is_answered_as_before(
    env: Environment, deployables: FakeCped
) -> None:
    assert run(env, "deployable_start shop").out == "deployable shop starting\n"
