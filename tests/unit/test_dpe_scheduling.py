"""How the supervisor accounts for a late DPE's time: could it run, did it wait, was it stopped."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from cpe.dpe_scheduling import NEWBORN, Doubt, Scheduling, process_age, read_scheduling


def test_time_waiting_for_a_cpu_is_not_time_it_could_run() -> None:
    doubt = Doubt.begin(100.0, Scheduling(1.0, False))
    doubt.look(102.0, Scheduling(2.5, False))  # of 2 s, it waited 1.5 s
    assert (doubt.could_run, doubt.waited, doubt.stopped) == pytest.approx((0.5, 1.5, 0.0))


def test_time_around_a_stop_is_not_time_it_could_run() -> None:
    doubt = Doubt.begin(100.0, NEWBORN)
    doubt.look(101.0, Scheduling(0.0, True))
    doubt.look(103.0, Scheduling(0.0, False))  # continued somewhere in these 2 s
    doubt.look(104.0, Scheduling(0.2, False))
    assert (doubt.could_run, doubt.waited, doubt.stopped) == pytest.approx((0.8, 0.2, 3.0))
    assert doubt.lasted(104.0) == 4.0
    assert doubt.evidence(104.0) == (
        "in the last 4.0 s it could run 0.8 s (waited 0.2 s for a CPU, stopped 3.0 s)"
    )


def test_the_kernel_s_count_never_makes_it_wait_longer_than_the_time_that_passed() -> None:
    doubt = Doubt.begin(100.0, Scheduling(0.0, False))
    doubt.look(101.0, Scheduling(5.0, False))
    assert (doubt.could_run, doubt.waited) == (0.0, 1.0)


def test_without_the_kernel_s_view_all_the_time_counts_as_time_it_could_run() -> None:
    doubt = Doubt.begin(100.0, None)
    doubt.look(101.5, Scheduling(3.0, True))
    doubt.look(102.0, None)
    assert (doubt.could_run, doubt.waited, doubt.stopped) == (2.0, 0.0, 0.0)


def test_this_process_can_run_and_a_process_that_is_gone_has_no_view() -> None:
    seen = read_scheduling(os.getpid())
    assert seen is not None and not seen.stopped and seen.waited >= 0.0
    assert read_scheduling(2**22 + 1) is None  # above the kernel's largest pid


def test_a_process_age_is_counted_from_its_start_by_the_kernel() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        began = time.monotonic()
        time.sleep(0.3)
        age = process_age(child.pid)
        assert age is not None and 0.2 <= age <= time.monotonic() - began + 0.1
    finally:
        child.kill()
        child.wait()
    assert process_age(child.pid) is None  # gone
