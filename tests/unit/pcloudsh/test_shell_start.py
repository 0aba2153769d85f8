"""``deployable_start`` of many deployables (``--all``) and ``--wait``.

cped's own rules answer in-process; a test records each deployable's state as
its DPE would (in the store); the environment's ``sleep`` is where time
passes: it advances a fake clock and lets the test move deployables on, so
nothing here waits.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest

from foundation.errors import Conflict
from foundation.runtime_kinds import DEPLOYABLE
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped

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


def set_state(cped: InProcessCped, **states: str) -> None:
    """Each deployable's state as its DPE records it."""
    for name, state in states.items():
        cped.store.put_runtime(name, DEPLOYABLE, "", {"state": state})


def started(cped: InProcessCped) -> list[str]:
    """The deployables cped was asked to start, in order."""
    return [call.split()[1] for call in cped.supervisor.calls if call.startswith("start ")]


@pytest.fixture
def deployables(env: Environment, cped: InProcessCped) -> InProcessCped:
    for name in NAMES:
        assert run(env, f"deployable_create {name}").status == 0
    return cped


@pytest.fixture
def time_env(env: Environment) -> tuple[Environment, Time]:
    time = Time()
    return dataclasses.replace(env, clock=time.clock, sleep=time.sleep), time


def test_all_sends_one_start_per_deployable(env: Environment, deployables: InProcessCped) -> None:
    ran = run(env, "deployable_start --all")
    assert ran.status == 0 and ran.out == "3 of 3 deployables starting\n"
    assert started(deployables) == NAMES


def test_names_or_all_but_not_both_nor_neither(
    env: Environment, deployables: InProcessCped
) -> None:
    for line in ("deployable_start", "deployable_start --all blog"):
        ran = run(env, line)
        assert ran.status == 2 and "or give --all" in ran.err
    assert started(deployables) == []


def test_one_refusal_does_not_stop_the_others_and_fails_the_command(
    env: Environment, deployables: InProcessCped
) -> None:
    refusal = Conflict("no key pair for assembly web")
    deployables.answer("start_deployable", "shop", answer=refusal)
    ran = run(env, "--json deployable_start --all")
    assert ran.status == 1
    assert started(deployables) == ["blog", "wiki"]
    assert json.loads(ran.out)["refused"] == {"shop": "no key pair for assembly web"}


def test_wait_returns_once_every_deployable_runs(
    time_env: tuple[Environment, Time], deployables: InProcessCped
) -> None:
    env, time = time_env

    def one_more_runs(sleeps: int) -> None:
        set_state(deployables, **{NAMES[sleeps - 1]: "running"})

    time.each_sleep = one_more_runs
    ran = run(env, "--json deployable_start --all --wait")
    assert ran.status == 0, ran
    answer = json.loads(ran.out)
    assert answer["running"] == NAMES and answer["failed"] == []
    assert answer["seconds"] == 3.0 and time.sleeps == [1.0, 1.0, 1.0]
    assert ran.err.splitlines()[0] == "pcloudsh: deployable_start: 0 of 3 running (0 s)"
    assert "3 of 3 running" in ran.err.splitlines()[-1]


def test_wait_reports_a_deployable_that_failed(
    time_env: tuple[Environment, Time], deployables: InProcessCped
) -> None:
    env, time = time_env

    def settle(_sleeps: int) -> None:
        set_state(deployables, blog="running", shop="failed", wiki="running")

    time.each_sleep = settle
    ran = run(env, "deployable_start blog shop wiki --wait")
    assert ran.status == 1
    assert ran.out.splitlines() == ["2 of 3 deployables running after 1 s", "shop: failed"]


def test_a_deployable_failed_before_the_start_is_not_taken_as_failed_again(
    time_env: tuple[Environment, Time], deployables: InProcessCped
) -> None:
    env, time = time_env
    set_state(deployables, blog="running", shop="failed", wiki="running")
    steps = ["failed", "starting", "running"]  # its new DPE records anew

    def shop_restarts(sleeps: int) -> None:
        set_state(deployables, shop=steps[min(sleeps, len(steps) - 1)])

    time.each_sleep = shop_restarts
    ran = run(env, "--json deployable_start --all --wait")
    assert ran.status == 0 and json.loads(ran.out)["running"] == NAMES
    assert len(time.sleeps) == 2


def test_wait_gives_up_after_the_timeout(
    time_env: tuple[Environment, Time], deployables: InProcessCped
) -> None:
    env, time = time_env
    set_state(deployables, blog="running", shop="starting")
    ran = run(env, "--json deployable_start --all --wait --timeout 5s")
    assert ran.status == 1
    answer = json.loads(ran.out)
    assert answer["not_settled"] == {"shop": "starting", "wiki": "stopped"}
    assert sum(time.sleeps) == 5.0


def test_one_deployable_without_wait_is_answered_as_before(
    env: Environment, deployables: InProcessCped
) -> None:
    assert run(env, "deployable_start shop").out == "deployable shop starting\n"
