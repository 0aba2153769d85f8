"""A resource that keeps failing to start (escalation off), with fakes: between two
tries it is stopped, and its runtime row says it cannot start, why, until when, and
what its failed start returned; a clean-up forgets those failures."""

from __future__ import annotations

from typing import Any

from foundation.runtime_kinds import CLEANUP, RESOURCE
from tests.unit.fakes import Harness
from tests.unit.test_engine import TWO

BACKING_OFF = "backing off after failures in a row"


def row(h: Harness, rid: str) -> dict[str, Any]:
    assert h.runtime is not None
    return dict(h.runtime.docs[RESOURCE][rid])


async def failing_to_start(h: Harness) -> None:
    """a1/x's start fails for good (rc 1: not a hard error, so tried again and again)."""
    h.world.overrides[("a1", "x", "start")] = 1
    await h.start(TWO)
    await h.until(lambda: row(h, "a1/x").get("blocked") == BACKING_OFF, within=30)
    await h.until_state("a1/x", "stopped")


async def test_a_resource_backing_off_records_why_it_cannot_start_and_its_failed_start() -> None:
    h = Harness()
    await failing_to_start(h)
    recorded = row(h, "a1/x")
    assert (recorded["state"], recorded["last_op"], recorded["last_rc"]) == ("stopped", "stop", 0)
    failure = recorded["last_failure"]
    assert (failure["op"], failure["rc"]) == ("start", 1)
    assert failure["reason"] == "start returned 1 (unknown error)"
    assert recorded["failures_in_a_row"] >= 2  # the first is retried at once
    assert recorded["retry_at"] > h.clock.time()
    # what is ordered after it cannot start either, and says why
    assert row(h, "a2/y")["blocked"] == f"waiting for a1/x, which is {BACKING_OFF}"
    assert h.engine is not None
    assert h.engine.status()["resources"]["a1/x"]["blocked"] == BACKING_OFF


async def test_a_resource_that_starts_at_last_is_no_longer_blocked() -> None:
    h = Harness()
    await failing_to_start(h)
    del h.world.overrides[("a1", "x", "start")]
    await h.until_state("a2/y", "running", within=120)
    assert row(h, "a1/x")["blocked"] is None
    assert row(h, "a2/y")["blocked"] is None
    assert h.story("dep")[-1] == "dep running: 2 assemblies running, 3 resources running"


async def test_cleaning_up_a_resource_backing_off_forgets_its_failures_in_a_row() -> None:
    h = Harness()
    await failing_to_start(h)
    in_a_row = row(h, "a1/x")["failures_in_a_row"]
    assert h.runtime is not None and h.engine is not None
    h.runtime.put(CLEANUP, "a1/x", {"requested_at": 1.0})
    h.engine.take_requests()
    noun = "failure" if in_a_row == 1 else "failures"
    assert f"a1/x stopped: cleaned up a1/x: {in_a_row} {noun} forgotten" in h.story()
    assert in_a_row >= 2
    assert row(h, "a1/x")["last_failure"] is None
