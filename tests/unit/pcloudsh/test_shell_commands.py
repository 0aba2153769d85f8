"""Each pcloudsh command against cped's rules in-process: what it prints, as a table and
as JSON, and what it changed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from foundation.events import Event
from foundation.runtime_kinds import ASSEMBLY, DEPLOYABLE, DOCUMENT, RESOURCE
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import NOW, InProcessCped
from tests.unit.pcloudsh.fakes import FakeKeys, FakeTime


def test_assembly_create_makes_keys_and_a_new_uuid(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    ran = run(env, "--json assembly_create web host")
    assert ran.status == 0, ran
    data = json.loads(ran.out)
    assert data["assembly"] == "web"
    assert cped.get_assembly("web")["uuid"] == data["uuid"]
    assert cped.get_assembly("web")["image"] == "host"
    assert keys.made == {"web"}
    assert run(env, "assembly_create web2 host").out == "assembly web2 created from host\n"


def test_assembly_create_removes_its_keys_when_cped_refuses(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    from foundation.errors import StoreError

    cped.answer("create_assembly", answer=StoreError("disk full"))
    ran = run(env, "assembly_create web host")
    assert (ran.status, ran.err) == (1, "pcloudsh: error: disk full\n")
    assert keys.made == set()


def test_assembly_create_interrupted_while_its_keys_are_made_leaves_nothing(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    keys.interrupt_in_finalizer_on = "web"  # the ^C comes while a finalizer runs
    ran = run(env, "assembly_create web host")
    assert (ran.status, ran.out, ran.err) == (130, "", "pcloudsh: interrupted\n")
    assert keys.made == set() and cped.list_assemblies() == []


def test_assembly_create_keeps_keys_of_an_existing_assembly(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    run(env, "assembly_create web host")
    ran = run(env, "assembly_create web host")
    assert ran.status == 2
    assert "already exists" in ran.err
    assert keys.made == {"web"}


def test_assembly_clone_copies_resources_with_new_uuid_and_keys(
    env: Environment, shop: InProcessCped, keys: FakeKeys
) -> None:
    ran = run(env, "assembly_clone web web2")
    assert ran.status == 0, ran
    assert "(1 resource copied)" in ran.out
    original, copy = shop.get_assembly("web"), shop.get_assembly("web2")
    assert copy["uuid"] != original["uuid"]
    assert copy["resources"] == original["resources"]
    assert copy["escalation"] == original["escalation"]
    assert "web2" in keys.made


def test_assembly_delete_deletes_its_keys(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    run(env, "assembly_create web host")
    ran = run(env, "assembly_delete web")
    assert (ran.status, ran.out) == (0, "assembly web deleted\n")
    assert cped.list_assemblies() == [] and keys.made == set()


def test_assembly_delete_refused_keeps_keys(
    env: Environment, shop: InProcessCped, keys: FakeKeys
) -> None:
    ran = run(env, "assembly_delete web")
    assert ran.status == 2
    assert "belongs to deployable 'shop'" in ran.err
    assert shop.get_assembly("web") and "web" in keys.made


def test_assembly_list_table_and_json(env: Environment, shop: InProcessCped) -> None:
    table = run(env, "assembly_list")
    assert table.status == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["Name", "JEOS", "Deployable", "Resources", "UUID"]
    assert lines[3].split() == ["web", "host", "shop", "1", shop.get_assembly("web")["uuid"]]
    data = json.loads(run(env, "assembly_list --json").out)
    assert [a["name"] for a in data] == ["db", "web"]
    assert data[1]["deployable"] == "shop"


def test_empty_lists_say_so(env: Environment) -> None:
    assert run(env, "assembly_list").out == "no assemblies\n"
    assert run(env, "deployable_list").out == "no deployables\n"
    assert run(env, "--json deployable_list").out == "[]\n"


def test_jeos_list(env: Environment) -> None:
    ran = run(env, "jeos_list")
    assert ran.out.splitlines()[2].split()[:3] == ["host", "host", "x86_64"]
    assert json.loads(run(env, "jeos_list --json").out)[0]["name"] == "host"


def test_resource_add_merges_template_and_given_parameters(
    env: Environment, shop: InProcessCped
) -> None:
    www = shop.get_assembly("web")["resources"][0]
    assert www["type"] == "Dummy" and www["provider"] == "heartbeat"
    assert www["monitor_interval"] == 70
    # the template's fake=1 given again: the given value wins
    assert www["parameters"] == {"fake": {"ref": "db:ipaddress"}, "state": "/run/www.state"}
    pg = shop.get_assembly("db")["resources"][0]
    assert pg["monitor_interval"] == 20
    assert pg["timeouts"] == {"start": 60}


def test_resource_list_and_remove(env: Environment, shop: InProcessCped) -> None:
    out = run(env, "assembly_resource_list web").out
    lines = out.splitlines()
    assert lines[0].split() == ["Name", "Agent", "Monitor", "Parameters", "Escalation"]
    assert lines[2].startswith("www") and "3 failures in 60 s" in lines[2]
    assert "fake=@db:ipaddress" in out
    data = json.loads(run(env, "--json assembly_resource_list db").out)
    assert [r["name"] for r in data] == ["pg"]
    run(env, "deployable_constraint_remove shop db/pg web/www")
    ran = run(env, "assembly_resource_remove pg db")
    assert (ran.status, ran.out) == (0, "resource pg removed from assembly db\n")
    assert shop.get_assembly("db")["resources"] == []


def test_escalation_at_three_levels(env: Environment, shop: InProcessCped) -> None:
    doc = shop.get_deployable("shop")
    assert doc["escalation"] == {"failures": 2, "period": 3600}
    web = next(a for a in doc["assemblies"] if a["name"] == "web")
    assert web["escalation"] == {"failures": 2, "period": 300}
    assert web["resources"][0]["escalation"] == {"failures": 3, "period": 60}


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("escalation_resource_set web/www 4 90", {"assembly": "web", "resource": "www"}),
        ("escalation_resource_set www web 4 90", {"assembly": "web", "resource": "www"}),
        ("escalation_assembly_set web 4 90", {"assembly": "web"}),
        ("escalation_deployable_set shop 4 90", {"deployable": "shop"}),
    ],
)
def test_escalation_json_names_what_was_set(
    env: Environment, shop: InProcessCped, line: str, target: dict[str, str]
) -> None:
    ran = run(env, f"--json {line}")
    assert ran.status == 0, ran
    data = json.loads(ran.out)
    assert {key: data.get(key) for key in target} == target
    assert data["escalation"] == {"failures": 4, "period": 90}
    assert data["message"].startswith("escalation of ")


@pytest.mark.parametrize(
    "line", ["assembly_resource_remove web/www", "assembly_resource_remove www web"]
)
def test_resource_remove_json_names_the_resource(
    env: Environment, shop: InProcessCped, line: str
) -> None:
    run(env, "deployable_constraint_remove shop db/pg web/www")
    ran = run(env, f"--json {line}")
    assert ran.status == 0, ran
    data = json.loads(ran.out)
    assert (data["assembly"], data["resource"]) == ("web", "www")
    assert data["message"] == "resource www removed from assembly web"


OFF = "off (never escalates: each failure is recovered at its own level)"


@pytest.mark.parametrize("off", ["INFINITY", "-1", "infinity"])
def test_escalation_can_be_turned_off(env: Environment, shop: InProcessCped, off: str) -> None:
    ran = run(env, f"escalation_assembly_set web {off} {off}")
    assert (ran.status, ran.out) == (0, f"escalation of assembly web: {OFF}\n")
    off_both = {"failures": 0, "period": 0}
    assert shop.get_assembly("web")["escalation"] == off_both


def test_deployable_list_and_assembly_list(env: Environment, shop: InProcessCped) -> None:
    row = run(env, "deployable_list").out.splitlines()[2].split()
    assert row[:4] == ["shop", "local", "2", "stopped"]
    lines = run(env, "deployable_assembly_list shop").out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["db", "web"]
    data = json.loads(run(env, "--json deployable_assembly_list shop").out)
    assert [a["name"] for a in data] == ["db", "web"]


def test_deployable_create_default_and_named_infrastructure(
    env: Environment, cped: InProcessCped
) -> None:
    assert run(env, "deployable_create a").out == "deployable a created (local)\n"
    assert run(env, "deployable_create b libvirt").status == 0
    assert cped.get_deployable("b")["infrastructure"] == "libvirt"


@pytest.mark.parametrize(
    ("line", "mode"),
    [
        ("deployable_create a", "active"),
        ("deployable_create a local pm", "passive"),
        ("deployable_create a local am", "active"),
        ("deployable_create a local passive", "passive"),
        ("deployable_create a --monitoring passive", "passive"),
        ("deployable_create a libvirt --monitoring active", "active"),
    ],
)
def test_deployable_create_takes_the_monitoring_mode(
    env: Environment, cped: InProcessCped, line: str, mode: str
) -> None:
    ran = run(env, line)
    assert ran.status == 0, ran
    assert cped.get_deployable("a")["monitoring"] == mode
    assert ran.out.endswith("monitoring)\n") == (line != "deployable_create a")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "deployable_create a local xm",
            "invalid monitoring 'xm': use am (active) or pm (passive)",
        ),
        ("deployable_create a local pm --monitoring active", "give the monitoring mode once"),
        ("deployable_create a --monitoring am", "invalid choice: 'am'"),
    ],
)
def test_deployable_create_refuses_a_bad_monitoring_mode(
    env: Environment, cped: InProcessCped, line: str, message: str
) -> None:
    ran = run(env, line)
    assert ran.status == 2 and message in ran.err, ran
    assert cped.list_deployables() == []


def test_deployable_membership_and_delete(env: Environment, shop: InProcessCped) -> None:
    run(env, "deployable_constraint_remove shop db/pg web/www")
    ran = run(env, "deployable_assembly_remove shop web")
    assert ran.status == 0, ran
    assert [a["name"] for a in shop.get_deployable("shop")["assemblies"]] == ["db"]
    ran = run(env, "deployable_delete shop --force")
    assert (ran.status, ran.out) == (0, "deployable shop deleted\n")
    assert shop.list_deployables() == []


def test_deleting_a_running_deployable_is_refused_as_a_lifecycle_request(
    env: Environment, shop: InProcessCped
) -> None:
    run(env, "deployable_start shop")
    ran = run(env, "deployable_delete shop")
    assert (ran.status, ran.out) == (1, "")
    assert ran.err == (
        "pcloudsh: error: deployable 'shop' is running: stop it first, or delete it with --force\n"
    )
    assert [d["name"] for d in shop.list_deployables()] == ["shop"]


def test_constraints_list(env: Environment, shop: InProcessCped) -> None:
    lines = run(env, "deployable_constraint_list shop").out.splitlines()
    assert lines[0].split() == ["First", "Then"]
    assert lines[2].split() == ["db/pg", "web/www"]
    data = json.loads(run(env, "deployable_constraint_list shop --json").out)
    assert data == [{"first": "db/pg", "then": "web/www"}]


def test_templates(env: Environment) -> None:
    lines = run(env, "resource_template_list").out.splitlines()
    assert ["dummy", "ocf:heartbeat:Dummy"] in [line.split()[:2] for line in lines[2:]]
    show = run(env, "resource_template_show httpd").out
    assert "agent:" in show and "lsb:httpd" in show
    assert (
        json.loads(run(env, "resource_template_show dummy --json").out)["resource"]["type"]
        == "Dummy"
    )


def test_export_json_is_the_document(env: Environment, shop: InProcessCped) -> None:
    ran = run(env, "--json deployable_export shop")
    assert ran.status == 0 and ran.err == ""
    assert json.loads(ran.out) == shop.get_deployable("shop")
    assert json.loads(run(env, "deployable_export shop").out) == shop.get_deployable("shop")


def test_export_xml_imports_back_to_the_same_document(
    env: Environment, shop: InProcessCped
) -> None:
    before = shop.get_deployable("shop")
    xml = run(env, "deployable_export shop --format xml").out
    assert xml.startswith("<deployable")
    run(env, "deployable_delete shop")
    ran = run(env, "deployable_import - --format xml", stdin=xml)
    assert ran.status == 0, ran
    assert shop.get_deployable("shop") == before


def test_export_to_a_file_and_import_it(env: Environment, shop: InProcessCped, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = shop.get_deployable("shop")
    target = tmp_path / "shop.json"
    ran = run(env, f"deployable_export shop -o {target}")
    assert ran.out == f"deployable shop exported to {target} (json)\n"
    run(env, "deployable_delete shop")
    assert run(env, f"deployable_import {target}").status == 0
    assert shop.get_deployable("shop") == before


def test_export_to_dash_prints_as_import_of_dash_reads(
    env: Environment, shop: InProcessCped, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    for options in ("", " --format xml", " --format cib"):
        ran = run(env, f"deployable_export shop{options} -o -")
        assert ran == run(env, f"deployable_export shop{options}"), options
        assert ran.status == 0 and ran.out
    assert list(workdir.iterdir()) == []  # no file named -
    ran = run(env, "--json deployable_export shop --format xml --output -")
    assert ran.status == 2 and "--json prints JSON" in ran.err
    assert run(env, "deployable_export shop -o ./-").status == 0
    assert json.loads((workdir / "-").read_text()) == shop.get_deployable("shop")


def test_import_yaml_makes_keys_for_assemblies_without_them(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    assert run(env, "assembly_create old host").status == 0
    document = """
