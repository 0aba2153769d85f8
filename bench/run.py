"""All benchmarks: ``python -m bench.run [--quick]`` (``make bench``, ``make bench-quick``).

Runs every figure of the benchmark issue in turn on this machine, each from
outside the process under test, and writes

- ``bench/results/latest.json``: every figure's median and p95 over repeated
  runs, its target, met or missed, the machine (cores, load before and after)
  and each module's full output;
- ``bench/results/latest.md``: the table of figures;
- ``bench/results/latency.png``: the latency distributions.

``--quick`` repeats less and runs the scale sweep at 10 and 50 deployables
instead of 10 to 500 (the output says so).  Run from the repository root as root
(local guests get their own PID namespaces).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import api, monitor, resource_failure, scale
from bench.common import RESULTS_DIR, machine, stats
from foundation.model import Heartbeat

BENCH_DIR = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, fewer deployables")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    before = machine()
    started = time.monotonic()
    parts = _run_parts(args.quick)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine_before": before,
        "machine_after": machine(),
        "figures": figures(parts),
        "parts": parts,
    }
    _write(report, args.out)
    print((args.out / "latest.md").read_text())
    return 0


def _run_parts(quick: bool) -> dict[str, Any]:
    steps: dict[str, Callable[[], Any]] = {
        "resource_failure": lambda: resource_failure.run(quick),
        "instance_kill": lambda: _recovery_local(quick),
        "monitor": lambda: monitor.run(quick),
        "api": lambda: api.run(quick),
        "scale": lambda: scale.run(quick),
        "planner": lambda: _planner(quick),
    }
    parts = {}
    for name, step in steps.items():
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        try:
            parts[name] = step()
        except Exception as error:  # noqa: BLE001 - one broken figure must not lose the others
            parts[name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"bench: {name} failed: {error}", file=sys.stderr)
    return parts


def _recovery_local(quick: bool) -> Any:
    """``bench/recovery_local.py`` with the default heartbeat settings."""
    defaults = Heartbeat()
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as scratch:
        out = Path(scratch) / "recovery.json"
        command = [
            sys.executable,
            str(BENCH_DIR / "recovery_local.py"),
            *("--runs", "3" if quick else "10", "--monitor", "1"),
            *("--heartbeat", str(defaults.interval)),
            *("--heartbeat-timeout", str(defaults.timeout)),
            *("--health-interval", str(defaults.health_interval)),
            *("--out", str(out)),
        ]
        subprocess.run(command, check=True, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def _planner(quick: bool) -> Any:
    """``bench/planner.py`` when it exists (its own module and output)."""
    script = BENCH_DIR / "planner.py"
    if not script.exists():
        return {"error": "bench/planner.py is not there yet"}
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as scratch:
        out = Path(scratch) / "planner.json"
        command = [sys.executable, str(script), *(["--quick"] if quick else []), "--out", str(out)]
        subprocess.run(command, check=True, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


# -- the figures against their targets ----------------------------------------


def figures(parts: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for make in (_resource_rows, _instance_rows, _monitor_rows, _scale_rows, _api_rows):
        try:
            rows.extend(make(parts))
        except (KeyError, TypeError, ValueError) as error:
            rows.append({"figure": make.__name__.strip("_"), "error": f"no result: {error}"})
    rows.extend(_planner_rows(parts.get("planner", {})))
    return rows


def _row(
    figure: str, target: str, median: float, p95: float, unit: str, met: bool, **more: Any
) -> Any:
    return {
        "figure": figure,
        "target": target,
        "median": round(median, 4),
        "p95": round(p95, 4),
        "unit": unit,
        "met": met,
        **more,
    }


def _resource_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    part = parts["resource_failure"]
    s, interval = part["summary"], part["configured"]["monitor_interval"]
    detect, dispatch, overhead = s["detect"], s["dispatch"], s["overhead"]
    ms = 1000.0
    return [
        _row(
            "resource failure -> monitor reports it",
            f"<= monitor interval ({interval:g} s) + 100 ms",
            detect["median"],
            detect["p95"],
            "s",
            detect["p95"] <= interval + 0.1,
            beyond_interval_p95_ms=round((detect["p95"] - interval) * ms, 1),
        ),
        _row(
            "failure detected -> restart dispatched (planning + dispatch)",
            "<= 20 ms median",
            dispatch["median"] * ms,
            dispatch["p95"] * ms,
            "ms",
            dispatch["median"] * ms <= 20,
        ),
        _row(
            "resource failure -> running again (Dummy), beyond detection + stop + start",
            "<= 100 ms",
            overhead["median"] * ms,
            overhead["p95"] * ms,
            "ms",
            overhead["p95"] * ms <= 100,
            recover_median_s=s["recover"]["median"],
            recover_p95_s=s["recover"]["p95"],
        ),
    ]


def _instance_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    part = parts["instance_kill"]
    timeout = part["configured"]["heartbeat_timeout"]
    runs = part["runs"]["instance_kill"]
    failed = stats([r["assembly_failed"] for r in runs])
    back = stats([r["running_again"] for r in runs])
    return [
        _row(
            "instance killed -> detected (local driver)",
            f"<= heartbeat timeout ({timeout:g} s) + 200 ms",
            failed["median"],
            failed["p95"],
            "s",
            failed["p95"] <= timeout + 0.2,
        ),
        _row(
            "instance killed -> all its resources running again (defaults)",
            "<= 3 s",
            back["median"],
            back["p95"],
            "s",
            back["p95"] <= 3.0,
        ),
    ]


def _monitor_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    part = parts["monitor"]
    ops, cpu = part["ops_per_second"], part["dped_cpu_ms_per_op"]
    return [
        _row(
            "monitor operations sustained by one dped (Dummy)",
            ">= 500 per second",
            ops["median"],
            ops["p95"],
            "ops/s",
            ops["median"] >= 500,
            dped_cpu_ms_per_op=cpu["median"],
            machine_cpu_ms_per_op=part["machine_cpu_ms_per_op"]["median"],
            offered_ops_per_second=part["configured"]["offered_ops_per_second"],
        )
    ]


def _scale_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    """At 200 deployables (or the most of a --quick run), and at every N for settling."""
    part = parts["scale"]
    runs = {r["deployables"]: r for r in part["runs"] if not r.get("stopped")}
    at = 200 if 200 in runs else max(runs)
    run, note = runs[at], f"{at} deployables" + (" (reduced for --quick)" if at < 200 else "")
    cpu, pss = run["cpu_cped_and_dpeds"], run["memory_per_dped_mb"]["pss"]
    rows = [
        _row(
            f"scale: one start command -> {n} deployables running",
            "settles, 0 fencings",
            r["seconds_to_settle"],
            r["seconds_to_settle"],
            "s",
            r["fencings"] == 0 and not r["resources_not_running"],
            fencings=r["fencings"],
            dpes_killed=r["dpes_killed"],
            load_before=r["machine_before"]["load_average_1min"],
        )
        for n, r in sorted(runs.items())
    ]
    rows += [
        _row(
            "scale: CPU of cped + all dpeds, monitors every 10 s",
            "<= 25 % of one core at 200 deployables",
            cpu["median"] * 100,
            cpu["p95"] * 100,
            "% of a core",
            at >= 200 and cpu["p95"] <= 0.25,
            deployables=note,
            guests_percent=round(run["cpu_guests"]["median"] * 100, 2),
        ),
        _row(
            "scale: PSS per dped",
            "<= 12 MB at 200 deployables",
            pss["median"],
            pss["p95"],
            "MB",
            at >= 200 and pss["p95"] <= 12,
            deployables=note,
            uss_mb=run["memory_per_dped_mb"]["uss"]["median"],
            rss_mb=run["memory_per_dped_mb"]["rss"]["median"],
        ),
    ]
    idle = part["cped_idle"]
    rows.append(
        _row(
            "cped idle, 1 deployable running",
            "<= 0.05 % of a core",
            idle["percent_of_a_core"],
            idle["percent_of_a_core"],
            "% of a core",
            idle["percent_of_a_core"] <= 0.05,
            cpu_seconds_per_minute=idle["cpu_seconds_per_minute"],
            load=idle["load_average_1min_during"],
        )
    )
    return rows


def _api_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    part = parts["api"]
    wall, rate = (
        part["oneshot_deployable_list"]["wall_s"],
        part["api_status"]["requests_per_second"],
    )
    health = part["api_health"]["requests_per_second"]
    return [
        _row(
            "pcloudsh --json deployable_list, one-shot wall",
            "<= 150 ms",
            wall["median"] * 1000,
            wall["p95"] * 1000,
            "ms",
            wall["median"] <= 0.150,
            bare_python_median_ms=round(
                part["oneshot_deployable_list"]["bare_python_s"]["median"] * 1000, 1
            ),
        ),
        _row(
            "cped API status requests over the UNIX socket",
            ">= 2000 per second",
            rate["median"],
            rate["p95"],
            "req/s",
            rate["median"] >= 2000,
            health_requests_per_second=health["median"],
        ),
    ]


def _planner_rows(part: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per decision at 100 resources, with crm_simulate's time beside it."""
    target = "<= 1 ms per decision"
    if "error" in part:
        return [{"figure": "planner, 100 resources", "target": target, "error": part["error"]}]
    rows = []
    for r in (r for r in part["rows"] if r["resources"] == 100):
        ours, theirs = r["builtin"], r["crm_simulate"]
        rows.append(
            _row(
                f"planner, 100 resources ({r['decision']}: {r['actions']} actions)",
                target,
                ours["median"],
                ours["p95"],
                "ms",
                ours["median"] <= 1.0,
                crm_simulate_ms=theirs["median"],
                times_faster_than_crm_simulate=round(theirs["median"] / ours["median"]),
                agree_with_crm_simulate=r["agree"],
            )
        )
    return rows


