"""deployable_status: the tree of a deployable's runtime state, coloured, and --json as is.

The first test reads what a DPE recorded through cped's own status; the others
show status documents as cped may send them, set as its answer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from foundation.events import Event
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, INSTANCE, RESOURCE
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import DownCped

NOW = 1_700_000_000.0


def failing_shop() -> dict[str, Any]:
    return {
        "name": "shop",
        "state": "recovering",
        "reason": "resource www failed",
        "desired": "started",
        "dpe": {"pid": 4711, "lease_epoch": 7, "alive": True},
        "assemblies": [
            {
                "name": "db",
                "state": "running",
                "reason": "connected to 10.0.0.2:22",
                "instance": "db-1a2b3c4d",
                "address": "10.0.0.2",
                "uptime": 2 * 3600 + 5 * 60,
                "resources": [{"name": "pg", "state": "running", "failures": 0, "last_rc": 0}],
            },
            {
                "name": "web",
                "state": "running",
                "instance": "web-99",
                "address": "10.0.0.3",
                "uptime": 42.0,
                "resources": [
                    {
                        "name": "www",
                        "state": "failed",
                        "failures": [NOW - 20, NOW - 5],
                        "last_rc": 7,
                    }
                ],
            },
        ],
        "last_events": [
            {
                "id": n,
                "time": NOW - 60 + n,
                "deployable": "shop",
                "assembly": "web",
                "resource": "www",
                "state": "failed",
                "reason": f"monitor returned 7 (not running) #{n}",
            }
            for n in range(1, 8)
        ],
    }


def test_what_the_dpe_recorded_is_the_tree(env: Environment, shop: InProcessCped) -> None:
    shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "recovering", "reason": "www"})
    shop.store.put_runtime("shop", ASSEMBLY, "web", {"state": "running"})
    instance = {"instance_id": "web-99", "address": "10.0.0.3", "created_at": NOW - 42}
    shop.store.put_runtime("shop", INSTANCE, "web", instance)
    failed = {"state": "failed", "failures": [NOW - 20, NOW - 5], "last_op": "monitor"}
    shop.store.put_runtime("shop", RESOURCE, "web/www", failed | {"last_rc": 7})
    shop.record_event(Event(NOW - 5, "shop", "failed", "monitor returned 7", "web", "www"))
    lines = run(env, "deployable_status shop").out.splitlines()
    assert lines[0] == (
        "deployable shop: recovering (desired stopped, no DPE, monitoring active once started,"
        " reason www)"
    )
    assert "assembly db: stopped" in lines[1] and "resource pg: stopped" in lines[2]
    assert "assembly web: running (instance web-99, address 10.0.0.3, up 42 s)" in lines[3]
    assert "resource www: failed (2 failures, last rc 7 (not running))" in lines[4]
    assert lines[-1].endswith("is FAILED: monitor returned 7")


def test_the_tree_names_every_level_with_its_details(env: Environment, shop: InProcessCped) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    ran = run(env, "deployable_status shop")
    assert ran.status == 0 and ran.err == ""
    lines = ran.out.splitlines()
    assert lines[0] == (
        "deployable shop: recovering (DPE pid 4711, lease epoch 7, reason resource www failed)"
    )
    assert "assembly db: running (instance db-1a2b3c4d, address 10.0.0.2, up 2 h 5 min)" in lines[1]
    assert "resource pg: running (0 failures, last rc 0 (ok))" in lines[2]
    assert "assembly web: running (instance web-99, address 10.0.0.3, up 42 s)" in lines[3]
    assert "resource www: failed (2 failures, last rc 7 (not running))" in lines[4]
    # the tree draws its branches: every assembly and resource line is indented under it
    assert all(line.startswith(("├", "└", "│", " ")) for line in lines[1:5])


def test_the_last_five_events_follow_the_tree(env: Environment, shop: InProcessCped) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    out = run(env, "deployable_status shop").out
    tree, _, events = out.partition("\nlast events:\n")
    assert "resource www" in tree
    lines = events.splitlines()
    assert [line.rsplit("#", 1)[1] for line in lines] == ["3", "4", "5", "6", "7"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 53))
    assert lines[-1] == (
        f"{stamp}  resource [www] in assembly [web] in deployable [shop] is FAILED: "
        "monitor returned 7 (not running) #7"
    )


def test_json_is_the_status_document_as_cped_sent_it(env: Environment, shop: InProcessCped) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    ran = run(env, "deployable_status shop --json")
    assert json.loads(ran.out) == failing_shop()
    assert run(env, "--json deployable_status shop").out == ran.out


def test_states_are_coloured_on_a_terminal(env: Environment, shop: InProcessCped) -> None:
    shop.answer("deployable_status", "shop", answer=failing_shop())
    out = run(dataclasses.replace(env, color=True), "deployable_status shop").out
    assert "\x1b[1;31mfailed\x1b[0m" in out  # red
    assert "\x1b[1;32mrunning\x1b[0m" in out  # green
    assert "\x1b[1;33mrecovering\x1b[0m" in out  # yellow
    assert "\x1b[1;31mFAILED\x1b[0m: monitor returned 7" in out
    assert "\x1b[" not in run(env, "deployable_status shop").out  # not coloured into a pipe


@pytest.mark.parametrize(
    ("state", "desired", "shown"),
    [
        ("failed", "started", "deployable shop: failed (desired started, reason x)"),
        ("running", "stopped", "deployable shop: running (desired stopped)"),
        ("starting", "started", "deployable shop: starting (reason x)"),
        ("stopping", "stopped", "deployable shop: stopping (reason x)"),
        ("running", "started", "deployable shop: running"),
    ],
)
def test_the_desired_state_when_it_is_news(
    env: Environment, shop: InProcessCped, state: str, desired: str, shown: str
) -> None:
    shop.answer(
        "deployable_status",
        "shop",
        answer={"name": "shop", "state": state, "desired": desired, "reason": "x"},
    )
    assert run(env, "deployable_status shop").out == shown + "\n"


@pytest.mark.parametrize(
    ("dpe", "shown"),
    [
        ({"pid": 12, "lease_epoch": 2, "alive": False}, "(DPE pid 12 not running, lease epoch 2)"),
        (None, "(no DPE)"),
        ({"pid": None, "lease_epoch": None, "alive": False}, "(no DPE)"),
    ],
)
def test_the_dpe_as_cped_reports_it(
    env: Environment, shop: InProcessCped, dpe: Any, shown: str
) -> None:
    shop.answer(
        "deployable_status",
        "shop",
        answer={"name": "shop", "state": "stopped", "desired": "stopped", "dpe": dpe},
    )
    ran = run(env, "deployable_status shop")
    assert ran.out == f"deployable shop: stopped {shown}\n"


def test_a_dpe_failing_to_start_is_not_the_no_dpe_of_a_stopped_deployable(
    env: Environment, shop: InProcessCped
) -> None:
    backoff = {"pid": None, "alive": False, "supervision": "backoff", "restart_in": 3.009}
    status = {"name": "shop", "state": "starting", "desired": "started", "assemblies": []}
    shop.answer("deployable_status", "shop", answer=status | {"dpe": backoff | {"restarts": 3}})
    assert run(env, "deployable_status shop").out == (
        "deployable shop: starting (no DPE: 3 failed in a row, the next starts in 3 s)\n"
    )
    shop.answer("deployable_status", "shop", answer=status | {"dpe": backoff | {"restarts": 1}})
    assert run(env, "deployable_status shop").out == (
        "deployable shop: starting (no DPE: the last one failed, the next starts in 3 s)\n"
    )
    stopped = {"pid": None, "alive": False, "supervision": "stopped"}
    shop.answer("deployable_status", "shop", answer=status | {"dpe": stopped})
    assert run(env, "deployable_status shop").out == "deployable shop: starting (no DPE)\n"


def test_missing_optional_fields_are_left_out(env: Environment, shop: InProcessCped) -> None:
    status = {
        "name": "shop",
        "state": "starting",
        "assemblies": [
            {"name": "db", "state": "creating", "resources": [{"name": "pg"}]},
            {"name": "web", "instance": None, "address": None},
        ],
    }
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(env, "deployable_status shop").out.splitlines()
    assert lines[0] == "deployable shop: starting"
    assert lines[1].endswith("assembly db: creating")
    assert lines[2].endswith("resource pg: unknown")
    assert lines[3].endswith("assembly web: unknown")


def test_an_instance_object_and_assemblies_keyed_by_name(
    env: Environment, shop: InProcessCped
) -> None:
    status = {
        "name": "shop",
        "state": "running",
        "assemblies": {
            "web": {
                "state": "running",
                "instance": {
                    "instance_id": "web-7",
                    "address": "127.0.0.1",
                    "created_at": NOW - 90,
                },
                "resources": {"www": {"state": "running", "failures": 1}},
            }
        },
    }
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(env, "deployable_status shop").out.splitlines()
    assert "assembly web: running (instance web-7, address 127.0.0.1, up 1 min 30 s)" in lines[1]
    assert "resource www: running (1 failure)" in lines[2]


def test_a_running_deployable_says_why_when_some_resources_do_not_run(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop() | {"state": "running"}
    status["reason"] = "2 assemblies running, 1 resource running, 1 cannot start"
    shop.answer("deployable_status", "shop", answer=status)
    wide = dataclasses.replace(env, width=200)
    lines = run(wide, "deployable_status shop").out.splitlines()
    assert lines[0] == (
        "deployable shop: running (DPE pid 4711, lease epoch 7,"
        " reason 2 assemblies running, 1 resource running, 1 cannot start)"
    )
    status["assemblies"][1]["resources"][0]["state"] = "running"  # every resource runs
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(wide, "deployable_status shop").out.splitlines()
    assert lines[0] == "deployable shop: running (DPE pid 4711, lease epoch 7)"


BACKING_OFF = "backing off after failures in a row"
FAILED_START = {"op": "start", "rc": 1, "reason": "start returned 1 (unknown error)", "time": NOW}


def test_a_resource_that_cannot_start_says_why_what_its_start_returned_and_when_again(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop() | {"state": "running"}
    status["assemblies"][1]["resources"][0] = {
        "name": "bad",
        "state": "stopped",
        "failures": [],
        "escalation": {"failures": 0, "period": 0},
        "last_op": "stop",
        "last_rc": 0,
        "blocked": BACKING_OFF,
        "retry_at": NOW + 8,
        "failures_in_a_row": 3,
        "last_failure": FAILED_START,
    }
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(dataclasses.replace(env, width=300), "deployable_status shop").out.splitlines()
    assert lines[4].endswith(
        f"resource bad: stopped (cannot start: {BACKING_OFF}, next try in 8 s,"
        " last failure: start returned 1 (unknown error), escalation off, last stop rc 0 (ok))"
    )


def test_a_resource_blocked_by_another_says_so_without_a_next_try(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop()
    waiting = f"waiting for db/pg, which is {BACKING_OFF}"
    resource = {"name": "www", "state": "stopped", "failures": [], "blocked": waiting}
    status["assemblies"][1]["resources"][0] = resource
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(dataclasses.replace(env, width=300), "deployable_status shop").out.splitlines()
    assert lines[4].endswith(f"resource www: stopped (cannot start: {waiting}, 0 failures)")


def test_cped_sends_why_a_resource_cannot_start_as_its_dpe_recorded_it(
    env: Environment, shop: InProcessCped
) -> None:
    shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "running", "reason": "1 cannot start"})
    shop.store.put_runtime("shop", ASSEMBLY, "web", {"state": "running"})
    recorded = {"state": "stopped", "failures": [], "last_op": "stop", "last_rc": 0}
    recorded |= {"blocked": BACKING_OFF, "retry_at": NOW + 30, "failures_in_a_row": 4}
    shop.store.put_runtime("shop", RESOURCE, "web/www", recorded | {"last_failure": FAILED_START})
    www = json.loads(run(env, "--json deployable_status shop").out)["assemblies"][1]["resources"][0]
    assert (www["state"], www["last_op"], www["last_rc"]) == ("stopped", "stop", 0)  # as before
    assert www["blocked"] == BACKING_OFF and www["retry_at"] == NOW + 30
    assert (www["failures_in_a_row"], www["last_failure"]) == (4, FAILED_START)
    lines = run(dataclasses.replace(env, width=300), "deployable_status shop").out.splitlines()
    assert f"resource www: stopped (cannot start: {BACKING_OFF}, next try in 30 s," in lines[4]


def test_unknown_deployable_and_bad_name(env: Environment, shop: InProcessCped) -> None:
    ran = run(env, "deployable_status nosuch")
    assert (ran.status, ran.out) == (2, "")
    assert ran.err == "pcloudsh: error: no such deployable: 'nosuch'\n"
    assert run(env, "deployable_status ../x").status == 2


def test_a_refused_status_is_a_failure(env: Environment, shop: InProcessCped) -> None:
    from foundation.errors import Conflict

    refusal = Conflict("deployable 'shop' has never been started")
    shop.answer("deployable_status", "shop", answer=refusal)
    ran = run(env, "deployable_status shop")
    assert (ran.status, ran.err) == (
        1,
        "pcloudsh: error: deployable 'shop' has never been started\n",
    )


def test_a_service_shows_under_the_assembly_it_runs_on(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop()
    status["assemblies"][0]["resources"].append(
        {"name": "cache", "state": "running", "failures": [], "last_rc": 0, "service": True}
    )
    shop.answer("deployable_status", "shop", answer=status)
    lines = run(env, "deployable_status shop").out.splitlines()
    assert "service cache: running (0 failures, last rc 0 (ok))" in lines[3]


def test_watch_shows_the_status_each_time_it_changes_until_ctrl_c(
    env: Environment, shop: InProcessCped
) -> None:
    states = iter(["starting", "starting", "running"])

    def next_poll(seconds: float) -> None:
        assert seconds == 2.0
        state = next(states, None)
        if state is None:
            raise KeyboardInterrupt
        shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": state})

    watching = dataclasses.replace(env, sleep=next_poll)
    ran = run(watching, "deployable_status shop --watch")
    assert (ran.status, ran.err) == (130, "")
    heads = [line for line in ran.out.splitlines() if line.startswith("deployable shop:")]
    assert [head.split(":")[1].split()[0] for head in heads] == ["stopped", "starting", "running"]
    assert ran.out.count("--- ") == 3


class _Restarting:
    """cped's API, unreachable while ``down`` says so (cped restarting)."""

    def __init__(self, api: Any, down: list[bool]) -> None:
        self.api, self.down = api, down

    def __getattr__(self, name: str) -> Any:
        return getattr(DownCped() if self.down[0] else self.api, name)