name: blog
assemblies:
  - name: old
    resources: [{name: r, type: Dummy}]
  - name: fresh
constraints: []
"""
    ran = run(env, "--json deployable_import -", stdin=document)
    assert ran.status == 0, ran
    assert json.loads(ran.out)["new_keys"] == ["fresh"]
    assert keys.made == {"old", "fresh"}
    assert {a["name"] for a in cped.list_assemblies()} == {"old", "fresh"}


def test_import_does_not_trust_key_files_of_assemblies_cped_does_not_know(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    keys.made.add("stray")  # left by an import that was killed before its commit
    document = '{"name": "blog", "assemblies": [{"name": "stray"}]}'
    ran = run(env, "--json deployable_import -", stdin=document)
    assert ran.status == 0, ran
    assert json.loads(ran.out)["new_keys"] == ["stray"] and keys.written == ["stray"]


@pytest.mark.parametrize("in_finalizer", [False, True], ids=["raised", "during-a-finalizer"])
def test_import_interrupted_while_making_keys_leaves_no_keys_and_no_rows(
    env: Environment, cped: InProcessCped, keys: FakeKeys, in_finalizer: bool
) -> None:
    """Also when the ^C comes while a finalizer runs, where its exception would be lost."""
    if in_finalizer:
        keys.interrupt_in_finalizer_after = 2
    else:
        keys.interrupt_after = 2
    names = [f"a{n}" for n in range(5)]
    document = json.dumps({"name": "big", "assemblies": [{"name": n} for n in names]})
    ran = run(env, "deployable_import -", stdin=document)
    assert (ran.status, ran.out) == (130, "")
    assert ran.err.endswith("pcloudsh: interrupted\n")
    assert keys.made == set()
    assert cped.list_deployables() == [] and cped.list_assemblies() == []


def test_import_shows_the_progress_of_its_key_pairs(env: Environment, cped: InProcessCped) -> None:
    document = json.dumps({"name": "big", "assemblies": [{"name": f"a{n}"} for n in range(3)]})
    ran = run(env, "deployable_import -", stdin=document)
    assert ran.status == 0
    first, last = ran.err.splitlines()
    assert first == "pcloudsh: import big: key pairs..."
    assert last.startswith("pcloudsh: import big: key pairs done (")


def test_import_refused_by_cped_removes_the_keys_it_made(
    env: Environment, shop: InProcessCped, keys: FakeKeys
) -> None:
    keys.made.clear()
    ran = run(
        env, "deployable_import -", stdin='{"name": "other", "assemblies": [{"name": "web"}]}'
    )
    assert ran.status == 2
    assert "belongs to deployable 'shop'" in ran.err
    assert keys.made == set()


def test_lifecycle_commands_report_the_answer(env: Environment, shop: InProcessCped) -> None:
    assert run(env, "deployable_start shop").out == (
        "deployable shop starting (deployable_status shop shows how it goes)\n"
    )
    assert run(env, "deployable_reload shop").out == (
        "deployable shop reloading (the DPE re-reads the document)\n"
    )
    assert run(env, "deployable_stop shop").out == "deployable shop stopped\n"
    assert shop.supervisor.calls == ["start shop", "reload shop", "stop shop"]


def test_lifecycle_messages_say_what_happened(env: Environment, shop: InProcessCped) -> None:
    assert run(env, "deployable_stop shop").out == "deployable shop already stopped\n"
    run(env, "deployable_start shop")
    assert run(env, "deployable_start shop").out == "deployable shop already running\n"
    answer = {"deployable": "shop", "desired": "stopped", "state": "stopping", "note": "late"}
    shop.answer("stop_deployable", "shop", answer=answer)
    assert run(env, "deployable_stop shop").out == (
        "deployable shop still stopping (late; deployable_stop shop --wait waits until it"
        " is done)\n"
    )


def test_a_reload_says_when_no_dpe_runs_to_read_the_document(
    env: Environment, shop: InProcessCped
) -> None:
    note = "no DPE runs right now: the next one (in 3.0 s) reads the new document"
    shop.answer(
        "reload_deployable", "shop", answer={"deployable": "shop", "pid": None, "note": note}
    )
    assert run(env, "deployable_reload shop").out == f"deployable shop reloading ({note})\n"


def dpe_runs_an_older_document(shop: InProcessCped) -> None:
    """shop runs in full, its DPE with the document before www was added."""
    document = shop.get_deployable("shop")
    older = json.loads(json.dumps(document))
    older["assemblies"][1]["resources"] = []
    shop.store.put_runtime("shop", DOCUMENT, "", older)
    shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "running"})
    for assembly in ("db", "web"):
        shop.store.put_runtime("shop", ASSEMBLY, assembly, {"state": "running"})
    shop.store.put_runtime("shop", RESOURCE, "db/pg", {"state": "running"})
    shop.store.put_runtime("shop", RESOURCE, "web/www", {"state": "stopped"})


def reload_event(shop: InProcessCped, reason: str) -> None:
    shop.store.append_event(Event(time=NOW, deployable="shop", state="running", reason=reason))


def test_reload_wait_returns_once_the_dpe_applied_it_and_every_part_runs(
    env: Environment, shop: InProcessCped
) -> None:
    run(env, "deployable_start shop")
    dpe_runs_an_older_document(shop)
    polls: list[float] = []

    def dpe_reloads_then_www_starts(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            reload_event(shop, "reloaded: 1 added, 0 removed, 0 changed")
        if len(polls) == 3:  # still running the older document as far as the status says
            shop.store.put_runtime("shop", RESOURCE, "web/www", {"state": "running"})

    env = dataclasses.replace(env, sleep=dpe_reloads_then_www_starts)
    ran = run(env, "deployable_reload shop --wait --timeout 1m")
    assert (ran.status, ran.out) == (0, "deployable shop running\n"), ran
    assert len(polls) == 3


def test_reload_wait_ends_once_what_does_not_run_cannot_start(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    """As a start's wait does: a resource its DPE backs off from is named at once (exit
    1), not waited for until --timeout while the DPE has nothing left to do."""
    run(env, "deployable_start shop")
    dpe_runs_an_older_document(shop)
    polls: list[float] = []

    def dpe_reloads_and_www_cannot_start(seconds: float) -> None:
        polls.append(seconds)
        fake_time.sleep(seconds)
        if len(polls) == 1:
            reload_event(shop, "reloaded: 1 resource added (web/www)")
        if len(polls) == 2:
            blocked = {"state": "stopped", "blocked": "backing off after failures in a row"}
            shop.store.put_runtime("shop", RESOURCE, "web/www", blocked)

    env = dataclasses.replace(env, sleep=dpe_reloads_and_www_cannot_start)
    ran = run(env, "deployable_reload shop --wait --timeout 5m")
    assert ran.status == 1 and len(polls) == 2, ran
    assert (
        ran.err == "pcloudsh: error: deployable shop: not every resource runs: web/www (stopped)\n"
    )


def test_reload_wait_fails_when_the_dpe_refuses_the_document(
    env: Environment, shop: InProcessCped
) -> None:
    run(env, "deployable_start shop")
    dpe_runs_an_older_document(shop)

    def dpe_refuses(seconds: float) -> None:
        reload_event(shop, "reload refused, keeping the current document: no key pair for www")

    env = dataclasses.replace(env, sleep=dpe_refuses)
    ran = run(env, "deployable_reload shop --wait")
    assert ran.status == 1
    assert ran.err == (
        "pcloudsh: error: deployable shop: reload refused, keeping the current document:"
        " no key pair for www\n"
    )


def test_reload_wait_says_what_it_waited_for_when_the_time_runs_out(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    run(env, "deployable_start shop")
    dpe_runs_an_older_document(shop)
    ran = run(env, "deployable_reload shop --wait --timeout 2s")
    assert ran.status == 1
    assert "its DPE has not applied the document after 2 s" in ran.err
    reload_event(shop, "reloaded: 1 added, 0 removed, 0 changed")  # before the request
    ran = run(env, "deployable_reload shop --wait --timeout 2s")
    assert "its DPE has not applied the document after 2 s" in ran.err, "an earlier reload"

    told: list[bool] = []

    def dpe_reloads(seconds: float) -> None:
        if not told:
            told.append(True)
            reload_event(shop, "reloaded: 1 added, 0 removed, 0 changed")
        fake_time.sleep(seconds)

    ran = run(
        dataclasses.replace(env, sleep=dpe_reloads), "deployable_reload shop --wait --timeout 2s"
    )
    assert ran.status == 1
    assert "deployable shop: not every part runs after 2 s" in ran.err, ran.err


def test_start_wait_returns_once_the_deployable_runs(env: Environment, shop: InProcessCped) -> None:
    polls: list[float] = []

    def dpe_records_running(seconds: float) -> None:
        polls.append(seconds)
        for resource in ("db/pg", "web/www"):
            shop.store.put_runtime("shop", RESOURCE, resource, {"state": "running"})
        shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "running"})

    env = dataclasses.replace(env, sleep=dpe_records_running)
    ran = run(env, "deployable_start shop --wait --timeout 1m")
    assert (ran.status, ran.out) == (0, "deployable shop running\n")
    assert polls == [0.5]


def test_start_wait_fails_naming_the_resources_that_do_not_run(
    env: Environment, shop: InProcessCped
) -> None:
    """The DPE calls a deployable running once it has nothing left to do, a resource
    that cannot start included: --wait says how far short of all of it that is, names
    what does not run and fails, as the start did not do all it was asked."""
    summary = "2 assemblies running, 1 resource running, 1 cannot start"
    shop.store.put_runtime("shop", DEPLOYABLE, "", {"state": "running", "reason": summary})
    shop.store.put_runtime("shop", RESOURCE, "db/pg", {"state": "running"})
    shop.store.put_runtime("shop", RESOURCE, "web/www", {"state": "stopped"})
    ran = run(env, "deployable_start shop --wait")
    assert (ran.status, ran.out, ran.err) == (
        1,
        f"deployable shop running ({summary}; deployable_status shop shows why)\n",
        "pcloudsh: error: deployable shop: not every resource runs: web/www (stopped)\n",
    )
    data = json.loads(run(env, "--json deployable_start shop --wait").out)
    assert data["not_running"] == [{"assembly": "web", "resource": "www", "state": "stopped"}]
    shop.store.put_runtime("shop", RESOURCE, "web/www", {"state": "running"})
    assert run(env, "deployable_start shop --wait").out == "deployable shop running\n"


def test_start_wait_fails_when_the_deployable_does_not_run_in_time(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    ran = run(env, "deployable_start shop --wait --timeout 1.2s")
    assert ran.status == 1
    assert ran.err == (
        "pcloudsh: error: deployable shop is still stopped after 1.2 s (waiting until it is"
        " running)\n"
    )
    assert fake_time.slept == pytest.approx([0.5, 0.5, 0.2])  # the last poll at the deadline


def _then(env: Environment, action: Callable[[], None]) -> Environment:
    """``env`` whose first sleep (between two polls of --wait) runs ``action`` first."""
    pending = [action]

    def sleep(seconds: float) -> None:
        while pending:
            pending.pop()()
        env.sleep(seconds)

    return dataclasses.replace(env, sleep=sleep)


def _failed(shop: InProcessCped, reason: str, name: str = "shop") -> None:
    shop.store.put_runtime(name, DEPLOYABLE, "", {"state": "failed", "reason": reason})
    shop.store.append_event(Event(NOW, name, "failed", reason))


def test_start_wait_fails_at_once_when_the_deployable_fails(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    ran = run(_then(env, lambda: _failed(shop, "www failed")), "deployable_start shop --wait")
    assert (ran.status, ran.err) == (1, "pcloudsh: error: deployable shop failed: www failed\n")
    assert fake_time.slept == [0.5]  # the poll after the failure's event ends the wait


def test_start_wait_of_a_failed_deployable_waits_for_its_new_start(
    env: Environment, shop: InProcessCped
) -> None:
    """A start clears "failed", but the status shows it until the new DPE has: a
    failure from before the start is not this start's."""
    _failed(shop, "1 failure in 3600 s: no more recovery until it is started again")
    for names in ("shop", "shop --all"):
        running = _then(env, lambda: _running(shop, ["db/pg", "web/www"]))
        line = f"deployable_start {names} --wait".replace("shop --all", "--all")
        ran = run(running, line)
        assert (ran.status, ran.err) == (0, ""), ran
        assert "deployable shop running" in ran.out
        _failed(shop, "again")


