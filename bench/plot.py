"""The latency distributions of a benchmark report, drawn to a PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write files only

import matplotlib.pyplot as plt


def draw(report: dict[str, Any], path: Path) -> None:
    panels = [p for p in _panels(report["parts"]) if p[2]]
    columns = 3
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (title, unit, values, target) in zip(axes.flat, panels, strict=False):
        axis.hist(values, bins=min(40, max(5, len(values) // 3)), color="#4477aa")
        if target is not None:
            axis.axvline(target, color="#cc3311", linestyle="--", label="target")
            axis.legend(fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(unit, fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    m = report["machine_before"]
    figure.suptitle(
        f"pacemaker-cloud latencies ({m['cpus']} cores, load {m['load_average_1min']}"
        f"{', quick' if report['quick'] else ''})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


Panel = tuple[str, str, list[float], float | None]


def _panels(parts: dict[str, Any]) -> list[Panel]:
    panels: list[Panel] = []
    resource = parts.get("resource_failure", {})
    if "runs" in resource:
        runs, interval = resource["runs"], resource["configured"]["monitor_interval"]
        panels.append(
            ("Dummy failure -> detected", "s", [r["detect"] for r in runs], interval + 0.1)
        )
        panels.append(
            ("detected -> restart dispatched", "ms", [r["dispatch"] * 1000 for r in runs], 20.0)
        )
        panels.append(("Dummy failure -> running again", "s", [r["recover"] for r in runs], None))
    instance = parts.get("instance_kill", {})
    if "runs" in instance:
        runs = instance["runs"]["instance_kill"]
        timeout = instance["configured"]["heartbeat_timeout"]
        panels.append(
            (
                "instance killed -> detected",
                "s",
                [r["assembly_failed"] for r in runs],
                timeout + 0.2,
            )
        )
        panels.append(
            ("instance killed -> running again", "s", [r["running_again"] for r in runs], 3.0)
        )
    api = parts.get("api", {})
    if "api_status" in api:
        status = [v * 1000 for v in api["api_status"]["samples"]]
        panels.append(("API status request", "ms", status, None))
        walls = [v * 1000 for v in api["oneshot_deployable_list"]["samples"]]
        panels.append(("pcloudsh --json deployable_list", "ms", walls, 150.0))
    return panels


def draw_scale(result: dict[str, Any], path: Path) -> None:
    """CPU, memory per dped and time to settle against the number of deployables."""
    runs = [r for r in result["runs"] if not r.get("stopped")]  # stopped: short of memory
    counts = [r["deployables"] for r in runs]
    figure, (cpu, memory, settle) = plt.subplots(1, 3, figsize=(13.5, 3.6))
    for key, label in (
        ("cpu_cped_and_dpeds", "cped + all dpeds"),
        ("cpu_guests", "guests (sshd, agents)"),
        ("cpu_machine", "whole machine"),
    ):
        cpu.plot(counts, [100 * r[key]["median"] for r in runs], marker="o", label=label)
    cpu.axhline(25, color="#cc3311", linestyle="--", label="target at 200 (25 %)")
    cpu.set_ylabel("% of one core (steady)", fontsize=8)
    for key, label in (("uss", "USS"), ("pss", "PSS"), ("rss", "RSS")):
        values = [r["memory_per_dped_mb"][key]["median"] for r in runs]
        memory.plot(counts, values, marker="o", label=label)
    memory.axhline(12, color="#cc3311", linestyle="--", label="PSS target (12 MB)")
    memory.set_ylabel("MB per dped", fontsize=8)
    settle.plot(counts, [r["seconds_to_settle"] for r in runs], marker="o", color="#228833")
    settle.set_ylabel("s from one start command to all running", fontsize=8)
    for axis, title in ((cpu, "CPU"), (memory, "memory per dped"), (settle, "time to settle")):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("deployables (3 assemblies x 2 resources)", fontsize=8)
        axis.tick_params(labelsize=7)
        if axis is not settle:
            axis.legend(fontsize=7)
    loads = ", ".join(f"{r['machine_before']['load_average_1min']:g}" for r in runs)
    m = result["machine"]
    figure.suptitle(
        f"pacemaker-cloud at scale ({m['cpus']} cores; load average before each run: {loads})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
