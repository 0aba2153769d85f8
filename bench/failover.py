"""Failover with the local driver: a service's outage against its assembly's re-creation.

Runs the real ``dped`` on a temporary ``PCLOUD_HOME`` for a deployable of three
assemblies: a service ``svc`` (``ocf:heartbeat:Dummy``) allowed on a1 (score
100) and a2 (score 50) with stickiness 60, and ``app`` pinned to a3, ordered
after the service and given its address.  Then, several times, kills the
instance the service runs on (its init: everything in its PID namespace) and
measures, from the kill:

- until the assembly is failed (heartbeat lost);
- until the service runs on the other assembly (the service's outage);
- until ``app`` runs again (restarted with the service's new address);
- until the killed assembly runs again on a new instance (its re-creation).

The stickiness keeps the service where it failed over to, so each run kills
the other assembly.  ``--boot-delay`` makes each new local instance take that
long, standing for a virtual machine's boot: the service's outage must not
grow with it.  Times are from the moment of the kill (this process's
clock) to the event's timestamp (written by dped).  The result, with the
intervals configured, goes to ``bench/results/failover.json``.

    .venv/bin/python bench/failover.py [--runs 5] [--monitor 0.5]
        [--heartbeat 0.2 --heartbeat-timeout 0.6] [--out FILE]

from the repository root (with ``PYTHONPATH=.``), as root, since the local
guests get their own PID namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/failover.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS_DIR,
    EventBench,
    destroy_all,
    machine,
    start_dped,
    stats,
    stop_dped,
    store_deployable,
)
from foundation.keyfiles import key_paths
from foundation.model import Deployable, parse
from foundation.paths import Paths, resolve
from foundation.store import Store

NAME = "bench"
CANDIDATES = ("a1", "a2")
RESULTS = RESULTS_DIR / "failover.json"


def main() -> int:
    args = _arguments()
    home = Path(tempfile.mkdtemp(prefix="pc-fo-", dir="/tmp"))
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    dped = None
    try:
        document = _setup(paths, args)
        dped = start_dped(paths, NAME)
        store = Store.open(paths.store_file)
        bench = Bench(paths, store)
        bench.wait_event(lambda line: line.startswith(f"{NAME} running"), 60)
        runs = [bench.fail_over() for _ in range(args.runs)]
        store.close()
        report = _report(document, args, runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["summary"], indent=2))
        return 0
    finally:
        if dped is not None:
            stop_dped(dped)
        asyncio.run(destroy_all(paths, NAME))
        shutil.rmtree(home, ignore_errors=True)


class Bench(EventBench):
    def __init__(self, paths: Paths, store: Store) -> None:
        super().__init__(paths, store, NAME)

    def fail_over(self) -> dict[str, Any]:
        self.settle()
        victim = self.where("svc")
        other = next(a for a in CANDIDATES if a != victim)
        instance = self.instance(victim)
        killed = time.time()
        os.kill(int(instance["init_pid"]), signal.SIGKILL)
        events = self.collect(
            {
                "assembly_failed": lambda s: s.startswith(f"{NAME}/{victim} failed"),
                "service_moved": lambda s: (
                    s.startswith(f"{NAME}/{other}/svc")
                    and f"svc moves from {victim} to {other}" in s
                ),
                "service_running": lambda s: s == f"{NAME}/{other}/svc running: started",
                "app_running": lambda s: s == f"{NAME}/a3/app running: started",
                "assembly_recreated": lambda s: s.startswith(f"{NAME}/{victim} running"),
            }
        )
        self.wait_event(lambda line: line.startswith(f"{NAME} running"))
        timings = {key: round(when - killed, 4) for key, (when, _) in events.items()}
        return {
            "killed": victim,
            "service_to": other,
            **timings,
            "service_before_recreation": timings["service_running"] < timings["assembly_recreated"],
            "move_event": events["service_moved"][1],
        }

    def where(self, service: str) -> str:
        records = self.store.get_runtime(NAME).get("resource", {})
        running = [
            a for a in CANDIDATES if records.get(f"{a}/{service}", {}).get("state") == "running"
        ]
        if len(running) != 1:
            raise RuntimeError(f"{service} runs on {running or 'no assembly'}")
        return running[0]


def _setup(paths: Paths, args: argparse.Namespace) -> Deployable:
    for name in (*CANDIDATES, "a3"):
        private, _, host, _ = key_paths(paths.keys_dir, name)
        for path in (private, host):
            command = ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]
            subprocess.run([*command, "-f", str(path)], check=True)
    paths.config_file.write_text("[cped]\nlease_ttl = 3s\n\n[dped]\nlease_renew_interval = 1s\n")
    monitor = {"type": "Dummy", "monitor_interval": args.monitor}
    document = parse(
        {
            "name": NAME,
            "settings": {"boot_delay": str(args.boot_delay)} if args.boot_delay else {},
            "heartbeat": {
                "interval": args.heartbeat,
                "timeout": args.heartbeat_timeout,
                "health_interval": args.health_interval,
            },
            "assemblies": [
                {"name": "a1"},
                {"name": "a2"},
                {
                    "name": "a3",
                    "resources": [
                        {"name": "app", **monitor, "parameters": {"db": {"ref": "svc:ipaddress"}}}
                    ],
                },
            ],
            "services": [
                {
                    "name": "svc",
                    **monitor,
                    "locations": [
                        {"assembly": "a1", "score": 100},
                        {"assembly": "a2", "score": 50},
                    ],
                    "stickiness": 60,
                }
            ],
            "constraints": [{"first": "svc", "then": "a3/app"}],
        }
    )
    store_deployable(paths, document)
    return document


def _report(
    document: Deployable, args: argparse.Namespace, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    keys = ("assembly_failed", "service_running", "app_running", "assembly_recreated")
    summary: dict[str, Any] = {key: stats([run[key] for run in runs], 4) for key in keys}
    summary["outage_over_recreation"] = stats(
        [run["service_running"] / run["assembly_recreated"] for run in runs], 3
    )
    summary["service_before_recreation"] = all(run["service_before_recreation"] for run in runs)
    return {
        "benchmark": "failover",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "configured": {
            "monitor_interval": args.monitor,
            "heartbeat_interval": document.heartbeat.interval,
            "heartbeat_timeout": document.heartbeat.timeout,
            "health_interval": document.heartbeat.health_interval,
            "boot_delay": args.boot_delay,
            "runs": args.runs,
        },
        "summary": summary,
        "runs": runs,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--monitor", type=float, default=0.5, help="monitor interval (s)")
    parser.add_argument("--heartbeat", type=float, default=0.2, help="keepalive interval (s)")
    parser.add_argument("--heartbeat-timeout", type=float, default=0.6)
    parser.add_argument("--health-interval", type=float, default=1.0)
    parser.add_argument(
        "--boot-delay",
        type=float,
        default=0.0,
        help="seconds a new local instance takes, standing for a VM's boot (default none)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
