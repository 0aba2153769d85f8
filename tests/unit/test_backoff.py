"""The one back-off rule: doubling from the initial delay up to the cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation.backoff import Backoff, Retries


class SleepLog:
    """A clock that only records how long it was asked to sleep."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def time(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_delays_double_from_the_initial_one_up_to_the_cap() -> None:
    rule = Backoff(1.0, 60.0)
    assert [rule.delay(n) for n in (0, 1, 2, 3, 6, 7, 8)] == [0, 1, 2, 4, 32, 60, 60]


def test_free_failures_are_retried_at_once() -> None:
    rule = Backoff(0.5, 30.0, free=1)
    assert [rule.delay(n) for n in (1, 2, 3, 4)] == [0, 0.5, 1, 2]


def test_a_huge_count_of_failures_stays_at_the_cap() -> None:
    assert Backoff(0.1, 10.0).delay(10_000) == 10.0


@given(st.integers(min_value=0, max_value=100_000))
def test_delays_never_shrink_and_never_pass_the_cap(failures: int) -> None:
    rule = Backoff(0.25, 8.0)
    assert rule.delay(failures) <= rule.delay(failures + 1) <= 8.0


def test_retries_count_failures_in_a_row_until_reset() -> None:
    retries = Retries(Backoff(0.5, 4.0))
    assert [retries.failed() for _ in range(5)] == [0.5, 1, 2, 4, 4]
    retries.reset()
    assert retries.delay == 0.0
    assert retries.failed() == 0.5


@pytest.mark.parametrize(("failures", "slept"), [(0, []), (1, [0.5]), (3, [2.0])])
async def test_pause_waits_the_current_delay_on_the_given_clock(
    failures: int, slept: list[float]
) -> None:
    retries, clock = Retries(Backoff(0.5, 4.0)), SleepLog()
    for _ in range(failures):
        retries.failed()
    await retries.pause(clock)
    assert clock.slept == slept
