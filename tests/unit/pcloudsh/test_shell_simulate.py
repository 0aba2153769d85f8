"""``deployable_simulate`` and ``deployable_export --format cib`` against cped's own
answers (``cpe.whatif`` over the catalog and what a DPE recorded in the store)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from pcloudsh.environment import Environment
from pcloudsh.shell import PcloudShell
from pcloudsh.testing import run, shell_for
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.test_shell_interactive import completions

NOW = 1_700_000_000.0


def record_running(cped: InProcessCped) -> None:
    """What shop's DPE records once everything runs (www's two recent failures too)."""
    runtime: dict[str, dict[str, dict[str, object]]] = {
        "instance": {},
        "assembly": {},
        "resource": {},
        "deployable": {"": {"state": "running", "failures": []}},
    }
    for n, assembly in enumerate(("db", "web")):
        runtime["instance"][assembly] = {"address": f"10.0.0.{n + 1}", "hostname": assembly}
        runtime["assembly"][assembly] = {"state": "running", "failures": []}
    for rid, failures in (("db/pg", []), ("web/www", [NOW - 20, NOW - 10])):
        runtime["resource"][rid] = {
            "state": "running",
            "last_op": "start",
            "last_rc": 0,
            "failures": failures,
            "applied": None,
        }
    for kind, entries in runtime.items():
        for key, doc in entries.items():
            cped.store.put_runtime("shop", kind, key, doc)


def test_a_failure_reads_as_numbered_actions_in_order(
    env: Environment, shop: InProcessCped
) -> None:
    ran = run(env, "deployable_simulate shop --fail db/pg")
    assert ran.status == 0, ran
    lines = ran.out.splitlines()
    assert lines[0] == "deployable shop: if db/pg failed now (builtin planner)"
    assert lines[1].startswith("planned not running: from the steady state")
    steps = [line for line in lines if line[:1].isdigit()]
    texts = [line.split(". ", 1)[1].split("  (")[0] for line in steps]
    assert texts.index("stop web/www") < texts.index("stop db/pg") < texts.index("start db/pg")
    assert texts.index("start db/pg") < texts.index("start web/www")
    start_www = steps[texts.index("start web/www")]
    assert f"(after {texts.index('start db/pg') + 1}" in start_www or (
        f", {texts.index('start db/pg') + 1}" in start_www
    )


def test_escalations_come_first_from_the_recorded_windows(
    env: Environment, shop: InProcessCped
) -> None:
    record_running(shop)
    ran = run(env, "deployable_simulate shop --fail web/www")
    assert ran.status == 0, ran
    lines = ran.out.splitlines()
    assert lines[1] == "planned from what its DPE recorded"
    assert lines[2].startswith("note: web/www: 3 failures in 60 s")
    assert "fence web" in ran.out and "create web" in ran.out


def test_json_is_the_whole_answer_and_dot_writes_a_graph(
    env: Environment, shop: InProcessCped, tmp_path: Path
) -> None:
    dot = tmp_path / "plan.dot"
    ran = run(env, f"--json deployable_simulate shop --fail web --dot {dot}")
    assert ran.status == 0, ran
    answer = json.loads(ran.out)
    assert set(answer) == {
        "deployable",
        "state",
        "source",
        "policy_engine",
        "failures",
        "notes",
        "given_up",
        "placements",
        "actions",
        "blocked",
        "dot",
    }
    assert answer["failures"] == ["web"] and answer["source"] == "steady_state"
    assert [a["text"] for a in answer["actions"]][:2] == ["fence web", "create web"]
    assert dot.read_text() == answer["dot"]
    assert dot.read_text().startswith('digraph "shop" {')
    assert "graph written to" not in ran.out
    readable = run(env, f"deployable_simulate shop --fail web --dot {dot}")
    assert readable.out.splitlines()[-1] == f"graph written to {dot}"


def test_bad_parts_are_refused_by_name_and_change_nothing(
    env: Environment, shop: InProcessCped, tmp_path: Path
) -> None:
    before = shop.tables()
    dot = tmp_path / "plan.dot"
    ran = run(env, f"deployable_simulate shop --fail db/nope --fail cache --dot {dot}")
    assert ran.status == 2
    assert "no resource 'nope' in assembly 'db'" in ran.err
    assert "no assembly 'cache' in deployable shop" in ran.err
    assert not dot.exists() and shop.tables() == before
    ran = run(env, "deployable_simulate shop --fail db,web")
    assert ran.status == 2 and "invalid --fail 'db,web': one ASSEMBLY" in ran.err
    ran = run(env, "deployable_simulate shop --fail a/b/c")
    assert ran.status == 2 and "ASSEMBLY or ASSEMBLY/RESOURCE" in ran.err
    ran = run(env, "deployable_simulate shop --policy-engine magic")
    assert ran.status == 2 and "invalid choice: 'magic'" in ran.err
    ran = run(env, f"deployable_simulate shop --dot {tmp_path}/no/such/dir/plan.dot")
    assert ran.status == 2 and "no such directory" in ran.err
    ran = run(env, "deployable_simulate nosuch")
    assert ran.status == 2 and "nosuch" in ran.err


def test_the_parts_of_the_deployable_on_the_line_complete(
    env: Environment, shop: InProcessCped
) -> None:
    shell: PcloudShell = shell_for(env)
    assert completions(shell, "deployable_simulate ") == ["shop"]
    assert completions(shell, "deployable_simulate shop --fail ") == [
        "db",
        "db/pg",
        "web",
        "web/www",
    ]
    assert completions(shell, "deployable_simulate shop --fail w") == ["web", "web/www"]


def test_export_as_cib_without_and_with_a_recorded_state(
    env: Environment, shop: InProcessCped, tmp_path: Path
) -> None:
    ran = run(env, "deployable_export shop --format cib")
    assert ran.status == 0, ran
    cib = ET.fromstring(ran.out)
    assert {p.get("id") for p in cib.iter("primitive")} == {"rsc_db_pg", "rsc_web_www"}
    assert list(cib.iter("node_state")) == []
    record_running(shop)
    cib = ET.fromstring(run(env, "deployable_export shop --format cib").out)
    assert {n.get("uname") for n in cib.iter("node_state")} == {"db", "web"}
    ran = run(env, "--json deployable_export shop --format cib")
    assert ran.status == 2 and "without --format cib, or with -o FILE" in ran.err
    out = tmp_path / "shop.xml"
    ran = run(env, f"--json deployable_export shop --format cib -o {out}")
    assert ran.status == 0 and json.loads(ran.out)["format"] == "cib"
    assert ET.fromstring(out.read_text()).tag == "cib"


def test_each_placement_is_explained_in_text_and_in_json(
    env: Environment, shop: InProcessCped
) -> None:
    for line in (
        "assembly_create n1 host",
        "assembly_create n2 host",
        "deployable_assembly_add shop n1",
        "deployable_assembly_add shop n2",
        "deployable_service_add shop queue dummy --on n1:50,n2:50",
        "deployable_service_add shop cache dummy --on n1:0,n2:0",
        "deployable_colocation_add shop cache queue",
    ):
        assert run(env, line).status == 0, line
    lines = run(env, "deployable_simulate shop").out.splitlines()
    assert lines[2:8] == [
        "queue stays on n1: the best allowed (score 50 on n1; tied at 50 with n2:"
        " it already runs on n1)",
        "  n1: 50 = 50 location score + 0 from cache, colocated with queue at INFINITY:"
        " it scores 0 there",
        "  n2: 50 = 50 location score + 0 from cache, colocated with queue at INFINITY:"
        " it scores 0 there",
        "cache stays on n1: the best allowed (score 0 on n1)",
        "  n1: 0 = 0 location score",
        "  n2: -INFINITY = 0 location score - INFINITY must run with queue, which runs on n1;"
        " not allowed: must run with queue, which runs on n1",
    ]
    failed = run(env, "deployable_simulate shop --fail n1").out
    assert "queue moves from n1 to n2: assembly n1 is failed (score 50 on n2)" in failed
    answer = json.loads(run(env, "--json deployable_simulate shop").out)
    queue, cache = answer["placements"]
    assert (queue["current"], queue["target"], queue["moves"]) == ("n1", "n1", False)
    assert queue["tie"] == "tied at 50 with n2: it already runs on n1"
    assert queue["explanation"] == lines[2:5]
    n2 = cache["candidates"][1]
    assert (n2["assembly"], n2["score"], n2["allowed"]) == ("n2", "-INFINITY", False)
    assert n2["terms"] == [
        {"score": 0, "why": "location score"},
        {"score": "-INFINITY", "why": "must run with queue, which runs on n1"},
    ]
