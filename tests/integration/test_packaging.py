"""What `make install-data` puts in place: man pages that man finds, the systemd
unit, the sample configuration, and a bash completion that completes names
asked of a real cped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_events import Shell

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("destdir")
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "install-data", f"DESTDIR={root}", "PREFIX=/usr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.parametrize(("page", "section"), [("pcloudsh", "1"), ("cped", "8"), ("dped", "8")])
def test_man_finds_each_page(staged: Path, page: str, section: str) -> None:
    found = subprocess.run(
        ["man", "-w", page],
        capture_output=True,
        text=True,
        env=dict(os.environ, MANPATH=str(staged / "usr/share/man")),
        timeout=30,
    )
    assert found.stdout.strip() == str(staged / f"usr/share/man/man{section}/{page}.{section}")


def test_the_unit_starts_the_installed_cped_in_the_foreground(staged: Path) -> None:
    unit = (staged / "usr/lib/systemd/system/pacemaker-cloud.service").read_text()
    assert "ExecStart=/usr/bin/cped --foreground" in unit
    assert "KillMode=process" in unit  # dped processes outlive a restart of cped


def test_the_configuration_is_installed_once(staged: Path) -> None:
    installed = staged / "etc/pacemaker-cloud/pacemaker-cloud.conf"
    assert installed.read_text() == (REPO / "contrib/pacemaker-cloud.conf").read_text()
    installed.write_text("[cped]\nlog_level = debug\n")
    again = subprocess.run(
        ["make", "-s", "-C", str(REPO), "install-data", f"DESTDIR={staged}", "PREFIX=/usr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert installed.read_text() == "[cped]\nlog_level = debug\n"  # an admin's edits stay


def complete(staged: Path, env: dict[str, str], *words: str) -> list[str]:
    """What the installed bash completion offers for the last of ``words``."""
    script = staged / "usr/share/bash-completion/completions/pcloudsh"
    line = " ".join(f"'{w}'" for w in ("pcloudsh", *words))
    program = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _pcloudsh; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_and_existing_names(staged: Path, cped: CpedProcess) -> None:
    shell = Shell(cped.paths)
    for line in ("assembly_create web host", "deployable_create shop", "deployable_create stage"):
        assert shell.run(*line.split()).returncode == 0, line
    env = dict(
        shell.env, PATH=os.pathsep.join([str(Path(sys.executable).parent), shell.env["PATH"]])
    )
    assert complete(staged, env, "deployable_sta") == ["deployable_start", "deployable_status"]
    assert complete(staged, env, "deployable_status", "s") == ["shop", "stage"]
    assert complete(staged, env, "deployable_assembly_add", "shop", "") == ["web"]
