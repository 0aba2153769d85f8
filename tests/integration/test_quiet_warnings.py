"""cped, dped and pcloudsh print no third-party warning, whatever PYTHONWARNINGS says.

Each program runs as a user runs it, with every warning switched on in the
environment (``PYTHONWARNINGS=always``, the opposite of the tests' -W error);
their standard error must hold nothing but what the program itself says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import CpedFactory, CpedProcess
from tests.integration.test_engine_local import trio
from tests.integration.test_pcloudsh_events import Shell

pytestmark = pytest.mark.integration
LOUD = {"PYTHONWARNINGS": "always"}


def test_pcloudsh_one_shot_prints_nothing_on_stderr(cped: CpedProcess) -> None:
    shell = Shell(cped.paths)
    shell.env.update(LOUD)
    for command in (["--json", "deployable_list"], ["resource_template_list"], ["status"]):
        done = shell.run(*command)
        assert (done.returncode, done.stderr) == (0, ""), command


def test_dped_prints_nothing_on_stderr(tmp_path: Path) -> None:
    document = tmp_path / "trio.json"
    document.write_text(json.dumps(trio(tmp_path)))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dped"), "--document", str(document), "--export-cib"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, **LOUD),
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_cpeds_log_has_no_warning(
    cped_factory: CpedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "always")  # cped_environment() passes it on
    cped = cped_factory()
    cped.client.health()
    assert cped.stop() == 0
    assert "Warning" not in cped.log()
