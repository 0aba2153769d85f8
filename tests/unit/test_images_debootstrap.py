"""debootstrap's command line, progress, error messages and leftover mounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import InvalidInput, PcloudError, Unavailable
from images import debootstrap
from images.mirror import Mirror


def test_command_line() -> None:
    argv = debootstrap.debootstrap_command(
        Path("/t/root"),
        "bookworm",
        Mirror("http://m.example/debian", Path("/k.gpg")),
        ["openssh-server", "dbus"],
        "amd64",
        Path("/cache"),
    )
    assert argv == [
        "debootstrap",
        "--variant=minbase",
        "--arch=amd64",
        "--include=openssh-server,dbus",
        "--keyring=/k.gpg",
        "--cache-dir=/cache",
        "bookworm",
        "/t/root",
        "http://m.example/debian",
    ]


def _log(n: int) -> list[str]:
    lines = ["I: Retrieving Release", "I: Checking Release signature"]
    for step in ("Retrieving", "Validating", "Extracting", "Unpacking", "Configuring"):
        lines += [f"I: {step} pkg{i} 1.0" for i in range(n)]
    return [*lines, "I: Base system installed successfully."]


def test_progress_never_goes_back_and_ends_below_one() -> None:
    tracker = debootstrap.DebootstrapProgress.start()
    seen = [f for f in map(tracker.feed, _log(150)) if f is not None]
    assert seen == sorted(seen)
    assert 0.95 < seen[-1] < 1.0
    assert seen[0] < 0.01


def test_non_step_lines_give_no_progress() -> None:
    tracker = debootstrap.DebootstrapProgress.start()
    assert tracker.feed("W: something odd") is None
    assert tracker.feed("I: Checking component main on http://m.example/debian...") is None


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("E: Couldn't find these debs: nonesuch", InvalidInput),
        ("E: Failed getting release file http://m.example/debian/dists/x/Release", Unavailable),
        ("E: Couldn't download packages: dbus", Unavailable),
        ("E: Something else", debootstrap.BuildError),
    ],
)
def test_errors_are_classified_and_name_the_log(
    tmp_path: Path, line: str, kind: type[PcloudError]
) -> None:
    log = tmp_path / "build.log"
    log.write_text(f"I: Retrieving Release\n{line}\n")
    error = debootstrap.debootstrap_error(log, 1)
    assert type(error) is kind
    assert line[3:] in error.message and str(log) in error.message


def test_error_without_e_line_gives_the_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("I: Retrieving Release\n")
    assert "exit status 9" in debootstrap.debootstrap_error(log, 9).message


def test_mounts_under_a_tree_deepest_first(tmp_path: Path) -> None:
    base = tmp_path / "my root"
    base.mkdir()
    escaped = str(base).replace(" ", "\\040")
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
        f"30 22 0:5 / {escaped}/proc rw - proc proc rw\n"
        f"31 30 0:6 / {escaped}/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw\n"
        f"32 22 0:7 / {escaped}-other/sys rw - sysfs sysfs rw\n"
    )
    assert debootstrap.mounts_under(base, info) == [
        base / "proc/sys/fs/binfmt_misc",
        base / "proc",
    ]


def test_remove_tree_removes_an_unmounted_tree(tmp_path: Path) -> None:
    (tmp_path / "t/a/b").mkdir(parents=True)
    (tmp_path / "t/a/b/f").write_text("x")
    debootstrap.remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()
    debootstrap.remove_tree(tmp_path / "t")  # nothing there: fine
