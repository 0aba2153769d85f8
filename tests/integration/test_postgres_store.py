"""One cped on a PostgreSQL store: the same lifecycle as on SQLite, through real dped
processes on the local driver (start, status, reload, a killed DPE replaced, cped
restarted and adopting, stop)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.paths import Paths
from tests.integration.conftest import CpedFactory
from tests.integration.test_lifecycle import CONFIG, Rig, dummy, instance_ids, key_cache, shop
from tests.postgres import write_cluster_key

__all__ = ["key_cache"]

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_rig(
    cped_factory: CpedFactory, pcloud_home: Paths, key_cache: Path, pg_url: str
) -> Iterator[Rig]:
    shutil.copytree(key_cache, pcloud_home.keys_dir, dirs_exist_ok=True)
    key = write_cluster_key(pcloud_home.config_dir / "cluster.key")
    config = CONFIG.replace("[cped]\n", f"[cped]\nstore = {pg_url}\nkey_file = {key}\n")
    made = Rig(pcloud_home, cped_factory, cped_factory(config))
    try:
        yield made
    finally:
        made.teardown()


def test_a_deployable_lives_its_whole_life_on_postgresql(pg_rig: Rig) -> None:
    rig = pg_rig
    assert rig.client.health()["store"].startswith("postgresql://pcloud@")
    assert not pg_rig.paths.store_file.exists(), "no SQLite file beside PostgreSQL"
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    first = rig.running()
    assert first["dpe"]["lease_epoch"] == 1

    rig.client.add_resource("a1", dummy("extra"))
    rig.client.reload_deployable("shop")
    rig.until(lambda: len(rig.status()["assemblies"][0]["resources"]) == 2, what="reloaded")

    os.kill(first["dpe"]["pid"], signal.SIGKILL)
    rig.until(lambda: rig.status()["dpe"]["pid"] not in (None, first["dpe"]["pid"]))
    again = rig.running()
    assert again["dpe"]["lease_epoch"] > first["dpe"]["lease_epoch"]
    assert instance_ids(again) == instance_ids(first), "the instances were adopted"

    rig.cped.kill()
    rig.new_cped()
    adopted = rig.running()
    assert adopted["dpe"]["pid"] == again["dpe"]["pid"] and adopted["dpe"]["adopted"]

    assert rig.client.stop_deployable("shop")["state"] == "stopped"
    assert rig.processes() == {}
    states = [e["state"] for e in rig.events()]
    assert "dpe-adopted" in states and states[-1] == "dpe-exited"
