"""Durations as pcloudsh prints them."""

from __future__ import annotations

import pytest

from pcloudsh.timetext import seconds_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "60 s"),
        (1.5, "1.5 s"),
        (0.30000000000000004, "0.3 s"),
        (0.001, "0.001 s"),
        (0.0001, "0.0001 s"),
        (2.5e-05, "0.000025 s"),
        (1e-09, "0.000000001 s"),
        (0.0, "0 s"),
        (31536000, "365 d"),
        (90000, "90000 s"),
    ],
)
def test_a_duration_reads_as_typed_never_with_an_exponent(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
