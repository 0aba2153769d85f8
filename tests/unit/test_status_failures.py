"""Status counts the failures in each object's escalation window, as the man page says."""

from __future__ import annotations

from cpe.status import StatusRecord, compose_status

NOW = 1_000.0


def test_failures_older_than_the_escalation_period_are_not_counted() -> None:
    document = {
        "name": "shop",
        "escalation": {"failures": 3, "period": 100},
        "assemblies": [
            {
                "name": "a1",
                "escalation": {"failures": 2, "period": 10},
                "resources": [
                    {"name": "on", "type": "Dummy", "escalation": {"failures": 3, "period": 60}},
                    {"name": "off", "type": "Dummy", "escalation": {"failures": "INFINITY"}},
                ],
            }
        ],
    }
    old, recent = [NOW - 500, NOW - 200], [NOW - 5]
    runtime = {
        "deployable": {"": {"state": "running", "failures": [*old, NOW - 50]}},
        "assembly": {"a1": {"state": "running", "failures": old + recent}},
        "resource": {
            "a1/on": {"state": "running", "failures": old + recent},
            "a1/off": {"state": "running", "failures": old + recent},
        },
    }
    status = compose_status(StatusRecord(document, "started", runtime, None, []), {}, now=NOW)
    assert status["failures"] == [NOW - 50]
    (a1,) = status["assemblies"]
    assert a1["failures"] == recent
    on, off = a1["resources"]
    assert on["failures"] == recent
    assert off["failures"] == old + recent  # no escalation, no window: what was recorded
