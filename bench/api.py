"""cped's API throughput and the one-shot CLI's latency, measured from outside.

- API: clients in separate processes (so the client side is not one GIL) send
  ``GET /v1/deployables/{d}/status`` (and ``GET /v1/health``) over the UNIX
  socket, each request a new connection as ``cpe.client.Client`` does, for a
  fixed time; requests per second per run, and the latency of every request.
- One-shot: ``pcloudsh --json deployable_list`` run as a new process, wall time
  from fork to exit, against a catalog of ten deployables.

    .venv/bin/python -m bench.api [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Cped, dummy_deployable, machine, stats, timed_calls
from cpe.client import Client

CLIENT_PROCESSES = 2  # the machine's cores; more only queue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))
    return 0


def run(quick: bool) -> dict[str, Any]:
    with Cped() as cped:
        for i in range(10):
            name = f"dep{i}"
            cped.client.put_deployable(name, dummy_deployable(name, [f"{name}a"], 2, 10))
        return {
            "machine": machine(),
            "api_status": _throughput(cped, "status", 3 if quick else 8, 1.5 if quick else 5.0),
            "api_health": _throughput(cped, "health", 3 if quick else 8, 1.5 if quick else 5.0),
            "oneshot_deployable_list": _oneshot(cped, 15 if quick else 40),
        }


def _throughput(cped: Cped, route: str, runs: int, seconds: float) -> dict[str, Any]:
    rates: list[float] = []
    latencies: list[float] = []
    context = multiprocessing.get_context("fork")
    for _ in range(runs):
        with context.Pool(CLIENT_PROCESSES) as pool:
            jobs = [(str(cped.paths.socket), route, seconds)] * CLIENT_PROCESSES
            answers = pool.starmap(_hammer, jobs)
        rates.append(sum(len(lat) for lat in answers) / seconds)
        latencies.extend(v for lat in answers for v in lat)
    return {
        "client_processes": CLIENT_PROCESSES,
        "seconds_per_run": seconds,
        "requests_per_second": stats(rates, 1),
        "latency_s": stats(latencies),
        "samples": latencies[:: max(1, len(latencies) // 2000)],
    }


def _hammer(socket: str, route: str, seconds: float) -> list[float]:
    client = Client(socket, timeout=10.0)
    call = client.health if route == "health" else lambda: client.deployable_status("dep0")
    return timed_calls(call, seconds)


def _oneshot(cped: Cped, runs: int) -> dict[str, Any]:
    """pcloudsh's wall time, and a bare ``python -c pass`` run in turn with it:
    on a loaded machine process start-up alone moves by tens of ms."""
    command = [str(Path(sys.executable).with_name("pcloudsh")), "--json", "deployable_list"]
    env = {"PCLOUD_HOME": str(cped.home), "PATH": "/usr/bin:/bin", "HOME": str(cped.home)}
    walls, bare = [], []
    for _ in range(runs + 2):
        bare.append(_wall([sys.executable, "-c", "pass"], env))
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0 or len(json.loads(done.stdout)) != 10:
            raise RuntimeError(f"pcloudsh failed: {done.stderr.decode(errors='replace')}")
    warm = walls[2:]  # the first runs fill the page cache
    return {
        "command": "pcloudsh --json deployable_list",
        "wall_s": stats(warm),
        "bare_python_s": stats(bare[2:]),
        "beyond_bare_python_s": stats([w - b for w, b in zip(warm, bare[2:], strict=True)]),
        "samples": warm,
    }


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
