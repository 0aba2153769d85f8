"""cluster_status in-process: the members table, JSON as cped answered it (an answer
of the shape cped's document declares), and cped without membership refusing it."""

from __future__ import annotations

import json

from cpe.answers import ClusterStatus
from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped

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


def test_the_answer_shown_here_is_one_cped_declares() -> None:
    ClusterStatus.model_validate(CLUSTER)


def test_cluster_status_lists_members_health_and_what_each_runs(
    env: Environment, cped: InProcessCped
) -> None:
    cped.answer("cluster_status", answer=CLUSTER)
    out, err, status = run(env, "cluster_status")
    assert status == ExitCode.OK, err
    lines = out.splitlines()
    assert any("m1" in line and "gone" in line and "12.2 s ago" in line for line in lines)
    assert any("m2 *" in line and "alive" in line and "shop, web" in line for line in lines)
    assert "not running anywhere: blog" in out and "postgresql://pcloud@db" in out


def test_cluster_status_json_is_the_answer(env: Environment, cped: InProcessCped) -> None:
    cped.answer("cluster_status", answer=CLUSTER)
    out, _, status = run(env, "--json cluster_status")
    assert status == ExitCode.OK and json.loads(out) == CLUSTER


def test_a_lone_cped_says_it_has_no_cluster(env: Environment, cped: InProcessCped) -> None:
    _, err, status = run(env, "cluster_status")
    assert status == ExitCode.FAILURE
    assert "without membership" in err and "Traceback" not in err


def test_status_names_the_member_that_runs_the_deployable() -> None:
    from pcloudsh.status import _dpe

    line = _dpe({"dpe": {"pid": 42, "alive": True, "lease_epoch": 3, "member": "m2"}})
    assert line == "DPE pid 42 on member m2, lease epoch 3"