def test_start_wait_of_several_failed_deployables_waits_for_their_new_starts(
    env: Environment, shop: InProcessCped
) -> None:
    assert run(env, "deployable_create two local").status == 0
    for name in ("shop", "two"):
        _failed(shop, "failed before", name)

    def both_running() -> None:
        _running(shop, ["db/pg", "web/www"])
        _running(shop, [], "two")

    ran = run(_then(env, both_running), "deployable_start shop two --wait")
    assert ran.status == 0 and "error" not in ran.err, ran
    assert ran.out == "deployable shop running\ndeployable two running\n"


def _running(shop: InProcessCped, resources: list[str], name: str = "shop") -> None:
    shop.store.put_runtime(name, DEPLOYABLE, "", {"state": "running", "reason": ""})
    for resource in resources:
        shop.store.put_runtime(name, RESOURCE, resource, {"state": "running"})


def test_a_long_wait_that_runs_out_says_its_timeout_plainly(
    env: Environment, shop: InProcessCped
) -> None:
    clock = iter([0.0, 400 * 86400.0])  # the deadline passes on the first look
    ran = run(
        dataclasses.replace(env, monotonic=lambda: next(clock)),
        "deployable_start shop --wait --timeout 365d",
    )
    assert ran.status == 1
    assert "is still stopped after 365 d (waiting" in ran.err and "e+" not in ran.err, ran.err


