"""A dped's periodic timers at its deployable's phase: one wake-up for them all."""

from __future__ import annotations

import logging
import math

from hypothesis import given
from hypothesis import strategies as st

from dpe.engine_lease import LeaseKeeper
from dpe.engine_log import Context
from dpe.engine_timing import EngineOptions, at_phase, deployable_phase
from dpe.runtime import MemoryRuntime
from tests.unit.fakes import FakeClock

NOW = st.floats(min_value=1.6e9, max_value=2.0e9)  # the wall clock, in seconds
PERIOD = st.sampled_from([0.5, 1.0, 2.0, 5.0])
FRACTION = st.floats(min_value=0.0, max_value=0.999)


def off_phase(at: float, phase: float, period: float) -> float:
    """How far ``at`` is from the nearest moment ``phase`` into a ``period``."""
    return abs((at - phase + period / 2) % period - period / 2)


@given(NOW, st.floats(min_value=0.5, max_value=60.0), FRACTION, PERIOD)
def test_the_wait_ends_at_the_phase_and_never_much_later_than_asked(
    now: float, seconds: float, fraction: float, period: float
) -> None:
    phase = fraction * period
    wait = at_phase(now, seconds, phase, period)
    assert off_phase(now + wait, phase, period) < 1e-5
    assert seconds - period < wait <= seconds + period / 100 + 1e-6


@given(st.integers(min_value=1_600_000_000, max_value=1_999_999_999), FRACTION, PERIOD)
def test_once_at_the_phase_a_timer_keeps_its_period(
    second: int, fraction: float, period: float
) -> None:
    phase = fraction * period
    now = second * period + phase  # a timer that just fired at its phase...
    for late in (-1e-6, 0.0, 1e-4, 3e-3):  # ...or a little after, as timers do (or a hair before)
        wait = at_phase(now + late, 5 * period, phase, period)
        assert math.isclose(wait, 5 * period - late, abs_tol=1e-5)


def test_the_timers_of_a_deployable_share_its_heartbeats_phase() -> None:
    phase = deployable_phase("shop", 1.0)
    waits = [at_phase(1_700_000_000.123 + k * 0.37, 5.0, phase, 1.0) for k in range(10)]
    ends = {
        round((1_700_000_000.123 + k * 0.37 + w - phase) % 1.0, 6) % 1.0
        for k, w in enumerate(waits)
    }
    assert ends == {0.0}


@given(NOW, FRACTION, st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([0.25, 0.5, 1.0]))
def test_a_renewal_brought_to_the_phase_is_never_asked_later_than_lease_renew(
    now: float, fraction: float, interval: float, renew: float
) -> None:
    """Acting stops ``lease_ttl - fence_margin`` after a renewal (0.75 s with a 2 s
    lease renewed every 0.5 s): a renewal asked later would fence a healthy DPE."""
    clock = FakeClock(now)
    options = EngineOptions(lease_ttl=2.0, lease_renew=renew)
    keeper = LeaseKeeper(
        MemoryRuntime("dep"),
        clock,
        options,
        "test:1",
        Context(logging.getLogger()),
        _no_loss,
        phase=lambda: fraction * interval,
    )
    assert 0 < keeper._until_renewal() <= renew * 1.01


def _no_loss() -> None:
    raise AssertionError("not expected here")
