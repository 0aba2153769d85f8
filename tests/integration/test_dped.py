"""``dped`` as a process: from the store and from a document file; SIGKILL and
a restart that adopts; SIGTERM stops cleanly; ``--leave-running``; SIGHUP
reloads; exit codes.  Every dped and instance a test starts is gone after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dpe.drivers.local import LocalDriver
from foundation.events import Event
from foundation.model import parse
from foundation.paths import Paths
from foundation.store import Store
from tests.integration.test_engine_local import (
    daemons,
    destroy_everything,
    install_keys,
    key_cache,  # noqa: F401  (the session fixture, shared)
    store_document,
    trio,
)

pytestmark = pytest.mark.integration

CONFIG = "[cped]\nlease_ttl = 2s\n\n[dped]\nlease_renew_interval = 0.5s\n"


def wait_for(condition: Callable[[], Any], within: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        time.sleep(0.05)


class Dped:
    """One dped process of a test, its standard error in a file."""

    def __init__(self, paths: Paths, *args: str) -> None:
        self.paths = paths
        self.log = paths.state_dir / f"dped-{time.monotonic_ns()}.err"
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dpe.main", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PCLOUD_HOME": str(paths.state_dir.parent)},
            )

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, within: float = 20.0) -> int:
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"dped did not exit:\n{self.stderr()}") from None


@pytest.fixture
def world(pcloud_home: Paths, request: pytest.FixtureRequest) -> Iterator[tuple[Paths, list[Dped]]]:
    install_keys(request.getfixturevalue("key_cache"), pcloud_home)
    pcloud_home.config_file.write_text(CONFIG)
    started: list[Dped] = []
    try:
        yield pcloud_home, started
    finally:
        for dped in started:
            if dped.proc.poll() is None:
                dped.proc.kill()
                dped.proc.wait(10)
        asyncio.run(destroy_everything(pcloud_home, "trio"))


def start(world: tuple[Paths, list[Dped]], *args: str) -> Dped:
    paths, started = world
    dped = Dped(paths, *args)
    started.append(dped)
    return dped


def events_after(store: Store, after_id: int = 0) -> list[Event]:
    return store.query_events(deployable="trio", after_id=after_id, limit=10_000)


def lines(events: list[Event]) -> list[str]:
    return [f"{e.subject} {e.state}: {e.reason}" for e in events]


def instances(paths: Paths) -> dict[str, str]:
    listed = asyncio.run(LocalDriver(paths, {}).list("trio"))
    return {i.assembly: i.instance_id for i in listed}


# ---------------------------------------------------------------------------


def test_dped_killed_and_started_again_adopts_and_its_windows_continue(
    world: tuple[Paths, list[Dped]],
) -> None:
    paths = world[0]
    store = Store.open(paths.store_file)
    try:
        document = parse(trio(paths.state_dir, app={"failures": 2, "period": 60}))
        store_document(store, document)
        first = start(world, "--foreground", "trio")
        wait_for(
            lambda: (
                "trio running: 3 assemblies running, 3 resources running"
                in lines(events_after(store))
            ),
            what="the deployable running",
        )
        [pid] = daemons(paths.state_dir)
        killed_at = events_after(store)[-1].id or 0
        os.kill(pid, signal.SIGKILL)  # failure 1 of the window, before the restart
        wait_for(
            lambda: any(
                line.startswith("trio/a3/app failed")
                for line in lines(events_after(store, killed_at))
            ),
            what="the failure seen",
        )
        wait_for(
            lambda: lines(events_after(store, killed_at))[-1].startswith("trio running"),
            what="running again after the resource restart",
        )
        # The agent's start may leave a short-lived helper that matches too.
        wait_for(lambda: len(daemons(paths.state_dir)) == 1, what="one daemon")
        before = instances(paths)
        [daemon] = daemons(paths.state_dir)
        assert daemon != pid

        first.signal(signal.SIGKILL)
        first.wait()
        mark = events_after(store)[-1].id or 0
        second = start(world, "--foreground", "trio")
        wait_for(
            lambda: any(
                line.startswith("trio running") for line in lines(events_after(store, mark))
            ),
            what="running again after the restart",
        )
        story = lines(events_after(store, mark))
        assert story[0] == "trio starting: engine started (lease epoch 2)"
        assert instances(paths) == before  # nothing created
        assert list(daemons(paths.state_dir)) == [daemon], story  # nothing restarted
        assert sorted(line for line in story if "probe" in line) == [
            "trio/a1/d1 running: probe: running",
            "trio/a2/d2 running: probe: running",
            "trio/a3/app running: probe: running",
        ]
        assert not [line for line in story if "starting: starting" in line or "creating" in line]

        after = events_after(store)[-1].id or 0
        os.kill(daemon, signal.SIGKILL)  # failure 2 within 60 s: the window went on
        expected = "trio/a3 failed: app: 2 failures in 60 s: escalating to assembly"
        wait_for(lambda: expected in lines(events_after(store, after)), what=expected)

        second.signal(signal.SIGTERM)
        assert second.wait() == 0, second.stderr()
        assert instances(paths) == {}
        assert store.get_runtime("trio") == {
            "deployable": {
                "": {
                    "state": "stopped",
                    "reason": "every resource stopped, every instance destroyed",
                    "failures": [],
                }
            }
        }
    finally:
        store.close()


def test_dped_document_mode_prints_the_story_and_stops_cleanly(
    world: tuple[Paths, list[Dped]],
) -> None:
    paths = world[0]
    doc = paths.state_dir / "trio.json"
    doc.write_text(json.dumps(trio(paths.state_dir)))
    dped = start(world, "--document", str(doc), "--state-dir", str(paths.state_dir))
    wait_for(lambda: "trio running:" in dped.stderr(), what="running")
    assert len(instances(paths)) == 3
    dped.signal(signal.SIGTERM)
    assert dped.wait() == 0
    err = dped.stderr()
    assert "trio stopped: every resource stopped, every instance destroyed" in err, err
    assert "trio/a3/app stopped: stopped" in err, err
    assert err.index("trio/a3/app stopped: stopped") < err.index("trio/a1/d1 stopped: stopped"), err
    assert instances(paths) == {}
    assert daemons(paths.state_dir) == {}


def test_leave_running_then_a_new_dped_adopts_and_a_sighup_reloads(
    world: tuple[Paths, list[Dped]],
) -> None:
    paths = world[0]
    doc = paths.state_dir / "trio.json"
    document = trio(paths.state_dir)
    doc.write_text(json.dumps(document))
    args = ("--document", str(doc), "--state-dir", str(paths.state_dir))
    first = start(world, *args, "--leave-running")
    wait_for(lambda: "trio running:" in first.stderr(), what="running")
    before = instances(paths)
    daemon = set(daemons(paths.state_dir))
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    assert instances(paths) == before
    assert set(daemons(paths.state_dir)) == daemon

    second = start(world, *args)
    wait_for(lambda: "trio running:" in second.stderr(), what="adopted and running")
    err = second.stderr()
    assert "adopting instance" in err
    assert "starting: starting" not in err and "creating" not in err
    assert instances(paths) == before

    document["assemblies"][1]["resources"].append(
        {"name": "d4", "type": "Dummy", "monitor_interval": 0.5}
    )
    doc.write_text(json.dumps(document))
    second.signal(signal.SIGHUP)
    wait_for(lambda: "trio/a2/d4 running: started" in second.stderr(), what="d4 started")
    assert "trio/a2/d2 stopping" not in second.stderr()  # untouched
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert instances(paths) == {}


def test_a_second_dped_for_the_same_deployable_gives_up(world: tuple[Paths, list[Dped]]) -> None:
    paths = world[0]
    store = Store.open(paths.store_file)
    try:
        store_document(store, parse(trio(paths.state_dir)))
    finally:
        store.close()
    first = start(world, "--foreground", "trio")
    wait_for(lambda: len(instances(paths)) == 3, what="instances")
    second = start(world, "--foreground", "trio")
    assert second.wait(15) == 1
    assert "dped: deployable trio is kept by another DPE (its lease is held)" in second.stderr()
    first.signal(signal.SIGTERM)
    assert first.wait() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either a DEPLOYABLE or --document FILE"),
        (("trio", "--document", "x.json"), "give either a DEPLOYABLE or --document FILE"),
        (("--state-dir", "/tmp", "trio"), "--state-dir goes with --document"),
        (("nosuch",), "no such deployable: 'nosuch'"),
        (("bad/name",), "not a valid name"),
        (("--document", "/nonexistent/doc.json"), "cannot read /nonexistent/doc.json"),
        (("--config", "/nonexistent/pcloud.conf", "trio"), "/nonexistent/pcloud.conf"),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    world: tuple[Paths, list[Dped]], args: tuple[str, ...], message: str
) -> None:
    dped = start(world, *args)
    assert dped.wait() == 2
    assert message in dped.stderr()
    assert "Traceback" not in dped.stderr()


def test_an_invalid_document_exits_2_naming_the_field(world: tuple[Paths, list[Dped]]) -> None:
    paths = world[0]
    doc = paths.state_dir / "bad.json"
    document = trio(paths.state_dir)
    document["assemblies"][0]["resources"][0]["monitor_interval"] = "10x"
    doc.write_text(json.dumps(document))
    dped = start(world, "--document", str(doc))
    assert dped.wait() == 2
    assert (
        'assemblies[0].resources[0].monitor_interval: not a duration: "10x"' in dped.stderr()
        or ("assemblies[0].resources[0].monitor_interval: not a duration: '10x'" in dped.stderr())
    )


def test_a_handover_releases_the_lease_and_leaves_everything_running(
    world: tuple[Paths, list[Dped]],
) -> None:
    """SIGUSR1: the DPE stops acting, releases its lease and exits 0; the instances stay;
    a DPE still waiting for a lease held by another hands over without taking it."""
    paths = world[0]
    store = Store.open(paths.store_file)
    try:
        store_document(store, parse(trio(paths.state_dir)))
        first = start(world, "--foreground", "trio")
        wait_for(lambda: len(instances(paths)) == 3, what="instances")
        kept = instances(paths)
        waiting = start(world, "--foreground", "trio")  # the lease is held: it waits
        wait_for(lambda: "the lease is held: waiting" in waiting.stderr(), what="waiting")
        waiting.signal(signal.SIGUSR1)
        assert waiting.wait(15) == 0 and "handed over before it started" in waiting.stderr()
        first.signal(signal.SIGUSR1)
        assert first.wait(15) == 0
        lease = store.get_lease("trio")
        assert lease is not None and lease["holder"] is None and lease["epoch"] == 1
        assert instances(paths) == kept, "a handover leaves every instance running"
        assert "stopped acting (lease epoch 1)" in first.stderr()
        successor = start(world, "--foreground", "trio")  # adopts at once: the lease is free
        wait_for(lambda: (store.get_lease("trio") or {}).get("epoch") == 2, what="epoch 2")
        assert instances(paths) == kept
        successor.signal(signal.SIGTERM)
        assert successor.wait() == 0
    finally:
        store.close()
