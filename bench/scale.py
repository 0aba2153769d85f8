"""Steady state at scale: many deployables on one cped (local driver, Dummy).

Starts ``--deployables`` deployables of 3 assemblies x 2 Dummy resources each
(monitors every 10 s, default heartbeat settings) through cped's API, ten at
a time (each wave running before the next), waits until every resource runs,
lets it settle, then samples from ``/proc`` over several windows: the CPU time of cped and of every dped (as a share of one
core), the RSS of each dped, and the CPU of the guests' long-lived processes
(sshd).  PSS is reported beside RSS (shared library pages divided among the
dpeds).  The agents' own short-lived processes are not attributed; the whole
machine's busy CPU is reported beside it.

    .venv/bin/python -m bench.scale [--deployables 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.common import (
    Cped,
    cpu_seconds,
    dummy_deployable,
    machine,
    pss_bytes,
    rss_bytes,
    stats,
    until,
)
from bench.monitor import _machine_cpu

CONFIG = "[cped]\nlease_ttl = 10s\n"
# Deployables started at once.  Starting all of them together on a small
# machine starves heartbeats and health commands, and the recoveries that
# follow keep the load up: the start-up is not what this figure measures.
WAVE = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deployables", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.deployables), indent=2))
    return 0


def run(quick: bool, deployables: int | None = None) -> dict[str, Any]:
    count = deployables or (10 if quick else 200)
    names = [f"s{i:03d}" for i in range(count)]
    with Cped(CONFIG) as cped:
        cped.keys([f"{n}a{j}" for n in names for j in range(3)])
        started = time.monotonic()
        for first in range(0, count, WAVE):
            wave = names[first : first + WAVE]
            for name in wave:
                document = dummy_deployable(name, [f"{name}a{j}" for j in range(3)], 2, 10.0)
                cped.client.put_deployable(name, document)
                cped.client.start_deployable(name)
            until(lambda w=wave: _all_running(cped, w), 120.0, "a wave running", 0.5)  # type: ignore[misc]
        until(lambda: _all_running(cped, names), 120.0, "all running", 1.0)
        up = time.monotonic() - started
        time.sleep(3.0 if quick else 20.0)  # past the start-up work
        windows = _windows(cped, 3 if quick else 6, 5.0 if quick else 20.0)
    return {
        "machine": machine(),
        "configured": {
            "deployables": count,
            "assemblies_per_deployable": 3,
            "resources_per_assembly": 2,
            "monitor_interval": 10.0,
            "reduced_for_quick": quick and deployables is None,
        },
        "seconds_until_all_running": round(up, 1),
        "cpu_share_cped_and_dpeds": stats([w["daemons"] for w in windows], 4),
        "cpu_share_cped": stats([w["cped"] for w in windows], 4),
        "cpu_share_guest_sshd": stats([w["guests"] for w in windows], 4),
        "cpu_share_machine": stats([w["machine"] for w in windows], 4),
        "rss_per_dped_mb": stats([r for w in windows for r in w["dped_rss_mb"]], 1),
        "pss_per_dped_mb": stats([r for w in windows for r in w["dped_pss_mb"]], 1),
        "windows": windows,
    }


def _all_running(cped: Cped, names: list[str]) -> bool:
    for row in cped.client.list_deployables():
        if row["name"] in names and row["state"] != "running":
            return False
    return all(_running(cped, name) for name in names)


def _running(cped: Cped, name: str) -> bool:
    status = cped.client.deployable_status(name)
    states = {r["state"] for a in status["assemblies"] for r in a["resources"]}
    return states == {"running"}


def _windows(cped: Cped, runs: int, seconds: float) -> list[dict[str, Any]]:
    windows = []
    for _ in range(runs):
        processes = cped.processes()
        dpeds = set(cped.dpeds())
        before = _cpu(processes) | {cped.pid: cpu_seconds(cped.pid)}
        machine0, t0 = _machine_cpu(), time.monotonic()
        time.sleep(seconds)
        after = _cpu(processes) | {cped.pid: cpu_seconds(cped.pid)}
        elapsed = time.monotonic() - t0
        used = {pid: after[pid] - before[pid] for pid in after if pid in before}
        windows.append(
            {
                "seconds": round(elapsed, 2),
                "dpeds": len(dpeds),
                "cped": used[cped.pid] / elapsed,
                "daemons": sum(used[p] for p in used if p in dpeds or p == cped.pid) / elapsed,
                "guests": sum(used[p] for p in used if p not in dpeds and p != cped.pid) / elapsed,
                "machine": (_machine_cpu() - machine0) / elapsed,
                "dped_rss_mb": [round(rss_bytes(p) / 2**20, 1) for p in dpeds],
                "dped_pss_mb": [round(pss_bytes(p) / 2**20, 1) for p in dpeds],
            }
        )
    return windows


def _cpu(processes: dict[int, list[str]]) -> dict[int, float]:
    found = {}
    for pid in processes:
        try:
            found[pid] = cpu_seconds(pid)
        except OSError:
            continue  # gone between the listing and now
    return found


if __name__ == "__main__":
    sys.exit(main())
