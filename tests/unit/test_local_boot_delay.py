"""The local driver's boot_delay setting: a new instance that takes a VM's time."""

from __future__ import annotations

import pytest

from dpe.drivers.local import LocalSettings
from foundation.errors import InvalidInput


def test_boot_delay_is_a_duration_and_none_by_default() -> None:
    assert LocalSettings.parse({}, root=False).boot_delay == 0.0
    assert LocalSettings.parse({"boot_delay": "1500ms"}, root=False).boot_delay == 1.5


def test_a_bad_boot_delay_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        LocalSettings.parse({"boot_delay": "soon"}, root=False)
    assert "settings.boot_delay" in str(caught.value)
