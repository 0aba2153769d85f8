"""cped checks openstack settings against the cloud before storing them: a cloud
that clouds.yaml does not name is invalid input, other infrastructures are not asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpe.infrastructure import check_infrastructure
from foundation.errors import InvalidInput

pytest.importorskip("openstack")


async def test_a_cloud_clouds_yaml_does_not_name_is_invalid(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n")
    body = {
        "name": "shop",
        "infrastructure": "openstack",
        "settings": {"cloud": "mine", "flavor": "f", "network": "n", "clouds_file": str(clouds)},
    }
    with pytest.raises(InvalidInput, match=r"settings\.cloud.*mine"):
        await check_infrastructure(body)


async def test_missing_settings_are_named_before_any_cloud_is_asked() -> None:
    body = {"name": "shop", "infrastructure": "openstack", "settings": {"cloud": "mine"}}
    with pytest.raises(InvalidInput, match=r"settings\.flavor"):
        await check_infrastructure(body)


async def test_other_infrastructures_are_not_checked() -> None:
    await check_infrastructure(
        {"name": "shop", "infrastructure": "libvirt", "settings": {"x": "y"}}
    )
    await check_infrastructure({"name": "shop"})
