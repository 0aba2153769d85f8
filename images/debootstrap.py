"""Running debootstrap: its command line, its progress, its failures, its mounts.

debootstrap mounts ``proc`` and ``sys`` inside the target while it works; if
it is killed those mounts stay, and deleting the tree would then walk into the
host's ``/proc`` and ``/sys``.  ``remove_tree`` unmounts first and refuses to
delete across a mount.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from foundation.errors import InvalidInput, OperationTimeout, PcloudError, Unavailable
from images.mirror import Mirror

Progress = Callable[[str, float], None]

DEBOOTSTRAP = "debootstrap"
DEFAULT_TIMEOUT = 1800.0
# debootstrap prints no total; a minbase with a kernel is about 200 packages.
EXPECTED_PACKAGES = 200
# Share of the debootstrap phase taken by each kind of step.
STEP_WEIGHTS = {"Retrieving": 0.35, "Extracting": 0.10, "Unpacking": 0.25, "Configuring": 0.30}
_STEP_RE = re.compile(r"^I: (Retrieving|Extracting|Unpacking|Configuring) ")


class BuildError(PcloudError):
    """A build step failed; the message names the step and the log."""


def debootstrap_command(
    target: Path,
    release: str,
    mirror: Mirror,
    include: Sequence[str],
    deb_arch: str,
    cache_dir: Path | None = None,
) -> list[str]:
    argv = [DEBOOTSTRAP, "--variant=minbase", f"--arch={deb_arch}"]
    argv.append("--include=" + ",".join(include))
    if mirror.keyring is not None:
        argv.append(f"--keyring={mirror.keyring}")
    if cache_dir is not None:
        argv.append(f"--cache-dir={cache_dir}")
    return [*argv, release, str(target), mirror.uri]


@dataclass
class DebootstrapProgress:
    """Turns debootstrap's ``I:`` lines into a fraction that never goes back."""

    counts: dict[str, int]
    fraction: float = 0.0

    @classmethod
    def start(cls) -> DebootstrapProgress:
        return cls({step: 0 for step in STEP_WEIGHTS})

    def feed(self, line: str) -> float | None:
        """The new fraction if ``line`` is a step line, else None."""
        match = _STEP_RE.match(line)
        if not match:
            return None
        self.counts[match.group(1)] += 1
        retrieved = self.counts["Retrieving"]
        done_retrieving = self.counts["Extracting"] > 0
        total = retrieved if done_retrieving else max(retrieved, EXPECTED_PACKAGES)
        raw = sum(w * min(1.0, self.counts[s] / total) for s, w in STEP_WEIGHTS.items())
        self.fraction = max(self.fraction, min(raw, 0.99))
        return self.fraction


def run_debootstrap(
    argv: Sequence[str],
    log_path: Path,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Run debootstrap, logging everything to ``log_path``; raise a clear error on failure."""
    with log_path.open("a") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        _supervise(argv, log, progress, timeout, log_path)


def _supervise(
    argv: Sequence[str], log: TextIO, progress: Progress | None, timeout: float, log_path: Path
) -> None:
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # so the whole group can be stopped on interrupt
    ) as proc:
        # A silent hang (a stuck download) must end too: a timer stops the group.
        expired = threading.Event()
        watchdog = threading.Timer(timeout, _expire, (proc, expired))
        watchdog.start()
        try:
            _follow(proc, log, progress)
        finally:
            watchdog.cancel()
            stop_process_group(proc)
    log.flush()  # the error below reads the log
    if expired.is_set():
        raise OperationTimeout(
            f"debootstrap did not finish within {timeout:.0f} s (build log: {log_path})"
        )
    if proc.returncode != 0:
        raise debootstrap_error(log_path, proc.returncode)


def _expire(proc: subprocess.Popen[str], expired: threading.Event) -> None:
    expired.set()
    stop_process_group(proc)


def _follow(proc: subprocess.Popen[str], log: TextIO, progress: Progress | None) -> None:
    assert proc.stdout is not None
    tracker = DebootstrapProgress.start()
    for line in proc.stdout:
        log.write(line)
        fraction = tracker.feed(line)
        if progress is not None and fraction is not None:
            progress("debootstrap", fraction)
    proc.wait()


def stop_process_group(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """Stop a child started in its own session, and everything it started."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        return


_ERROR_PATTERNS: tuple[tuple[str, type[PcloudError]], ...] = (
    ("Couldn't find these debs", InvalidInput),
    ("Failed getting release file", Unavailable),
    ("Couldn't download", Unavailable),
    ("Release signed by unknown key", BuildError),
)


def debootstrap_error(log_path: Path, returncode: int) -> PcloudError:
    """The error a failed debootstrap deserves: its own ``E:`` line, classified."""
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [line[3:].strip() for line in lines if line.startswith("E: ")]
    reason = errors[-1] if errors else f"exit status {returncode}"
    cls: type[PcloudError] = BuildError
    for pattern, kind in _ERROR_PATTERNS:
        if pattern in reason:
            cls = kind
            break
    return cls(f"debootstrap failed: {reason} (build log: {log_path})")


# -- mounts and removal -----------------------------------------------------


def mounts_under(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    base = os.path.realpath(path)
    found = []
    for line in mountinfo.read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == base or point.startswith(base.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmount_under(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=60)


def remove_tree(path: Path) -> None:
    """Delete a build tree, unmounting anything left mounted inside it first."""
    if not path.exists():
        return
    unmount_under(path)
    left = mounts_under(path)
    if left:
        raise BuildError(f"cannot remove {path}: still mounted: {', '.join(map(str, left))}")
    shutil.rmtree(path)
