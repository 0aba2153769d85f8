"""The CIB export: structure, ids, op history and digests (no Pacemaker run here).

``tests/integration/test_cib_verify.py`` checks the same exports with
``crm_verify`` and ``crm_simulate``.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dpe.cib import FEATURE_SET, build_cib, export_cib, make_id, primitive_id
from dpe.cib_history import op_digest
from dpe.planner import Applied, AssemblyStatus, Goal, Observed, ResourceStatus
from dpe.states import AssemblyState, ResourceState
from foundation.model import NAME_RE, Deployable, ResourceId, parse

A = AssemblyState
R = ResourceState


def document(
    layout: Mapping[str, list[str | dict[str, Any]]], constraints: tuple[str, ...] = ()
) -> Deployable:
    assemblies = [
        {
            "name": name,
            "resources": [r if isinstance(r, dict) else {"name": r, "type": "Dummy"} for r in rs],
        }
        for name, rs in layout.items()
    ]
    pairs = [c.split(" -> ") for c in constraints]
    return parse(
        {
            "name": "dep",
            "assemblies": assemblies,
            "constraints": [{"first": f, "then": t} for f, t in pairs],
        }
    )


def rid(text: str) -> ResourceId:
    assembly, resource = text.split("/")
    return ResourceId(assembly, resource)


def up(doc: Deployable, **states: AssemblyState) -> dict[str, AssemblyStatus]:
    return {
        a.name: AssemblyStatus(states.get(a.name, A.RUNNING), f"10.0.0.{i}", a.name)
        for i, a in enumerate(doc.assemblies, 1)
    }


def tree(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def ops(root: ET.Element, primitive: str) -> list[ET.Element]:
    return root.findall(f".//lrm_resource[@id='{primitive}']/lrm_rsc_op")


# ---------------------------------------------------------------------------
# ids


names = st.from_regex(NAME_RE, fullmatch=True)


@given(st.lists(st.tuples(names, names), min_size=2, max_size=2, unique=True))
def test_primitive_ids_of_different_resources_never_collide(pairs: list[tuple[str, str]]) -> None:
    one, other = (ResourceId(a, r) for a, r in pairs)
    assert primitive_id(one) != primitive_id(other)


def test_names_with_underscores_stay_apart_and_readable() -> None:
    assert primitive_id(ResourceId("a_b", "c")) == "rsc_a__b_c"
    assert primitive_id(ResourceId("a", "b_c")) == "rsc_a_b__c"
    assert make_id("order", "a", "x", "b", "y") == "order_a_x_b_y"


def test_every_id_in_the_configuration_is_unique() -> None:
    doc = document(
        {
            "a_b": [{"name": "c", "type": "Dummy", "parameters": {"p_q": "1", "p": "2"}}],
            "a": [{"name": "b_c", "type": "Dummy", "parameters": {"p_q": "1"}}],
        },
        ("a_b/c -> a/b_c",),
    )
    obs = Observed(Goal.RUN, up(doc), {rid("a_b/c"): ResourceStatus(R.STOPPED, "probe", 7)})
    root = tree(export_cib(doc, obs))
    configuration = root.find("configuration")
    assert configuration is not None
    ids = [e.get("id") for e in configuration.iter() if e.get("id") is not None]
    assert len(ids) == len(set(ids)), sorted(ids)
    op_ids = [e.get("id") for e in root.iter("lrm_rsc_op")]
    assert len(op_ids) == len(set(op_ids))


# ---------------------------------------------------------------------------
# configuration


def test_assemblies_are_nodes_and_resources_are_pinned_primitives_with_their_ops() -> None:
    web = {
        "name": "web",
        "class": "ocf",
        "provider": "heartbeat",
        "type": "apache",
        "monitor_interval": "15s",
        "timeouts": {"start": "90s", "monitor": 7},
        "parameters": {"port": "8080"},
    }
    doc = document({"front": [web], "back": ["db"]}, ("back/db -> front/web",))
    root = tree(export_cib(doc))
    assert root.get("crm_feature_set") == FEATURE_SET
    nodes = {n.get("uname"): n.get("id") for n in root.iterfind("configuration/nodes/node")}
    assert nodes == {a.name: a.uuid for a in doc.assemblies}
    primitive = root.find("configuration/resources/primitive[@id='rsc_front_web']")
    assert primitive is not None
    assert (primitive.get("class"), primitive.get("provider"), primitive.get("type")) == (
        "ocf",
        "heartbeat",
        "apache",
    )
    params = {p.get("name"): p.get("value") for p in primitive.iterfind(".//nvpair")}
    assert params == {"port": "8080"}
    op = {o.get("name"): (o.get("interval"), o.get("timeout")) for o in primitive.iter("op")}
    assert op == {
        "monitor": ("15000ms", "7000ms"),
        "start": ("0ms", "90000ms"),
        "stop": ("0ms", "20000ms"),
    }
    location = root.find("configuration/constraints/rsc_location[@rsc='rsc_front_web']")
    assert location is not None
    assert (location.get("node"), location.get("score")) == ("front", "INFINITY")
    assert location.get("resource-discovery") == "exclusive"
    order = root.find("configuration/constraints/rsc_order")
    assert order is not None
    assert (order.get("first"), order.get("then"), order.get("kind")) == (
        "rsc_back_db",
        "rsc_front_web",
        "Mandatory",
    )


def test_cluster_options_turn_fencing_off_and_stopping_stops_everything() -> None:
    doc = document({"a": ["x"]})
    running = tree(export_cib(doc, Observed(Goal.RUN, up(doc), {})))
    options = {
        n.get("name"): n.get("value") for n in running.iterfind("configuration/crm_config//nvpair")
    }
    assert options["stonith-enabled"] == "false"
    assert options["symmetric-cluster"] == "false"
    assert "stop-all-resources" not in options
    stopping = tree(export_cib(doc, Observed(Goal.STOP, up(doc), {})))
    assert stopping.find(".//nvpair[@name='stop-all-resources'][@value='true']") is not None


def test_lsb_and_systemd_resources_have_no_provider() -> None:
    doc = document({"a": [{"name": "w", "class": "lsb", "type": "nginx"}]})
    primitive = tree(export_cib(doc)).find(".//primitive")
    assert primitive is not None
    assert primitive.get("class") == "lsb" and primitive.get("provider") is None


def test_special_characters_in_parameters_survive_the_xml() -> None:
    value = "<a href=\"x\">&'tab\there'</a>\nnext"
    doc = document({"a": [{"name": "x", "type": "Dummy", "parameters": {"p": value}}]})
    nvpair = tree(export_cib(doc)).find(".//nvpair[@name='p']")
    assert nvpair is not None and nvpair.get("value") == value


def test_what_the_planner_would_not_start_is_held_stopped_and_says_why() -> None:
    cfg = {"name": "cfg", "type": "Dummy", "parameters": {"peer": {"ref": "b:ipaddress"}}}
    doc = document({"a": [cfg, "x", "y"], "b": ["z"]})
    resources = {
        rid("a/x"): ResourceStatus(R.FAILED, "monitor", 7, retry_at=105.0),
        rid("a/y"): ResourceStatus(R.STOPPED, "stop", 0, retry_at=95.0),
    }
    obs = Observed(Goal.RUN, up(doc, b=A.CREATING), resources, now=100.0)
    cib = build_cib(doc, obs)
    assert cib.stopped == {
        rid("a/cfg"): "waiting for the ipaddress of assembly b",
        rid("a/x"): "backing off after failures in a row until 105",
    }
    root = tree(cib.xml)
    held = {
        p.get("id"): p.get("description")
        for p in root.iter("primitive")
        if p.find(".//nvpair[@name='target-role'][@value='Stopped']") is not None
    }
    assert held == {
        "rsc_a_cfg": "waiting for the ipaddress of assembly b",
        "rsc_a_x": "backing off after failures in a row until 105",
    }


def test_removed_resources_are_kept_held_stopped_with_their_order() -> None:
    old = document({"a": ["x", "y"], "gone": ["p"]}, ("a/x -> a/y",))
    new = document({"a": ["x"]})
    orphans = {r: d for r in (rid("a/y"), rid("gone/p")) if (d := old.resource(r))}
    obs = Observed(Goal.RUN, up(old), {}, orphans, old.constraints)
    cib = build_cib(new, obs)
    root = tree(cib.xml)
    assert set(cib.resources.values()) == {rid("a/x"), rid("a/y"), rid("gone/p")}
    assert {n.get("uname") for n in root.iter("node")} == {"a", "gone"}
    assert root.find(".//rsc_order[@first='rsc_a_x'][@then='rsc_a_y']") is not None
    assert set(cib.stopped) == {rid("a/y"), rid("gone/p")}


# ---------------------------------------------------------------------------
# status


def test_only_running_assemblies_are_online_members() -> None:
    doc = document({"a": ["x"], "b": ["y"], "c": []})
    obs = Observed(Goal.RUN, up(doc, b=A.FAILED, c=A.CREATING), {})
    states = {
        s.get("uname"): (s.get("in_ccm"), s.get("crmd"), s.get("join"))
        for s in tree(export_cib(doc, obs)).iter("node_state")
    }
    assert states == {
        "a": ("true", "online", "member"),
        "b": ("false", "offline", "down"),
        "c": ("false", "offline", "down"),
    }


def test_without_an_observed_state_the_status_is_empty() -> None:
    root = tree(export_cib(document({"a": ["x"]})))
    status = root.find("status")
    assert status is not None and len(status) == 0


def test_op_history_carries_rc_codes_and_what_is_unknown_has_none() -> None:
    doc = document({"a": ["unknown", "stopped", "running", "failed", "lost", "broken"]})
    params = {"state": "/run/x"}
    applied = Applied("ocf:heartbeat:Dummy", tuple(params.items()))
    resources = {
        rid("a/unknown"): ResourceStatus(R.STARTING, "probe", 7),
        rid("a/stopped"): ResourceStatus(R.STOPPED, "probe", 7),
        rid("a/running"): ResourceStatus(R.RUNNING, "start", 0, applied, monitoring=True),
        rid("a/failed"): ResourceStatus(R.FAILED, "monitor", 1, applied),
        rid("a/lost"): ResourceStatus(R.UNRECOVERABLE, "start", 5),
        rid("a/broken"): ResourceStatus(R.FAILED, "start", 1),
    }
    root = tree(export_cib(doc, Observed(Goal.RUN, up(doc), resources)))

    def history(name: str) -> list[tuple[str | None, ...]]:
        return [
            (o.get("operation"), o.get("interval"), o.get("rc-code"))
            for o in ops(root, f"rsc_a_{name}")
        ]

    assert history("unknown") == []
    assert history("stopped") == [("monitor", "0", "7")]
    assert history("running") == [("start", "0", "0"), ("monitor", "10000", "0")]
    assert history("failed") == [("start", "0", "0"), ("monitor", "10000", "1")]
    assert history("lost") == [("start", "0", "5")]
    assert history("broken") == [("start", "0", "1")]
    for op in root.iter("lrm_rsc_op"):
        assert op.get("crm_feature_set") == FEATURE_SET
    call_ids = [int(o.get("call-id", "")) for o in root.iter("lrm_rsc_op")]
    assert call_ids == sorted(set(call_ids))


def test_a_timed_out_start_shows_as_a_timeout_after_the_probe() -> None:
    doc = document({"a": ["x"]})
    resources = {rid("a/x"): ResourceStatus(R.FAILED, "probe", 7)}  # the start timed out
    root = tree(export_cib(doc, Observed(Goal.RUN, up(doc), resources)))
    history = [(o.get("operation"), o.get("op-status")) for o in ops(root, "rsc_a_x")]
    assert history == [("monitor", "0"), ("start", "2")]


def test_the_digest_is_of_the_parameters_it_was_started_with() -> None:
    doc = document({"a": [{"name": "x", "type": "Dummy", "parameters": {"n": "new"}}]})
    stale = Applied("ocf:heartbeat:Dummy", (("n", "old"),))
    resources = {rid("a/x"): ResourceStatus(R.RUNNING, "start", 0, stale, monitoring=True)}
    root = tree(export_cib(doc, Observed(Goal.RUN, up(doc), resources)))
    start, monitor = ops(root, "rsc_a_x")
    assert start.get("op-digest") == op_digest({"n": "old"})
    assert monitor.get("op-digest") == op_digest({"n": "old"}, timeout_ms=20000)
    nvpair = root.find(".//nvpair[@name='n']")
    assert nvpair is not None and nvpair.get("value") == "new"


def test_a_changed_agent_shows_in_the_history() -> None:
    doc = document({"a": ["x"]})
    other = Applied("ocf:pacemaker:Stateful", ())
    resources = {rid("a/x"): ResourceStatus(R.RUNNING, "start", 0, other)}
    entry = tree(export_cib(doc, Observed(Goal.RUN, up(doc), resources))).find(".//lrm_resource")
    assert entry is not None
    assert (entry.get("provider"), entry.get("type")) == ("pacemaker", "Stateful")


# ---------------------------------------------------------------------------
# digests


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_digests_are_of_the_sorted_parameters_as_pacemaker_writes_them() -> None:
    # measured from Pacemaker 2.1.5: ``fake=1`` gives 2b1b5ccb...
    assert op_digest({"fake": "1"}) == "2b1b5ccbabbdb96f3f7edb41b0775563"
    assert op_digest({"b": "2", "a": "1"}) == md5(' <parameters a="1" b="2"/>\n')
    assert op_digest({}) == md5(" <parameters/>\n")
    assert op_digest({"a": "1"}, timeout_ms=5000) == md5(
        ' <parameters CRM_meta_timeout="5000" a="1"/>\n'
    )


def test_digests_escape_as_pacemaker_does() -> None:
    assert op_digest({"p": "<&\"'>"}) == md5(' <parameters p="&lt;&amp;&quot;&apos;&gt;"/>\n')
    assert op_digest({"p": "a\tb\nc"}) == md5(' <parameters p="a    b\\nc"/>\n')
    # Pacemaker stops escaping at its first multi-byte character
    assert op_digest({"p": "é<"}) == md5(' <parameters p="é\ufffd"/>\n')


def test_services_carry_their_fail_counts_moves_and_failure_timeout_as_pacemaker_keeps_them() -> (
    None
):
    doc = parse(
        {
            "name": "dep",
            "assemblies": [{"name": "a"}, {"name": "b"}],
            "services": [
                {
                    "name": "db",
                    "type": "Dummy",
                    "locations": [{"assembly": "a", "score": 10}, {"assembly": "b"}],
                    "migration_threshold": 3,
                    "failure_timeout": "1500ms",
                }
            ],
        }
    )
    stopped = ResourceStatus(R.STOPPED, "probe", 7)
    observed = Observed(
        Goal.RUN,
        up(doc),
        {ResourceId("a", "db"): stopped, ResourceId("b", "db"): stopped},
        now=1000.5,
        # a: the count still holds (999.9 + 2 s); b: expired before its last failure
        service_failures={ResourceId("a", "db"): (997.0, 999.9), ResourceId("b", "db"): (900.0,)},
        move_requests={"db": "b"},
    )
    cib = build_cib(doc, observed)
    root = tree(cib.xml)
    meta = {
        n.get("name"): n.get("value") for n in root.iterfind(".//primitive/meta_attributes/nvpair")
    }
    assert meta["failure-timeout"] == "2s"  # whole seconds, as Pacemaker keeps it
    attributes = {
        state.get("uname"): {n.get("name"): n.get("value") for n in state.iterfind(".//nvpair")}
        for state in root.iterfind("status/node_state")
    }
    assert attributes == {
        "a": {"fail-count-svc_db#monitor_10000": "2", "last-failure-svc_db#monitor_10000": "999"},
        "b": {},
    }
    (move,) = [
        c
        for c in root.iterfind("configuration/constraints/rsc_location")
        if c.get("id") == "move_db"
    ]
    assert (move.get("rsc"), move.get("node"), move.get("score")) == ("svc_db", "b", "INFINITY")
    assert cib.now == 1000.5
