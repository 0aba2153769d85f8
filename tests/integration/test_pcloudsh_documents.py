"""Documents as people write them, imported by one-shot pcloudsh into a real cped:
a byte-order mark, a YAML key written twice, the original shell's DPE XML, text that
is not UTF-8, a character YAML does not allow."""

from __future__ import annotations

import codecs
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_pcloudsh_session import Home, pcloudsh_command

pytestmark = pytest.mark.integration

BOM = "\ufeff"

# What the 2012 pcloudsh wrote to /var/run/<deployable>.xml: its uuid is the
# deployable's name (marked TODO there), its parameters misspelt.
ORIGINAL_XML = """<?xml version="1.0" encoding="UTF-8"?>
<deployable name="wp" uuid="wp" monitor="active" username="root">
  <assemblies>
    <assembly name="front" uuid="2a4bd8c9a0af4f3a9a9b1b7a0d3f2e11"
              escalation_failures="INFINITY" escalation_period="INFINITY">
      <services>
        <service name="www" provider="heartbeat" class="ocf" type="Dummy" monitor_interval="70s"
                 escalation_period="INFINITY" escalation_failures="INFINITY">
          <paramaters><paramater name="fake" value="1"/></paramaters>
        </service>
      </services>
    </assembly>
  </assemblies>
  <constraints/>
</deployable>
"""


@pytest.fixture(scope="module")
def home() -> Iterator[Home]:
    made = Home()
    try:
        made.ok("start")
        made.ok("assembly_create web host")
        made.ok("assembly_resource_add web/www ocf:heartbeat:Dummy")
        made.ok("deployable_create shop local")
        made.ok("deployable_assembly_add shop web")
        yield made
    finally:
        made.run("stop")
        made.cleanup()


def refused(home: Home, text: str, *options: str) -> str:
    """The error of an import that must change nothing."""
    before = home.ok("--json deployable_list")
    done = home.run(" ".join(["deployable_import -", *options]), stdin=text)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert home.ok("--json deployable_list") == before
    return done.stderr


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_export_saved_with_a_byte_order_mark_imports_back(home: Home, fmt: str) -> None:
    exported = home.ok("--json deployable_export shop")
    text = home.ok(f"deployable_export shop --format {fmt}")
    for options in ("", f"--format {fmt}"):  # guessed, and as told
        home.ok(f"deployable_import - {options}", stdin=BOM + text)
        assert home.ok("--json deployable_export shop") == exported


def test_a_yaml_key_written_twice_is_refused_naming_it(home: Home) -> None:
    text = "name: shop\ninfrastructure: local\nname: other\nassemblies: []\n"
    error = refused(home, text)
    assert "the key 'name' appears twice" in error and "line 3" in error


def test_yaml_merge_keys_may_still_override_what_they_merge(home: Home) -> None:
    text = (
        "name: merged\ninfrastructure: local\nassemblies: []\n"
        "escalation:\n  <<: {failures: 3, period: 60}\n  failures: 2\n"
    )
    home.ok("deployable_import -", stdin=text)
    assert json.loads(home.ok("--json deployable_export merged"))["escalation"] == {
        "failures": 2,
        "period": 60,
    }


def test_the_original_shells_dpe_xml_imports(home: Home) -> None:
    home.ok("deployable_import -", stdin=ORIGINAL_XML)
    doc = json.loads(home.ok("--json deployable_export wp"))
    assert len(doc["uuid"]) == 32  # a uuid of its own: "wp" is none
    resource = doc["assemblies"][0]["resources"][0]
    assert (resource["type"], resource["parameters"]) == ("Dummy", {"fake": "1"})


def test_an_xml_uuid_that_is_neither_a_uuid_nor_the_name_is_refused(home: Home) -> None:
    text = ORIGINAL_XML.replace('uuid="wp"', 'uuid="nonsense"').replace('"wp"', '"wp2"')
    assert "uuid: not a uuid: 'nonsense'" in refused(home, text)


