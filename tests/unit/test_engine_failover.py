"""The engine with services: failover, stickiness, fail counts, requested moves."""

from __future__ import annotations

from typing import Any

from foundation.model import Deployable, parse
from tests.unit.fakes import Harness, Slow

HEARTBEAT = {"interval": 1, "timeout": 3, "health_interval": 10}


def failover_document(stickiness: int = 0, **service: Any) -> Deployable:
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [
                {"name": "a1"},
                {"name": "a2"},
                {
                    "name": "web",
                    "resources": [
                        {
                            "name": "app",
                            "type": "Dummy",
                            "monitor_interval": 1,
                            "parameters": {"db": {"ref": "db:ipaddress"}},
                        }
                    ],
                },
            ],
            "services": [
                {
                    "name": "db",
                    "type": "Dummy",
                    "monitor_interval": 1,
                    "locations": [
                        {"assembly": "a1", "score": 100},
                        {"assembly": "a2", "score": 50},
                    ],
                    "stickiness": stickiness,
                }
                | service
            ],
            "constraints": [{"first": "db", "then": "web/app"}],
        }
    )


def where(h: Harness, service: str) -> list[str]:
    """The assemblies whose live instance really runs ``service``."""
    return sorted(
        g.assembly
        for g in h.world.guests.values()
        if not g.destroyed and g.alive and g.service(service).running
    )


async def running_everywhere(h: Harness) -> None:
    await h.until_state("dep", "running")


async def test_a_service_fails_over_before_its_assembly_is_recreated_and_stays() -> None:
    h = Harness()
    await h.start(failover_document(stickiness=60))
    await running_everywhere(h)
    assert where(h, "db") == ["a1"]
    address = h.world.guest("a1").instance.address
    assert [o.params for o in h.world.ops if o.resource == "app" and o.op == "start"] == [
        {"db": address}
    ]
    mark = len(h.events)
    old = h.world.guest("a1").instance.instance_id
    h.world.kill_instance("a1")
    await h.until(lambda: where(h, "db") == ["a2"])
    story = h.story(since=mark)
    # running on a2 before a1 has its new instance running
    assert story.index("a2/db running: started") < story.index(
        next(line for line in story if line.startswith("a1 running:"))
    )
    assert any(
        line.startswith("a2/db ") and "db moves from a1 to a2: assembly a1 is failed" in line
        for line in story
    ), story
    assert old in h.driver.destroyed
    await h.until(lambda: h.state("a1") == "running" and h.state("dep") == "running")
    await h.clock.advance(5)
    assert where(h, "db") == ["a2"]  # stickiness 60 > 100 - 50: it stays
    new_address = h.world.guest("a2").instance.address
    app_starts = [o.params for o in h.world.ops if o.resource == "app" and o.op == "start"]
    assert app_starts[-1] == {"db": new_address}  # the reference followed the service
    assert h.world.violations == []


async def test_without_enough_stickiness_it_moves_back_when_its_assembly_returns() -> None:
    h = Harness()
    await h.start(failover_document(stickiness=10))
    await running_everywhere(h)
    mark = len(h.events)
    h.world.kill_instance("a1")
    await h.until_event("a2/db running: started")
    await h.until(lambda: where(h, "db") == ["a1"] and h.state("dep") == "running")
    story = h.story(since=mark)
    back = next(i for i, s in enumerate(story) if "db moves from a2 to a1" in s)
    assert story[back].endswith(
        "db moves from a2 to a1: score 100 on a1 against 60 on a2 (stickiness 10 included)"
    )
    assert story.index("a2/db running: started") < back
    assert story.index("a2/db stopped: stopped") < story.index("a1/db running: started")
    assert h.world.violations == []


async def test_a_service_failing_too_often_on_an_assembly_moves_away() -> None:
    h = Harness()
    await h.start(failover_document(stickiness=0, migration_threshold=2, failure_timeout=600))
    await running_everywhere(h)
    h.world.kill_resource("a1", "db")
    await h.until(lambda: where(h, "db") == ["a1"] and h.state("a1/db") == "running")
    h.world.kill_resource("a1", "db")
    await h.until(lambda: where(h, "db") == ["a2"])
    assert any("2 failures on a1 (migration threshold 2)" in s for s in h.story())
    assert h.runtime is not None
    assert len(h.runtime.docs["service"]["db"]["failures"]["a1"]) == 2


async def test_a_requested_move_happens_then_clears_itself() -> None:
    h = Harness()
    engine = await h.start(failover_document(stickiness=0))
    await running_everywhere(h)
    assert h.runtime is not None
    h.runtime.put("move", "db", {"to": "a2", "requested_at": h.clock.time()})
    mark = len(h.events)
    await engine.reload(engine.document)
    await h.until_event("a2/db running: db moved to a2 as requested")
    assert "db" not in h.runtime.docs.get("move", {})
    # the request is over: the scores decide again, and a2 has no stickiness
    await h.until(lambda: where(h, "db") == ["a1"] and h.state("dep") == "running")
    story = h.story(since=mark)
    assert "a2/db stopped: db moves from a1 to a2: moved by the administrator" in story


