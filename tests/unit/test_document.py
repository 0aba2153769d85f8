"""Document spellings: JSON, YAML and the original XML schema."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml

from foundation import document, model
from foundation.errors import InvalidInput
from tests.unit.test_model import sample

ORIGINAL_XML = """<?xml version="1.0"?>
<deployable name="wp" uuid="0f5b1f1e-4b5c-4b7f-9d3a-1c2b3a4d5e6f" monitor="active" username="root">
  <assemblies>
    <assembly name="front_1" uuid="11111111111111111111111111111111"
              escalation_failures="3" escalation_period="60">
      <services>
        <service name="web" class="lsb" type="httpd" monitor_interval="10s">
          <parameters>
            <parameter name="db"><reference assembly="back" parameter="ipaddress"/></parameter>
            <parameter name="mode"><value>fast</value></parameter>
          </parameters>
        </service>
      </services>
    </assembly>
    <assembly name="back" uuid="22222222222222222222222222222222"
              escalation_failures="INFINITY" escalation_period="INFINITY">
      <services>
        <service name="db" class="ocf" provider="heartbeat" type="Dummy" monitor_interval="1">
          <paramaters><paramater name="fake" value="1"/></paramaters>
        </service>
      </services>
    </assembly>
  </assemblies>
  <constraints>
    <service_dependancy id="d1" first="rsc_back_db" then="rsc_front_1_web"/>
  </constraints>
