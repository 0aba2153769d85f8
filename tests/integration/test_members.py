"""Several cped members on one PostgreSQL store, with real dped processes and real
sshd guests (the local driver's instances shared by the members, on loopback):
deployables spread by rendezvous hashing, a SIGKILLed member's work adopted
(no guest re-created, no resource restarted), a joining member taking its share by handover, requests through any member, a
member leaving handing its work over, and keys reaching members that never had
them."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.dpe_process import command_line
from cpe.membership import rendezvous_owner
from dpe.template import TITLE
from foundation.errors import PcloudError
from foundation.keyfiles import key_paths
from images.keys import write_assembly_keys
from tests.cluster import ClusterRig

pytestmark = pytest.mark.integration

TTL = 3.0
SETTINGS = {
    "cped": {
        "lease_ttl": f"{TTL:g}s",
        "member_ttl": "1s",
        "dpe_backoff_initial": "100ms",
        "dpe_backoff_max": "800ms",
    },
    "dped": {"lease_renew_interval": "500ms"},
}
DEPLOYABLES = ("d1", "d2", "d3", "d4")
RESTARTS = ("starting", "stopping")  # a resource state only a (re)start or stop passes


def assembly_of(deployable: str) -> str:
    return f"k{deployable[1:]}"


def document(name: str) -> dict[str, Any]:
    assembly = assembly_of(name)
    return {
        "name": name,
        "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
        "assemblies": [
            {
                "name": assembly,
                "resources": [{"name": f"{assembly}-d", "type": "Dummy", "monitor_interval": 1}],
            }
        ],
    }


@pytest.fixture(scope="module")
def cluster_keys() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pc-ck-", dir="/tmp"))
    try:
        for name in DEPLOYABLES:
            write_assembly_keys(directory, assembly_of(name))
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cluster(pg_url: str, cluster_keys: Path) -> Iterator[ClusterRig]:
    rig = ClusterRig(pg_url, cluster_keys, SETTINGS)
    try:
        yield rig
    finally:
        rig.close()


def start_all(rig: ClusterRig, via: str = "m1") -> dict[str, dict[str, Any]]:
    client = rig.members[via].client
    for name in DEPLOYABLES:
        client.put_deployable(name, document(name))
        client.start_deployable(name)
    return {name: rig.running(name) for name in DEPLOYABLES}


def members_alive(rig: ClusterRig, expected: set[str]) -> bool:
    status = rig.any().client.cluster_status()
    return {m["name"] for m in status["members"] if m["health"] == "alive"} == expected


def where(status: dict[str, Any]) -> str:
    """The member whose DPE holds the lease (holders are MEMBER:PID)."""
    return str(status["dpe"]["lease_holder"]).rsplit(":", 1)[0]


def instance_ids(status: dict[str, Any]) -> list[str]:
    return [a["instance"] for a in status["assemblies"]]


def restarts(rig: ClusterRig, deployable: str, after: int) -> list[str]:
    return [
        f"{e['resource']} {e['state']}: {e['reason']}"
        for e in rig.events(deployable, after)
        if e["resource"] and e["state"] in RESTARTS
    ]


def test_deployables_spread_and_a_killed_members_are_adopted(cluster: ClusterRig) -> None:
    m1, m2 = cluster.start("m1"), cluster.start("m2")
    cluster.until(lambda: members_alive(cluster, {"m1", "m2"}), 10, "both members alive")
    before = start_all(cluster)
    for name, status in before.items():
        assert where(status) == rendezvous_owner(name, ["m1", "m2"]), name
        assert [m for m, _ in cluster.dpeds(name)] == [where(status)], "one DPE, on its owner"
    runs = {m["name"]: m["deployables"] for m in m1.client.cluster_status()["members"]}
    assert sorted(runs["m1"] + runs["m2"]) == list(DEPLOYABLES)
    victim, survivor = (m1, m2) if runs["m1"] else (m2, m1)
    moved = runs[victim.name]
    mark = cluster.events()[-1]["id"]

    victim.kill()  # how soon is the acceptance test's (tests/faults/test_cluster.py)
    for name in moved:
        after = cluster.running(name, TTL + 30, before[name]["dpe"]["lease_epoch"])
        assert where(after) == survivor.name
        assert after["dpe"]["lease_epoch"] > before[name]["dpe"]["lease_epoch"]
        assert instance_ids(after) == instance_ids(before[name]), "a guest was re-created"
        assert restarts(cluster, name, mark) == [], "a resource was restarted"
        assert [m for m, _ in cluster.dpeds(name)] == [survivor.name]
    assert all(len(pids) == 1 for pids in cluster.guest_inits().values())
    for name in moved:  # the survivor had no keys of its own: they came from the store
        for path in key_paths(survivor.paths.keys_dir, assembly_of(name)):
            assert path.is_file()
    status = survivor.client.cluster_status()
    health = {m["name"]: m["health"] for m in status["members"]}
    assert health == {victim.name: "gone", survivor.name: "alive"}


def test_dpeds_are_forked_from_their_members_template_and_told_the_member(
    cluster: ClusterRig,
) -> None:
    m1 = cluster.start("m1")
    cluster.until(lambda: "dped template ready" in m1.log(), 60, "m1's dped template ready")
    name = DEPLOYABLES[0]
    m1.client.put_deployable(name, document(name))
    m1.client.start_deployable(name)
    status = cluster.running(name)
    pid = status["dpe"]["pid"]
    argv = command_line(pid)
    assert argv is not None and argv[argv.index("--member") + 1] == "m1", argv
    assert status["dpe"]["lease_holder"] == f"m1:{pid}"
    template = parent_of(pid)
    assert command_line(template) == [TITLE], "forked from m1's template"
    maps = Path(f"/proc/{template}/maps").read_text()
    assert "psycopg" in maps, "the template imported the PostgreSQL store beforehand"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_joining_member_takes_its_share_by_handover(cluster: ClusterRig) -> None:
    cluster.start("m1")
    before = start_all(cluster)
    assert {where(s) for s in before.values()} == {"m1"}
    mark = cluster.events()[-1]["id"]
    cluster.start("m2")
    share = [n for n in DEPLOYABLES if rendezvous_owner(n, ["m1", "m2"]) == "m2"]
    assert share, "the names are chosen so that m2 gets some"
    for name in share:
        after = cluster.until(
            lambda name=name: (s := cluster.running(name)) and where(s) == "m2" and s,
            30,
            f"{name} on m2",
        )
        assert instance_ids(after) == instance_ids(before[name])
        assert restarts(cluster, name, mark) == []
        states = [e["state"] for e in cluster.events(name, mark)]
        assert "dpe-handover" in states and "dpe-adopted" not in states
    for name in DEPLOYABLES:
        assert len(cluster.dpeds(name)) == 1


def test_requests_through_a_member_that_does_not_run_the_deployable(
    cluster: ClusterRig,
) -> None:
    m1, m2 = cluster.start("m1"), cluster.start("m2")
    cluster.until(lambda: members_alive(cluster, {"m1", "m2"}), 10, "both members alive")
    name = next(n for n in DEPLOYABLES if rendezvous_owner(n, ["m1", "m2"]) == "m2")
    assembly = assembly_of(name)
    m1.client.put_deployable(name, document(name))
    answer = m1.client.start_deployable(name)
    assert answer["member"] == "m2"
    first = cluster.running(name)
    assert where(first) == "m2"

    m1.client.add_resource(assembly, {"name": "extra", "type": "Dummy", "monitor_interval": 1})
    assert m1.client.reload_deployable(name)["member"] == "m2"
    cluster.until(
        lambda: (
            {r["state"] for r in cluster.status(name)["assemblies"][0]["resources"]} == {"running"}
            and len(cluster.status(name)["assemblies"][0]["resources"]) == 2
        ),
        20,
        "the extra resource running",
    )
    mark = cluster.events()[-1]["id"]
    cleanup = m1.client.cleanup_deployable(name, {})
    assert cleanup["note"] == "clean-up requested: member m2 is doing it"
    cluster.until(
        lambda: any(e["reason"].startswith("cleaned up") for e in cluster.events(name, mark)),
        10,
        "the clean-up done by the DPE on m2",
    )
    stopped = m1.client.stop_deployable(name)
    assert stopped["state"] == "stopped" and stopped["dpe"]["member"] == "m2"
    assert cluster.dpeds(name) == [] and cluster.guest_inits(name) == {}
    assert m2.client.deployable_status(name)["state"] == "stopped"


def test_a_member_that_stops_hands_its_work_over(cluster: ClusterRig) -> None:
    m1, m2 = cluster.start("m1"), cluster.start("m2")
    cluster.until(lambda: members_alive(cluster, {"m1", "m2"}), 10, "both members alive")
    before = start_all(cluster)
    mark = cluster.events()[-1]["id"]
    m1.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert m1.proc is not None and m1.proc.wait(30) == 0
    for name in DEPLOYABLES:
        after = cluster.running(name)
        assert where(after) == "m2" and instance_ids(after) == instance_ids(before[name])
        assert restarts(cluster, name, mark) == []
    health = {m["name"]: m["health"] for m in m2.client.cluster_status()["members"]}
    assert health == {"m1": "left", "m2": "alive"}


def test_any_members_stream_has_every_members_events_in_one_order(cluster: ClusterRig) -> None:
    from pcloudsh.streamclient import InterruptibleClient

    m1, _ = cluster.start("m1"), cluster.start("m2")
    cluster.until(lambda: members_alive(cluster, {"m1", "m2"}), 10, "both members alive")
    on_m1 = next(n for n in DEPLOYABLES if rendezvous_owner(n, ["m1", "m2"]) == "m1")
    on_m2 = next(n for n in DEPLOYABLES if rendezvous_owner(n, ["m1", "m2"]) == "m2")
    mark = cluster.events()[-1]["id"] if cluster.events() else 0
    follower = InterruptibleClient(m1.paths.socket)
    seen: list[dict[str, Any]] = []

    def follow() -> None:
        with contextlib.suppress(PcloudError):
            for event in follower.stream_events(after_id=mark):
                seen.append(event)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        for name in (on_m1, on_m2):
            m1.client.put_deployable(name, document(name))
            m1.client.start_deployable(name)
        for name in (on_m1, on_m2):
            cluster.running(name)
        stored = [e["id"] for e in cluster.events(after=mark)]
        cluster.until(lambda: len(seen) >= len(stored), 10, "the stream caught up")
    finally:
        follower.interrupt()
        thread.join(10)
    assert [e["id"] for e in seen][: len(stored)] == stored, "a gap or another order"
    by_member = {where(cluster.status(n)): n for n in (on_m1, on_m2)}
    assert set(by_member) == {"m1", "m2"}
    assert {e["deployable"] for e in seen} >= {on_m1, on_m2}
