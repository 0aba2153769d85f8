"""A nova server deleted from outside: detection and recovery, by detection path.

Runs ``dped --document`` on a one-assembly deployable (``vm``, one Dummy
resource) on the all-in-one OpenStack (``tools/openstack-aio``, already up),
and several times deletes its server from outside, as ``openstack server
delete`` does, measuring from the delete request

- detection: until the engine's event that the assembly failed, and which path
  saw it (the event's reason, dped's log);
- recovery: until the resource's event that it runs again on the new server
  (fence = delete until gone, create, boot under emulation, SSH, start).

Each path is measured on its own: ``notification`` (nova's versioned
notifications from RabbitMQ; the servers list read only hourly) and
``heartbeat`` (no notifications, no list: the SSH heartbeat alone, the
driver's defaults: every 2 s, failed after 15 s of silence); ``--paths`` can add
``list`` (the servers list every 3 s).

    .venv/bin/python -m bench.recovery_openstack --jeos-dir DIR [--jeos base]
        [--runs 3] [--paths notification,heartbeat] [--out FILE]
        [--cloud NAME --clouds-file FILE --security-group NAME]

from the repository root, as root, with the rig up and a built JEOS in
``DIR/<jeos>/`` (``images.jeos.build_jeos``).  The deployable uses the rig's
admin cloud unless ``--cloud`` names another entry of ``--clouds-file`` (a
project member, say: the rights the README lists), with that project's
``--security-group``.  The result goes to
``bench/results/recovery_openstack.json``.  At the end it removes what it
uploaded (``dped --purge-images``): each run's assembly image is a new one.
"""

from __future__ import annotations

import argparse
import datetime
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack

from bench.common import add_jeos_arguments, write_report
from foundation.paths import Paths
from images import customize, jeos, keys

RIG = Path(__file__).resolve().parents[1] / "tools" / "openstack-aio"
START_WAIT = 900.0
RECOVERY_WAIT = 600.0
DETECT_WAIT = 120.0
FLAVOR = "pcloud-e2e"  # as the e2e test's: 512 MB, a 5 GB disk that holds the JEOS
PATHS: dict[str, dict[str, str]] = {
    "notification": {"poll_interval": "3600"},  # + notifications
    "heartbeat": {"poll_interval": "3600"},
    "list": {"poll_interval": "3"},
}


def rig() -> dict[str, Any]:
    done = subprocess.run(
        [str(RIG), "status", "--json"], capture_output=True, text=True, timeout=120
    )
    status: dict[str, Any] = json.loads(done.stdout)
    if not status.get("healthy"):
        raise SystemExit("the OpenStack rig is not up and healthy: run tools/openstack-aio up")
    return status


def make_assembly(paths: Paths, args: argparse.Namespace) -> str:
    record = jeos.load_jeos(args.jeos_dir, args.jeos)
    made = keys.write_assembly_keys(paths.keys_dir, "vm")
    assembly_uuid = str(uuid.uuid4())
    customize.create_assembly_image(
        record, "vm", assembly_uuid, made, paths.images_dir / "assemblies"
    )
    return assembly_uuid


def document(status: dict[str, Any], paths: Paths, args: argparse.Namespace, path: str,
             assembly_uuid: str) -> dict[str, Any]:  # fmt: skip
    settings = {
        "cloud": args.cloud or status["cloud"],
        "clouds_file": str(args.clouds_file or status["clouds_yaml"]),
        "flavor": FLAVOR,
        "network": status["network"]["provider_network"],
        "security_group": args.security_group or status["network"]["security_group"],
        "images": str(paths.images_dir / "assemblies"),
        "jeos_images": str(args.jeos_dir),
    } | PATHS[path]
    if path == "notification":
        settings["notifications"] = str(Path(status["run_dir"]) / "rabbitmq.json")
    return {
        "name": "bench",
        "infrastructure": "openstack",
        "settings": settings,
        "assemblies": [
            {"name": "vm", "uuid": assembly_uuid, "image": args.jeos,
             "resources": [{"name": "d", "type": "Dummy", "monitor_interval": 5}]},
        ],
    }  # fmt: skip


