"""The shell keeps a few of cped's defaults as its own constants (importing cped's
modules would slow every one-shot command): they must stay equal to cped's."""

from __future__ import annotations

from cpe import control, routes
from pcloudsh import daemon, waiting


def test_the_shells_start_timeout_is_cpeds() -> None:
    assert daemon.START_TIMEOUT == control.START_TIMEOUT


def test_the_shells_stop_wait_is_cpeds() -> None:
    assert waiting.STOP_WAIT == routes.STOP_WAIT
