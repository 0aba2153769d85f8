"""State cells: one event per real change, checked against the transition tables."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import pytest

from dpe.states import (
    ASSEMBLY_TRANSITIONS,
    DEPLOYABLE_TRANSITIONS,
    RESOURCE_TRANSITIONS,
    AssemblyState,
    DeployableState,
    InvalidTransition,
    ResourceState,
    Subject,
    assembly_cell,
    deployable_cell,
    escalating,
    giving_up,
    no_heartbeat,
    resource_cell,
    seconds,
)
from foundation.events import Event


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.now = 1000.0

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def clock(self) -> float:
        return self.now


def test_a_change_emits_one_event_with_subject_time_and_reason() -> None:
    rec = Recorder()
    cell = resource_cell(Subject("web", "a1", "httpd"), rec.emit, rec.clock)
    rec.now = 1234.5
    assert cell.set(ResourceState.RUNNING, "probe: running")
    assert rec.events == [
        Event(1234.5, "web", "running", "probe: running", assembly="a1", resource="httpd")
    ]
    assert cell.state is ResourceState.RUNNING
    assert cell.reason == "probe: running"


def test_setting_the_state_it_already_has_does_nothing() -> None:
    rec = Recorder()
    cell = assembly_cell(Subject("web", "a1"), rec.emit, rec.clock)
    cell.set(AssemblyState.CREATING, "creating the instance")
    assert not cell.set(AssemblyState.CREATING, "again")
    assert [e.reason for e in rec.events] == ["creating the instance"]
    assert cell.reason == "creating the instance"


def test_a_transition_the_table_does_not_allow_raises_and_changes_nothing() -> None:
    rec = Recorder()
    cell = assembly_cell(Subject("web", "a1"), rec.emit, rec.clock)
    with pytest.raises(InvalidTransition, match="web/a1: unknown -> running"):
        cell.set(AssemblyState.RUNNING, "too early")
    assert cell.state is AssemblyState.UNKNOWN
    assert rec.events == []


def test_announce_sets_or_at_least_tells_why() -> None:
    rec = Recorder()
    cell = deployable_cell(Subject("web"), rec.emit, rec.clock)
    cell.announce(DeployableState.RECOVERING, "a1/x failed")
    cell.announce(DeployableState.RECOVERING, "assembly a1 escalated: restarting every assembly")
    assert [(e.state, e.reason) for e in rec.events] == [
        ("recovering", "a1/x failed"),
        ("recovering", "assembly a1 escalated: restarting every assembly"),
    ]
    assert cell.reason == "a1/x failed"


def test_a_note_is_an_event_without_a_change() -> None:
    rec = Recorder()
    cell = deployable_cell(Subject("web"), rec.emit, rec.clock)
    cell.note("cannot start a1/x: depends on a1/y, which is unrecoverable")
    assert cell.state is DeployableState.STARTING
    assert rec.events[0].state == "starting"
    assert rec.events[0].assembly is None and rec.events[0].resource is None


@pytest.mark.parametrize(
    ("table", "states", "never_returned_to"),
    [
        (ASSEMBLY_TRANSITIONS, AssemblyState, {AssemblyState.UNKNOWN}),
        (RESOURCE_TRANSITIONS, ResourceState, set()),
        (DEPLOYABLE_TRANSITIONS, DeployableState, set()),
    ],
)
def test_every_state_has_a_row_and_every_state_is_reachable(
    table: Mapping[Any, frozenset[Any]], states: type[Enum], never_returned_to: set[Any]
) -> None:
    assert set(table) == set(states)
    reachable = set().union(*table.values())
    assert reachable == set(states) - never_returned_to


def test_resources_forget_everything_but_come_back_through_unknown() -> None:
    for state, targets in RESOURCE_TRANSITIONS.items():
        if state is not ResourceState.UNKNOWN:
            assert ResourceState.UNKNOWN in targets, state


def test_reason_texts() -> None:
    assert no_heartbeat(3.0) == "no heartbeat for 3.0 s"
    assert no_heartbeat(0.6) == "no heartbeat for 0.6 s"
    assert escalating(2, 10.0, "assembly") == "2 failures in 10 s: escalating to assembly"
    assert escalating(3, 0.5, "deployable") == "3 failures in 0.5 s: escalating to deployable"
    assert escalating(1, 60.0, "assembly") == "1 failure in 60 s: escalating to assembly"
    assert giving_up(2, 600.0) == "2 failures in 600 s: no more recovery until it is started again"
    assert seconds(0.25) == "0.25 s"
