"""Scale on one host: N deployables started by one command, settled, then steady.

For each N of the sweep (10, 50, 100, 200, 500; ``--quick``: 10 and 50), on a
cped of its own with the default configuration: N deployables of 3 assemblies
x 2 Dummy resources (monitors every 10 s, default heartbeat, local driver),
then **one** start command, ``pcloudsh --json deployable_start --all`` run as a
process, timed until every deployable runs (read through the API).  Then:

- every resource's state is read back through the API (all must run);
- the events since the start command: fencings (an assembly ``fencing``),
  DPEs killed by cped, ``no heartbeat`` failures (each must be 0);
- after a pause, CPU over several windows, from ``/proc``: cped, all dpeds,
  the dped template, and apart the guests (their sshd with the sessions and
  agent scripts they reaped), the whole machine and the CPU the hypervisor
  gave to others (steal: runs on a busy host bill more CPU to everything);
- memory per dped from ``/proc/PID/smaps_rollup``: USS (private pages), PSS
  (shared pages divided among their users) and RSS; and the PSS of all a
  deployable runs (its dped, its guests' inits, sshd and agents), per deployable.

Apart, cped's idle CPU: one deployable running, cped's threads' CPU time
(``/proc/PID/task/*/schedstat``, nanoseconds) over a long window.

The load average is recorded before and after each N: the figures move with
it on a shared machine.  Results: ``bench/results/scale.json`` (or
``scale-quick.json``) and a plot of CPU and memory against N, ``scale.png``.
A run of some counts (``--counts``) replaces those counts in the file and keeps
the others, so the heavy counts can be run apart (``--no-idle``: cped's idle
figure kept from the file).  While deployables start, the machine's available
memory is watched: below ``MIN_AVAILABLE`` the run of that N stops (everything
it started is killed) and says so.

    .venv/bin/python -m bench.scale [--quick] [--counts 10,50,200] [--no-idle]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    Cped,
    command_line,
    cpu_seconds,
    dummy_deployable,
    machine,
    resources_not_running,
    stats,
    thread_cpu_ns,
    until,
)
from bench.monitor import _machine_cpu, machine_ticks
from dpe.drivers import _procfs
from dpe.template import TITLE as TEMPLATE_TITLE

COUNTS = (10, 50, 100, 200, 500)
QUICK_COUNTS = (10, 50)
ASSEMBLIES, RESOURCES, MONITOR = 3, 2, 10.0
START_TIMEOUT = 2400.0  # seconds
MIN_AVAILABLE = 3 * 1024**3  # bytes of available memory below which a run stops
PAUSE, QUICK_PAUSE = 20.0, 5.0  # after settling, before measuring
WINDOWS, QUICK_WINDOWS = (6, 20.0), (3, 10.0)  # how many, seconds each
IDLE_WINDOW, QUICK_IDLE_WINDOW = 120.0, 30.0
PCLOUDSH = Path(sys.executable).parent / "pcloudsh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--counts", help="deployable counts, comma-separated")
    parser.add_argument(
        "--no-idle", action="store_true", help="keep cped's idle figure from the results file"
    )
    args = parser.parse_args()
    counts = tuple(int(c) for c in args.counts.split(",")) if args.counts else None
    result = run(args.quick, counts, idle_too=not args.no_idle)
    print(json.dumps(result["table"], indent=2))
    return 0


def run(
    quick: bool, counts: tuple[int, ...] | None = None, *, idle_too: bool = True
) -> dict[str, Any]:
    """The sweep, cped's idle CPU, the table; merged into bench/results as well."""
    counts = counts or (QUICK_COUNTS if quick else COUNTS)
    result: dict[str, Any] = {"machine": machine(), "quick": quick}
    if idle_too:
        result["cped_idle"] = idle(quick)
    result["runs"] = []
    for count in counts:
        result["runs"].append(one(count, quick))
        if result["runs"][-1].get("stopped"):
            break  # the machine ran short of memory: no larger N
    result["machine_after"] = machine()
    result = merged(result, _previous(quick))
    result["table"] = table(result)
    write(result)
    return result


