"""``[dped] policy_engine = pacemaker``: dped plans with crm_simulate.

A real dped from the store, with the configuration file asking for Pacemaker,
runs the three-assembly deployable of ``test_engine_local.py`` on the local
driver (real sshd guests, real OCF agents) and recovers from a killed daemon.
With a crm_simulate that fails, dped says so in an event and plans with the
built-in planner: the deployable runs all the same.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dpe.pacemaker import available
from foundation.model import parse
from foundation.paths import Paths
from foundation.store import Store
from tests.integration.test_dped import (  # noqa: F401  (fixtures)
    Dped,
    events_after,
    instances,
    key_cache,
    lines,
    start,
    wait_for,
    world,
)
from tests.integration.test_engine_local import daemons, store_document, trio

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]

PACEMAKER = (
    "[cped]\nlease_ttl = 2s\n\n[dped]\nlease_renew_interval = 0.5s\npolicy_engine = pacemaker\n"
)
FALLBACK = "policy engine failed"
RUNNING = "trio running: 3 assemblies running, 3 resources running"


def running_trio(paths: Paths, store: Store) -> None:
    paths.config_file.write_text(PACEMAKER)
    store_document(store, parse(trio(paths.state_dir)))


def test_dped_plans_with_pacemaker_and_recovers_a_failed_resource(
    world: tuple[Paths, list[Dped]],  # noqa: F811
) -> None:
    paths = world[0]
    store = Store.open(paths.store_file)
    try:
        running_trio(paths, store)
        dped = start(world, "--foreground", "trio")
        wait_for(lambda: RUNNING in lines(events_after(store)), what="the deployable running")
        story = lines(events_after(store))
        assert story.index("trio/a1/d1 running: started") < story.index(
            "trio/a3/app starting: starting (ocf:heartbeat:anything)"
        )
        [pid] = daemons(paths.state_dir)
        mark = events_after(store)[-1].id or 0
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: "trio/a3/app running: started" in lines(events_after(store, mark)),
            what="the daemon started again",
        )
        recovery = lines(events_after(store, mark))
        assert recovery[0].startswith("trio/a3/app failed: monitor returned")
        assert "trio/a3/app stopped: stopped" in recovery
        assert not [line for line in lines(events_after(store)) if FALLBACK in line]
        dped.signal(signal.SIGTERM)
        assert dped.wait() == 0, dped.stderr()
        assert "policy engine: pacemaker (crm_simulate)" in dped.stderr()
        assert instances(paths) == {}
    finally:
        store.close()


def test_a_failing_crm_simulate_falls_back_to_the_builtin_planner_and_says_so(
    world: tuple[Paths, list[Dped]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = world[0]
    broken = paths.state_dir / "bin"
    broken.mkdir()
    fake = broken / "crm_simulate"
    fake.write_text("#!/bin/sh\necho 'crm_simulate: cannot read the CIB' >&2\nexit 105\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    store = Store.open(paths.store_file)
    try:
        running_trio(paths, store)
        dped = start(world, "--foreground", "trio")
        wait_for(lambda: RUNNING in lines(events_after(store)), what="the deployable running")
        [note] = [line for line in lines(events_after(store)) if FALLBACK in line]
        assert "crm_simulate failed (exit status 105): crm_simulate: cannot read the CIB" in note
        assert "planning with the built-in planner for 60 s" in note
        dped.signal(signal.SIGTERM)
        assert dped.wait() == 0, dped.stderr()
    finally:
        store.close()


def test_the_man_page_of_dped_names_the_option() -> None:
    page = Path(__file__).parents[2] / "man" / "dped.8"
    assert "policy_engine" in page.read_text()
