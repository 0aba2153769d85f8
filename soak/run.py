"""The fault tests' long forms: ``python -m soak.run`` (``make soak``).

Runs the fault-injection tests that have a long form with ``PCLOUD_SOAK=1``
(see ``tests/faults/soaking.py``): rounds of SIGKILLs of dped and cped during
start, recovery and reload until each was killed at least 50 times; a network
partition of an instance; the store's disk full; 90 % of recurring monitors
failing for 10 minutes with dped's and cped's memory and CPU sampled.  Each
test appends what it did to a record; this runner writes

- ``soak/results/soak.json``: per test, the faults injected by kind, each
  invariant and how many times it was checked, every violation, the test's
  outcome, its figures (RSS and CPU samples included); the machine (cores,
  load before and after) and the totals;
- ``soak/results/soak.md``: the short table.

It exits non-zero when a test failed or an invariant was violated.  Run from
the repository root as root (network namespaces, a tmpfs, PID namespaces);
about 30 minutes.  ``--only WORDS`` runs the tests whose names match (pytest's
``-k``); ``PCLOUD_FAULT_SEED`` replays a run of random kills.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "soak" / "results"
TESTS = [
    "tests/faults/test_kill_storm.py",
    "tests/faults/test_partition.py",
    "tests/faults/test_disk_full.py",
    "tests/faults/test_monitor_storm.py",
]
# make soak-cluster: three members on PostgreSQL, 50 member kills and 10 partitions
CLUSTER_TESTS = ["tests/faults/test_cluster.py"]
TIMEOUT = 3600  # per test: the long forms run for many minutes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--only", default="", help="a pytest -k expression")
    parser.add_argument(
        "--cluster", action="store_true", help="the cluster's tests (tests/faults/test_cluster.py)"
    )
    args = parser.parse_args()
    before, started = machine(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pc-soak-") as scratch:
        record, junit = Path(scratch) / "record.jsonl", Path(scratch) / "junit.xml"
        status = run_tests(record, junit, args.only, CLUSTER_TESTS if args.cluster else TESTS)
        tallies = read_record(record)
        outcomes = read_outcomes(junit)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.monotonic() - started, 1),
        "machine_before": before,
        "machine_after": machine(),
        "pytest_status": status,
        "outcomes": outcomes,
        "totals": totals(tallies),
        "tests": tallies,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (args.out / "soak.md").write_text(markdown(report))
    print((args.out / "soak.md").read_text())
    failed = status != 0 or report["totals"]["violations"] != 0
    return 1 if failed else 0


def run_tests(record: Path, junit: Path, only: str, tests: list[str]) -> int:
    env = dict(os.environ, PCLOUD_SOAK="1", PCLOUD_SOAK_RECORD=str(record))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    command += ["-o", f"timeout={TIMEOUT}", f"--junitxml={junit}", *tests]
    command += ["-k", only] if only else []
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def read_record(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def read_outcomes(junit: Path) -> dict[str, str]:
    """pytest's verdict per test (``passed``, ``failed``, ``error``, ``skipped``)."""
    if not junit.exists():
        return {}
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        verdicts = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[name] = (
            {"failure": "failed"}.get(verdicts[0], verdicts[0]) if verdicts else "passed"
        )
    return outcomes


def totals(tallies: list[dict[str, Any]]) -> dict[str, Any]:
    faults: dict[str, int] = {}
    for tally in tallies:
        for kind, count in tally["faults"].items():
            faults[kind] = faults.get(kind, 0) + count
    return {
        "faults_by_kind": faults,
        "faults": sum(faults.get(k, 0) for k in faults if not k.startswith("during ")),
        "checks": sum(sum(t["checks"].values()) for t in tallies),
        "invariants": sum(len(t["checks"]) for t in tallies),
        "violations": sum(len(t["violations"]) for t in tallies),
    }


def machine() -> dict[str, Any]:
    one, five, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_1min": round(one, 2),
        "load_average_5min": round(five, 2),
    }


# ---------------------------------------------------------------------------
# the markdown table


def markdown(report: dict[str, Any]) -> str:
    before, after = report["machine_before"], report["machine_after"]
    lines = [
        f"Soak run, {report['when']}: {report['seconds'] / 60:.1f} min, {before['cpus']} cores,"
        f" load average {before['load_average_1min']} before and"
        f" {after['load_average_1min']} after (1 min).",
        "",
        "| test | faults injected | invariants (checks) | violations |",
        "|---|---|---|---|",
    ]
    for tally in report["tests"]:
        faults = ", ".join(f"{n} {k}" for k, n in sorted(tally["faults"].items()))
        checks = f"{len(tally['checks'])} ({sum(tally['checks'].values())})"
        violations = len(tally["violations"])
        lines.append(f"| {tally['test']} | {faults} | {checks} | {violations} |")
    total = report["totals"]
    lines += [
        f"| **total** | {total['faults']} | {total['invariants']} ({total['checks']}) |"
        f" {total['violations']} |",
        "",
        "pytest: "
        + ", ".join(f"{n.rsplit('::', 1)[-1]} {v}" for n, v in report["outcomes"].items()),
        "",
    ]
    lines += _resources(report["tests"]) + _timings(report["tests"]) + _violations(report["tests"])
    return "\n".join(lines) + "\n"


def _resources(tallies: list[dict[str, Any]]) -> list[str]:
    lines = []
    for tally in tallies:
        figures = tally["figures"]
        for who in ("dped", "cped"):
            samples = figures.get(f"{who}_samples_s_rss_kib_cpu_s")
            if not samples:
                continue
            rss = [s[1] for s in samples]
            lines.append(
                f"| {tally['test']}: {who} | {len(samples)} over {samples[-1][0]:.0f} s |"
                f" {min(rss) // 1024} to {max(rss) // 1024} MiB |"
                f" {figures.get(f'{who}_rss_growth_kib', '—')} |"
                f" {100 * figures.get(f'{who}_cpu_core_fraction', 0):.1f} % |"
            )
    if not lines:
        return []
    head = "| process | samples | RSS range | RSS growth (KiB) | CPU of one core |"
    return [head, "|---|---|---|---|---|", *lines, ""]


def _timings(tallies: list[dict[str, Any]]) -> list[str]:
    """The cluster's figures: adoption after a member kill, fencing ahead of expiry."""
    lines = []
    for tally in tallies:
        adoption = tally["figures"].get("adoption_s")
        if adoption and adoption.get("count"):
            lines.append(
                f"- {tally['test']}: {adoption['count']} deployables adopted after member kills,"
                f" median {adoption['median']} s, p95 {adoption['p95']} s, max {adoption['max']} s"
                f" (lease TTL 5 s)"
            )
        ahead = tally["figures"].get("fenced_before_expiry_s")
        if ahead:
            lines.append(
                f"- {tally['test']}: {len(ahead)} DPEs of partitioned members stopped acting"
                f" {min(ahead)} to {max(ahead)} s before their lease could expire"
            )
    return [*lines, ""] if lines else []


def _violations(tallies: list[dict[str, Any]]) -> list[str]:
    found = [f"- {t['test']}: {v}" for t in tallies for v in t["violations"]]
    return ["Violations:", "", *found, ""] if found else []


if __name__ == "__main__":
    sys.exit(main())
