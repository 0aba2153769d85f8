"""Fixtures for the fault-injection suite.

- ``rig``: a real cped with short intervals, running deployables through real
  dped processes on the local driver (``tests/integration/test_lifecycle.py``);
  its teardown stops every process of the test's ``PCLOUD_HOME`` by pid.
- ``ocf_provider``: a private OCF provider directory
  ``/usr/lib/ocf/resource.d/pcloud-test-<random>/`` where a test installs its
  own misbehaving agents with ``ocf_provider.install(name, script)``; the
  directory is removed afterwards.
- ``cpu_seconds(pid)``: user + system CPU time a process has used so far.
- ``both_modes``: the test runs once with active and once with passive
  monitoring (the documents of ``shop`` and ``monitored``); a module opts in
  with ``pytest.mark.usefixtures("both_modes")``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent_support import OcfProvider, ocf_provider
from tests.integration.conftest import cped, cped_factory
from tests.integration.test_lifecycle import MONITORING, key_cache, rig

__all__ = [
    "OcfProvider",
    "both_modes",
    "cped",
    "cped_factory",
    "cpu_seconds",
    "key_cache",
    "ocf_provider",
    "rig",
]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(params=["active", "passive"])
def both_modes(request: pytest.FixtureRequest) -> Iterator[str]:
    MONITORING.append(request.param)
    try:
        yield request.param
    finally:
        MONITORING.pop()
