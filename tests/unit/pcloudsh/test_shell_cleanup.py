"""``deployable_cleanup`` against cped's own rules: the scope checked, the request
recorded for the DPE (a running deployable) or nothing to do (a stopped one)."""

from __future__ import annotations

import json

from foundation.runtime_kinds import CLEANUP
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.test_shell_completion import offered


def requests(cped: InProcessCped) -> dict[str, object]:
    return dict(cped.store.get_runtime("shop", CLEANUP).get(CLEANUP, {}))


def test_a_stopped_deployable_has_nothing_to_clean_up(
    env: Environment, shop: InProcessCped
) -> None:
    ran = run(env, "deployable_cleanup shop web/www")
    assert ran.status == 0, ran
    assert ran.out == (
        "deployable shop: web/www: not running: a stop forgets every failure, nothing to clean up\n"
    )
    assert requests(shop) == {}


def test_each_scope_is_recorded_for_the_dpe(env: Environment, shop: InProcessCped) -> None:
    assert run(env, "deployable_start shop").status == 0
    for part, key in (("", ""), ("web", "web"), ("web/www", "web/www")):
        ran = run(env, f"--json deployable_cleanup shop {part}".strip())
        assert ran.status == 0, ran
        answer = json.loads(ran.out)
        assert (answer["deployable"], answer["scope"]) == ("shop", key)
        assert answer["note"].startswith("clean-up requested: ")
    assert sorted(requests(shop)) == ["", "web", "web/www"]


def test_what_is_not_there_is_refused_and_nothing_recorded(
    env: Environment, shop: InProcessCped
) -> None:
    assert run(env, "deployable_start shop").status == 0
    for line, status, words in (
        ("deployable_cleanup shop nosuch", 2, "has no assembly 'nosuch'"),
        ("deployable_cleanup shop web/nosuch", 2, "has no resource 'nosuch'"),
        ("deployable_cleanup shop web/", 2, "expected ASSEMBLY or ASSEMBLY/RESOURCE"),
        ("deployable_cleanup shop a/b/c", 2, "expected ASSEMBLY or ASSEMBLY/RESOURCE"),
        ("deployable_cleanup nosuch", 2, "nosuch"),
    ):
        ran = run(env, line)
        assert (ran.status, words in ran.err) == (status, True), (line, ran)
    assert requests(shop) == {}


def test_the_scope_completes(env: Environment, shop: InProcessCped) -> None:
    assert offered(env, "deployable_cleanup shop w") == ["web", "web/www"]
