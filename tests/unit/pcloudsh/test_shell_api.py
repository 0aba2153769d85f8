"""Telling "cped is not reachable" (exit 3) apart from cped's own "unavailable" (exit 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from foundation.errors import NotFound, Unavailable
from pcloudsh.api import CpedUnreachable, ReachabilityCheck
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.pcloudsh.fakes import FakeDaemon


class FlakyClient:
    def __init__(self, *, answers_health: bool) -> None:
        self.answers_health = answers_health

    def health(self) -> dict[str, Any]:
        if not self.answers_health:
            raise Unavailable("cped is not running")
        return {"status": "ok"}

    def list_deployables(self) -> list[dict[str, Any]]:
        raise Unavailable("the store is busy")

    def get_deployable(self, name: str) -> dict[str, Any]:
        raise NotFound(f"no deployable named {name!r}")

    def stream_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        yield {"id": 1}
        raise Unavailable("cped closed the event stream")


def test_unreachable_when_health_does_not_answer() -> None:
    api = ReachabilityCheck(FlakyClient(answers_health=False))
    with pytest.raises(CpedUnreachable, match="the store is busy"):
        api.list_deployables()


def test_cpeds_own_unavailable_stays_a_failure() -> None:
    api = ReachabilityCheck(FlakyClient(answers_health=True))
    with pytest.raises(Unavailable) as raised:
        api.list_deployables()
    assert not isinstance(raised.value, CpedUnreachable)


def test_other_errors_pass_through() -> None:
    with pytest.raises(NotFound):
        ReachabilityCheck(FlakyClient(answers_health=False)).get_deployable("x")


def test_a_stream_cut_by_a_stopping_cped_is_unreachable() -> None:
    events = ReachabilityCheck(FlakyClient(answers_health=False)).stream_events()
    assert next(events) == {"id": 1}
    with pytest.raises(CpedUnreachable):
        next(events)


def test_status_of_a_cped_that_runs_but_does_not_answer(
    env: Environment, daemon: FakeDaemon
) -> None:
    daemon.status = lambda: {  # type: ignore[method-assign]
        "status": "unreachable",
        "pid": 77,
        "error": "timed out",
    }
    ran = run(env, "status")
    assert ran == ("cped (pid 77) runs but does not answer: timed out\n", "", 3)
