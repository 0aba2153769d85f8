"""Recovery times with the local driver, measured from outside.

Runs the real ``dped`` on a temporary ``PCLOUD_HOME`` for a deployable of two
assemblies: ``ocf:heartbeat:Dummy`` on a1, ``ocf:heartbeat:anything`` (a small
daemon) on a2 after it.  Then, several times each:

- kills the daemon (SIGKILL) and measures until its monitor fails (the
  ``failed`` event) and until it runs again (the ``started`` event, and a new
  daemon process seen in ``/proc``);
- kills the whole a2 instance (its init: everything in its PID namespace)
  and measures until the assembly is failed, and until the daemon runs again
  on a new instance.

Times are from the moment of the kill (this process's clock) to the event's
timestamp (written by dped) or to when the process was seen.  Most of "running
again" after a detected failure is the ``anything`` agent's own start (it
launches the daemon through ``su -``, a login shell); the machine's load
average is recorded because other work on it slows everything down.  The result,
with the intervals configured, goes to ``bench/results/recovery_local.json``.

    .venv/bin/python bench/recovery_local.py [--runs 5] [--monitor 0.5]
        [--heartbeat 0.2 --heartbeat-timeout 0.6] [--out FILE]

from the repository root, after ``make deps`` (or with ``PYTHONPATH=.``); as
root, since the local guests get their own PID namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/recovery_local.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EventBench, destroy_all, start_dped, stop_dped, store_deployable
from foundation.keyfiles import key_paths
from foundation.model import Deployable, parse
from foundation.paths import Paths, resolve
from foundation.store import Store

DAEMON = "#!/bin/sh\nwhile :; do sleep 1; done\n"
RESULTS = Path(__file__).parent / "results" / "recovery_local.json"


def main() -> int:
    args = _arguments()
    home = Path(tempfile.mkdtemp(prefix="pc-bench-", dir="/tmp"))
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    dped = None
    try:
        document = _setup(paths, args)
        dped = start_dped(paths, "bench")
        store = Store.open(paths.store_file)
        bench = Bench(paths, store)
        bench.wait_event(lambda line: line.startswith("bench running"), 30)
        results = {
            "resource_kill": [bench.kill_daemon() for _ in range(args.runs)],
            "instance_kill": [bench.kill_instance() for _ in range(args.runs)],
        }
        store.close()
        report = _report(document, args, results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["summary"], indent=2))
        return 0
    finally:
        if dped is not None:
            stop_dped(dped)
        asyncio.run(destroy_all(paths, "bench"))
        shutil.rmtree(home, ignore_errors=True)


class Bench(EventBench):
    def __init__(self, paths: Paths, store: Store) -> None:
        super().__init__(paths, store, "bench")

    def kill_daemon(self) -> dict[str, float]:
        [pid] = self.daemons()
        self.settle()
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        failed = self.wait_event(lambda line: line.startswith("bench/a2/app failed"))
        started = self.wait_event(lambda line: line == "bench/a2/app running: started")
        seen = self.wait_process(pid)
        self.wait_event(lambda line: line.startswith("bench running"))
        return {
            "monitor_failed": failed - killed,
            "running_again": started - killed,
            "process_back": seen - killed,
        }

    def kill_instance(self) -> dict[str, float]:
        [pid] = self.daemons()
        instance = self.instance("a2")
        self.settle()
        killed = time.time()
        os.kill(int(instance["init_pid"]), signal.SIGKILL)
        failed = self.wait_event(lambda line: line.startswith("bench/a2 failed"))
        started = self.wait_event(lambda line: line == "bench/a2/app running: started")
        seen = self.wait_process(pid)
        self.wait_event(lambda line: line.startswith("bench running"))
        return {
            "assembly_failed": failed - killed,
            "running_again": started - killed,
            "process_back": seen - killed,
        }

    def wait_process(self, old: int, within: float = 30.0) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if set(self.daemons()) - {old}:
                return time.time()
            time.sleep(0.002)
        raise TimeoutError("no new daemon")

    def daemons(self) -> list[int]:
        script = str(self.paths.state_dir / "daemon.sh")
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if script.encode() in argv and state != "Z":
                    found.append(int(entry.name))
        return found


def _setup(paths: Paths, args: argparse.Namespace) -> Deployable:
    for name in ("a1", "a2"):
        private, _, host, _ = key_paths(paths.keys_dir, name)
        for path in (private, host):
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "rsa",
                    "-b",
                    "2048",
                    "-m",
                    "PEM",
                    "-N",
                    "",
                    "-f",
                    str(path),
                ],
                check=True,
            )
    daemon = paths.state_dir / "daemon.sh"
    daemon.write_text(DAEMON)
    daemon.chmod(0o755)
    paths.config_file.write_text("[cped]\nlease_ttl = 3s\n\n[dped]\nlease_renew_interval = 1s\n")
    document = parse(
        {
            "name": "bench",
            "heartbeat": {
                "interval": args.heartbeat,
                "timeout": args.heartbeat_timeout,
                "health_interval": args.health_interval,
            },
            "assemblies": [
                {"name": "a1", "resources": [_resource("d1", "Dummy", args.monitor, {})]},
                {
                    "name": "a2",
                    "resources": [
                        _resource("app", "anything", args.monitor, {"binfile": str(daemon)})
                    ],
                },
            ],
            "constraints": [{"first": "a1/d1", "then": "a2/app"}],
        }
    )
    store_deployable(paths, document)
    return document


def _resource(name: str, kind: str, interval: float, params: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "type": kind, "monitor_interval": interval, "parameters": params}


def _report(
    document: Deployable, args: argparse.Namespace, results: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    summary = {
        scenario: {key: _stats([run[key] for run in runs]) for key in runs[0]}
        for scenario, runs in results.items()
    }
    return {
        "benchmark": "recovery_local",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_1min": round(os.getloadavg()[0], 2),  # other work slows recovery
        },
        "configured": {
            "monitor_interval": args.monitor,
            "heartbeat_interval": document.heartbeat.interval,
            "heartbeat_timeout": document.heartbeat.timeout,
            "health_interval": document.heartbeat.health_interval,
            "runs": args.runs,
        },
        "summary": summary,
        "runs": results,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--monitor", type=float, default=0.5, help="monitor interval (s)")
    parser.add_argument("--heartbeat", type=float, default=0.2, help="keepalive interval (s)")
    parser.add_argument("--heartbeat-timeout", type=float, default=0.6)
    parser.add_argument("--health-interval", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
