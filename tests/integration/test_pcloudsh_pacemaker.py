"""Pacemaker compatibility through pcloudsh, with a real cped and real DPEs.

- A deployable not running: ``deployable_export --format cib`` gives a CIB
  crm_verify accepts, with an empty status section; ``deployable_simulate``
  plans from the steady state, readable, as JSON and as a Graphviz file, with
  either planner; bad parts are refused by name; the one-shot path stays light.
- A deployable started by a cped whose configuration says ``policy_engine =
  pacemaker``: its DPE plans with crm_simulate, its CIB carries what the DPE
  recorded, and what-if plans with Pacemaker by default.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpe.pacemaker import available, verify
from tests.integration.conftest import CpedFactory
from tests.integration.test_pcloudsh_runtime import (  # noqa: F401  (the fixture)
    CATALOG,
    Runtime,
    _leave_nothing_running,
    shell,
)
from tests.integration.test_pcloudsh_session import heavy_modules_loaded

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]


def texts(answer: dict[str, object]) -> list[str]:
    actions = answer["actions"]
    assert isinstance(actions, list)
    return [str(a["text"]) for a in actions]


def test_a_deployable_not_running_as_a_cib_and_what_if(shell: Runtime, tmp_path: Path) -> None:  # noqa: F811
    cib = shell.ok("deployable_export shop --format cib")
    result = verify(cib)
    assert result.ok, result.messages
    tree = ET.fromstring(cib)
    assert {p.get("id") for p in tree.iter("primitive")} == {"rsc_db_pg", "rsc_web_www"}
    assert list(tree.iter("node_state")) == []

    lines = shell.ok("deployable_simulate shop --fail db/pg").splitlines()
    assert lines[0] == "deployable shop: if db/pg failed now (builtin planner)"
    assert lines[1].startswith("planned not running: from the steady state")
    assert [line.split(". ", 1)[1].split("  (")[0] for line in lines[2:]] == [
        "stop web/www",
        "stop db/pg",
        "start db/pg",
        "monitor db/pg every 70 s",
        "start web/www",
        "monitor web/www every 70 s",
    ]

    dot = tmp_path / "plan.dot"
    builtin = json.loads(shell.ok(f"--json deployable_simulate shop --fail db/pg --dot {dot}"))
    assert dot.read_text() == builtin["dot"]
    pacemaker = json.loads(
        shell.ok("--json deployable_simulate shop --fail db/pg --policy-engine pacemaker")
    )
    assert pacemaker["policy_engine"] == "pacemaker"
    assert sorted(texts(pacemaker)) == sorted(texts(builtin))

    before = shell.ok("--json deployable_export shop")
    refused = shell.run("deployable_simulate", "shop", "--fail", "db/nope", "--fail", "cache")
    assert refused.returncode == 2, refused
    assert "no resource 'nope' in assembly 'db'" in refused.stderr
    assert "no assembly 'cache' in deployable shop" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert shell.ok("--json deployable_export shop") == before


def test_the_one_shot_path_of_the_new_commands_stays_light(shell: Runtime) -> None:  # noqa: F811
    for line in (
        ["deployable_simulate", "shop", "--fail", "web"],
        ["deployable_export", "shop", "--format", "cib"],
    ):
        assert heavy_modules_loaded(line, shell.env) == ("0", "[]"), line


@pytest.fixture
def pacemaker_shell(cped_factory: CpedFactory) -> Iterator[Runtime]:
    cped = cped_factory("[dped]\npolicy_engine = pacemaker\n")
    runtime = Runtime(cped.paths)
    for line in CATALOG:
        runtime.ok(line)
    try:
        yield runtime
    finally:
        _leave_nothing_running(runtime, cped.paths)


def test_a_running_deployable_planned_by_pacemaker(pacemaker_shell: Runtime) -> None:
    shell = pacemaker_shell  # noqa: F811  (not the imported fixture)
    shell.ok("deployable_start shop")
    shell.wait_state("running")

    cib = shell.ok("deployable_export shop --format cib")
    result = verify(cib)
    assert result.ok, result.messages
    tree = ET.fromstring(cib)
    assert {n.get("uname"): n.get("crmd") for n in tree.iter("node_state")} == {
        "db": "online",
        "web": "online",
    }
    ops = {(o.get("operation_key"), o.get("rc-code")) for o in tree.iter("lrm_rsc_op")}
    assert {("rsc_db_pg_start_0", "0"), ("rsc_web_www_start_0", "0")} <= ops

    answer = json.loads(shell.ok("--json deployable_simulate shop --fail web/www"))
    assert answer["source"] == "runtime" and answer["policy_engine"] == "pacemaker"
    assert texts(answer) == ["stop web/www", "start web/www", "monitor web/www every 70 s"]
    lines = shell.ok("deployable_simulate shop --fail web/www").splitlines()
    assert lines[:2] == [
        "deployable shop: if web/www failed now (pacemaker planner)",
        "planned from what its DPE recorded",
    ]

    events = shell.ok("--json events --deployable shop --limit 1000")
    assert "policy engine failed" not in events
    dpe_log = (shell.paths.log_dir / "dped-shop.log").read_text()
    assert "policy engine: pacemaker (crm_simulate)" in dpe_log  # the DPE plans with Pacemaker


def test_without_crm_simulate_a_pacemaker_what_if_fails_and_says_why(
    cped_factory: CpedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # crm_simulate is in /usr/sbin
    cped = cped_factory()
    shell = Runtime(cped.paths)  # noqa: F811  (not the imported fixture)
    for line in CATALOG:
        shell.ok(line)
    done = shell.run(
        "deployable_simulate", "shop", "--fail", "db/pg", "--policy-engine", "pacemaker"
    )
    assert done.returncode == 1, done
    assert "crm_simulate is not installed (Debian package pacemaker-cli-utils)" in done.stderr
    assert "Traceback" not in done.stderr
    assert shell.run("deployable_simulate", "shop", "--fail", "db/pg").returncode == 0
