"""A Dummy resource fails: detection, planning + dispatch, and recovery.

One deployable run by a real cped and dped (local driver): assembly ``r1``
with an ``ocf:heartbeat:Dummy`` resource ``d`` monitored every ``--monitor``
seconds.  Each run removes the resource's state file on the guest (the
Dummy's "process" dies: its next monitor returns 7), at a random point of the
monitor cycle after at least one successful monitor (so that each failure is
an isolated one: dped backs off restarts of failures in a row), and reads the event log through the API:

- ``detect``: removal (this process's clock) → the ``failed`` event;
- ``dispatch``: the ``failed`` event → the ``stopping`` event (the recovery's
  first action handed to the agent: planning + dispatch inside dped);
- ``stop`` and ``start``: the agent operations, ``stopping`` → ``stopped`` and
  ``starting`` → ``running``;
- ``recover``: removal → ``running`` again, and the part of it beyond
  detection + stop + start (``overhead``).

    .venv/bin/python -m bench.resource_failure [--quick] [--monitor 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Cped, dummy_deployable, machine, stats, until

CONFIG = "[cped]\nlease_ttl = 3s\n\n[dped]\nlease_renew_interval = 1s\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--monitor", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.monitor), indent=2))
    return 0


def run(quick: bool, monitor: float = 1.0) -> dict[str, Any]:
    with Cped(CONFIG) as cped:
        cped.keys(["r1"])
        cped.client.put_deployable("res", dummy_deployable("res", ["r1"], 1, monitor))
        cped.client.start_deployable("res")
        until(lambda: _resource_state(cped) == "running", 60.0, "d0 running", 0.1)
        runs = [_one_failure(cped, monitor) for _ in range(8 if quick else 30)]
    summary = {key: stats([r[key] for r in runs]) for key in runs[0]}
    return {
        "machine": machine(),
        "configured": {"monitor_interval": monitor, "runs": len(runs)},
        "summary": summary,
        "detect_beyond_interval_p95": round(summary["detect"]["p95"] - monitor, 6),
        "runs": runs,
    }


def _resource_state(cped: Cped) -> str:
    status = cped.client.deployable_status("res")
    return str(status["assemblies"][0]["resources"][0]["state"])


def _one_failure(cped: Cped, monitor: float) -> dict[str, float]:
    # One successful monitor first (a failure before it is "in a row" with the
    # last one, and dped backs off its restart), then a random point of the cycle.
    time.sleep(monitor + 0.2 + random.uniform(0.0, monitor))
    after = _last_event_id(cped)
    state = _state_file(cped)
    removed = time.time()
    state.unlink()
    times = until(lambda: _recovery_events(cped, after), 30.0 + monitor, "recovered", 0.02)
    detect = times["failed"] - removed
    stop = times["stopped"] - times["stopping"]
    start = times["running"] - times["starting"]
    recover = times["running"] - removed
    return {
        "detect": detect,
        "dispatch": times["stopping"] - times["failed"],
        "stop": stop,
        "start": start,
        "recover": recover,
        "overhead": recover - detect - stop - start,
    }


def _state_file(cped: Cped) -> Path:
    [found] = until(lambda: list(cped.home.rglob("Dummy-*.state")), 10.0, "state file", 0.01)
    return Path(found)


def _last_event_id(cped: Cped) -> int:
    events = cped.client.query_events(deployable="res", order="desc", limit=1)
    return int(events[0]["id"]) if events else 0


def _recovery_events(cped: Cped, after: int) -> dict[str, float] | None:
    """First time of each state of ``d0`` after event ``after``, once it runs again."""
    times: dict[str, float] = {}
    for event in cped.client.query_events(deployable="res", after_id=after, limit=1000):
        if event.get("resource") == "d0":
            times.setdefault(event["state"], float(event["time"]))
    wanted = {"failed", "stopping", "stopped", "starting", "running"}
    return times if wanted <= times.keys() else None


if __name__ == "__main__":
    sys.exit(main())
