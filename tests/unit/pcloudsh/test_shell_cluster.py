"""cluster_status in-process: the members table, JSON as cped answered it."""

from __future__ import annotations

import json

from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode
from pcloudsh.testing import run
from tests.unit.pcloudsh.fakes import FakeCped

CLUSTER = {
    "member": "m2",
    "store": "postgresql://pcloud@db:5432/pcloud",
    "members": [
        {
            "name": "m1",
            "url": "https://10.0.0.1:8443",
            "host": "h",
            "pid": 10,
            "health": "gone",
            "heartbeat_age": 12.25,
            "deployables": [],
            "self": False,
        },
        {
            "name": "m2",
            "url": None,
            "host": "h",
            "pid": 11,
            "health": "alive",
            "heartbeat_age": 0.4,
            "deployables": ["shop", "web"],
            "self": True,
        },
    ],
    "unowned": ["blog"],
}


def test_cluster_status_lists_members_health_and_what_each_runs(
    env: Environment, cped: FakeCped
) -> None:
    cped.cluster = CLUSTER
    out, err, status = run(env, "cluster_status")
    assert status == ExitCode.OK, err
    lines = out.splitlines()
    assert any("m1" in line and "gone" in line and "12.2 s ago" in line for line in lines)
    assert any("m2 *" in line and "alive" in line and "shop, web" in line for line in lines)
    assert "not running anywhere: blog" in out and "postgresql://pcloud@db" in out


def test_cluster_status_json_is_the_answer(env: Environment, cped: FakeCped) -> None:
    cped.cluster = CLUSTER
    out, _, status = run(env, "--json cluster_status")
    assert status == ExitCode.OK and json.loads(out) == CLUSTER


def test_status_names_the_member_that_runs_the_deployable(env: Environment, cped: FakeCped) -> None:
    from pcloudsh.status import _dpe

    line = _dpe({"dpe": {"pid": 42, "alive": True, "lease_epoch": 3, "member": "m2"}})
    assert line == "DPE pid 42 on member m2, lease epoch 3"
