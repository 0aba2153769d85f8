"""Fixtures shared by every test tier.

- ``pcloud_home``: a fresh ``Paths`` under a short temporary ``PCLOUD_HOME``
  (UNIX socket paths must stay under 107 bytes, so not pytest's long tmp_path);
  the directory is removed afterwards.
- ``store``: a ``foundation.store.Store`` opened on a real SQLite file in that home.

The fixture that runs a real cped lives in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from foundation.paths import Paths, resolve
from foundation.store import Store

# Properties are checked, not timed: a loaded CI machine must not turn a slow
# example into a failure (timing belongs in bench/).
settings.register_profile("pcloud", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pcloud")


def make_home() -> Path:
    """A new, short temporary directory to use as PCLOUD_HOME (caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))


@pytest.fixture
def pcloud_home() -> Iterator[Paths]:
    home = make_home()
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    try:
        yield paths
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def store(pcloud_home: Paths) -> Iterator[Store]:
    opened = Store.open(pcloud_home.store_file)
    try:
        yield opened
    finally:
        opened.close()
