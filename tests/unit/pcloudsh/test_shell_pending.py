"""Changes waiting for a reload, as the shell shows them: ``deployable_diff``, the
status line and the list's column, against cped's own answers (the DPE's record of
the document it runs written as a DPE writes it)."""

from __future__ import annotations

import json

from foundation.runtime_kinds import DOCUMENT
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped


def running_as_stored(cped: InProcessCped) -> None:
    document = cped.get_deployable("shop")
    cped.store.put_runtime("shop", DOCUMENT, "", document)


def test_nothing_pending_then_a_change_shown_part_by_part(
    env: Environment, shop: InProcessCped
) -> None:
    not_running = run(env, "deployable_diff shop")
    assert (not_running.status, not_running.out) == (
        0,
        "deployable shop is not running: a start runs the stored document\n",
    )
    running_as_stored(shop)
    assert run(env, "deployable_diff shop").out == "deployable shop: no changes pending reload\n"

    for line in (
        "assembly_resource_add extra dummy web",
        "escalation_deployable_set shop 3 1h",
    ):
        assert run(env, line).status == 0, line
    shown = run(env, "deployable_diff shop")
    assert shown.status == 0, shown
    assert shown.out.splitlines() == [
        "deployable shop: changes pending reload (deployable_reload shop applies them)",
        "+ resource web/extra",
        "~ setting escalation.failures: 2 -> 3",  # the scenario's 2 per hour
    ]
    answer = json.loads(run(env, "--json deployable_diff shop").out)
    assert (answer["pending"], answer["resources"]["added"]) == (True, ["web/extra"])

    status = run(env, "deployable_status shop").out
    assert f"changes pending reload: {answer['summary']}\n" in status
    assert "(deployable_diff shop shows them, deployable_reload shop applies them)" in status
    assert (
        json.loads(run(env, "--json deployable_status shop").out)["pending_reload"]
        == (answer["summary"])
    )
    listed = run(env, "deployable_list").out.splitlines()
    assert listed[0].split()[4] == "Pending" and listed[2].split()[4] == "reload", listed
    assert json.loads(run(env, "--json deployable_list").out)[0]["pending_reload"]


def test_a_bad_name_is_refused(env: Environment) -> None:
    ran = run(env, "deployable_diff no/such")
    assert ran.status == 2 and "deployable" in ran.err
