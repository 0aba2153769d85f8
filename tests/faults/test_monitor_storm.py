"""A storm of monitor failures: 90 % of recurring monitors fail, for a while.

The original's scale simulator ran its real engine with 90 % of recurring
monitors failing.  Here a real dped runs 2 assemblies x 8 resources of an OCF
agent whose recurring monitor fails (``not running``) nine times in ten and
counts each failure it reports in a file outside the guests; probes, starts
and stops succeed.  Resource escalation is disabled, so every failure is a
restart of that resource (with the engine's back-off for failures in a row).

Short form (``make test``): 20 s; long form (``PCLOUD_SOAK=1``): 10 minutes.
dped's and cped's resident memory and CPU are sampled from ``/proc`` all the
while.  Then the storm stops and the invariants are checked: memory flat,
CPU bounded, the same DPE throughout, every failure the agent reported is a
``failed`` event of the engine, every resource running again, no agent left
behind.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import OcfProvider
from tests.faults.soaking import SOAK, Sampler, Tally, long_or_short
from tests.faults.test_agent_faults import agent_processes
from tests.integration.test_lifecycle import Rig, monitored

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_modes")]

STORM_SECONDS = long_or_short(600.0, 20.0)
SAMPLE_PERIOD = long_or_short(5.0, 2.0)
ASSEMBLIES, RESOURCES = ("a1", "a2"), 8
MAX_DPED_CPU = 0.5  # of one core
MAX_CPED_CPU = 0.25
MAX_RSS_GROWTH_KIB = 8 * 1024

AGENT = """#!/bin/sh
state="${HA_RSCTMP:-/tmp}/$OCF_RESOURCE_INSTANCE.state"
case "$1" in
start) touch "$state"; exit 0;;
stop) rm -f "$state"; exit 0;;
monitor)
    test -e "$state" || exit 7
    test "$OCF_RESKEY_CRM_meta_interval" = 0 && exit 0
    test -e "$OCF_RESKEY_calm" && exit 0
    draw=$(od -An -N1 -tu1 /dev/urandom)
    test "$draw" -lt 230 || exit 0
    echo "$OCF_RESOURCE_INSTANCE" >> "$OCF_RESKEY_tally"
    exit 7;;
meta-data) exit 0;;
*) exit 3;;
esac
"""


@pytest.fixture
def counting() -> Iterator[Path]:
    """A directory for the agents' tally and the file that stops the storm."""
    directory = Path(tempfile.mkdtemp(prefix="pc-storm-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    for entry in directory.iterdir():
        entry.unlink()
    directory.rmdir()


def document(provider: str, counting: Path) -> dict[str, Any]:
    def resource(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": provider,
            "type": "storm",
            "monitor_interval": 0.5,
            "timeouts": {"monitor": "5s", "start": "5s", "stop": "5s"},
            "escalation": {"failures": "INFINITY"},
            "parameters": {"tally": str(counting / "tally"), "calm": str(counting / "calm")},
        }

    assemblies = [
        {"name": a, "resources": [resource(f"{a}-r{i}") for i in range(RESOURCES)]}
        for a in ASSEMBLIES
    ]
    return monitored(
        {
            "name": "shop",
            "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
            "assemblies": assemblies,
        }
    )


def failed_monitors(rig: Rig) -> int:
    """``failed`` events of a recurring monitor's ``not running``, paged."""
    count, after = 0, 0
    while page := rig.client.query_events(deployable="shop", after_id=after, limit=1000):
        after = int(page[-1]["id"])
        count += sum(
            1
            for e in page
            if e["resource"] and e["state"] == "failed" and "monitor returned 7" in e["reason"]
        )
    return count


def reported(counting: Path) -> int:
    tally = counting / "tally"
    return len(tally.read_text().splitlines()) if tally.exists() else 0


def settled_counts(rig: Rig, counting: Path, within: float = 10.0) -> tuple[int, int]:
    """(failures the agents reported, failed events), once they agree or ``within`` is
    over: a monitor that drew its failure just before the calm reports it a moment after."""
    deadline = time.monotonic() + within
    while True:
        injected, handled = reported(counting), failed_monitors(rig)
        if injected == handled or time.monotonic() > deadline:
            return injected, handled
        time.sleep(0.2)


def test_ninety_percent_of_monitors_failing_keeps_the_engine_in_its_bounds(
    rig: Rig, ocf_provider: OcfProvider, counting: Path
) -> None:
    tally = Tally("monitor failure storm")
    ocf_provider.install("storm", AGENT)
    rig.client.put_deployable("shop", document(ocf_provider.name, counting))
    rig.client.start_deployable("shop")
    dpe = int(rig.until(lambda: rig.status()["dpe"]["pid"], what="a DPE"))
    cped = rig.cped.pid
    with Sampler(lambda: [dpe], SAMPLE_PERIOD) as dped_use, Sampler(lambda: [cped]) as cped_use:
        time.sleep(STORM_SECONDS)
        (counting / "calm").touch()
    status = None
    try:
        status = rig.running(within=90.0 if SOAK else 60.0)
    except AssertionError as error:
        tally.check("every resource running after the storm", False, str(error)[:300])
    if status is not None:
        tally.check("every resource running after the storm", True)
        tally.check("the same DPE throughout", status["dpe"]["pid"] == dpe, str(status["dpe"]))
    injected, handled = settled_counts(rig, counting)
    tally.fault("recurring monitor failures (90 %)", injected)
    tally.check(
        "every failure handled (a failed event each)",
        handled == injected,
        f"{injected} reported by the agent, {handled} failed events",
    )
    growth = dped_use.rss_growth_kib()
    tally.check("dped's memory flat", growth < MAX_RSS_GROWTH_KIB, f"grew {growth} KiB")
    dped_cpu, cped_cpu = dped_use.cpu_fraction(), cped_use.cpu_fraction()
    tally.check("dped's CPU bounded", dped_cpu < MAX_DPED_CPU, f"{dped_cpu:.2f} of a core")
    tally.check("cped's CPU bounded", cped_cpu < MAX_CPED_CPU, f"{cped_cpu:.2f} of a core")
    agents = agent_processes(rig, ocf_provider.name)
    tally.check("no agent left running", len(agents) <= 2 * len(ASSEMBLIES), str(agents))
    tally.figures |= {
        "storm_seconds": STORM_SECONDS,
        "resources": len(ASSEMBLIES) * RESOURCES,
        "failures_reported": injected,
        "failures_handled": handled,
        "dped_cpu_core_fraction": round(dped_cpu, 3),
        "cped_cpu_core_fraction": round(cped_cpu, 3),
        "dped_rss_growth_kib": growth,
        "dped_samples_s_rss_kib_cpu_s": dped_use.to_dict(),
        "cped_samples_s_rss_kib_cpu_s": cped_use.to_dict(),
    }
    tally.save()
    assert tally.violations == [], tally.violations