def merged(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """``new``'s runs replace ``old``'s of the same counts; the others are kept."""
    if old is None:
        return new
    runs = {r["deployables"]: r for r in old.get("runs", [])}
    runs.update({r["deployables"]: r for r in new["runs"]})
    result = {**old, **new, "runs": [runs[n] for n in sorted(runs)]}
    if "cped_idle" not in new and "cped_idle" in old:
        result["cped_idle"] = old["cped_idle"]
    return result


def _previous(quick: bool, out: Path = RESULTS_DIR) -> dict[str, Any] | None:
    path = out / f"{_stem(quick)}.json"
    try:
        previous: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return previous


# -- one N ------------------------------------------------------------------------------


def one(count: int, quick: bool) -> dict[str, Any]:
    names = [f"s{i:03d}" for i in range(count)]
    with Cped(stop_deployables=False) as cped:
        cped.keys([f"{n}a{j}" for n in names for j in range(ASSEMBLIES)])
        for name in names:
            assemblies = [f"{name}a{j}" for j in range(ASSEMBLIES)]
            document = dummy_deployable(name, assemblies, RESOURCES, MONITOR)
            cped.client.put_deployable(name, document)
        template_ready = _template_ready(cped)
        first_event = _newest_event(cped)
        before = machine()
        started, at = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            answer = _start_all(cped, names)
        except MemoryShort as short:
            return {"deployables": count, "at": at, "machine_before": before, "stopped": str(short)}
        settled = time.monotonic() - started
        after_start = machine()
        not_running = resources_not_running(cped, names)
        time.sleep(QUICK_PAUSE if quick else PAUSE)
        runs, seconds = QUICK_WINDOWS if quick else WINDOWS
        windows = [_window(cped, seconds) for _ in range(runs)]
        memory = _memory(cped)
        per_deployable = _memory_per_deployable(cped, count)
        trouble = _trouble(cped, first_event)
    return {
        "deployables": count,
        "at": at,
        "machine_before": before,
        "available_memory_gb_after": round(available_memory() / 1024**3, 1),
        "machine_after_start": after_start,
        "machine_after": machine(),
        "template_ready_before_start": template_ready,
        "seconds_to_settle": round(settled, 1),
        "start_command": answer,
        "resources_not_running": not_running,
        **trouble,
        "cpu_cped_and_dpeds": stats([w["cped"] + w["dpeds"] for w in windows], 4),
        "cpu_cped": stats([w["cped"] for w in windows], 4),
        "cpu_dpeds": stats([w["dpeds"] for w in windows], 4),
        "cpu_template": stats([w["template"] for w in windows], 4),
        "cpu_guests": stats([w["guests"] for w in windows], 4),
        "cpu_machine": stats([w["machine"] for w in windows], 4),
        "cpu_stolen": stats([w["stolen"] for w in windows], 4),
        "memory_per_dped_mb": memory,
        "pss_per_deployable_mb": per_deployable,
        "windows": windows,
    }


def _start_all(cped: Cped, names: list[str]) -> dict[str, Any]:
    """The one start command, as an administrator types it, then every deployable
    watched through the API until it runs (or failed, or START_TIMEOUT passed)."""
    command = [str(PCLOUDSH), "--json", "deployable_start", "--all"]
    log = cped.paths.state_dir / "start-all.log"
    with log.open("wb") as errors:
        done = subprocess.run(
            command,
            env={**os.environ, "PCLOUD_HOME": str(cped.home)},
            stdout=subprocess.PIPE,
            stderr=errors,
            check=False,
        )
    answers = json.loads(done.stdout or b"[]")
    refused = [row for row in answers if "error" in row] if isinstance(answers, list) else []
    states = until(lambda: _settled(cped, names), START_TIMEOUT, "all settled", 1.0)
    return {
        "exit_status": done.returncode,
        "refused": refused,
        "not_running": {name: state for name, state in states.items() if state != "running"},
    }


def _template_ready(cped: Cped, within: float = 60.0) -> bool:
    """Wait for cped's dped template (until it is ready cped starts each dped afresh,
    with none of the template's pages shared: 2.4 times the USS)."""
    log = cped.paths.state_dir / "cped-bench.log"
    try:
        until(lambda: b"dped template ready" in log.read_bytes(), within, "the template", 0.2)
    except TimeoutError:
        return False
    return True


class MemoryShort(RuntimeError):
    """The machine's available memory fell below ``MIN_AVAILABLE`` while starting."""


def available_memory() -> int:
    """``MemAvailable`` of ``/proc/meminfo``, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _settled(cped: Cped, names: list[str]) -> dict[str, str] | None:
    """Each deployable's state once none is still on its way; None until then."""
    left = available_memory()
    if left < MIN_AVAILABLE:
        raise MemoryShort(f"stopped: {left / 1024**3:.1f} GB of memory left while starting")
    states = {row["name"]: row["state"] for row in cped.client.list_deployables()}
    chosen = {name: states.get(name, "missing") for name in names}
    return chosen if all(state in ("running", "failed") for state in chosen.values()) else None


def _newest_event(cped: Cped) -> int:
    newest = cped.client.query_events(limit=1, order="desc")
    return int(newest[0]["id"]) if newest else 0


def _trouble(cped: Cped, after: int) -> dict[str, Any]:
    """What must not happen while starting and running: fencing, DPE kills, lost heartbeats."""
    fencings = kills = heartbeats = 0
    examples: list[str] = []
    failed: dict[tuple[str, str], str] = {}  # an assembly's last failure: why it was fenced
    while page := cped.client.query_events(after_id=after, limit=1000):
        after = int(page[-1]["id"])
        for event in page:
            where = (event["deployable"], event["assembly"])
            if event["state"] == "failed":
                failed[where] = event["reason"]
            fenced = event["state"] == "fencing"
            killed = event["state"] == "dpe-killed"
            lost = "no heartbeat" in event["reason"]
            fencings, kills, heartbeats = fencings + fenced, kills + killed, heartbeats + lost
            if (fenced or killed or lost) and len(examples) < 10:
                why = f" (failed: {failed[where]})" if fenced and where in failed else ""
                examples.append(
                    f"{event['deployable']}/{event['assembly']}: {event['reason']}{why}"
                )
    return {
        "fencings": fencings,
        "dpes_killed": kills,
        "heartbeats_lost": heartbeats,
        "trouble_examples": examples,
    }


# -- CPU and memory -------------------------------------------------------------------------


def _window(cped: Cped, seconds: float) -> dict[str, Any]:
    groups = _groups(cped)
    before = {name: _cpu(pids, name == "guests") for name, pids in groups.items()}
    machine0, steal0, t0 = _machine_cpu(), _stolen(), time.monotonic()
    time.sleep(seconds)
    after = {name: _cpu(pids, name == "guests") for name, pids in groups.items()}
    elapsed = time.monotonic() - t0
    shares = {name: _used(before[name], after[name]) / elapsed for name in groups}
    return {
        "seconds": round(elapsed, 2),
        **{name: round(share, 5) for name, share in shares.items()},
        "machine": round((_machine_cpu() - machine0) / elapsed, 5),
        "stolen": round((_stolen() - steal0) / elapsed, 5),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def _stolen() -> float:
    """CPU seconds so far that the hypervisor gave to others while this machine's
    vCPUs wanted to run (``/proc/stat``'s steal; part of ``machine``): a busy host
    also slows, and so bills more CPU to, every process measured here."""
    return machine_ticks()[7] / os.sysconf("SC_CLK_TCK")


def _groups(cped: Cped) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {"cped": [cped.pid], "dpeds": [], "template": [], "guests": []}
    dpeds = set(cped.dpeds())  # forked from the template, or started afresh
    for pid, argv in cped.processes().items():
        if argv == [TEMPLATE_TITLE]:
            groups["template"].append(pid)
        elif pid in dpeds:
            groups["dpeds"].append(pid)
        else:
            groups["guests"].append(pid)
    return groups


def _cpu(pids: list[int], with_reaped: bool) -> dict[int, float]:
    """CPU seconds so far of each process (with what it reaped, for guests' sshd)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        ticks = sum(int(f) for f in fields[11 : 15 if with_reaped else 13])
        found[pid] = ticks / os.sysconf("SC_CLK_TCK")
    return found


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def _memory(cped: Cped) -> dict[str, Any]:
    rollups = [r for r in (_rollup(pid) for pid in cped.dpeds()) if r]
    mb = 1024.0
    return {
        "dpeds": len(rollups),
        "uss": stats([(r["Private_Clean"] + r["Private_Dirty"]) / mb for r in rollups], 1),
        "pss": stats([r["Pss"] / mb for r in rollups], 1),
        "rss": stats([r["Rss"] / mb for r in rollups], 1),
    }


def _memory_per_deployable(cped: Cped, count: int) -> dict[str, float]:
    """PSS of everything a deployable runs, summed by kind and divided by the number of
    deployables: its dped, and its guests' inits, sshd (the server and the sessions),
    guest agents and the rest (what resource agents leave running; the Dummy, nothing)."""
    kinds = dict.fromkeys(("dped", "guest_init", "sshd", "guest_agent", "other"), 0.0)
    for pid in cped.dpeds():
        kinds["dped"] += _rollup(pid).get("Pss", 0) / 1024.0
    for pid in _guest_processes(cped):
        kinds[_guest_kind(command_line(pid))] += _rollup(pid).get("Pss", 0) / 1024.0
    per = {kind: round(total / count, 2) for kind, total in kinds.items()}
    return {**per, "total": round(sum(kinds.values()) / count, 2)}


def _guest_processes(cped: Cped) -> list[int]:
    """Every process of every guest: their inits' PID namespaces, or their inits' trees."""
    inits = [p for p, argv in cped.processes().items() if "_guest_init.py" in " ".join(argv)]
    stats = _procfs.all_stats()
    spaces = {_procfs.pid_namespace(p) for p in inits} - {_procfs.pid_namespace(os.getpid())}
    found = {s.pid for s in stats if _procfs.pid_namespace(s.pid) in spaces}
    for init in inits:
        found |= {init} | {s.pid for s in _procfs.descendants(init, stats)}
    return sorted(found)


def _guest_kind(argv: list[str]) -> str:
    words = " ".join(argv)
    if "_guest_init.py" in words:
        return "guest_init"
    if "pcloud_agent" in words or "/agent-" in words:
        return "guest_agent"
    if argv and Path(argv[0].split()[0]).name.startswith("sshd"):
        return "sshd"
    return "other"


def _rollup(pid: int) -> dict[str, int]:
    """``smaps_rollup`` in kB ({} if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in lines)}


# -- cped at rest ---------------------------------------------------------------------------


def idle(quick: bool) -> dict[str, Any]:
    """cped's CPU with one deployable running and nobody asking anything."""
    with Cped() as cped:
        assemblies = [f"ia{j}" for j in range(ASSEMBLIES)]
        cped.keys(assemblies)
        cped.client.put_deployable("idle", dummy_deployable("idle", assemblies, RESOURCES, MONITOR))
        cped.client.start_deployable("idle")
        until(
            lambda: not resources_not_running(cped, ["idle"]), 120.0, "the deployable running", 0.5
        )
        time.sleep(QUICK_PAUSE if quick else PAUSE)
        before, load = machine(), os.getloadavg()[0]
        window = QUICK_IDLE_WINDOW if quick else IDLE_WINDOW
        cpu0, ticks0, t0 = thread_cpu_ns(cped.pid), cpu_seconds(cped.pid), time.monotonic()
        time.sleep(window)
        used = (thread_cpu_ns(cped.pid) - cpu0) / 1e9
        elapsed = time.monotonic() - t0
        ticks = cpu_seconds(cped.pid) - ticks0
    return {
        "window_seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 4),
        "percent_of_a_core": round(100 * used / elapsed, 4),
        "cpu_seconds_per_minute": round(60 * used / elapsed, 4),
        "cpu_seconds_by_ticks": round(ticks, 2),
        "machine_before": before,
        "load_average_1min_during": round((load + os.getloadavg()[0]) / 2, 2),
    }


# -- the table and the files -------------------------------------------------------------


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for run_ in result["runs"]:
        if run_.get("stopped"):
            rows.append({"deployables": run_["deployables"], "stopped": run_["stopped"]})
            continue
        memory = run_["memory_per_dped_mb"]
        rows.append(
            {
                "deployables": run_["deployables"],
                "seconds_to_settle": run_["seconds_to_settle"],
                "all_resources_running": not run_["resources_not_running"],
                "fencings": run_["fencings"],
                "dpes_killed": run_["dpes_killed"],
                "heartbeats_lost": run_["heartbeats_lost"],
                "cpu_cped_and_dpeds_percent": _percent(run_["cpu_cped_and_dpeds"]),
                "cpu_cped_percent": _percent(run_["cpu_cped"]),
                "cpu_guests_percent": _percent(run_["cpu_guests"]),
                "uss_mb": memory["uss"].get("median"),
                "pss_mb": memory["pss"].get("median"),
                "rss_mb": memory["rss"].get("median"),
                "pss_per_deployable_mb": run_.get("pss_per_deployable_mb", {}).get("total"),
                "load_before": run_["machine_before"]["load_average_1min"],
                "load_after": run_["machine_after"]["load_average_1min"],
            }
        )
    return rows


def _percent(figure: dict[str, Any]) -> float | None:
    median = figure.get("median")
    return round(100 * median, 2) if median is not None else None


def _stem(quick: bool) -> str:
    return "scale-quick" if quick else "scale"


def write(result: dict[str, Any], out: Path = RESULTS_DIR) -> None:
    stem = _stem(result["quick"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    try:
        from bench.plot import draw_scale
    except ImportError as error:  # matplotlib is the bench extra
        print(f"bench: no {stem}.png ({error})", file=sys.stderr)
        return
    draw_scale(result, out / f"{stem}.png")


if __name__ == "__main__":
    sys.exit(main())
