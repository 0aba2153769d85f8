"""dpeds forked from cped's dped template: real cped, real dpeds, local guests.

What must hold as without a template: ``ps`` shows each as ``dped ...
DEPLOYABLE``, it outlives cped and the next cped adopts it, its exit status is
known to cped; and while the template is starting, or when it is gone, cped starts
dpeds itself (a start right after cped's: test_lifecycle.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cpe.dpe_process import command_line
from dpe.template import TITLE
from tests.integration.test_lifecycle import Rig, child_pids, key_cache, rig, shop

pytestmark = pytest.mark.integration
__all__ = ["key_cache", "rig"]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def the_template(rig: Rig) -> int:
    """The template's pid, once it is ready (until then cped starts dpeds itself)."""
    (template,) = rig.until(rig.templates, what="the dped template")
    rig.until(lambda: "dped template ready" in rig.cped.log(), what="the template ready")
    return int(template)


def test_a_dped_from_the_template_is_a_dped_of_its_deployable_and_outlives_cped(
    rig: Rig,
) -> None:
    template = the_template(rig)
    assert command_line(template) == [TITLE]
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    pid = rig.running()["dpe"]["pid"]
    assert parent_of(pid) == template  # forked, not started afresh
    argv = command_line(pid)
    assert argv is not None and argv[0] == "dped" and argv[-1] == "shop"
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dped"
    assert rig.cped.stop() == 0
    rig.until(lambda: template not in child_pids(os.getpid()) and not _alive(template))
    assert rig.dpes() == [pid]  # the template went with cped; the dped runs on
    rig.new_cped()
    status = rig.running()
    assert status["dpe"]["pid"] == pid and status["dpe"]["adopted"] is True
    assert any("adopted the running dpe" in why for _, why in rig.dpe_events())


def test_cped_knows_how_a_forked_dped_ended(rig: Rig) -> None:
    template = the_template(rig)
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    pid = rig.running()["dpe"]["pid"]
    assert parent_of(pid) == template
    os.kill(pid, signal.SIGKILL)
    expected = f"dpe (pid {pid}) exited with status -9 (SIGKILL)"
    rig.until(
        lambda: any(why.startswith(expected) for _, why in rig.dpe_events()),
        what="the exit status reported",
    )
    assert rig.running()["dpe"]["pid"] != pid


def test_without_its_template_cped_starts_dpeds_itself(rig: Rig) -> None:
    template = the_template(rig)
    os.kill(template, signal.SIGKILL)
    rig.until(lambda: not rig.templates(), what="the template gone")
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    pid = rig.running()["dpe"]["pid"]
    assert parent_of(pid) == rig.cped.pid
    assert "starting dpeds directly" in rig.cped.log()


def _alive(pid: int) -> bool:
    return command_line(pid) is not None


# What a dped does first, in a process prepared as the template prepares itself:
# it must import nothing new (each module imported after the fork is private to
# that dped) and the template's SSH rehearsal must have run.
FIRST_STEPS = """
import json, sys
from dpe import template
left = template.preload(template.PRELOAD)
before = set(sys.modules)
from dpe.main import _parser
from dpe.dped_process import read_document_file
_parser().parse_args(["shop", "--foreground"])
document = read_document_file(template.Path(sys.argv[1]))
print(json.dumps({"left": left, "new": sorted(set(sys.modules) - before)}))
"""


def test_the_template_has_imported_what_a_dped_loads_first(tmp_path: Path) -> None:
    document = tmp_path / "shop.json"
    document.write_text(json.dumps(shop("a1")))
    done = subprocess.run(
        [sys.executable, "-c", FIRST_STEPS, str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["left"] == []  # every module imported, the SSH rehearsal done
    assert answer["new"] == []