@pytest.mark.parametrize(
    ("line", "out"),
    [
        ("deployable_stop nosuch shop", "deployable shop already stopped\n"),
        (
            "deployable_start shop nosuch",
            "deployable shop starting (deployable_status shop shows how it goes)\n",
        ),
    ],
)
def test_an_unknown_name_among_several_is_an_error_on_stderr_and_exit_1(
    env: Environment, shop: InProcessCped, line: str, out: str
) -> None:
    ran = run(env, line)
    assert ran.err == "pcloudsh: error: deployable nosuch: no such deployable: 'nosuch'\n"
    assert (ran.out, ran.status) == (out, 1), ran  # the others go on; exit 1 at the end
    as_json = run(env, f"--json {line}")
    assert as_json.status == 1 and "no such deployable" in as_json.err
    assert [row.get("deployable") for row in json.loads(as_json.out)] == (
        ["nosuch", "shop"] if "stop" in line else ["shop", "nosuch"]
    )


def test_lifecycle_on_several_deployables_goes_on_past_a_failure(
    env: Environment, shop: InProcessCped
) -> None:
    from foundation.errors import Conflict

    run(env, "deployable_create other")
    shop.answer("start_deployable", "other", answer=Conflict("other cannot start now"))
    ran = run(env, "deployable_start --all")
    assert ran.status == 1
    assert ran.out.splitlines() == [
        "deployable shop starting (deployable_status shop shows how it goes)",
    ]
    assert ran.err == "pcloudsh: error: deployable other: other cannot start now\n"
    assert shop.supervisor.calls == ["start shop"]
    stopped = run(env, "--json deployable_stop shop other")
    assert [row["message"] for row in json.loads(stopped.out)] == [
        "deployable shop stopped",
        "deployable other already stopped",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("deployable_start", "give the deployable's NAME (several are fine), or --all"),
        ("deployable_stop shop --all", "give NAMEs or --all, not both"),
        ("deployable_start shop --timeout 5s", "--timeout goes with --wait"),
        ("deployable_stop shop --wait --timeout soon", "invalid --timeout 'soon'"),
    ],
)
def test_lifecycle_bad_usage_changes_nothing(
    env: Environment, shop: InProcessCped, line: str, message: str
) -> None:
    ran = run(env, line)
    assert ran.status == 2 and message in ran.err
    assert shop.supervisor.calls == []


