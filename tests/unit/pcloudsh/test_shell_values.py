"""Values checked when written (bounds, absolute paths, references), the argument order
ASSEMBLY/RESOURCE with the original order as an alias, and parameters after options:
in-process, against cped's own rules."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from foundation.errors import InvalidInput
from pcloudsh.environment import Environment
from pcloudsh.testing import run, shell_for
from pcloudsh.values import parse_since
from tests.unit.inprocess import InProcessCped


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "escalation_resource_set web/www 99999999999999999999999 60",
            "invalid FAILURES '99999999999999999999999': expected a whole number from 1 to 1000000",
        ),
        ("escalation_assembly_set web 3 400d", "invalid PERIOD '400d': expected a duration"),
        ("escalation_assembly_set web 3 400d", "of at most 365 days"),
        (
            "assembly_resource_add web/x dummy --monitor-interval 99999999999999",
            "invalid monitor interval: too long: '99999999999999' (at most 1 day)",
        ),
        ("assembly_resource_add web/x dummy --timeout start=2d", "(at most 1 day)"),
        (
            "assembly_resource_add web/x dummy --timeout start=10 --timeout start=20",
            "timeout of start given twice: give it once",
        ),
        ("assembly_resource_add web/x dummy fake=1 fake=2", "parameter 'fake' given twice"),
        ("resource_template_add mine ocf:heartbeat:Dummy fake=1 fake=2", "given twice"),
        (
            "assembly_resource_add web/x dummy --monitor-interval 0.0001",
            "invalid monitor interval '0.0001': too short (at least 100 ms)",
        ),
        (
            "assembly_resource_add web/x dummy --timeout monitor=50ms",
            "invalid timeout of monitor '50ms': too short (at least 100 ms)",
        ),
        (
            "assembly_resource_add web/x anything binfile=relative/path",
            "parameters.binfile: must be an absolute path (starting with /), not 'relative/path'",
        ),
        (
            "assembly_resource_add web/x dummy fake=@nosuch:ipaddress",
            "parameters.fake: refers to 'nosuch': no such assembly",
        ),
        ("assembly_resource_add web/x dummy fake=@db:nosuch", "invalid reference"),
    ],
)
def test_a_bad_value_is_refused_when_written_and_changes_nothing(
    env: Environment, shop: InProcessCped, line: str, message: str
) -> None:
    before = shop.tables()
    ran = run(env, line)
    assert (ran.status, ran.out) == (2, ""), ran
    assert message in ran.err and "Traceback" not in ran.err
    assert shop.tables() == before


def test_zero_failures_turn_escalation_off_and_say_so(
    env: Environment, shop: InProcessCped
) -> None:
    ran = run(env, "escalation_resource_set web/www 0 60")
    assert ran.status == 0 and ran.out.startswith("escalation of resource www in assembly web: off")
    assert "never escalates" in ran.out
    (www,) = shop.get_assembly("web")["resources"]
    assert www["escalation"] == {"failures": 0, "period": 0}  # numbers, whether on or off


def test_escalation_failures_are_a_number_in_json_on_or_off(
    env: Environment, shop: InProcessCped
) -> None:
    run(env, "escalation_assembly_set db INFINITY INFINITY")
    data = json.loads(run(env, "--json deployable_export shop").out)
    counts = [a["escalation"]["failures"] for a in data["assemblies"]]
    counts += [r["escalation"]["failures"] for a in data["assemblies"] for r in a["resources"]]
    assert counts and all(type(count) is int for count in counts), counts


def test_assembly_slash_resource_and_the_original_order_are_the_same(
    env: Environment, shop: InProcessCped
) -> None:
    assert run(env, "assembly_resource_add web/new1 dummy fake=2").status == 0
    assert run(env, "assembly_resource_add new2 dummy web fake=2").status == 0
    first, second = shop.get_assembly("web")["resources"][1:]
    assert {**first, "name": "new2"} == second
    assert run(env, "escalation_resource_set web/new1 3 60").status == 0
    assert run(env, "escalation_resource_set new2 web 3 60").status == 0
    first, second = shop.get_assembly("web")["resources"][1:]
    assert first["escalation"] == second["escalation"] == {"failures": 3, "period": 60}
    assert run(env, "assembly_resource_remove web/new1").status == 0
    assert run(env, "assembly_resource_remove new2 web").status == 0
    assert [r["name"] for r in shop.get_assembly("web")["resources"]] == ["www"]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "escalation_resource_set web/www 4 90 extra",
            "pcloudsh: error: extra argument 'extra': after ASSEMBLY/RESOURCE come only"
            " FAILURES and PERIOD\n",
        ),
        (
            "assembly_resource_remove web/www extra",
            "pcloudsh: error: extra argument 'extra': ASSEMBLY/RESOURCE names the assembly"
            " already\n",
        ),
    ],
)
def test_a_word_after_assembly_slash_resource_is_named_as_extra(
    env: Environment, shop: InProcessCped, line: str, error: str
) -> None:
    before = shop.get_assembly("web")
    shell = shell_for(env)
    for target in (env, shell):
        ran = run(target, line)
        assert (ran.status, ran.out, ran.err) == (2, "", error), target
    assert shop.get_assembly("web") == before  # nothing changed


def test_parameters_may_follow_any_option_of_deployable_service_add(
    env: Environment, shop: InProcessCped
) -> None:
    ran = run(
        env,
        "deployable_service_add shop ip dummy --on web:100,db --stickiness 60 fake=1 "
        "--failure-timeout 1m state=@web:ipaddress",
    )
    assert ran.status == 0, ran
    (service,) = shop.get_deployable("shop")["services"]
    assert service["parameters"].items() >= {"fake": "1", "state": {"ref": "web:ipaddress"}}.items()
    assert (service["stickiness"], service["failure_timeout"]) == (60, 60)


def test_the_list_says_desired_as_status_does(env: Environment, shop: InProcessCped) -> None:
    (row,) = json.loads(run(env, "--json deployable_list").out)
    assert row["desired"] == row["desired_state"] == "stopped"  # the old name kept, the same


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("escalation_resource_set web/www 3 365d", "3 failures in 365 d escalate"),
        ("escalation_assembly_set web 2 100d", "2 failures in 100 d escalate"),
        ("escalation_assembly_set web 2 90000", "2 failures in 90000 s escalate"),
        ("escalation_assembly_set web 2 1500ms", "2 failures in 1.5 s escalate"),
    ],
)
def test_a_long_escalation_period_is_shown_plainly(
    env: Environment, shop: InProcessCped, line: str, rule: str
) -> None:
    ran = run(env, line)
    assert ran.status == 0 and rule in ran.out and "e+" not in ran.out, ran


def test_the_resource_listing_shows_a_long_period_plainly(
    env: Environment, shop: InProcessCped
) -> None:
    assert run(env, "escalation_resource_set web/www 3 365d").status == 0
    listing = run(env, "assembly_resource_list web").out
    assert "3 failures in 365 d" in listing and "e+" not in listing, listing


@pytest.mark.parametrize("period", ["0", "0s"])
def test_a_period_of_zero_is_refused_not_taken_for_off(
    env: Environment, shop: InProcessCped, period: str
) -> None:
    before = shop.tables()
    ran = run(env, f"escalation_resource_set web/www 3 {period}")
    assert (ran.status, ran.out) == (2, ""), ran
    assert f"invalid PERIOD '{period}': must be more than zero" in ran.err
    assert "INFINITY or -1" in ran.err
    assert shop.tables() == before


def test_infinity_still_turns_escalation_off(env: Environment, shop: InProcessCped) -> None:
    ran = run(env, "escalation_resource_set web/www 3 INFINITY")
    assert ran.status == 0 and "escalation of resource www in assembly web: off" in ran.out, ran
    (row,) = [
        line for line in run(env, "assembly_resource_list web").out.splitlines() if "www" in line
    ]
    assert " off" in row and "?" not in row, row


@pytest.mark.parametrize("failures", ["0", "INFINITY", "-1"])
def test_a_period_of_zero_beside_failures_that_say_off_is_off(
    env: Environment, shop: InProcessCped, failures: str
) -> None:
    ran = run(env, f"escalation_resource_set web/www {failures} 0")
    assert ran.status == 0 and "escalation of resource www in assembly web: off" in ran.out, ran


def test_invalid_failures_beside_a_zero_period_are_named(
    env: Environment, shop: InProcessCped
) -> None:
    ran = run(env, "escalation_resource_set web/www lots 0")
    assert ran.status == 2 and "invalid FAILURES 'lots'" in ran.err, ran


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("23:08", datetime(2026, 12, 6, 23, 8)),  # still to come today: yesterday's
        ("9:05", datetime(2026, 12, 7, 9, 5)),
        ("14:30:15", datetime(2026, 12, 7, 14, 30, 15)),
        ("2026-12-01T08:00", datetime(2026, 12, 1, 8, 0)),
    ],
)
def test_since_a_time_of_day_is_its_last_time(text: str, moment: datetime) -> None:
    now = datetime(2026, 12, 7, 15, 0).timestamp()  # local time, as the times typed
    assert parse_since(text, now) == moment.timestamp()


@pytest.mark.parametrize("text", ["25:00", "9:5", "12:60", "1:2:3"])
def test_since_a_time_of_day_that_is_none_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="or a time of day"):
        parse_since(text, 0.0)
