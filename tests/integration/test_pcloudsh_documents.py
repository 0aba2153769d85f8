"""Documents as people write them, imported by one-shot pcloudsh into a real cped:
a byte-order mark, a YAML key written twice."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.test_pcloudsh_session import Home

pytestmark = pytest.mark.integration

BOM = "\ufeff"


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
