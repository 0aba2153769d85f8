"""Three cped members, each in a network namespace of its own, on one real PostgreSQL
(Debian's, started here without systemd), with local-driver guests on a network
every member reaches (``tests/netns_rig.py``).

- A member SIGKILLed (cped and its dpeds): its deployables run under the other
  members within the lease TTL + 3 s; no guest re-created, no resource restarted.
- A member partitioned (its veth down): its DPEs stop acting before their leases
  can expire (each one's last words, in its own log, against the lease's expiry
  in the store); the others adopt; when the link returns the old DPEs are gone,
  and whatever comes back to that member comes by handover, under a new epoch.
- PostgreSQL restarted under load (events appended by another writer, catalog
  writes through the members' API): members ride it out, every acknowledged
  event is there, one DPE per deployable, no guest re-created.
- pcloudsh with ``PCLOUD_URL`` listing the members' TLS listeners: the first one
  down, the next answers.
- The storm: random member kills and partitions; a sampler checks at every
  sample that no deployable has two acting DPEs and no assembly two instances,
  and after each fault the cluster converges with every guest the same and no
  acknowledged event lost.  Short form in ``make test`` (2 kills, 1 partition);
  ``PCLOUD_SOAK=1`` (``make soak``): 50 kills and 10 partitions.

Everything runs with the default timings (lease 5 s renewed every second,
member heartbeat lost after 3 s, a DPE fenced 1.25 s before its lease ends).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from cpe.client import Client, Remote
from cpe.membership import rendezvous_owner
from foundation.errors import PcloudError
from foundation.paths import Paths
from foundation.store import Store
from images.keys import write_assembly_keys
from tests.cluster import ClusterRig, Member
from tests.faults.cluster_watch import Watch
from tests.faults.soaking import SOAK, Tally
from tests.integration.test_api_access import _certificate, _pem_cert
from tests.netns_rig import NetnsRig
from tests.postgres import PgServer, binaries

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("nsenter") or binaries() is None,
        reason="needs root, nsenter and PostgreSQL's server",
    ),
]

TTL = 5.0  # the default lease
SEED = int(os.environ.get("PCLOUD_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
MEMBERS = ("m1", "m2", "m3")
DEPLOYABLES = ("w1", "w2", "w3", "w4", "w5", "w6")
KILLS, PARTITIONS = (50, 10) if SOAK else (2, 1)
SETTINGS = {"cped": {"dpe_backoff_initial": "100ms", "dpe_backoff_max": "2s"}}
RESTARTS = ("starting", "stopping")
DEBUG = os.environ.get("PCLOUD_CLUSTER_DEBUG") == "1"


def assembly_of(deployable: str) -> str:
    return f"c{deployable[1:]}"


# ---------------------------------------------------------------------------
# the rig


@pytest.fixture(scope="module")
def net() -> Iterator[NetnsRig]:
    rig = NetnsRig()
    try:
        rig.up()
        yield rig
    finally:
        rig.down()


@pytest.fixture(scope="module")
def pg_net(net: NetnsRig) -> Iterator[PgServer]:
    server = PgServer.start(listen=(net.gateway,), port=net.free_port(), durable=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def material() -> Iterator[Path]:
    """Assembly keys, a CA, member certificates and the API token, made once."""
    directory = Path(tempfile.mkdtemp(prefix="pc-clm-", dir="/tmp"))
    try:
        keys = directory / "keys"
        for name in DEPLOYABLES:
            write_assembly_keys(keys, assembly_of(name))
        ca_key, ca_cert = _certificate("pcloud cluster test CA", None, None)
        (directory / "ca.pem").write_bytes(_pem_cert(ca_cert))
        (directory / "ca.key").write_bytes(_private_pem(ca_key))
        (directory / "token").write_text("cluster-test-token\n")
        for path in directory.iterdir():
            path.chmod(0o700 if path.is_dir() else 0o600)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def member_tls(material: Path, address: str) -> tuple[Path, Path]:
    """A certificate for ``address`` signed by the test CA (made on first use)."""
    cert, key = material / f"{address}.pem", material / f"{address}.key"
    if not cert.exists():
        ca_key = serialization.load_pem_private_key((material / "ca.key").read_bytes(), None)
        from cryptography import x509

        ca_cert = x509.load_pem_x509_certificate((material / "ca.pem").read_bytes())
        member_key, member_cert = _certificate(address, ca_key, ca_cert)  # type: ignore[arg-type]
        cert.write_bytes(_pem_cert(member_cert))
        key.write_bytes(_private_pem(member_key))
        key.chmod(0o600)
    return cert, key


@pytest.fixture
def trio(net: NetnsRig, pg_net: PgServer, material: Path) -> Iterator[ClusterRig]:
    url = pg_net.database("cl", host=net.gateway)

    def per_member(name: str, paths: Paths) -> dict[str, dict[str, str]]:
        address = net.member_address(MEMBERS.index(name) + 1)
        cert, key = member_tls(material, address)
        return {
            "cped": {
                "listen": f"{address}:8443",
                "tls_certificate": str(cert),
                "tls_key": str(key),
                "token_file": str(material / "token"),
                "member_url": f"https://{address}:8443",
            },
            "dped": {"local_bridge_netns": net.host_netns},
        }

    cluster = ClusterRig(url, material / "keys", SETTINGS, per_member)
    for index, name in enumerate(MEMBERS, start=1):
        if net.member_netns(index) not in _netns_names():
            net.add_member(index)
        cluster.add(name, netns=net.member_netns(index))
    try:
        yield cluster
    finally:
        for index, member in enumerate(cluster.members.values(), start=1):
            if member.partitioned:
                net.heal(index)
        cluster.close()
        pg_net.drop(url)


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def document(net: NetnsRig, name: str) -> dict[str, Any]:
    assembly = assembly_of(name)
    return {
        "name": name,
        "settings": {"network": "netns", "subnet": str(net.subnet)},
        "heartbeat": {"interval": 0.5, "timeout": 2, "health_interval": 5},
        "assemblies": [
            {
                "name": assembly,
                "resources": [{"name": f"{assembly}-d", "type": "Dummy", "monitor_interval": 2}],
            }
        ],
    }


def start_trio(cluster: ClusterRig, net: NetnsRig) -> dict[str, dict[str, Any]]:
    for name in MEMBERS:
        cluster.start(name)
    cluster.until(lambda: alive_members(cluster) == set(MEMBERS), 15, "three members alive")
    client = cluster.members["m1"].client
    for name in DEPLOYABLES:
        client.put_deployable(name, document(net, name))
        client.start_deployable(name)
    return {name: cluster.running(name, 60) for name in DEPLOYABLES}


def alive_members(cluster: ClusterRig) -> set[str]:
    status = cluster.any().client.cluster_status()
    return {m["name"] for m in status["members"] if m["health"] == "alive"}


def where(status: dict[str, Any]) -> str:
    """The member whose DPE holds the lease (holders are MEMBER:PID)."""
    return str(status["dpe"]["lease_holder"]).rsplit(":", 1)[0]


def instances(status: dict[str, Any]) -> list[str]:
    return [a["instance"] for a in status["assemblies"]]


def restarts(cluster: ClusterRig, after: int) -> list[str]:
    return [
        f"{e['deployable']}/{e['resource']} {e['state']}: {e['reason']}"
        for e in cluster.events(None, after)
        if e["resource"] and e["state"] in RESTARTS
    ]


def settled(cluster: ClusterRig, watch: Watch, before: dict[str, dict[str, Any]]) -> None:
    """Every deployable on its owner among the live members, exactly one acting DPE,
    the same instance, and exactly one instance per assembly."""
    members = sorted(m.name for m in cluster.alive())
    for name in DEPLOYABLES:
        owner = rendezvous_owner(name, members)
        status = cluster.until(
            lambda name=name, owner=owner: (
                (s := cluster.running(name, 60))
                and where(s) == owner
                and len(watch.acting(name)) == 1
                and s
            ),
            60,
            f"{name} settled on {owner}",
        )
        assert instances(status) == instances(before[name]), f"{name}: a guest was re-created"
    inits = cluster.guest_inits()
    assert sorted(inits) == sorted(assembly_of(n) for n in DEPLOYABLES)
    assert all(len(pids) == 1 for pids in inits.values()), inits


def lease_rows(url_store: Store, names: list[str]) -> dict[str, dict[str, Any]]:
    return {n: lease for n in names if (lease := url_store.get_lease(n)) is not None}


def last_words(member: Member, deployable: str, pid: int) -> tuple[float, str] | None:
    """When (epoch seconds) and how the DPE ``pid`` stopped acting, from its own log."""
    for line in member.dped_log(deployable).splitlines():
        if f"dped[{pid}]" in line and ("acting no more" in line or "ending the process" in line):
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp(), line[24:]
    return None


def test_a_killed_member_s_work_runs_elsewhere_within_ttl_plus_3_s(
    trio: ClusterRig, net: NetnsRig
) -> None:
    before = start_trio(trio, net)
    with Watch(trio, list(DEPLOYABLES)) as watch:
        runs = {m: [n for n in DEPLOYABLES if where(before[n]) == m] for m in MEMBERS}
        victim = max(MEMBERS, key=lambda m: len(runs[m]))
        mark = trio.events()[-1]["id"]
        killed_at = time.monotonic()
        trio.members[victim].kill()
        epochs = {name: before[name]["dpe"]["lease_epoch"] for name in runs[victim]}
        took = adopted(trio, epochs, killed_at)
        for name in runs[victim]:
            after = trio.status(name)
            assert where(after) != victim and instances(after) == instances(before[name])
        assert max(took.values()) <= TTL + 3, took
        assert restarts(trio, mark) == [], "a resource was restarted"
        trio.start(victim)  # it comes back and takes its share by handover
        settled(trio, watch, before)
        assert restarts(trio, mark) == []
    assert watch.violations == [] and watch.samples > 0


def test_a_partitioned_member_fences_itself_before_its_leases_can_expire(
    trio: ClusterRig, net: NetnsRig, pg_net: PgServer
) -> None:
    before = start_trio(trio, net)
    observer = Store.open_url(trio.store_url)
    tally = Tally("test_a_partitioned_member_fences_itself_before_its_leases_can_expire")
    margins: list[float] = []
    hows: list[str] = []
    try:
        with Watch(trio, list(DEPLOYABLES)) as watch:
            victim_name = max(MEMBERS, key=lambda m: sum(where(s) == m for s in before.values()))
            victim = trio.members[victim_name]
            moved = [n for n in DEPLOYABLES if where(before[n]) == victim_name]
            old = {n: before[n]["dpe"] for n in moved}
            mark = trio.events()[-1]["id"]
            net.partition(MEMBERS.index(victim_name) + 1)
            victim.partitioned = True
            leases = lease_rows(observer, moved)  # their last renewals, frozen by the cut
            for name in moved:
                after = trio.running(name, TTL + 30, old[name]["lease_epoch"])
                assert instances(after) == instances(before[name])
            for name in moved:
                words = trio.until(
                    lambda name=name: last_words(victim, name, old[name]["pid"]),
                    15,
                    f"{name}'s old DPE stopped acting",
                )
                fenced_at, how = words
                ahead = leases[name]["expires_at"] - fenced_at
                margins.append(round(ahead, 3))
                hows.append("watchdog" if "ending the process" in how else "loop")
                assert ahead > 0, (name, how, leases[name])
            assert restarts(trio, mark) == []
            net.heal(MEMBERS.index(victim_name) + 1)
            victim.partitioned = False
            settled(trio, watch, before)
            for name in moved:  # the old DPEs never came back
                assert all(pid != old[name]["pid"] for _, pid in watch.acting(name))
                epochs = [
                    e for e in trio.events(name, mark) if e["reason"].startswith("engine started")
                ]
                assert f"(lease epoch {old[name]['lease_epoch']})" not in str(epochs)
            assert restarts(trio, mark) == []
        tally.fault("partition of a member (its veth down)")
        tally.check("fenced before the lease could expire", all(m > 0 for m in margins))
        tally.violations += watch.violations
        tally.figures = {"fenced_before_expiry_s": margins, "fenced_by": hows}
        assert watch.violations == []
    finally:
        tally.save()
        observer.close()


WRITER = """
import sys, time
from foundation.events import Event
from foundation.store import Store
from foundation.errors import StoreError
store = Store.open_url(sys.argv[1], busy_timeout=2.0)
while True:
    try:
        event = store.append_event(Event(time.time(), "load", "running", "load"))
    except StoreError:
        time.sleep(0.05)
        continue
    print(event.id, flush=True)
    time.sleep(0.01)
