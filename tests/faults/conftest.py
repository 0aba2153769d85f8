"""Fixtures for the fault-injection suite.

- ``rig``: a real cped with short intervals, running deployables through real
  dped processes on the local driver (``tests/integration/test_lifecycle.py``);
  its teardown stops every process of the test's ``PCLOUD_HOME`` by pid.
- ``ocf_provider``: a private OCF provider directory
  ``/usr/lib/ocf/resource.d/pcloud-test-<random>/`` where a test installs its
  own misbehaving agents with ``ocf_provider.install(name, script)``; the
  directory is removed afterwards.
- ``cpu_seconds(pid)``: user + system CPU time a process has used so far.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import cped, cped_factory
from tests.integration.test_lifecycle import key_cache, rig

__all__ = ["OcfProvider", "cped", "cped_factory", "cpu_seconds", "key_cache", "rig"]

OCF_PROVIDERS = Path("/usr/lib/ocf/resource.d")


@dataclass
class OcfProvider:
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    def install(self, agent: str, script: str) -> None:
        path = self.directory / agent
        path.write_text(script)
        path.chmod(0o755)


@pytest.fixture
def ocf_provider() -> Iterator[OcfProvider]:
    directory = OCF_PROVIDERS / f"pcloud-test-{secrets.token_hex(4)}"
    directory.mkdir(parents=True)
    try:
        yield OcfProvider(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