# -- output --------------------------------------------------------------------


def _write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latest.md").write_text(markdown(report))
    try:
        from bench.plot import draw
    except ImportError as error:  # matplotlib is the bench extra
        print(f"bench: no latency.png ({error})", file=sys.stderr)
        return
    draw(report, out / "latency.png")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine_before"]
    after = report["machine_after"]
    lines = [
        f"Benchmarks, {report['when']}{' (--quick)' if report['quick'] else ''}: "
        f"{m['cpus']} cores, load average {m['load_average_1min']} before and "
        f"{after['load_average_1min']} after (1 min), Python {m['python']}.",
        "",
        "| figure | target | median | p95 | met |",
        "|---|---|---|---|---|",
    ]
    for row in report["figures"]:
        if "error" in row or "median" not in row:
            lines.append(
                f"| {row['figure']} | {row.get('target', '')} | — | — | {row.get('error', '')} |"
            )
            continue
        unit = row["unit"]
        extra = "; ".join(f"{k}: {v}" for k, v in row.items() if k not in _ROW_KEYS)
        verdict = ("yes" if row["met"] else "**no**") + (f" ({extra})" if extra else "")
        lines.append(
            f"| {row['figure']} | {row['target']} | {row['median']:g} {unit} | {row['p95']:g} {unit} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


_ROW_KEYS = {"figure", "target", "median", "p95", "unit", "met"}


if __name__ == "__main__":
    sys.exit(main())