def test_reloading_a_stopped_deployable_has_failed(env: Environment, shop: InProcessCped) -> None:
    ran = run(env, "deployable_reload shop")
    assert (ran.status, ran.err) == (
        1,
        "pcloudsh: error: deployable 'shop' is not started: nothing to reload\n",
    )


def test_lifecycle_passes_the_server_error_through(env: Environment, shop: InProcessCped) -> None:
    from foundation.errors import Conflict, PcloudError

    for error in (
        Conflict("start is not available yet"),
        PcloudError("start is not available yet"),
    ):
        shop.supervisor.error = error
        shop.answer("deployable_status", "shop", answer=error)
        for verb in ("stop", "start", "reload", "status"):  # a start is wanted: reload asks
            ran = run(env, f"deployable_{verb} shop")
            assert ran.status == 1, verb
            assert ran.err == "pcloudsh: error: start is not available yet\n"
            assert ran.out == ""


def test_key_failure_leaves_no_keys_and_no_assembly(
    env: Environment, cped: InProcessCped, keys: FakeKeys
) -> None:
    keys.fail_on = "b"
    ran = run(
        env,
        "deployable_import -",
        stdin='{"name": "d", "assemblies": [{"name": "a"}, {"name": "b"}]}',
    )
    assert ran.status == 1 and ran.err.endswith("\npcloudsh: error: cannot write keys\n")
    ran = run(env, "assembly_create b host")
    assert ran.status == 1
    assert keys.made == set()
    assert cped.list_assemblies() == [] and cped.list_deployables() == []


