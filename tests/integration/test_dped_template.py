"""dpeds forked from cped's dped template: real cped, real dpeds, local guests.

What must hold as without a template: ``ps`` shows each as ``dped ...
DEPLOYABLE``, it outlives cped and the next cped adopts it, its exit status is
known to cped; and while the template is starting, or when it is gone, cped starts
dpeds itself (a start right after cped's: test_lifecycle.py).
"""

from __future__ import annotations

import os
import signal
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
