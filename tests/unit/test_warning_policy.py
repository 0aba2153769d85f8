"""The programs' warning policy: third-party warnings are dropped, the project's kept."""

from __future__ import annotations

import warnings

import pytest

from foundation.warning_policy import quiet_third_party_warnings


def shown(module: str, category: type[Warning] = DeprecationWarning) -> list[str]:
    """What the policy lets through of one warning attributed to module."""
    with warnings.catch_warnings(record=True) as caught:
        quiet_third_party_warnings()
        warnings.warn_explicit("a message", category, f"{module}.py", 1, module=module)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("module", ["asyncssh.crypto.misc", "cryptography.utils", "aiohttp"])
def test_a_third_party_modules_warning_is_dropped(module: str) -> None:
    assert shown(module) == []


@pytest.mark.parametrize("module", ["dpe.engine", "cpe", "pcloudsh.shell", "images.jeos"])
def test_the_projects_own_warnings_are_kept(module: str) -> None:
    assert shown(module, UserWarning) == ["a message"]


def test_a_module_whose_name_only_starts_like_ours_is_third_party() -> None:
    assert shown("dpe_extras.thing") == []
