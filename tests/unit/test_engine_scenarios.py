"""The original project's engine scenarios (check_basic, check_escalation,
check_reconfig), with a fake clock, driver and guests.

Every interval is 1 s, as in the original's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from foundation.model import Deployable, parse
from tests.unit.fakes import Harness, monitoring_mode

HEARTBEAT = {"interval": 1, "timeout": 3, "health_interval": 10}


@pytest.fixture(autouse=True, params=["active", "passive"])
def monitoring(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs in both monitoring modes."""
    with monitoring_mode(request.param):
        yield request.param


def one_resource(resource: dict[str, Any], **assembly: Any) -> Deployable:
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [{"name": "a1", "resources": [resource], **assembly}],
        }
    )


HTTPD = {"name": "httpd", "class": "lsb", "type": "httpd", "monitor_interval": 1}
DUMMY = {
    "name": "dummy",
    "type": "Dummy",
    "monitor_interval": 1,
    "parameters": {"assertion": "true"},
}


def ops(h: Harness, subject: str, since: int = 0) -> list[str]:
    return h.world.ops_of(subject, since)


async def started_with_monitors(h: Harness, subject: str, monitors: int) -> None:
    await h.until(lambda: ops(h, subject).count("monitor") >= monitors, within=30)


async def test_restart_lsb_resource_stop_then_start_then_monitors_resume() -> None:
    h = Harness()
    await h.start(one_resource(HTTPD, escalation={"failures": 3, "period": 10}))
    await started_with_monitors(h, "a1/httpd", 5)  # the probe is a status call too
    h.world.kill_resource("a1", "httpd")
    mark = len(h.world.ops)
    await h.until(lambda: ops(h, "a1/httpd", mark).count("monitor") >= 3, within=30)
    # lsb: the probe is ``status`` as well; then start, four good monitors
    assert ops(h, "a1/httpd")[:6] == [
        "monitor",
        "start",
        "monitor",
        "monitor",
        "monitor",
        "monitor",
    ]
    after = ops(h, "a1/httpd", mark)
    assert after[:4] == ["monitor", "stop", "start", "monitor"]
    assert "a1/httpd failed: monitor returned 7 (not running)" in h.story()
    assert h.driver.destroyed == []
    assert h.world.violations == []


async def test_restart_ocf_resource_every_op_carries_its_parameters() -> None:
    h = Harness()
    await h.start(one_resource(DUMMY))
    await started_with_monitors(h, "a1/dummy", 4)
    h.world.kill_resource("a1", "dummy")
    mark = len(h.world.ops)
    await h.until(lambda: ops(h, "a1/dummy", mark).count("monitor") >= 2, within=30)
    assert ops(h, "a1/dummy")[:6] == ["probe", "start", "monitor", "monitor", "monitor", "monitor"]
    assert ops(h, "a1/dummy", mark)[:4] == ["monitor", "stop", "start", "monitor"]
    dummy_ops = [o for o in h.world.ops if o.resource == "dummy"]
    assert dummy_ops and all(o.params == {"assertion": "true"} for o in dummy_ops)
    monitors = [o for o in dummy_ops if o.op == "monitor"]
    assert {o.interval for o in monitors} == {1.0}


async def test_restart_node_recreates_the_instance_then_probe_start_monitor() -> None:
    h = Harness()
    await h.start(one_resource(HTTPD, escalation={"failures": 3, "period": 10}))
    await started_with_monitors(h, "a1/httpd", 5)
    old = h.world.guest("a1").instance.instance_id
    h.world.kill_instance("a1")
    await h.until(lambda: len(h.driver.created) == 2 and h.state("a1/httpd") == "running")
    new = h.world.guest("a1").instance.instance_id
    await h.until(lambda: [o.op for o in h.world.ops if o.instance == new].count("monitor") >= 3)
    assert h.driver.destroyed == [old]
    on_new = [o.op for o in h.world.ops if o.instance == new]
    assert on_new[:4] == ["monitor", "start", "monitor", "monitor"]  # probe, start, monitors
    assert "stop" not in [o.op for o in h.world.ops]  # no separate stop
    assert h.story()[-12:] == [
        "a1 failed: connection lost: connection reset by peer",
        "dep recovering: assembly a1 failed: connection lost: connection reset by peer",
        "a1 fencing: fencing the failed instance",
        f"a1 stopped: instance {old} destroyed",
        "a1/httpd unknown: its instance was destroyed",
        "a1 creating: creating an instance (fake)",
        f"a1 connecting: instance {new} created: address 1.2.3.3",
        "a1 running: connected to 127.0.0.1:20003",
        "a1/httpd stopped: probe: not running",
        "a1/httpd starting: starting (lsb:httpd)",
        "a1/httpd running: started",
        "dep running: 1 assembly running, 1 resource running",
    ]


