"""The cluster's figures: adoption after a member kill, and the API on PostgreSQL vs SQLite.

- Adoption: three cped members in network namespaces of their own on one
  PostgreSQL (the tests' rig: ``tests/netns_rig.py``, ``tests/cluster.py``),
  six deployables of one assembly each, the default timings (lease 5 s renewed
  every second, a member gone after 2 s without heartbeat).  The member that
  runs the most is SIGKILLed (cped and its dpeds); for each of its
  deployables, the seconds from the kill until it runs again under a new lease
  epoch, read through another member's API every 50 ms.  The member is then
  started again and the cluster settles before the next kill.
- API: one cped on SQLite, then one on PostgreSQL (a server of its own on
  loopback TCP, fsync on), the same requests from two client processes over
  the UNIX socket for a fixed time: ``GET /v1/deployables/{d}/status`` (reads)
  and a template created then deleted (writes: catalog transactions).

    .venv/bin/python -m bench.cluster [--quick]   (root: namespaces, PostgreSQL)

Writes ``bench/results/cluster.json`` and ``cluster.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/cluster.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, Cped, dummy_deployable, machine, stats, timed_calls
from cpe.client import Client
from cpe.membership import rendezvous_owner
from foundation.errors import PcloudError
from images.keys import write_assembly_keys
from tests.cluster import ClusterRig
from tests.netns_rig import NetnsRig
from tests.postgres import PgServer, write_cluster_key

MEMBERS = ("m1", "m2", "m3")
DEPLOYABLES = tuple(f"b{i}" for i in range(1, 7))
CLIENT_PROCESSES = 2
TTL = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine_before": machine(),
        "adoption": adoption(kills=4 if args.quick else 12),
        "api": api_throughput(seconds=3.0 if args.quick else 8.0, runs=2 if args.quick else 4),
        "machine_after": machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "cluster.md").write_text(markdown(report))
    print((args.out / "cluster.md").read_text())
    return 0


# ---------------------------------------------------------------------------
# adoption after a member kill


def adoption(kills: int) -> dict[str, Any]:
    net = NetnsRig()
    net.up()
    keys = Path(tempfile.mkdtemp(prefix="pc-bk-", dir="/tmp"))
    server = PgServer.start(listen=(net.gateway,), port=net.free_port(), durable=True)
    try:
        for name in DEPLOYABLES:
            write_assembly_keys(keys, f"a{name}")
        url = server.database("bench", host=net.gateway)
        cluster = ClusterRig(
            url,
            keys,
            {"dped": {"local_bridge_netns": net.host_netns}},
        )
        try:
            return _kills(cluster, net, kills)
        finally:
            cluster.close()
    finally:
        server.stop()
        net.down()
        shutil.rmtree(keys, ignore_errors=True)


def _kills(cluster: ClusterRig, net: NetnsRig, kills: int) -> dict[str, Any]:
    for index, name in enumerate(MEMBERS, start=1):
        cluster.add(name, netns=net.add_member(index))
        cluster.start(name)
    client = cluster.members["m1"].client
    for name in DEPLOYABLES:
        doc = dummy_deployable(name, [f"a{name}"], 1, 2.0)
        doc["settings"] = {"network": "netns", "subnet": str(net.subnet)}
        client.put_deployable(name, doc)
        client.start_deployable(name)
    _settle(cluster)
    seconds: list[float] = []
    for _ in range(kills):
        status = {n: cluster.status(n) for n in DEPLOYABLES}
        runs = {m: [n for n in DEPLOYABLES if _member(status[n]) == m] for m in MEMBERS}
        victim = max(MEMBERS, key=lambda m: len(runs[m]))
        epochs = {n: status[n]["dpe"]["lease_epoch"] for n in runs[victim]}
        killed = time.monotonic()
        cluster.members[victim].kill()
        seconds += _adopted(cluster, epochs, killed)
        cluster.start(victim)
        _settle(cluster)
    return {
        "kills": kills,
        "deployables_adopted": len(seconds),
        "lease_ttl_s": TTL,
        "seconds": stats(seconds, 2),
        "within_ttl_plus_3_s": sum(s <= TTL + 3 for s in seconds),
        "samples": seconds,
    }


def _adopted(cluster: ClusterRig, epochs: dict[str, int], since: float) -> list[float]:
    took: dict[str, float] = {}
    while len(took) < len(epochs):
        for name in [n for n in epochs if n not in took]:
            with contextlib.suppress(PcloudError):
                if cluster.is_running(name, epochs[name]):
                    took[name] = round(time.monotonic() - since, 3)
        if time.monotonic() - since > 120:
            raise RuntimeError(f"not adopted in 120 s: {set(epochs) - set(took)}")
        time.sleep(0.05)
    return list(took.values())


def _member(status: dict[str, Any]) -> str:
    return str(status["dpe"]["lease_holder"]).rsplit(":", 1)[0]


def _settle(cluster: ClusterRig) -> None:
    members = [m.name for m in cluster.alive()]
    for name in DEPLOYABLES:
        owner = rendezvous_owner(name, members)
        cluster.until(
            lambda name=name, owner=owner: (
                (s := cluster.is_running(name)) and s["dpe"]["member"] == owner
            ),
            90,
            f"{name} on {owner}",
        )


# ---------------------------------------------------------------------------
# the API on each store


def api_throughput(seconds: float, runs: int) -> dict[str, Any]:
    results = {"sqlite": _api_on("", seconds, runs)}
    server = PgServer.start(listen=("127.0.0.1",), port=_free_port(), durable=True)
    directory = Path(tempfile.mkdtemp(prefix="pc-bp-", dir="/tmp"))
    try:
        url = server.database("api", host="127.0.0.1")
        key = write_cluster_key(directory / "cluster.key")
        results["postgresql"] = _api_on(f"[cped]\nstore = {url}\nkey_file = {key}\n", seconds, runs)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return results


def _api_on(config: str, seconds: float, runs: int) -> dict[str, Any]:
    with Cped(config) as cped:
        for i in range(10):
            name = f"dep{i}"
            cped.client.put_deployable(name, dummy_deployable(name, [f"{name}a"], 2, 10))
        socket = str(cped.paths.socket)
        return {
            "reads_status": _rate(socket, "status", seconds, runs),
            "writes_template": _rate(socket, "write", seconds, runs),
            "store": cped.client.health()["store"],
        }


def _rate(socket: str, kind: str, seconds: float, runs: int) -> dict[str, Any]:
    rates: list[float] = []
    latencies: list[float] = []
    context = multiprocessing.get_context("fork")
    for run in range(runs):
        jobs = [(socket, kind, seconds, f"r{run}c{i}") for i in range(CLIENT_PROCESSES)]
        with context.Pool(CLIENT_PROCESSES) as pool:
            answers = pool.starmap(_hammer, jobs)
        rates.append(sum(len(lat) for lat in answers) / seconds)
        latencies += [v for lat in answers for v in lat]
    return {
        "client_processes": CLIENT_PROCESSES,
        "requests_per_second": stats(rates, 1),
        "latency_s": stats(latencies),
    }


def _hammer(socket: str, kind: str, seconds: float, tag: str) -> list[float]:
    client = Client(socket, timeout=30.0)
    numbers = itertools.count()

    def write() -> None:
        name = f"t{tag}n{next(numbers)}"
        client.create_template({"name": name, "resource": {"type": "Dummy"}})
        client.delete_template(name)

    call = write if kind == "write" else lambda: client.deployable_status("dep0")
    return timed_calls(call, seconds)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------
# the table


def markdown(report: dict[str, Any]) -> str:
    before = report["machine_before"]
    adoption = report["adoption"]
    lines = [
        f"Cluster benchmark, {report['when']}: {before['cpus']} cores, load average"
        f" {before['load_average_1min']} before, {report['machine_after']['load_average_1min']}"
        " after (1 min).",
        "",
        "| figure | median | p95 | n |",
        "|---|---|---|---|",
        f"| adoption after a member kill (kill to running under a new epoch; lease TTL"
        f" {adoption['lease_ttl_s']:g} s) | {adoption['seconds']['median']} s |"
        f" {adoption['seconds']['p95']} s | {adoption['seconds']['n']}"
        f" ({adoption['within_ttl_plus_3_s']} within TTL + 3 s) |",
    ]
    for store, figures in report["api"].items():
        for what, label in (
            ("reads_status", "status reads"),
            ("writes_template", "writes (a template created and deleted: 2 commits)"),
        ):
            rate = figures[what]["requests_per_second"]
            latency = figures[what]["latency_s"]
            lines.append(
                f"| API {label}, {store} ({CLIENT_PROCESSES} clients) | {rate['median']} req/s,"
                f" {1000 * latency['median']:.1f} ms | {1000 * latency['p95']:.1f} ms |"
                f" {latency['n']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