def test_watch_waits_for_a_cped_that_stops_answering_and_goes_on(
    env: Environment, shop: InProcessCped
) -> None:
    """Like crm_mon, and as events --follow does: a restarted cped is waited for."""
    connect = env.connect
    down = [False]
    polls = iter(["down", "down", "running", None])

    def next_poll(_seconds: float) -> None:
        step = next(polls)
        if step is None:
            raise KeyboardInterrupt
        down[0] = step == "down"
        if step == "running":
            shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "running"})

    watching = dataclasses.replace(
        env, sleep=next_poll, connect=lambda paths: _Restarting(connect(paths), down)
    )
    ran = run(watching, "deployable_status shop --watch")
    assert ran.status == 130
    heads = [line for line in ran.out.splitlines() if line.startswith("deployable shop:")]
    assert [head.split(":")[1].split()[0] for head in heads] == ["stopped", "running"]
    assert ran.err.splitlines() == [
        "pcloudsh: lost cped: cped is not running (no answer on its socket);"
        " looking again every 2 s",
        "pcloudsh: cped answers again",
    ]


def test_watch_of_a_cped_not_running_at_all_says_so_at_once(env: Environment) -> None:
    ran = run(
        dataclasses.replace(env, connect=lambda paths: DownCped()), "deployable_status shop --watch"
    )
    assert ran.status == 3 and "cped is not running" in ran.err


