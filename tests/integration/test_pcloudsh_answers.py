"""What pcloudsh answers at the edges of its commands, with real pcloudsh processes.

- ``deployable_start --wait`` on a deployable with a resource whose agent never
  starts fails, naming that resource (``not_running`` in --json); the stopped
  deployable's status shows its monitoring mode as set, not as running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_runtime import Runtime, _leave_nothing_running

pytestmark = pytest.mark.integration

NEVER_STARTS = [
    "resource_template_add failer ocf:heartbeat:anything binfile=/bin/false",
    "assembly_create web host",
    "assembly_resource_add web/ok dummy",
    "assembly_resource_add web/bad failer",
    "deployable_create shop",
    "deployable_assembly_add shop web",
]


@pytest.fixture
def shell(cped: CpedProcess) -> Iterator[Runtime]:
    runtime = Runtime(cped.paths)
    for line in NEVER_STARTS:
        runtime.ok(line)
    try:
        yield runtime
    finally:
        _leave_nothing_running(runtime, cped.paths)


def test_start_wait_fails_naming_the_resources_that_do_not_run(shell: Runtime) -> None:
    started = shell.run("deployable_start", "shop", "--wait")
    assert started.returncode == 1, (started.stdout, started.stderr)
    assert "1 cannot start; deployable_status shop shows why" in started.stdout
    assert "pcloudsh: error: deployable shop: not every resource runs: web/bad (" in (
        started.stderr
    )
    assert "web/ok" not in started.stderr and "Traceback" not in started.stderr
    again = shell.run("--json", "deployable_start", "shop", "--wait")
    assert again.returncode == 1
    answer = json.loads(again.stdout)
    assert [(r["assembly"], r["resource"]) for r in answer["not_running"]] == [("web", "bad")]

    shell.ok("deployable_stop shop --wait")
    status = shell.ok("deployable_status shop").splitlines()
    assert status[0].startswith("deployable shop: stopped (no DPE, monitoring active once started")
    assert shell.status()["monitoring"] == "active"  # --json: the setting, as before
