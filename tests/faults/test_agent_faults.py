"""Resource agents that misbehave, run by a real cped and dped on local guests.

Each agent is a small OCF script installed in a private provider directory:
it starts and stops honestly, and its recurring ``monitor`` hangs, crashes,
prints garbage with an unknown exit code, or fails every other time.  After
each fault: the failure is detected with a reason that names it, the resource
escalates per its policy (2 failures in 60 s: restart the assembly), the
deployable comes back, hung agents do not pile up, and the DPE does not spin
(its CPU use over the fault stays low).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.conftest import OcfProvider, cpu_seconds
from tests.integration.test_lifecycle import Rig, monitored

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_modes")]

AGENT = """#!/bin/sh
state="${{HA_RSCTMP:-/tmp}}/$OCF_RESOURCE_INSTANCE.state"
count="${{HA_RSCTMP:-/tmp}}/$OCF_RESOURCE_INSTANCE.count"
case "$1" in
start) touch "$state"; exit 0;;
stop) rm -f "$state"; exit 0;;
monitor)
    test -e "$state" || exit 7
    test "$OCF_RESKEY_CRM_meta_interval" = 0 && exit 0
    n=$(cat "$count" 2>/dev/null || echo 0); echo $((n + 1)) > "$count"
    {behaviour};;
meta-data) exit 0;;
*) exit 3;;
esac
"""
BEHAVIOURS = {
    "hang": "sleep 600",
    "crash": "kill -SEGV $$",
    "garbage": "head -c 3000 /dev/urandom | od -c; echo 'not an OCF code' >&2; exit 99",
    "flap": "test $((n % 2)) = 0 || exit 7; exit 0",
}
FAILURES = {
    "hang": "monitor timed out after 1 s",
    "crash": "monitor returned 1 (unknown error): killed by SIGSEGV",  # OCF's generic error
    "garbage": "monitor returned 1 (unknown error)",  # an exit code outside OCF's range
    "flap": "monitor returned 7 (not running)",
}
ESCALATION = {"failures": 2, "period": 60}


def document(provider: str, agent: str) -> dict[str, Any]:
    resource = {
        "name": "app",
        "provider": provider,
        "type": agent,
        "monitor_interval": 0.3,
        "timeouts": {"monitor": "1s", "start": "3s", "stop": "3s"},
        "escalation": ESCALATION,
    }
    return monitored(
        {
            "name": "shop",
            "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
            "assemblies": [{"name": "a1", "resources": [resource]}],
        }
    )


def app_reasons(rig: Rig) -> list[str]:
    events = rig.client.query_events(deployable="shop", limit=1000)
    return [
        f"{e.get('resource') or e.get('assembly') or ''} {e['state']}: {e['reason']}"
        for e in events
    ]


def in_order(lines: list[str], prefixes: list[str]) -> bool:
    """Each prefix starts some line, later than the line that matched the one before."""
    position = 0
    for prefix in prefixes:
        while position < len(lines) and not lines[position].startswith(prefix):
            position += 1
        if position == len(lines):
            return False
        position += 1
    return True


def agent_processes(rig: Rig, provider: str) -> list[int]:
    return [pid for pid, argv in rig.processes().items() if any(provider in w for w in argv)]


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_a_misbehaving_monitor_fails_escalates_and_does_not_spin(
    rig: Rig, ocf_provider: OcfProvider, behaviour: str
) -> None:
    ocf_provider.install(behaviour, AGENT.format(behaviour=BEHAVIOURS[behaviour]))
    rig.client.put_deployable("shop", document(ocf_provider.name, behaviour))
    rig.client.start_deployable("shop")
    dpe = rig.until(lambda: rig.status()["dpe"]["pid"], what="a DPE")
    # The window opens at the first failure: dped's own start (imports, the
    # guest's launch, the first key exchange) is not the fault's cost.
    rig.until(
        lambda: any(r.startswith("app failed: ") for r in app_reasons(rig)),
        within=20,
        what=f"{behaviour}: the first failure",
    )
    cpu_before, started = cpu_seconds(dpe), time.monotonic()
    rig.until(
        lambda: any("escalating to assembly" in r for r in app_reasons(rig)),
        within=20,
        what=f"{behaviour}: escalation to the assembly",
    )
    time.sleep(2.0)
    used = cpu_seconds(dpe) - cpu_before
    elapsed = time.monotonic() - started
    reasons = app_reasons(rig)
    assert used < 0.5 * elapsed, f"the DPE used {used:.2f} s of CPU in {elapsed:.1f} s"
    assert len(agent_processes(rig, ocf_provider.name)) <= 2, "hung agents pile up"
    failures = [r for r in reasons if r.startswith("app failed: ")]
    assert failures[:2] == [f"app failed: {FAILURES[behaviour]}"] * 2, reasons
    fenced_then_created = [
        "a1 failed: app: 2 failures in 60 s: escalating to assembly",
        "a1 fencing: fencing the failed instance",
        "a1 stopped: instance",
        "a1 creating: creating an instance (local)",
    ]
    assert in_order(reasons, fenced_then_created), reasons
    rig.running()  # the deployable converges again