def test_watch_with_json_prints_one_document_per_change(
    env: Environment, shop: InProcessCped
) -> None:
    polls = iter([None])

    def next_poll(_seconds: float) -> None:
        if next(polls, KeyboardInterrupt) is KeyboardInterrupt:
            raise KeyboardInterrupt

    ran = run(dataclasses.replace(env, sleep=next_poll), "--json deployable_status shop --watch")
    documents = [json.loads(line) for line in ran.out.splitlines()]
    assert ran.status == 130 and [d["state"] for d in documents] == ["stopped"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("deployable_status shop --interval 5s", "--interval goes with --watch"),
        ("deployable_status shop --watch --interval 0", "invalid --interval '0'"),
    ],
)
def test_watch_bad_usage(env: Environment, shop: InProcessCped, line: str, message: str) -> None:
    ran = run(env, line)
    assert ran.status == 2 and message in ran.err


def test_the_tree_shows_how_each_instance_is_monitored_and_why(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop()
    status["monitoring"] = "active"
    db, web = status["assemblies"]
    db["monitoring"] = {"mode": "active", "reason": "guest agent pid 4242 (python 3.11.2, pidfd)"}
    web["monitoring"] = {"mode": "passive", "reason": "no python3 on the guest"}
    shop.answer("deployable_status", "shop", answer=status)
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "(DPE pid 4711, lease epoch 7, monitoring active, reason" in text
    assert "up 2 h 5 min, active: guest agent pid 4242 (python 3.11.2, pidfd))" in text
    assert "up 42 s, passive: no python3 on the guest)" in text
    data = json.loads(run(env, "--json deployable_status shop").out)
    assert data["assemblies"][1]["monitoring"]["reason"] == "no python3 on the guest"


def test_passive_by_the_deployables_own_setting_is_no_news(
    env: Environment, shop: InProcessCped
) -> None:
    status = failing_shop()
    status["monitoring"] = "passive"
    reason = "the deployable's monitoring is passive"
    for assembly in status["assemblies"]:
        assembly["monitoring"] = {"mode": "passive", "reason": reason}
    shop.answer("deployable_status", "shop", answer=status)
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "monitoring passive" in text
    assert text.count("passive") == 1


def test_cped_composes_the_monitoring_the_dpe_recorded(
    env: Environment, shop: InProcessCped
) -> None:
    """The document's mode, and each instance's as its DPE recorded it."""
    document = shop.get_deployable("shop")
    shop.put_deployable("shop", {**document, "monitoring": "am"})
    shop.store.put_runtime("shop", INSTANCE, "web", {"instance_id": "web-99", "created_at": NOW})
    passive = {"mode": "passive", "reason": "no python3 on the guest"}
    shop.store.put_runtime("shop", ASSEMBLY, "web", {"state": "running", "monitoring": passive})
    data = json.loads(run(env, "--json deployable_status shop").out)
    assert data["monitoring"] == "active"
    db, web = data["assemblies"]
    assert "monitoring" not in db and web["monitoring"] == passive
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "monitoring active" in text and "up 0 s, passive: no python3 on the guest" in text


def _unwrapped(tree: str) -> str:
    """The tree's text on one line: long lines wrap, under the tree's own branches."""
    return " ".join(tree.replace("│", " ").split())


def test_where_escalation_is_off_it_says_so_instead_of_a_count(
    env: Environment, shop: InProcessCped
) -> None:
    """pg's escalation is off (0 0): no window counts its failures towards anything,
    so "0 failures" would mislead; www's is 3 in 60 s and keeps its count."""
    shop.store.put_runtime("shop", RESOURCE, "db/pg", {"state": "running", "failures": []})
    shop.store.put_runtime("shop", RESOURCE, "web/www", {"state": "running", "failures": []})
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "resource pg: running (escalation off)" in text
    assert "resource www: running (0 failures)" in text
    shop.store.put_runtime("shop", RESOURCE, "db/pg", {"state": "running", "failures": [NOW]})
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "resource pg: running (1 failure, escalation off)" in text
    data = json.loads(run(env, "--json deployable_status shop").out)
    db, web = data["assemblies"]
    assert db["resources"][0]["escalation"] == {"failures": 0, "period": 0}
    assert web["resources"][0]["escalation"] == {"failures": 3, "period": 60}
    assert data["escalation"] == {"failures": 2, "period": 3600}


def test_a_stopped_deployables_monitoring_is_its_setting_not_running(
    env: Environment, shop: InProcessCped
) -> None:
    """No DPE runs: nothing monitors it, the mode is only what it is set to."""
    text = _unwrapped(run(env, "deployable_status shop").out)
    assert "deployable shop: stopped (no DPE, monitoring active once started)" in text
    assert json.loads(run(env, "--json deployable_status shop").out)["monitoring"] == "active"
