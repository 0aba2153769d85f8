"""Failure clean-up in the engine (``dpe.engine_cleanup``), with fakes: fail counts
forgotten for the scope asked, an unrecoverable resource probed again, an event
saying what was cleaned, and the request deleted."""

from __future__ import annotations

from foundation.runtime_kinds import CLEANUP
from tests.unit.fakes import Harness
from tests.unit.test_engine import TWO, deployable, resource, running

COUNTED = {"failures": 5, "period": 600}  # failures are counted (escalation on)
DOC = deployable(
    {
        "a1": [resource("x", escalation=COUNTED)],
        "a2": [resource("y", escalation=COUNTED), resource("z", escalation=COUNTED)],
    },
    [("a1/x", "a2/y")],
)


def windows(h: Harness) -> dict[str, int]:
    assert h.runtime is not None
    docs = h.runtime.docs
    found = {k: len(d.get("failures", [])) for k, d in docs.get("resource", {}).items()}
    found |= {k: len(d.get("failures", [])) for k, d in docs.get("assembly", {}).items()}
    return found


async def fail_twice(h: Harness, assembly: str, resource: str) -> None:
    rid = f"{assembly}/{resource}"
    for count in (1, 2):
        h.world.kill_resource(assembly, resource)
        await h.until(lambda: windows(h).get(rid) == count, 10)  # noqa: B023
        await h.until_state(rid, "running")


async def test_a_resource_cleaned_up_forgets_only_its_failures() -> None:
    h = Harness()
    await running(h, DOC)
    await fail_twice(h, "a1", "x")
    await fail_twice(h, "a2", "z")
    assert (windows(h)["a1/x"], windows(h)["a2/z"]) == (2, 2)
    assert h.runtime is not None and h.engine is not None
    h.runtime.put(CLEANUP, "a1/x", {"requested_at": 1.0})
    h.engine.take_requests()
    assert (windows(h)["a1/x"], windows(h)["a2/z"]) == (0, 2)
    assert h.story()[-1] == "a1/x running: cleaned up a1/x: 2 failures forgotten"
    assert CLEANUP not in h.runtime.docs or h.runtime.docs[CLEANUP] == {}

    h.runtime.put(CLEANUP, "", {"requested_at": 2.0})
    h.engine.take_requests()
    assert set(windows(h).values()) == {0}
    assert h.story()[-1] == "dep running: cleaned up the whole deployable: 2 failures forgotten"


async def test_an_unrecoverable_resource_cleaned_up_is_probed_and_started_again() -> None:
    h = Harness()
    h.world.overrides[("a1", "x", "start")] = 5  # not installed
    await h.start(TWO)
    await h.until_state("a1/x", "unrecoverable", within=30)
    await h.until_state("dep", "running")
    del h.world.overrides[("a1", "x", "start")]  # installed now
    assert h.runtime is not None and h.engine is not None
    h.runtime.put(CLEANUP, "a1", {"requested_at": 1.0})
    h.engine.take_requests()
    await h.until_state("a1/x", "running", within=30)
    await h.until_state("a2/y", "running", within=30)  # what waited for it starts too
    story = h.story()
    assert "a1/x unknown: cleaned up: probing it again" in story
    assert "a1 running: cleaned up a1: 0 failures forgotten, probing again a1/x" in story