async def test_a_candidate_removed_by_a_reload_hands_the_service_over_in_order() -> None:
    h = Harness()
    engine = await h.start(failover_document(stickiness=10))
    await running_everywhere(h)
    mark = len(h.events)
    doc = failover_document(stickiness=10).to_dict()
    doc["services"][0]["locations"] = [{"assembly": "a2", "score": 5}]
    await engine.reload(parse(doc))
    await h.until(lambda: where(h, "db") == ["a2"] and h.state("web/app") == "running")
    story = h.story(since=mark)
    assert (
        "a2/db stopped: db moves from a1 to a2: a1 is no longer one of its assemblies"
        + (" (score 5 on a2)")
        in story
    )
    # what follows it stops first; the old copy stops before the new one starts
    assert story.index("web/app stopped: stopped") < story.index("a1/db stopping: stopping")
    assert story.index("a1/db stopped: stopped") < story.index(
        "a2/db starting: starting (ocf:heartbeat:Dummy)"
    )
    assert h.world.violations == []


async def moved_with_a_failing_stop(stop_answer: int) -> tuple[Harness, list[str], str]:
    """db runs on a1; an administrator moves it to a2; its stop on a1 fails."""
    h = Harness()
    engine = await h.start(failover_document(stickiness=100))
    await running_everywhere(h)
    old = h.world.guest("a1").instance.instance_id
    h.world.script("a1", "db", "stop", stop_answer)
    assert h.runtime is not None
    h.runtime.put("move", "db", {"to": "a2", "requested_at": h.clock.time()})
    mark = len(h.events)
    await engine.reload(engine.document)
    await h.until_event("a2/db running: db moved to a2 as requested")
    return h, h.story(since=mark), old


async def test_a_service_whose_stop_failed_starts_elsewhere_only_after_the_fence() -> None:
    """Whatever the scores say (a move asks for a2 at +INFINITY), a copy that may
    still run on a1 is fenced before the service starts anywhere else."""
    for stop_answer in (1, 5):  # a soft error, then a hard one
        h, story, old = await moved_with_a_failing_stop(stop_answer)
        assert old in h.driver.destroyed, stop_answer
        failed = next(
            i
            for i, s in enumerate(story)
            if s.startswith("a1/db failed:") or s.startswith("a1/db unrecoverable:")
        )
        fenced = next(i for i, s in enumerate(story) if s.startswith("a1 fencing:"))
        started = story.index("a2/db running: db moved to a2 as requested")
        assert failed < fenced < started, story
        assert h.world.violations == []


def with_cache(document: Deployable) -> Deployable:
    """``document`` and a second service, preferring a1."""
    cache = {
        "name": "cache",
        "type": "Dummy",
        "monitor_interval": 1,
        "locations": [{"assembly": "a1", "score": 100}, {"assembly": "a2", "score": 50}],
    }
    return parse(document.to_dict() | {"services": [*document.to_dict()["services"], cache]})


async def test_a_start_in_flight_when_the_engine_is_replaced_is_possibly_running() -> None:
    """The start of cache is sent to a1's guest agent; a1 stops answering, but the
    start takes effect.  The next DPE finds a1 connecting: all it knows of cache
    there is the start that was sent, so cache may run on a1 and starts elsewhere
    only once a1 is fenced (Pacemaker: a pending operation means possibly active)."""
    h = Harness(monitoring="active")
    await h.start(failover_document(stickiness=0))
    await running_everywhere(h)
    old = h.world.guest("a1").instance.instance_id
    h.world.script("a1", "cache", "start", Slow(2.0, 0))
    await h.reload(with_cache(failover_document(stickiness=0)))
    await h.until(lambda: h.state("a1/cache") == "starting")
    h.world.freeze_instance("a1")  # its sshd stops: the start's answer never leaves it
    h.world.guest("a1").service("cache").running = True  # but the start takes effect
    assert h.engine is not None
    await h.engine.shutdown()

    mark = len(h.events)
    await h.start(with_cache(failover_document(stickiness=0)))
    for _ in range(240):  # what really runs, step by step, for two minutes
        await h.clock.advance(0.5)
        assert len(where(h, "cache")) <= 1, "\n".join(h.story(since=mark))
    story = h.story(since=mark)
    assert len(where(h, "cache")) == 1, story
    assert old in h.driver.destroyed
    fenced = next(i for i, s in enumerate(story) if s.startswith("a1 fencing:"))
    started = next(i for i, s in enumerate(story) if s.startswith("a2/cache starting:"))
    assert fenced < started, story
    assert h.world.violations == []