class Dped:
    """``dped --document``: its events, one per line with a wall-clock time, in a file."""

    def __init__(self, paths: Paths, doc: Path, log: Path) -> None:
        self.log = log
        argv = [sys.executable, "-m", "dpe.main", "--document", str(doc)]
        argv += ["--state-dir", str(paths.state_dir), "-v"]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def wait(self, match: Callable[[str], bool], after: int, within: float) -> tuple[int, str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            lines = self.lines()
            for index in range(after, len(lines)):
                if match(lines[index]):
                    return index, lines[index]
            time.sleep(0.2)
        raise SystemExit(f"not within {within:.0f} s; log tail:\n" + "\n".join(self.lines()[-30:]))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(300)


def event_time(line: str, day: datetime.date) -> float:
    """The wall-clock time of an event line ``HH:MM:SS.mmm subject state: reason``."""
    clock = datetime.datetime.strptime(line.split(" ", 1)[0], "%H:%M:%S.%f").time()
    return datetime.datetime.combine(day, clock).timestamp()


def servers(conn: Any) -> dict[str, Any]:
    return {s.id: s for s in conn.compute.servers(details=True, name="^pc-bench-")}


def one_path(status: dict[str, Any], conn: Any, paths: Paths, args: argparse.Namespace,
             path: str, assembly_uuid: str) -> dict[str, Any]:  # fmt: skip
    doc = paths.state_dir / f"bench-{path}.json"
    doc.write_text(json.dumps(document(status, paths, args, path, assembly_uuid)))
    dped = Dped(paths, doc, paths.state_dir / f"dped-{path}.log")
    runs: list[dict[str, Any]] = []
    try:
        at, _ = dped.wait(lambda line: " bench running:" in line, 0, START_WAIT)
        for run in range(args.runs):
            (server_id,) = servers(conn)
            deleted = time.time()
            conn.compute.delete_server(server_id)
            at, seen = dped.wait(lambda line: " bench/vm failed:" in line, at, DETECT_WAIT)
            at, back = dped.wait(lambda line: " bench/vm/d running:" in line, at, RECOVERY_WAIT)
            day = datetime.date.today()
            runs.append({
                "detect_s": round(event_time(seen, day) - deleted, 2),
                "recover_s": round(event_time(back, day) - deleted, 2),
                "seen_by": seen.split(" failed: ", 1)[1],
            })  # fmt: skip
            print(f"{path} run {run + 1}: {runs[-1]}", flush=True)
    finally:
        dped.stop()
    return {"runs": runs, "detect_s": summary([r["detect_s"] for r in runs]),
            "recover_s": summary([r["recover_s"] for r in runs])}  # fmt: skip


def purge_uploads(paths: Paths) -> None:
    """Remove what the runs left in the cloud: the assembly's disk image (new each
    run: a fresh uuid inside), the kernel and initrd, the key pair."""
    documents = sorted(paths.state_dir.glob("bench-*.json"))
    if not documents:
        return
    argv = [sys.executable, "-m", "dpe.main", "--document", str(documents[0])]
    argv += ["--state-dir", str(paths.state_dir), "--purge-images"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode == 0:
        print(f"purged: {done.stdout.strip()}", flush=True)
    else:
        print(f"purging the uploads failed: {done.stderr.strip()}", file=sys.stderr, flush=True)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def connect(clouds_file: str, cloud: str) -> Any:
    config = openstack.config.OpenStackConfig(config_files=[clouds_file], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud, api_timeout=60))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_jeos_arguments(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default="notification,heartbeat")
    parser.add_argument("--out", type=Path, default=Path("bench/results/recovery_openstack.json"))
    parser.add_argument("--cloud", help="an entry of --clouds-file instead of the rig's admin")
    parser.add_argument("--clouds-file", type=Path)
    parser.add_argument("--security-group", help="the --cloud project's group letting SSH in")
    args = parser.parse_args()
    if bool(args.cloud) != bool(args.clouds_file):
        parser.error("--cloud and --clouds-file go together")
    status = rig()
    admin = connect(status["clouds_yaml"], status["cloud"])
    if not any(f.name == FLAVOR for f in admin.compute.flavors()):
        admin.compute.create_flavor(name=FLAVOR, ram=512, vcpus=1, disk=5)
    # "From outside" is the deployable's own project: its servers are the ones listed.
    conn = connect(str(args.clouds_file), args.cloud) if args.cloud else admin
    home = Path(tempfile.mkdtemp(prefix="pc-bench-", dir="/tmp"))
    paths = Paths(home / "etc", home, home / "run")
    paths.ensure()
    try:
        assembly_uuid = make_assembly(paths, args)
        results = {
            path: one_path(status, conn, paths, args, path, assembly_uuid)
            for path in args.paths.split(",")
        }
    finally:
        purge_uploads(paths)
        shutil.rmtree(home, ignore_errors=True)
    report = {
        "what": "nova server deleted from outside: detection and recovery by path",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "flavor": f"{FLAVOR} (512 MB, 1 vCPU), emulated (TCG)",
        "cloud": args.cloud or f"{status['cloud']} (admin)",
        "heartbeat": "driver defaults: every 2 s, failed after 15 s",
        "paths": results,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
