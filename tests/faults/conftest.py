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
from pathlib import Path

from tests.integration.agent_support import OcfProvider, ocf_provider
from tests.integration.conftest import cped, cped_factory
from tests.integration.test_lifecycle import key_cache, rig

__all__ = [
    "OcfProvider",
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