</deployable>
"""


def canonical(doc: dict[str, object]) -> dict[str, object]:
    return model.parse(doc).to_dict()


@pytest.mark.parametrize("fmt", ["json", "yaml", "xml"])
def test_each_format_round_trips_the_canonical_document(fmt: str) -> None:
    original = canonical(sample())
    text = document.dump_document(original, fmt)
    assert document.sniff_format(text) == fmt
    assert canonical(document.load_document(text)) == original


def test_the_original_xml_schema_is_read() -> None:
    dep = model.parse(document.load_document(ORIGINAL_XML))
    front = dep.assembly("front_1")
    back = dep.assembly("back")
    assert front is not None and back is not None
    web = front.resource("web")
    assert web is not None and web.rclass == "lsb" and web.type == "httpd"
    assert web.parameters == {"db": model.Reference("back", "ipaddress"), "mode": "fast"}
    db = back.resource("db")
    assert db is not None and db.parameters == {"fake": "1"}
    assert front.escalation == model.Escalation(3, 60.0)
    assert not back.escalation.enabled
    assert [str(c.first) + ">" + str(c.then) for c in dep.constraints] == ["back/db>front_1/web"]


def test_xml_export_uses_the_original_element_names() -> None:
    text = document.dump_document(canonical(sample()), "xml")
    assert "<service_dependancy" in text and 'first="rsc_db_pg"' in text
    assert '<reference assembly="db" parameter="ipaddress"' in text


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ('{"name": ', None, "not valid JSON"),
        ('{"name": "a", "assemblies": [{"name": "x", "name": "y"}]}', None, "'name' appears twice"),
        ("<deployable name='x'><assemblies>", None, "not valid XML"),
        ("<assembly/>", None, "root element is <assembly>"),
        ("name: [unclosed", None, "not valid YAML"),
        ("[1, 2]", None, "must be an object"),
        ("{}", "toml", "unknown document format"),
    ],
)
def test_malformed_documents_are_named(text: str, fmt: str | None, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        document.load_document(text, fmt)
    assert expected in str(caught.value)


def test_yaml_and_json_agree() -> None:
    doc = canonical(sample())
    from_yaml = document.load_document(yaml.safe_dump(doc))  # its numbers read as text
    assert model.parse(from_yaml).to_dict() == model.parse(json.loads(json.dumps(doc))).to_dict()


def test_a_yaml_plain_scalar_is_the_text_written() -> None:
    text = "a: 0755\nb: 12:30\nc: 1.10\nd: no\ne: 2026-01-01\nf: ~\ng: !!int 7\n"
    assert document.load_document(text) == {
        "a": "0755",
        "b": "12:30",
        "c": "1.10",
        "d": "no",
        "e": "2026-01-01",
        "f": None,
        "g": 7,
    }


def test_the_original_monitor_attribute_carries_the_monitoring_mode() -> None:
    doc = model.parse(sample() | {"monitoring": "pm"}).to_dict()
    xml = document.dump_document(doc, "xml")
    assert 'monitor="passive"' in xml
    assert model.parse(document.load_document(xml)).monitoring == "passive"
    original = document.load_document(ORIGINAL_XML.replace('monitor="active"', 'monitor="pm"'))
    assert model.parse(original).monitoring == "passive"


def _nested_json(depth: int) -> str:
    return '{"name": "x", "assemblies": ' + "[" * depth + "]" * depth + "}"


def _nested_yaml(depth: int) -> str:
    return "name: x\nassemblies: " + "[" * depth + "]" * depth + "\n"


def _nested_xml(depth: int) -> str:
    return "<deployable name='x'>" + "<a>" * depth + "</a>" * depth + "</deployable>"


@pytest.mark.parametrize("depth", [65, 900, 100_000])
@pytest.mark.parametrize("nested", [_nested_json, _nested_yaml])
def test_a_document_nested_too_deeply_is_refused_at_any_depth(
    nested: Callable[[int], str], depth: int
) -> None:
    with pytest.raises(InvalidInput, match="nested too deeply"):
        document.load_document(nested(depth))


def _alias_bomb(levels: int) -> str:
    """Each level a list of seven aliases of the level before: 7**levels values."""
    lines = ["name: bomb", 'l0: &l0 ["x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 7) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_aliases_that_expand_without_bound_are_refused_before_they_expand() -> None:
    with pytest.raises(InvalidInput, match=r"aliases repeat more than 100,000 values"):
        document.load_document(_alias_bomb(12), "yaml")  # 7**12: 14 billion values


def test_yaml_anchors_that_spare_repeating_a_block_are_read() -> None:
    head = "name: shop\ndefaults: &escalation {failures: 3, period: 60}\nassemblies:\n"
    items = [f"  - {{name: a{n}, escalation: *escalation}}\n" for n in range(50)]
    text = head + "".join(items)
    loaded = document.load_document(text, "yaml")
    assert [a["escalation"]["period"] for a in loaded["assemblies"]] == ["60"] * 50
    assert document.load_document(_alias_bomb(4), "yaml")["l4"][6][6][6][6] == ["x"] * 7


def test_deep_xml_elements_outside_the_schema_are_refused_not_walked() -> None:
    with pytest.raises(InvalidInput, match="unknown element <a> in <deployable>"):
        document.load_document(_nested_xml(100_000))


def test_a_document_as_deep_as_allowed_is_read() -> None:
    depth = document.MAX_DEPTH - 1  # the document object is the first level
    assert document.load_document(_nested_json(depth))["name"] == "x"


def test_check_depth_walks_objects_and_lists() -> None:
    document.check_depth({"a": [{"b": [1]}]}, limit=4)
    with pytest.raises(InvalidInput, match="at most 3 levels"):
        document.check_depth({"a": [{"b": [1]}]}, limit=3)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("null", "must be an object, not null"),
        ("[1, 2]", "must be an object, not a list"),
        ('"shop"', "must be an object, not a string"),
        ("7", "must be an object, not a number"),
        ("true", "must be an object, not true"),
        ("name: !!int " + "9" * 5000, "not valid YAML: a number is too long (at most 4300 digits)"),
        ('{"name": ' + "9" * 5000 + "}", "not valid JSON: a number is too long (at most 4300"),
    ],
)
def test_what_is_wrong_is_said_in_the_documents_words(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        document.load_document(text, "yaml" if text.startswith("name:") else "json")
    assert words in str(caught.value) and "sys." not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fmt", "where"),
    [
        ('{"name": "x", "assemblies": [{"name": "a\\ud800"}]}', "json", "assemblies[0].name"),
        ('{"name": "x", "settings": {"k\\udfff": "v"}}', "json", "settings"),
        ('name: x\ndescription: "\\ud800"\n', "yaml", "description"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_where_it_is(text: str, fmt: str, where: str) -> None:
    with pytest.raises(InvalidInput, match=r"lone surrogate") as caught:
        document.load_document(text, fmt)
    assert str(caught.value).startswith(f"{where}: holds a lone surrogate")
