"""``policy_engine = pacemaker`` end to end: the engine planning with crm_simulate.

The three-assembly deployable of ``test_engine_local.py`` (real sshd guests
with the local driver, real OCF agents, a reference parameter, an order across
assemblies) runs with ``dpe.pacemaker.PacemakerPlanner`` in place of the
built-in planner: it comes up in order, and a killed daemon is stopped and
started again, with the same events as with the built-in planner.

The planner is given to the engine as ``dped`` gives it for ``policy_engine =
pacemaker`` (``tests/integration/test_policy_engine.py`` runs dped itself).
"""

from __future__ import annotations

import os
import signal

import pytest

from dpe.pacemaker import PacemakerPlanner, available
from dpe.planner import Observed, Plan
from foundation.model import Deployable
from tests.integration.test_engine_local import (  # noqa: F401  (fixtures)
    Local,
    daemons,
    in_order,
    key_cache,
    local,
    trio,
    until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]


class Recording(PacemakerPlanner):
    """Pacemaker's planner, counting its calls and the resource actions it gave."""

    def __init__(self) -> None:
        super().__init__(timeout=10.0)
        self.calls = 0
        self.resource_actions = 0

    def __call__(self, document: Deployable, observed: Observed) -> Plan:
        result = super().__call__(document, observed)
        self.calls += 1
        self.resource_actions += len([a for a in result.actions if a.resource])
        return result


@pytest.fixture
def pacemaker() -> Recording:
    return Recording()


async def test_a_deployable_runs_and_recovers_with_pacemaker_planning(
    local: Local,  # noqa: F811
    pacemaker: Recording,
) -> None:
    engine = await local.running(trio(local.paths.state_dir), pacemaker)
    assert pacemaker.calls > 0 and pacemaker.resource_actions > 0
    lines = local.story()
    assert lines.index("trio/a1/d1 running: started") < lines.index(
        "trio/a3/app starting: starting (ocf:heartbeat:anything)"
    )
    [(pid, argv)] = daemons(local.paths.state_dir).items()
    assert argv[-1] == local.instance(engine, "a1").address  # the reference, resolved

    calls = pacemaker.calls
    os.kill(pid, signal.SIGKILL)
    await until(lambda: bool(set(daemons(local.paths.state_dir)) - {pid}), 15, "a new daemon")
    await until(lambda: engine.cell.state == "running", 15)
    assert in_order(
        local.story("trio/a3/app"),
        [
            "trio/a3/app failed: monitor returned 1 (unknown error)",
            "trio/a3/app stopping: stopping",
            "trio/a3/app stopped: stopped",
            "trio/a3/app starting: starting (ocf:heartbeat:anything)",
            "trio/a3/app running: started",
        ],
    )
    assert pacemaker.calls > calls  # the recovery was planned by Pacemaker
    assert len(daemons(local.paths.state_dir)) == 1