def test_xml_the_schema_has_not_is_refused_naming_each_place(home: Home) -> None:
    text = (
        ORIGINAL_XML.replace('"wp"', '"wp3"')
        .replace('monitor_interval="70s"', 'monitor_intervall="70s"')
        .replace("<paramaters>", '<configure_executable url="file:///x.sh"/><paramaters>')
        .replace("<constraints/>", "<constraint/><assemblies><asembly/></assemblies>")
    )
    error = refused(home, text)
    assert "assemblies[0].resources[0]: unknown attribute 'monitor_intervall'" in error
    assert "assemblies[0].resources[0]: unknown element <configure_executable>" in error
    assert "unknown element <constraint> in <deployable>" in error
    assert "assemblies: unknown element <asembly> in <assemblies> (expected <assembly>)" in error


def test_yaml_parameters_reach_the_agent_as_written(home: Home) -> None:
    written = {"cmdline_options": "1.10", "pidfile": "0755", "logfile": "12:30", "user": "no"}
    text = (
        "name: ytext\ninfrastructure: local\nassemblies:\n  - name: yt\n    resources:\n"
        "      - name: r\n        class: ocf\n        provider: heartbeat\n"
        "        type: anything\n        monitor_interval: 10\n        parameters:\n"
        "          binfile: /bin/sleep\n"
        + "".join(f"          {key}: {value}\n" for key, value in written.items())
    )
    home.ok("deployable_import -", stdin=text)
    resource = json.loads(home.ok("--json deployable_export ytext"))["assemblies"][0]["resources"][
        0
    ]
    assert resource["parameters"] == {"binfile": "/bin/sleep", **written}
    assert resource["monitor_interval"] == 10


def test_an_xml_export_imports_back_or_is_refused_naming_the_value(home: Home) -> None:
    resource: dict[str, object] = {
        "name": "r",
        "class": "ocf",
        "provider": "heartbeat",
        "type": "Dummy",
        "parameters": {"fake": "line\r\nnext\r"},
    }
    assembly = {"name": "ctl1", "resources": [resource]}
    doc = {"name": "ctl", "infrastructure": "local", "assemblies": [assembly]}
    home.ok("deployable_import -", stdin=json.dumps(doc))
    exported = home.ok("--json deployable_export ctl")
    home.ok("deployable_import - --format xml", stdin=home.ok("deployable_export ctl --format xml"))
    assert home.ok("--json deployable_export ctl") == exported

    resource["parameters"] = {"fake": "bell\a"}
    home.ok("deployable_import -", stdin=json.dumps(doc))
    done = home.run("deployable_export ctl --format xml")
    assert done.returncode == 2 and done.stdout == ""
    assert "assemblies[0].resources[0].parameters.fake: holds a control character" in done.stderr


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (codecs.BOM_UTF16_LE + '{"name": "x"}'.encode("utf-16-le"), "UTF-16 text, not UTF-8"),
        (b'{"name": "x"}\n{"caf\xe9"}', "not UTF-8 text (byte 0xe9 at line 2, offset 19)"),
    ],
)
def test_a_document_that_is_not_utf8_is_refused_saying_what_it_is(
    home: Home, tmp_path: Path, data: bytes, why: str
) -> None:
    before = home.ok("--json deployable_list")
    (tmp_path / "doc").write_bytes(data)
    from_file = home.run(f"deployable_import {tmp_path / 'doc'}")
    from_stdin = subprocess.run(
        [*pcloudsh_command(), "deployable_import", "-"],
        input=data,
        capture_output=True,
        env=home.env,
        timeout=60,
    )
    assert (from_file.returncode, from_stdin.returncode) == (2, 2)
    assert f"cannot read {tmp_path / 'doc'}: {why}" in from_file.stderr
    assert f"cannot read standard input: {why}" in from_stdin.stderr.decode()
    assert home.ok("--json deployable_list") == before


def test_a_character_yaml_does_not_allow_is_named_with_its_place(home: Home) -> None:
    error = refused(home, "name: shop\ninfrastructure: lo\x00cal\n")
    assert "not valid YAML: character U+0000 is not allowed at line 2 column 19" in error