def test_deployable_create_records_infrastructure_settings(
    env: Environment, cped: InProcessCped
) -> None:
    ran = run(env, "deployable_create vms libvirt --uri qemu:///session --set memory=2048")
    assert ran.status == 0, ran
    vms = cped.get_deployable("vms")
    assert vms["infrastructure"] == "libvirt"
    assert vms["settings"] == {"memory": "2048", "uri": "qemu:///session"}


@pytest.mark.parametrize(
    "line", ["deployable_start --all", "deployable_start --all --wait", "deployable_stop --all"]
)
def test_all_when_there_are_no_deployables_says_so(
    env: Environment, cped: InProcessCped, line: str
) -> None:
    ran = run(env, line)
    assert (ran.status, ran.out, ran.err) == (0, "no deployables\n", "")
    assert json.loads(run(env, f"--json {line}").out) == []


def test_start_all_wait_sends_every_start_before_waiting_within_one_timeout(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    run(env, "deployable_create other")
    starts_when_first_polled: list[list[str]] = []

    def other_runs_shop_does_not(seconds: float) -> None:
        starts_when_first_polled.append(list(shop.supervisor.calls))
        fake_time.sleep(seconds)
        shop.store.put_runtime("other", DEPLOYABLE, "", {"state": "running"})

    env = dataclasses.replace(env, sleep=other_runs_shop_does_not)
    ran = run(env, "--json deployable_start --all --wait --timeout 2s")
    assert starts_when_first_polled[0] == ["start other", "start shop"]  # both before a wait
    assert ran.status == 1
    rows = json.loads(ran.out)
    assert rows[0] == {
        "message": "deployable other running",
        "deployable": "other",
        "not_running": [],
        "state": "running",
    }
    assert "shop is still stopped after" in rows[1]["error"]["message"]
    assert sum(fake_time.slept) == pytest.approx(2.0)  # one deadline for all of them
    assert "deployable_start" in ran.err  # the progress, on standard error


def slow_stops(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> tuple[Environment, list[list[str]]]:
    """shop and other run and take long to stop; other is stopped at the first wait.
    The shell's environment for that, and the stops cped had been asked by then."""
    run(env, "deployable_create other")
    run(env, "deployable_start shop other")
    shop.supervisor.slow_stops = {"shop", "other"}
    for name in ("shop", "other"):
        shop.store.put_runtime(name, DEPLOYABLE, "", {"state": "stopping"})
    stops_when_first_polled: list[list[str]] = []

    def other_stops_shop_does_not(seconds: float) -> None:
        stops_when_first_polled.append([c for c in shop.supervisor.calls if "stop" in c])
        fake_time.sleep(seconds)
        shop.store.put_runtime("other", DEPLOYABLE, "", {"state": "stopped"})

    return dataclasses.replace(env, sleep=other_stops_shop_does_not), stops_when_first_polled


def test_stop_of_several_sends_every_stop_before_waiting_within_one_timeout(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    env, first_polled = slow_stops(env, shop, fake_time)
    ran = run(env, "--json deployable_stop shop other --wait --timeout 2s")
    assert first_polled[0] == ["stop shop", "stop other"]  # both before a wait
    assert ran.status == 1
    rows = json.loads(ran.out)
    assert "shop is still stopping after 2 s" in rows[0]["error"]["message"]
    assert rows[1] == {
        "message": "deployable other stopped",
        "deployable": "other",
        "state": "stopped",
    }
    assert sum(fake_time.slept) == pytest.approx(2.0)  # one deadline for all of them


def test_stop_of_several_without_wait_waits_as_long_as_cped_would_for_one(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    env, _ = slow_stops(env, shop, fake_time)
    ran = run(env, "deployable_stop shop other")
    assert ran.status == 0, ran
    assert ran.out.splitlines() == [
        "deployable shop still stopping (deployable_stop shop --wait waits until it is done)",
        "deployable other stopped",
    ]
    assert sum(fake_time.slept) == pytest.approx(20.0)


def test_import_counts_in_words_that_agree(env: Environment, cped: InProcessCped) -> None:
    one = json.dumps({"name": "solo", "assemblies": [{"name": "only"}]})
    ran = run(env, "deployable_import -", stdin=one)
    assert ran.out == "deployable solo imported (1 assembly, 1 new key pair)\n"
    two = json.dumps({"name": "pair", "assemblies": [{"name": "b1"}, {"name": "b2"}]})
    ran = run(env, "deployable_import -", stdin=two)
    assert ran.out == "deployable pair imported (2 assemblies, 2 new key pairs)\n"


HALF_SET_XML = """<deployable name="half">
  <assemblies>
    <assembly name="a1" escalation_failures="3" escalation_period="0">
      <services>
        <service name="r1" class="ocf" provider="heartbeat" type="Dummy"
                 escalation_failures="2"/>
        <service name="r2" class="ocf" provider="heartbeat" type="Dummy"
                 escalation_failures="INFINITY" escalation_period="60"/>
      </services>
    </assembly>
  </assemblies>
</deployable>
"""


def test_import_says_which_escalations_it_reads_as_off(
    env: Environment, cped: InProcessCped
) -> None:
    """Failures with no period: off, as the original meant it, but said (the
    escalation_*_set commands refuse it); failures turned off on purpose are not."""
    ran = run(env, "--json deployable_import -", stdin=HALF_SET_XML)
    assert ran.status == 0, ran
    expected = [
        "assemblies[0].escalation: 3 failures and no period: escalation is off"
        " (give a period to turn it on)",
        "assemblies[0].resources[0].escalation: 2 failures and no period: escalation is off"
        " (give a period to turn it on)",
    ]
    assert json.loads(ran.out)["warnings"] == expected
    warned = [line for line in ran.err.splitlines() if "warning" in line]  # progress aside
    assert warned == [f"pcloudsh: warning: {w}" for w in expected]
    (a1,) = cped.get_deployable("half")["assemblies"]
    assert a1["escalation"] == {"failures": 0, "period": 0}


class _Recording:
    """An API whose stop requests are recorded (their query) and then made."""

    def __init__(self, api: Any, stops: list[dict[str, Any]]) -> None:
        self.api, self.stops = api, stops

    def stop_deployable(self, name: str, **query: Any) -> Any:
        self.stops.append(query)
        return self.api.stop_deployable(name, **query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


def test_stop_wait_timeout_bounds_the_whole_wait_cpeds_own_included(
    env: Environment, shop: InProcessCped, fake_time: FakeTime
) -> None:
    env, _ = slow_stops(env, shop, fake_time)
    stops: list[dict[str, Any]] = []
    connect = env.connect
    env = dataclasses.replace(env, connect=lambda paths: _Recording(connect(paths), stops))
    ran = run(env, "deployable_stop shop --wait --timeout 0.4s")
    assert stops == [{"wait": 0.4}]  # cped waits no longer than the command may
    assert ran.status == 1
    assert ran.err.startswith("pcloudsh: error: deployable shop is still stopping after 0.4 s")
    assert sum(fake_time.slept) <= 0.4
    shop.supervisor.slow_stops.clear()
    assert run(env, "deployable_stop shop --wait --timeout 1h").status == 0
    assert stops[-1] == {"wait": 20.0}  # cped's own bound on how long a request waits