"""


def test_postgres_restarted_under_load(trio: ClusterRig, net: NetnsRig, pg_net: PgServer) -> None:
    before = start_trio(trio, net)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, trio.store_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    acknowledged: list[int] = []
    try:
        with Watch(trio, list(DEPLOYABLES)) as watch:
            assert writer.stdout is not None
            acknowledged += [int(writer.stdout.readline()) for _ in range(50)]
            pg_net.restart(down_for=1.0)
            time.sleep(2.0)
            created = []
            for i in range(10):  # catalog writes through every member, after the restart
                member = trio.members[MEMBERS[i % len(MEMBERS)]]
                name = f"load{i}"
                trio.until(
                    lambda member=member, name=name: member.client.create_template(
                        {"name": name, "resource": {"type": "Dummy"}}
                    ),
                    20,
                    "a catalog write after the restart",
                )
                created.append(name)
            acknowledged += [int(writer.stdout.readline()) for _ in range(50)]
            settled(trio, watch, before)
        assert watch.violations == []
    finally:
        writer.kill()
        rest, _ = writer.communicate(timeout=10)
    acknowledged += [int(line) for line in rest.split()]
    stored = {e["id"] for e in trio.events("load")}
    missing = sorted(set(acknowledged) - stored)
    assert not missing, f"acknowledged events lost: {missing[:10]}"
    names = {t["name"] for t in trio.any().client.list_templates()}
    assert set(created) <= names


def test_pcloudsh_goes_to_the_next_member_in_pcloud_url(
    trio: ClusterRig, net: NetnsRig, material: Path
) -> None:
    for name in MEMBERS:
        trio.start(name)
    urls = ",".join(f"https://{net.member_address(i)}:8443" for i in (1, 2, 3))
    trio.members["m1"].kill()
    env = {
        **os.environ,
        "PCLOUD_URL": urls,
        "PCLOUD_TOKEN_FILE": str(material / "token"),
        "PCLOUD_CA_FILE": str(material / "ca.pem"),
        "PCLOUD_HOME": trio.members["m2"].home,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pcloudsh", "--json", "cluster_status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert '"member": "m2"' in done.stdout
    remote = Remote.from_url(urls, "cluster-test-token", str(material / "ca.pem"))
    client = Client("/nonexistent", timeout=10, remote=remote)
    assert client.cluster_status()["member"] == "m2"
    assert client.remote is not None and client.remote.host == net.member_address(2)


def test_members_killed_and_partitioned_at_random(trio: ClusterRig, net: NetnsRig) -> None:
    chance = random.Random(SEED)
    tally = Tally("test_members_killed_and_partitioned_at_random")
    before = start_trio(trio, net)
    mark, adoption = trio.events()[-1]["id"], []
    faults = ["kill"] * KILLS + ["partition"] * PARTITIONS
    chance.shuffle(faults)
    try:
        with Watch(trio, list(DEPLOYABLES)) as watch:
            for fault in faults:
                acknowledged = [e["id"] for e in trio.events()]
                victim = chance.choice(MEMBERS)
                adoption += storm_round(trio, net, fault, victim, before, chance)
                tally.fault(
                    "SIGKILL of a member (cped and its dpeds)"
                    if fault == "kill"
                    else "partition of a member (its veth down)"
                )
                settled(trio, watch, before)
                tally.check("converged: each on its owner, one DPE, the same guests", True)
                ids = [e["id"] for e in trio.events()]
                tally.check("event ids only grow", ids == sorted(set(ids)))
                lost = set(acknowledged) - set(ids)
                tally.check("no acknowledged event lost", not lost, f"lost {sorted(lost)[:5]}")
            tally.check(
                "no resource restarted", not restarts(trio, mark), str(restarts(trio, mark)[:3])
            )
        tally.checks["at most one acting DPE and one instance, at every sample"] = watch.samples
        tally.violations += watch.violations
        adoption.sort()
        tally.figures = {
            "seed": SEED,
            "samples": watch.samples,
            "adoption_s": {
                "median": adoption[len(adoption) // 2] if adoption else None,
                "p95": adoption[int(len(adoption) * 0.95)] if adoption else None,
                "max": adoption[-1] if adoption else None,
                "count": len(adoption),
                "all": adoption,
            },
        }
    finally:
        tally.save()
    assert tally.violations == [], f"{tally.violations[:5]} (PCLOUD_FAULT_SEED={SEED})"


def storm_round(
    cluster: ClusterRig,
    net: NetnsRig,
    fault: str,
    victim: str,
    before: dict[str, dict[str, Any]],
    chance: random.Random,
) -> list[float]:
    """One fault on ``victim`` and its repair; how long each of its deployables
    took to run elsewhere (kills)."""
    time.sleep(chance.uniform(0.0, 1.0))  # at a random moment of the renewals
    status = {n: cluster.status(n) for n in DEPLOYABLES}
    moved = [n for n in DEPLOYABLES if where(status[n]) == victim]
    index = MEMBERS.index(victim) + 1
    member = cluster.members[victim]
    started = time.monotonic()
    if fault == "kill":
        member.kill()
    else:
        net.partition(index)
        member.partitioned = True
    mark, wall = cluster.events()[-1]["id"], time.time()
    epochs = {name: status[name]["dpe"]["lease_epoch"] for name in moved}
    took = adopted(cluster, epochs, started)
    for name, seconds in took.items():
        if fault == "kill" and seconds > TTL + 3 and DEBUG:
            print(f"slow adoption of {name} ({seconds} s) from {victim}:")
            for e in cluster.events(name, mark):
                print(f"  {e['time'] - wall:+7.2f} {e['state']}: {e['reason']}")
            for log in (cluster.instances / name).glob("*/*/sshd.log"):
                print(f"  {log}:", *log.read_text().splitlines()[-12:], sep="\n    ")
            adopter = where(cluster.status(name))
            lines = cluster.members[adopter].dped_log(name).splitlines()
            print(f"  dped log on {adopter}:", *lines[-25:], sep="\n    ")
    if fault == "kill":
        cluster.start(victim)
    else:
        net.heal(index)
        member.partitioned = False
    return list(took.values()) if fault == "kill" else []


def adopted(cluster: ClusterRig, epochs: dict[str, int], since: float) -> dict[str, float]:
    """Seconds from ``since`` until each deployable ran again under a new epoch (all
    watched at once, so one slow adoption does not delay the others' figures)."""
    took: dict[str, float] = {}
    deadline = since + TTL + 40
    while len(took) < len(epochs):
        for name in [n for n in epochs if n not in took]:
            with contextlib.suppress(PcloudError):
                if cluster.is_running(name, epochs[name]):
                    took[name] = round(time.monotonic() - since, 2)
        if time.monotonic() > deadline:
            raise AssertionError(f"not adopted within {TTL + 40:g} s: {set(epochs) - set(took)}")
        time.sleep(0.05)
    return took
