"""Importing a large deployable: ``pcloudsh deployable_import`` of 2,000 assemblies.

Writes a document of ``--assemblies`` assemblies (one Dummy resource each),
imports it with the real ``pcloudsh`` into a cped of its own (nothing of the
kind exists yet: every assembly gets new login and host key pairs), and reports
the wall time of the whole command and per assembly, the CPU time pcloudsh and
cped spent on it (what the machine's load does not change), and, measured apart
in this process, the time the key pairs alone take.  Target: under a minute for
2,000 assemblies (it was 10 min 15 s with an RSA 2048 pair made one after the
other, about 0.34 s per assembly).

    .venv/bin/python -m bench.import_scale [--assemblies 2000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, Cped, cpu_seconds, machine
from images.keys import write_many_assembly_keys

TARGET_SECONDS = 60.0
IMPORT_TIMEOUT = 900.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assemblies", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 assemblies")
    args = parser.parse_args()
    count = 200 if args.quick else args.assemblies
    result = run(count)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"import_{count}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


def run(count: int) -> dict[str, Any]:
    before = machine()
    names = [f"a{n:05d}" for n in range(count)]
    keys_alone, keys_cpu = _time_keys(names)
    with Cped() as cped, tempfile.TemporaryDirectory() as scratch:
        document = Path(scratch) / "big.json"
        document.write_text(json.dumps(_document("big", names)))
        cped_cpu_before = cpu_seconds(cped.pid)
        seconds, pcloudsh_cpu = _time_import(cped, document)
        cped_cpu = cpu_seconds(cped.pid) - cped_cpu_before
        imported = cped.client.get_deployable("big")
    assert len(imported["assemblies"]) == count, "not every assembly was imported"
    return {
        "figure": f"pcloudsh deployable_import of {count} assemblies (new keys for each)",
        "assemblies": count,
        "seconds": round(seconds, 2),
        "ms_per_assembly": round(1000 * seconds / count, 2),
        "pcloudsh_cpu_seconds": round(pcloudsh_cpu, 2),
        "cped_cpu_seconds": round(cped_cpu, 2),
        "cpu_ms_per_assembly": round(1000 * (pcloudsh_cpu + cped_cpu) / count, 2),
        "keys_alone_seconds": round(keys_alone, 2),
        "keys_alone_cpu_seconds": round(keys_cpu, 2),
        "keys_ms_per_assembly": round(1000 * keys_alone / count, 2),
        "target_seconds": TARGET_SECONDS * count / 2000,
        "met": seconds < TARGET_SECONDS * count / 2000,
        "key_type": "ecdsa-sha2-nistp256 (M2Crypto EC), login and host pair per assembly",
        "machine_before": before,
        "machine_after": machine(),
    }


def _document(name: str, assemblies: list[str]) -> dict[str, Any]:
    resource = {"name": "r", "type": "Dummy", "monitor_interval": "10s"}
    return {"name": name, "assemblies": [{"name": a, "resources": [resource]} for a in assemblies]}


def _time_keys(names: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of the key pairs alone."""
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu = time.monotonic(), time.process_time()
        write_many_assembly_keys(Path(scratch) / "keys", names)
        return time.monotonic() - started, time.process_time() - cpu


def _time_import(cped: Cped, document: Path) -> tuple[float, float]:
    """Wall seconds of the one-shot import, and the CPU seconds of its process."""
    command = [str(Path(sys.executable).with_name("pcloudsh")), "deployable_import", str(document)]
    env = {"PCLOUD_HOME": str(cped.home), "PATH": "/usr/bin:/bin"}
    before = _children_cpu()  # cped is a child too, but not reaped until the end
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=IMPORT_TIMEOUT)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the import failed ({done.returncode}): {done.stderr}")
    return seconds, _children_cpu() - before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
