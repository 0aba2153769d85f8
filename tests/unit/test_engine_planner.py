"""The engine's policy engine seam: the planner it is given plans; while that
planner fails, the built-in one plans and an event says so, once per retry
period."""

from __future__ import annotations

from dpe.planner import Observed, Plan
from dpe.policy import plan
from foundation.errors import Unavailable
from foundation.model import Deployable
from tests.unit.fakes import Harness, settle
from tests.unit.test_engine import TWO

FALLBACK = (
    "the flaky policy engine failed (crm_simulate is not installed):"
    " planning with the built-in planner for 60 s"
)


class Counting:
    """The built-in planner, counting its calls and what they returned."""

    def __init__(self) -> None:
        self.calls = 0
        self.plans: list[Plan] = []

    def __call__(self, document: Deployable, observed: Observed) -> Plan:
        self.calls += 1
        self.plans.append(plan(document, observed))
        return self.plans[-1]


class Flaky:
    """A planner that fails while ``failing``."""

    name = "flaky"

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def __call__(self, document: Deployable, observed: Observed) -> Plan:
        self.calls += 1
        if self.failing:
            raise Unavailable("crm_simulate is not installed")
        return plan(document, observed)


def fallbacks(h: Harness) -> int:
    """How many events said the engine fell back to the built-in planner."""
    return len([line for line in h.story("dep") if line.endswith(FALLBACK)])


async def start(h: Harness, planner: object) -> None:
    engine = h.new_engine(TWO, planner=planner)  # type: ignore[arg-type]
    await engine.start()
    await settle()


async def test_the_planner_given_plans_every_transition() -> None:
    h, counting = Harness(), Counting()
    await start(h, counting)
    await h.until_state("dep", "running", within=30)
    assert counting.calls > 0
    assert any(not p.empty for p in counting.plans)
    h.world.kill_resource("a2", "y")
    calls = counting.calls
    await h.until(lambda: h.story("a2/y").count("a2/y running: started") == 2, within=30)
    assert counting.calls > calls


async def test_a_failing_planner_falls_back_to_the_builtin_and_says_so_once() -> None:
    h, flaky = Harness(), Flaky()
    await start(h, flaky)
    await h.until_state("dep", "running", within=30)
    assert fallbacks(h) == 1
    calls = flaky.calls
    h.world.kill_resource("a2", "y")  # within the retry period: no new attempt, no new event
    await h.until(lambda: h.story("a2/y").count("a2/y running: started") == 2, within=30)
    assert flaky.calls == calls
    assert fallbacks(h) == 1


async def test_after_the_retry_period_the_planner_given_plans_again() -> None:
    h, flaky = Harness(), Flaky()
    await start(h, flaky)
    await h.until_state("dep", "running", within=30)
    flaky.failing = False
    await h.clock.advance(61)
    calls = flaky.calls
    h.world.kill_resource("a2", "y")
    await h.until(lambda: h.story("a2/y").count("a2/y running: started") == 2, within=30)
    assert flaky.calls > calls
    assert fallbacks(h) == 1
