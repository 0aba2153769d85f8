"""A service fails over between two real local guests before its assembly is back.

``svc`` (``ocf:heartbeat:Dummy``) may run on a1 (score 100) or a2 (score 50)
with stickiness 60; ``app`` on a3 is ordered after it.  New instances take
2 s to "boot" (the local driver's ``boot_delay``), so the order of events
shows the failover does not wait for the re-creation.
"""

from __future__ import annotations

from typing import Any

import pytest

from dpe.drivers.local import LocalDriver
from dpe.interfaces import Instance
from dpe.states import AssemblyState, ResourceState
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, ResourceId
from tests.integration.test_engine_local import Local, key_cache, kill_instance, local, until

pytestmark = pytest.mark.integration
__all__ = ["key_cache", "local"]  # fixtures used here


def failover_document(stickiness: int) -> dict[str, Any]:
    dummy = {"type": "Dummy", "monitor_interval": 0.5}
    return {
        "name": "trio",
        "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
        "settings": {"boot_delay": "2s"},
        "assemblies": [
            {"name": "a1"},
            {"name": "a2"},
            {"name": "a3", "resources": [{"name": "app", **dummy}]},
        ],
        "services": [
            {
                "name": "svc",
                **dummy,
                "locations": [{"assembly": "a1", "score": 100}, {"assembly": "a2", "score": 50}],
                "stickiness": stickiness,
            }
        ],
        "constraints": [{"first": "svc", "then": "a3/app"}],
    }


class A2AfterA1(LocalDriver):
    """a2's first instance is created once a1's answers: svc starts on a1, its best
    place, whichever guest would have booted first (with a2 up alone, svc starts
    there and stickiness 60 keeps it there, as Pacemaker would)."""

    def __init__(self, local: Local) -> None:
        super().__init__(local.paths, {"boot_delay": "2s"})
        self.local, self.waited = local, False

    async def create(self, deployable: str, assembly: Assembly, keys: AssemblyKeys) -> Instance:
        if assembly.name == "a2" and not self.waited:
            self.waited = True
            await until(lambda: self._running("a1"), 30, "a1 running before a2 is created")
        return await super().create(deployable, assembly, keys)

    def _running(self, assembly: str) -> bool:
        runner = self.local.engines[-1].runners.assemblies[assembly]
        return runner.state is AssemblyState.RUNNING


def runs_on(local: Local, assembly: str) -> bool:
    engine = local.engines[-1]
    return engine.runners.resources[ResourceId(assembly, "svc")].state is ResourceState.RUNNING


async def test_the_service_runs_elsewhere_before_its_assembly_is_recreated(local: Local) -> None:
    local.driver = A2AfterA1(local)
    engine = await local.running(failover_document(stickiness=60))
    assert runs_on(local, "a1") and not runs_on(local, "a2"), "\n".join(local.story())
    mark = len(local.events)
    kill_instance(local.instance(engine, "a1"))
    await local.until_line("trio/a2/svc running: started", since=mark)
    assert engine.runners.assemblies["a1"].state is not AssemblyState.RUNNING  # still booting
    await until(lambda: engine.cell.state == "running", 20, "a1 back, everything running")
    lines = local.story()[mark:]
    assert any("svc moves from a1 to a2: assembly a1 is failed" in line for line in lines)
    assert lines.index("trio/a2/svc running: started") < next(
        i for i, line in enumerate(lines) if line.startswith("trio/a1 running:")
    )
    assert lines.index("trio/a2/svc running: started") < lines.index("trio/a3/app running: started")
    assert runs_on(local, "a2") and not runs_on(local, "a1")  # stickiness 60 > 100 - 50