async def test_resource_escalation_destroys_the_instance_exactly_once() -> None:
    resource = {**DUMMY, "escalation": {"failures": 2, "period": 10}}
    h = Harness()
    await h.start(one_resource(resource))
    subject = "a1/dummy"
    await started_with_monitors(h, subject, 2)
    first_instance = h.world.guest("a1").instance.instance_id

    h.world.kill_resource("a1", "dummy")  # failure 1: restart in place
    mark = len(h.world.ops)
    await h.until(lambda: ops(h, subject, mark).count("monitor") >= 3)
    assert ops(h, subject, mark)[:3] == ["monitor", "stop", "start"]
    assert h.driver.destroyed == []

    h.world.kill_resource("a1", "dummy")  # failure 2 within 10 s: escalate
    await h.until(lambda: h.driver.destroyed != [])
    assert h.driver.destroyed == [first_instance]
    assert "a1 failed: dummy: 2 failures in 10 s: escalating to assembly" in h.story()
    await h.until(lambda: len(h.driver.created) == 2)
    second = h.world.guest("a1").instance.instance_id
    await h.until(lambda: [o.op for o in h.world.ops if o.instance == second].count("monitor") >= 2)
    assert [o.op for o in h.world.ops if o.instance == second][:2] == ["probe", "start"]
    assert h.driver.destroyed == [first_instance]  # exactly once

    h.world.kill_resource("a1", "dummy")  # failure 3, the first since the reset: restart
    mark = len(h.world.ops)
    await h.until(lambda: ops(h, subject, mark).count("monitor") >= 2)
    assert ops(h, subject, mark)[:3] == ["monitor", "stop", "start"]
    assert h.driver.destroyed == [first_instance]
    assert h.world.violations == []


async def test_a_new_address_is_propagated_and_dependants_restart_in_order() -> None:
    cfg = {
        "name": "cfg",
        "type": "script_runner",
        "provider": "pacemaker-cloud",
        "monitor_interval": 1,
        "parameters": {
            "executable_url": "http://example.com/wp-setup",
            "wp_user": "wordpress",
            "db_address": {"ref": "victim:ipaddress"},
            "db_host": {"ref": "victim:hostname"},
        },
    }
    doc = parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [
                {
                    "name": "bar",
                    "resources": [cfg, {"name": "angus", "type": "Dummy", "monitor_interval": 1}],
                },
                {
                    "name": "victim",
                    "resources": [{"name": "andy", "type": "Dummy", "monitor_interval": 1}],
                },
            ],
            "constraints": [
                {"first": "victim/andy", "then": "bar/angus"},
                {"first": "bar/cfg", "then": "bar/angus"},
            ],
        }
    )
    h = Harness()
    await h.start(doc)
    await h.until(lambda: h.state("dep") == "running")
    starts = [str(o) for o in h.world.ops if o.op == "start"]
    assert starts[-1] == "start bar/angus"
    assert sorted(starts[:2]) == ["start bar/cfg", "start victim/andy"]
    assert sorted(str(o) for o in h.world.ops if o.op == "probe") == [
        "probe bar/angus",
        "probe bar/cfg",
        "probe victim/andy",
    ]
    old_address = h.world.guest("victim").instance.address
    await h.until(lambda: ops(h, "bar/cfg").count("monitor") >= 3)

    h.driver.create_delay = 5.0
    h.world.kill_instance("victim")
    mark = len(h.world.ops)
    await h.until(lambda: len(h.driver.created) == 3 and h.state("dep") == "running")
    new_address = h.world.guest("victim").instance.address
    assert new_address != old_address

    after = [str(o) for o in h.world.ops[mark:] if o.op in ("start", "stop")]
    assert len(after) == 5, after
    assert after[0] == "stop bar/angus"  # it cannot run while andy is gone
    assert after[-1] == "start bar/angus"  # after andy, and after cfg's restart
    assert after.index("stop bar/cfg") < after.index("start bar/cfg")
    assert "start victim/andy" in after
    cfg_ops = [o for o in h.world.ops if o.resource == "cfg"]
    assert all(o.params["executable_url"] == "http://example.com/wp-setup" for o in cfg_ops)
    assert all(o.params["wp_user"] == "wordpress" for o in cfg_ops)
    restart = [o for o in cfg_ops[len(cfg_ops) - 10 :] if o.op in ("stop", "start")][-2:]
    assert [o.op for o in restart] == ["stop", "start"]
    assert restart[0].params["db_address"] == old_address  # stopped as it was started
    assert restart[1].params["db_address"] == new_address
    assert restart[1].params["db_host"] == h.world.guest("victim").instance.hostname
    # the consequences say why they restart
    story = h.story()
    assert (
        "bar/angus stopping: stopping: restarting because assembly victim failed"
        " (order victim/andy then bar/angus)" in story
    )
    reason = (
        "restarting because a referenced address changed (db_address: @victim:ipaddress"
        f" {old_address} -> {new_address}"
    )
    assert any(line.startswith(f"bar/cfg stopping: stopping: {reason}") for line in story)
    assert any(
        line.startswith(f"bar/cfg starting: starting (ocf:pacemaker-cloud:script_runner): {reason}")
        for line in story
    )
    # cfg kept running, and being monitored, while victim was down
    down = [o.op for o in h.world.ops[mark:] if o.resource == "cfg"]
    assert down[: down.index("stop")].count("monitor") >= 3
    assert h.world.violations == []
