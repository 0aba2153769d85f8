"""``dped --purge-images``: what pcloudsh deployable_delete --purge runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpe.main import main


def _document(tmp_path: Path, infrastructure: str, settings: dict[str, str]) -> Path:
    path = tmp_path / "shop.json"
    doc = {"name": "shop", "infrastructure": infrastructure, "settings": settings}
    path.write_text(json.dumps(doc | {"assemblies": [{"name": "web", "image": "base"}]}))
    return path


def test_an_infrastructure_that_keeps_nothing_purges_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _document(tmp_path, "local", {})
    assert main(["--document", str(path), "--state-dir", str(tmp_path), "--purge-images"]) == 0
    assert json.loads(capsys.readouterr().out) == {}


def test_bad_openstack_settings_are_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _document(tmp_path, "openstack", {"cloud": "c"})
    assert main(["--document", str(path), "--state-dir", str(tmp_path), "--purge-images"]) == 2
    assert "settings.flavor" in capsys.readouterr().err


def test_purge_goes_with_a_document_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shop", "--purge-images"]) == 2
    assert "--purge-images goes with --document" in capsys.readouterr().err
