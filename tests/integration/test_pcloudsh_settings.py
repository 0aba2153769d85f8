"""Infrastructure settings through pcloudsh and a real cped: refused when written, and
a DPE that still refuses its configuration (a store written before they were checked)
makes the deployable ``failed`` with the reason after a few tries, not a restart loop.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from foundation.store import Store
from tests.integration.conftest import CpedFactory
from tests.integration.test_pcloudsh_events import Shell
from tests.integration.test_pcloudsh_session import alive

pytestmark = pytest.mark.integration

QUICK_RESTARTS = """\
[cped]
dpe_backoff_initial = 100ms
dpe_backoff_max = 400ms
"""
WAIT = 60.0


def ok(shell: Shell, *args: str) -> str:
    done = shell.run(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def events(shell: Shell, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(ok(shell, "--json", "events", "--deployable", name))
    return found


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("bogus=1", "settings.bogus: unknown setting"),
        ("network=bogus", "settings.network: must be loopback or netns, not 'bogus'"),
        ("subnet=8.8.8.0/24", "settings.subnet: must be a private network"),
        ("start_timeout=soon", "settings.start_timeout:"),
    ],
)
def test_a_bad_setting_is_refused_when_written(
    cped_factory: CpedFactory, setting: str, problem: str
) -> None:
    shell = Shell(cped_factory().paths)
    done = shell.run("deployable_create", "d3", "local", "--set", setting)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert problem in done.stderr and "Traceback" not in done.stderr
    assert json.loads(ok(shell, "--json", "deployable_list")) == []


def test_a_configuration_its_dpe_refuses_fails_the_deployable_after_a_few_tries(
    cped_factory: CpedFactory,
) -> None:
    cped = cped_factory(QUICK_RESTARTS)
    shell = Shell(cped.paths)
    for line in (
        "assembly_create web host",
        "deployable_create d3",
        "deployable_assembly_add d3 web",
    ):
        ok(shell, *line.split())
    store = Store.open(cped.paths.store_file)  # as a store written before the check
    try:
        with store.transaction():
            doc = store.get_deployable("d3")
            store.update_deployable(doc | {"settings": {"bogus": "1"}})
    finally:
        store.close()

    assert ok(shell, "deployable_start", "d3").startswith("deployable d3 starting")
    row = _wait_listed(shell, "d3", "failed")
    (failed,) = [e for e in events(shell, "d3") if e["state"] == "failed"]
    assert "settings.bogus: unknown setting" in failed["reason"], failed
    assert "fix it, then start the deployable again" in failed["reason"]
    started = [e for e in events(shell, "d3") if e["state"] == "dpe-started"]
    assert len(started) == 3, started
    time.sleep(2.0)  # more than the back-off's cap: nothing more is started
    assert [e for e in events(shell, "d3") if e["state"] == "dpe-started"] == started
    assert row["desired"] == "started"
    status = json.loads(ok(shell, "--json", "deployable_status", "d3"))
    assert status["state"] == "failed"
    pids = [int(e["reason"].split("pid ")[1].split(")")[0]) for e in started]
    assert not any(alive(pid) for pid in pids)


def _wait_listed(shell: Shell, name: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        rows = json.loads(ok(shell, "--json", "deployable_list"))
        row: dict[str, Any] = next(r for r in rows if r["name"] == name)
        if row["state"] == state:
            return row
        assert time.monotonic() < deadline, f"not {state}: {row}"
        time.sleep(0.2)
