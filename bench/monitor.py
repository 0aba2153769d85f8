"""Monitor operations one dped sustains (local guests, ``ocf:heartbeat:Dummy``).

One deployable of several assemblies, many Dummy resources each, all with a
short monitor interval, so the offered rate (resources / interval) is above
the target.  The operations are counted from outside: inotify on the Dummy
agent's file sees every run of the agent (each run opens the script; the
opens per run are calibrated first, and the machine's background rate of
Dummy runs — other work on the machine — is measured before and subtracted).
CPU per operation is dped's own CPU time (``/proc``) over the window divided by
the operations; the whole machine's CPU over the window is reported too, since
each operation also costs an sshd channel and a shell on the guest side.

    .venv/bin/python -m bench.monitor [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Cped, cpu_seconds, dummy_deployable, machine, stats, until

DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"
IN_OPEN = 0x20
EVENT_SIZE = 16  # struct inotify_event with no name (a watch on a file)
CONFIG = "[cped]\nlease_ttl = 3s\n\n[dped]\nlease_renew_interval = 1s\n"


class OpenCounter:
    """Counts opens of one file, from the kernel (inotify), until closed."""

    def __init__(self, path: str) -> None:
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")
        self.count = 0

    def drain(self, wait: float = 0.0) -> int:
        """Read what is queued (waiting up to ``wait`` s for the first); the total."""
        ready, _, _ = select.select([self.fd], [], [], wait)
        while ready:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self.count += len(data) // EVENT_SIZE
        return self.count

    def during(self, seconds: float) -> int:
        """Opens within the next ``seconds``."""
        start = self.drain()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.drain(min(left, 0.05))
        return self.drain() - start

    def close(self) -> None:
        os.close(self.fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))
    return 0


def run(quick: bool, assemblies: int = 4, per_assembly: int = 25, interval: float = 0.1) -> Any:
    counter = OpenCounter(DUMMY)
    try:
        opens_per_run = _calibrate(counter)
        background = counter.during(2.0) / 2.0 / opens_per_run
        with Cped(CONFIG) as cped:
            names = [f"m{i}" for i in range(assemblies)]
            cped.keys(names)
            cped.client.put_deployable(
                "mon", dummy_deployable("mon", names, per_assembly, interval)
            )
            cped.client.start_deployable("mon")
            until(lambda: _all_running(cped), 120.0, "every resource running", 0.5)
            [dped] = cped.dpeds()
            windows = _windows(
                counter, opens_per_run, dped, 3 if quick else 8, 2.0 if quick else 10.0
            )
    finally:
        counter.close()
    return {
        "machine": machine(),
        "configured": {
            "assemblies": assemblies,
            "resources": assemblies * per_assembly,
            "monitor_interval": interval,
            "offered_ops_per_second": assemblies * per_assembly / interval,
        },
        "opens_per_agent_run": opens_per_run,
        "background_runs_per_second": round(background, 1),
        "ops_per_second": stats([w["ops"] / w["seconds"] - background for w in windows], 1),
        "dped_cpu_ms_per_op": stats([w["dped_cpu"] * 1000 / max(w["ops"], 1) for w in windows], 3),
        "machine_cpu_ms_per_op": stats(
            [w["all_cpu"] * 1000 / max(w["ops"], 1) for w in windows], 3
        ),
        "dped_cpu_share_of_one_core": stats([w["dped_cpu"] / w["seconds"] for w in windows], 3),
        "windows": windows,
    }


def _calibrate(counter: OpenCounter, runs: int = 40) -> float:
    env = {"OCF_ROOT": "/usr/lib/ocf", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    env["OCF_RESOURCE_INSTANCE"] = "bench-calibration"
    env["HA_RSCTMP"] = "/nonexistent-bench-dir"  # monitor only stats its state file
    before = counter.drain()
    for _ in range(runs):
        subprocess.run([DUMMY, "monitor"], env=env, capture_output=True, check=False)
    return max(1, round((counter.drain(0.1) - before) / runs))


def _all_running(cped: Cped) -> bool:
    status = cped.client.deployable_status("mon")
    states = {r["state"] for a in status["assemblies"] for r in a["resources"]}
    return states == {"running"} and status["state"] == "running"


def _windows(
    counter: OpenCounter, opens_per_run: float, dped: int, runs: int, seconds: float
) -> list[dict[str, Any]]:
    windows = []
    for _ in range(runs):
        cpu0, all0, t0 = cpu_seconds(dped), _machine_cpu(), time.monotonic()
        opens = counter.during(seconds)
        cpu1, all1, t1 = cpu_seconds(dped), _machine_cpu(), time.monotonic()
        ops = opens / opens_per_run
        windows.append(
            {"seconds": t1 - t0, "ops": ops, "dped_cpu": cpu1 - cpu0, "all_cpu": all1 - all0}
        )
    return windows


def machine_ticks() -> list[int]:
    """The machine's CPU time so far by state, in clock ticks (``/proc/stat``'s ``cpu``
    line: user, nice, system, idle, iowait, irq, softirq, steal...)."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``)."""
    values = machine_ticks()
    busy = sum(values) - values[3] - values[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
