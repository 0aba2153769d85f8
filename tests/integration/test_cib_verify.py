"""Exported CIBs against Pacemaker 2.1 itself: ``crm_verify`` and ``crm_simulate``.

Every deployable and state the differential generator produces exports to a
CIB that ``crm_verify`` accepts, with and without a status section, and whose
only complaints are about the failures recorded in it.  Pacemaker reads our
digests as we mean them: same parameters, nothing to do; changed parameters
(however odd their characters), a restart.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpe.cib import build_cib, export_cib
from dpe.pacemaker import available, run_scheduler, verify
from dpe.planner import Applied, AssemblyStatus, Goal, Observed, ResourceStatus
from dpe.states import AssemblyState, ResourceState
from foundation.model import ResourceId, parse
from tests.integration.test_planner_differential import Case, cases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_verify is not installed"),
]

CASES = int(os.environ.get("PCLOUD_VERIFY_CASES", "100"))
BATCH = 4
# what crm_verify may say about a valid CIB: the hard failures recorded in its status
RECORDED_FAILURE = re.compile(
    r"because of (hard|fatal) failure|No further recovery can be attempted"
)


def verified(xml: str) -> list[str]:
    """crm_verify's complaints that are not about recorded failures (empty: all good)."""
    result = verify(xml)
    unexpected = [m for m in result.messages if not RECORDED_FAILURE.search(m)]
    return unexpected if result.ok else ["crm_verify failed", *result.messages[:10]]


def test_every_generated_cib_passes_crm_verify() -> None:
    pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2))

    @settings(
        max_examples=-(-CASES // BATCH),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(cases(), min_size=BATCH, max_size=BATCH))
    def check(batch: list[Case]) -> None:
        xmls = [export_cib(c.document, c.observed) for c in batch]
        xmls += [export_cib(c.document) for c in batch]
        for case, complaints in zip(batch + batch, pool.map(verified, xmls), strict=True):
            assert not complaints, f"{case}\n" + "\n".join(complaints)

    with pool:
        check()


def test_crm_verify_refuses_what_is_not_a_cib() -> None:
    doc = parse(
        {"name": "d", "assemblies": [{"name": "a", "resources": [{"name": "x", "type": "Dummy"}]}]}
    )
    broken = export_cib(doc).replace("<nodes>", "<nodes><bogus/>", 1)
    assert verified(broken)


WEIRD = ["1", "a b", "<&'\">", "tab\there", "line\nbreak", 'ünï<"&>', "x\x7fy", "\U0001f600"]


@pytest.mark.parametrize("value", WEIRD)
def test_pacemaker_reads_our_digests_as_we_mean_them(value: str) -> None:
    doc = parse(
        {
            "name": "d",
            "assemblies": [
                {
                    "name": "a",
                    "resources": [{"name": "x", "type": "Dummy", "parameters": {"p": value}}],
                }
            ],
        }
    )
    rid = ResourceId("a", "x")
    up = {"a": AssemblyStatus(AssemblyState.RUNNING, "10.0.0.1", "a")}

    def running(params: dict[str, str]) -> Observed:
        applied = Applied("ocf:heartbeat:Dummy", tuple(params.items()))
        status = ResourceStatus(ResourceState.RUNNING, "start", 0, applied, monitoring=True)
        return Observed(Goal.RUN, up, {rid: status})

    same = run_scheduler(build_cib(doc, running({"p": value})))
    assert same.actions == (), same.graph
    changed = run_scheduler(build_cib(doc, running({"p": value + "!"})))
    assert {str(a) for a in changed.actions} == {"stop a/x", "start a/x", "monitor a/x every 10 s"}
    assert [line.action for line in changed.summary] == ["restart"]
