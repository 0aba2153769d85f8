"""The failure window, with the original's check_recover cases (N=3, P=1 s)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dpe.escalation import FailureWindow, Verdict
from foundation.model import Escalation

R, E = Verdict.RESTART, Verdict.ESCALATE


def verdicts(window: FailureWindow, times: list[float]) -> list[Verdict]:
    return [window.record(t) for t in times]


def test_three_failures_in_a_row_restart_restart_escalate() -> None:
    window = FailureWindow(Escalation(3, 1.0))
    assert verdicts(window, [100.0, 100.1, 100.2]) == [R, R, E]


def test_counting_starts_again_after_an_escalation() -> None:
    window = FailureWindow(Escalation(3, 1.0))
    assert verdicts(window, [100.0, 100.1, 100.2, 100.3, 100.4, 100.5]) == [R, R, E, R, R, E]


def test_failures_spread_wider_than_the_period_restart() -> None:
    window = FailureWindow(Escalation(3, 1.0))
    # 0.3 s, then 0.6 s and 0.6 s apart: the first and third are 1.2 s apart
    assert verdicts(window, [100.3, 100.9, 101.5]) == [R, R, R]
    # 0.3 s later the last three lie within 0.9 s: escalate; the next one restarts
    assert verdicts(window, [101.8, 101.9]) == [E, R]


def test_the_boundary_is_inclusive() -> None:
    window = FailureWindow(Escalation(2, 10.0))
    assert verdicts(window, [0.0, 10.0]) == [R, E]
    assert verdicts(window, [20.0, 30.5]) == [R, R]


def test_disabled_escalation_always_restarts_and_keeps_nothing() -> None:
    window = FailureWindow(Escalation(0, 0.0))
    assert verdicts(window, [1.0, 1.0, 1.0, 1.0]) == [R] * 4
    assert window.times == []


def test_restore_keeps_the_last_n_and_continues() -> None:
    window = FailureWindow.restore(Escalation(3, 10.0), [1.0, 50.0, 51.0, 52.0])
    assert window.times == [50.0, 51.0, 52.0]
    window = FailureWindow.restore(Escalation(3, 10.0), [50.0, 51.0])
    assert window.record(55.0) is E


def test_retune_to_a_smaller_window_keeps_the_newest() -> None:
    window = FailureWindow.restore(Escalation(5, 10.0), [1.0, 2.0, 3.0])
    window.retune(Escalation(2, 10.0))
    assert window.times == [2.0, 3.0]
    window.retune(Escalation())
    assert window.times == []


def test_reason_names_the_policy_and_the_level() -> None:
    assert FailureWindow(Escalation(2, 10.0)).reason("assembly") == (
        "2 failures in 10 s: escalating to assembly"
    )


@given(
    n=st.integers(1, 5),
    period=st.floats(0.1, 100.0),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=40),
)
def test_escalates_exactly_when_the_last_n_since_the_reset_fit_in_the_period(
    n: int, period: float, gaps: list[float]
) -> None:
    window = FailureWindow(Escalation(n, period))
    since_reset: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        since_reset.append(now)
        last = since_reset[-n:]
        expected = E if len(last) == n and last[-1] - last[0] <= period else R
        assert window.record(now) is expected
        if expected is E:
            since_reset.clear()
