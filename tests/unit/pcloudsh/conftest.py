"""Fixtures for pcloudsh's in-process tests: an environment wired to cped's own rules
on a temporary store (``tests.unit.inprocess``) and hand-written fakes for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.store import Store
from pcloudsh.environment import Environment
from pcloudsh.testing import CONSOLE_WIDTH
from tests.unit.inprocess import InProcessCped, StoreStream
from tests.unit.pcloudsh.fakes import (
    FakeDaemon,
    FakeDisks,
    FakeImages,
    FakeKeys,
    FakeTime,
    FakeTimers,
    fake_paths,
)


@pytest.fixture
def cped(tmp_path: Path) -> Iterator[InProcessCped]:
    store = Store.open(tmp_path / "store.sqlite")
    try:
        yield InProcessCped(store)
    finally:
        store.close()


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon(running=True)


@pytest.fixture
def images() -> FakeImages:
    return FakeImages()


@pytest.fixture
def disks() -> FakeDisks:
    return FakeDisks()


@pytest.fixture
def timers() -> FakeTimers:
    return FakeTimers()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def env(
    cped: InProcessCped,
    fake_time: FakeTime,
    keys: FakeKeys,
    daemon: FakeDaemon,
    timers: FakeTimers,
    images: FakeImages,
    disks: FakeDisks,
) -> Environment:
    return Environment(
        paths=fake_paths(),
        width=CONSOLE_WIDTH,
        color=False,
        clock=lambda: 1_700_000_000.0,
        sleep=fake_time.sleep,  # polls (--wait, --watch) go on at once
        monotonic=fake_time.monotonic,
        connect=lambda _paths: cped,
        connect_events=lambda _paths: StoreStream(cped),
        timer=timers.start,
        make_keys=lambda _paths: keys,
        make_daemon=lambda _paths: daemon,
        make_images=lambda _paths: images,
        make_disks=lambda _paths: disks,
    )


SCENARIO = [
    "assembly_create web host",
    "assembly_create db host",
    "assembly_resource_add www dummy web state=/run/www.state fake=@db:ipaddress",
    "assembly_resource_add pg dummy db --monitor-interval 20s --timeout start=60",
    "deployable_create shop",
    "deployable_assembly_add shop db",
    "deployable_assembly_add shop web",
    "deployable_constraint_add shop db/pg web/www",
    "escalation_resource_set www web 3 60",
    "escalation_assembly_set web 2 5m",
    "escalation_deployable_set shop 2 1h",
]


@pytest.fixture
def shop(env: Environment, cped: InProcessCped) -> InProcessCped:
    """The catalog of the acceptance scenario, built with pcloudsh commands."""
    from pcloudsh.testing import run

    for line in SCENARIO:
        ran = run(env, line)
        assert ran.status == 0, (line, ran)
    return cped
